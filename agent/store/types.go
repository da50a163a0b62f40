package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Errors callers branch on.
var (
	// ErrNotFound: no such run, job, step or token (or no active job where
	// one was asked for).
	ErrNotFound = errors.New("not found")
	// ErrNodeBusy: the node already has an active (queued or running) job,
	// or another live controller holds the job. The error is a
	// *NodeBusyError naming the holder.
	ErrNodeBusy = errors.New("node has an active job")
	// ErrNotActive: the job is finished (landed, failed, cancelled,
	// interrupted) and cannot be claimed, renewed, stepped or finished again.
	ErrNotActive = errors.New("job is not active")
	// ErrLeaseLost: the caller no longer holds the job (another controller
	// took it over after the lease expired, or it was resumed elsewhere);
	// the caller must stop working the node at once.
	ErrLeaseLost = errors.New("job lease lost")
	// ErrSuperseded: the River job is for an older generation of the node
	// job (the node job was resumed under a newer one); do nothing.
	ErrSuperseded = errors.New("job generation superseded")
	// ErrAlreadySettled: the intent already has an outcome.
	ErrAlreadySettled = errors.New("intent already settled")
	// ErrWindowClosed: the run's window ended before the job started; the
	// job has been finished as cancelled.
	ErrWindowClosed = errors.New("run window closed")
)

// NodeBusyError is returned (wrapped ErrNodeBusy) when a node already has an
// active job. It names the holder.
type NodeBusyError struct {
	Node   string
	JobID  int64    // the holding job
	RunID  int64    // the run it belongs to
	State  JobState // queued or running
	Owner  string   // the controller working it ("" while queued)
	Reason string   // set when the conflict is not the plain active-job one
}

func (e *NodeBusyError) Error() string {
	msg := fmt.Sprintf("node %s is busy: job %d of run %d is %s", e.Node, e.JobID, e.RunID, e.State)
	if e.Owner != "" {
		msg += " (held by " + e.Owner + ")"
	}
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	return msg
}

// Unwrap makes errors.Is(err, ErrNodeBusy) hold.
func (e *NodeBusyError) Unwrap() error { return ErrNodeBusy }

// RunState is a run's lifecycle state.
type RunState string

// Run states.
const (
	RunScheduled   RunState = "scheduled" // window starts in the future
	RunRunning     RunState = "running"
	RunFinished    RunState = "finished"
	RunCancelled   RunState = "cancelled"
	RunInterrupted RunState = "interrupted"
)

// Run is one reinstall command, or one reimaging window (a run with a start
// and an end; its node jobs are River jobs scheduled at the start).
type Run struct {
	ID          int64           `json:"id"`
	Created     time.Time       `json:"created"`
	CreatedBy   string          `json:"created_by,omitempty"` // who/what started it (user@host, schedule name)
	Selection   string          `json:"selection,omitempty"`  // the operator's selection, as given
	Options     json.RawMessage `json:"options,omitempty"`    // the run's options, JSON object
	WindowStart time.Time       `json:"window_start"`         // zero: start now
	WindowEnd   time.Time       `json:"window_end"`           // zero: no end; after it no new node starts
	State       RunState        `json:"state"`
	Finished    time.Time       `json:"finished"`
	// Limits are enforced where the run's jobs are claimed.
	Limits RunLimits `json:"limits"`
	// Cutoff, when set, is the last moment a job of the run may start (a
	// reimaging window's end minus its cutoff): a job claimed later ends
	// cancelled, "not started" (docs/windows.md).
	Cutoff time.Time `json:"cutoff"`
	// Hold, when set, says why no job of the run may start now (its
	// window is paused, or its gate fails); claims wait until it is
	// cleared (SetRunHold).
	Hold string `json:"hold,omitempty"`
}

// RunLimits are a run's admission limits. They hold across every controller
// sharing the store, because they are checked in the store when a job is
// claimed. Zero means no limit.
type RunLimits struct {
	// MaxParallel: the run's jobs running at once.
	MaxParallel int `json:"max_parallel,omitempty"`
	// PerRack: the run's jobs of one rack running at once.
	PerRack int `json:"per_rack,omitempty"`
	// PerBMC: the run's jobs sharing one BMC address running at once.
	PerBMC int `json:"per_bmc,omitempty"`
	// MaxFailures: once this many of the run's jobs failed, no further job
	// of the run starts (they end cancelled, "not started").
	MaxFailures int `json:"max_failures,omitempty"`
}

// RunSpec describes a run to create.
type RunSpec struct {
	CreatedBy   string
	Selection   string
	Options     json.RawMessage // nil: {}
	WindowStart time.Time
	WindowEnd   time.Time
	Limits      RunLimits
	// Cutoff: no job of the run starts after it (zero: none).
	Cutoff time.Time
}

// JobState is a node job's state. Queued and running are active: a node has
// at most one active job.
type JobState string

// Node job states.
const (
	JobQueued      JobState = "queued"
	JobRunning     JobState = "running"
	JobLanded      JobState = "landed"
	JobFailed      JobState = "failed"
	JobCancelled   JobState = "cancelled"
	JobInterrupted JobState = "interrupted"
)

// Active reports whether the state holds the node.
func (s JobState) Active() bool { return s == JobQueued || s == JobRunning }

func (s JobState) valid() bool {
	switch s {
	case JobQueued, JobRunning, JobLanded, JobFailed, JobCancelled, JobInterrupted:
		return true
	}
	return false
}

// LandingSource says who saw a node land.
type LandingSource string

// Landing sources, strongest first. ipxe and callback are proof (the netboot
// side saw the node); bmc-evidence (the one-time override was consumed) is
// evidence only.
const (
	LandingIPXE        LandingSource = "ipxe"
	LandingCallback    LandingSource = "callback"
	LandingBMCEvidence LandingSource = "bmc-evidence"
)

// Proof reports whether the source proves the node booted from the network.
func (s LandingSource) Proof() bool { return s == LandingIPXE || s == LandingCallback }

func (s LandingSource) rank() int {
	switch s {
	case LandingIPXE, LandingCallback:
		return 2
	case LandingBMCEvidence:
		return 1
	}
	return 0
}

// NodeJob is one node's reinstall within a run.
type NodeJob struct {
	ID       int64           `json:"id"`
	RunID    int64           `json:"run_id,omitempty"`
	Node     string          `json:"node"`
	State    JobState        `json:"state"`
	Path     string          `json:"path,omitempty"`     // chosen path, e.g. "oob" or "inband"
	Step     string          `json:"step,omitempty"`     // the step of the latest intent
	Reason   string          `json:"reason,omitempty"`   // why it ended (failed, cancelled, interrupted)
	Evidence json.RawMessage `json:"evidence,omitempty"` // what proves the end state, JSON
	MACs     []string        `json:"macs,omitempty"`     // the node's MACs, normalised (aa:bb:…)

	Owner      string    `json:"owner,omitempty"`        // controller working it (a River client ID); "" while queued
	LeaseUntil time.Time `json:"lease_until"`            // Owner's claim expires then unless renewed
	Generation int64     `json:"generation,omitempty"`   // bumped by each resume; fences stale workers
	RiverJobID int64     `json:"river_job_id,omitempty"` // the River job working this generation (0: none yet)

	CancelRequested time.Time `json:"cancel_requested"` // an operator asked to cancel; stop at the next step boundary
	CancelReason    string    `json:"cancel_reason,omitempty"`

	LandedAt      time.Time     `json:"landed_at"`                // first time the strongest source saw it land
	LandingSource LandingSource `json:"landing_source,omitempty"` // the strongest source seen ("" if none)

	Site   string `json:"site,omitempty"`    // its shared queue's site ("" : the default queue)
	Rack   string `json:"rack,omitempty"`    // for the per-rack limit
	BMCKey string `json:"bmc_key,omitempty"` // its BMC's address, for the per-BMC limit

	Created  time.Time `json:"created"`
	Started  time.Time `json:"started"`
	Updated  time.Time `json:"updated"`
	Finished time.Time `json:"finished"`
}

// Phase is a step record's phase.
type Phase string

// Step phases.
const (
	PhaseIntent  Phase = "intent"  // recorded before the act
	PhaseOutcome Phase = "outcome" // recorded after it; names its intent
)

// Outcome results.
const (
	ResultOK      = "ok"
	ResultFailed  = "failed"
	ResultSkipped = "skipped"
)

// Step is one record of a node's step log.
type Step struct {
	ID       int64           `json:"id"`
	JobID    int64           `json:"job_id,omitempty"`
	Node     string          `json:"node"`
	Time     time.Time       `json:"time"`
	Name     string          `json:"name,omitempty"` // the step, e.g. "oob_boot", "wipe_boot_sector"
	Phase    Phase           `json:"phase"`
	IntentID int64           `json:"intent_id,omitempty"` // outcome: the intent it settles
	Result   string          `json:"result,omitempty"`    // outcome: ResultOK, ResultFailed or ResultSkipped
	Detail   json.RawMessage `json:"detail,omitempty"`    // JSON; never a secret

	// Owner is the worker that wrote the record. On an intent passed to
	// RecordStep it also fences it: the intent is recorded only while the
	// job is running under this owner with a live lease (else
	// ErrLeaseLost).
	Owner string `json:"owner,omitempty"`
}

// Quirk is a learned fact about a node's board, e.g. "ignores-oob-pxe".
type Quirk struct {
	Node     string          `json:"node"`
	Model    string          `json:"model,omitempty"`
	Quirk    string          `json:"quirk,omitempty"`
	Evidence json.RawMessage `json:"evidence,omitempty"`
	RunID    int64           `json:"run_id,omitempty"`
	Learned  time.Time       `json:"learned"`
}

// Well-known quirks.
const (
	// QuirkIgnoresOOBPXE: the board accepts a one-time PXE override and boots
	// from disk anyway (HP DL360 G7 / iLO 3); go in-band directly.
	QuirkIgnoresOOBPXE = "ignores-oob-pxe"
)

// SectorRecord describes boot sectors saved on disk before a wipe.
type SectorRecord struct {
	ID     int64     `json:"id"`
	Node   string    `json:"node"`
	RunID  int64     `json:"run_id,omitempty"`
	JobID  int64     `json:"job_id,omitempty"` // 0 if not tied to a job
	Device string    `json:"device,omitempty"` // the node's device the bytes came from
	Path   string    `json:"path,omitempty"`   // where the saved bytes are, on the controller
	SHA256 string    `json:"sha256,omitempty"` // hex digest of the saved bytes
	Size   int64     `json:"size,omitempty"`
	Saved  time.Time `json:"saved"`
}
