// Package agent is reprov's reinstall engine: the per-node state machine
// of docs/architecture.md (precheck → out-of-band boot override → power
// action → wait for landing → landed, with escalation to the in-band path
// and a failure reason with evidence otherwise), declared once in a typed
// step table (steptable.go, records.go), and recorded step by step in the
// job store so that a killed controller's nodes are taken over without
// repeating a destructive step.
//
// # River, the store and the workers
//
//   - Engine.Submit (and Reinstall) submits a run: a node job per node on
//     its site's shared River queue, in one transaction, or an attachment
//     to the node's job under way.
//   - Every process running the engine is a Worker on the shared queues: a
//     River client whose worker claims a node job — its run's limits
//     (max parallel, per rack, per BMC, failure budget) checked in the
//     claiming transaction — and runs the node's steps, fencing its lease
//     before every destructive act.
//   - The store is the truth about each node: the lease, the step record
//     (intent before every act, outcome after), landings, quirks. A dead
//     controller's jobs are requeued by any live worker once their lease
//     expires, and their open intents settled by looking at the node.
//   - Engine.Watch follows a run's jobs in the store, whichever controller
//     works them, for reinstall's progress and report.
//
// Nothing on a node is changed before all of its prechecks passed,
// including the identity checks of its running OS and of its BMC.
package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/reprov/reprov/agent/audit"
	"github.com/reprov/reprov/agent/fleet"
	"github.com/reprov/reprov/agent/inband"
	"github.com/reprov/reprov/agent/inband/host"
	"github.com/reprov/reprov/agent/inband/sshx"
	"github.com/reprov/reprov/agent/metrics"
	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/inventory"
	"github.com/reprov/reprov/playbooks"
)

// CoverageGap is the longest gap in the landing endpoints' heartbeats
// that still counts as "an endpoint answered all the while": shorter than
// the retry period of the netboot script in docs/netboot.md.
const CoverageGap = 8 * time.Second

// Defaults of Config.
const (
	DefaultLeaseTTL      = 30 * time.Second
	DefaultPollInterval  = 500 * time.Millisecond
	DefaultProbeInterval = 15 * time.Second
	DefaultProbeTimeout  = 10 * time.Second
)

// SSHConn is a connection to a node's running OS (*sshx.Client).
type SSHConn interface {
	inband.Conn
	Close() error
}

// Config configures an Engine.
type Config struct {
	// Store is the job store.
	Store *store.Store
	// Playbooks are the loaded playbooks.
	Playbooks *playbooks.Set
	// Inventory is every node of the inventory: hooks get none of the
	// environment variables any node's credential references name.
	Inventory []inventory.Node
	// StateDir holds saved boot sectors.
	StateDir string
	// Audit is the two-phase audit log every BMC write and in-band step
	// goes to (required by Reinstall, not by Plan).
	Audit *audit.Log
	// AuditPath is Audit's file, read when an interrupted in-band unit is
	// settled ("" : the worst is assumed).
	AuditPath string
	// Limiter holds the per-BMC limits shared by the run (nil: a new one).
	Limiter *bmc.Limiter
	// Log receives the engine's records; nil discards.
	Log *slog.Logger
	// Getenv reads SSH_AUTH_SOCK for SSH (nil: os.Getenv).
	Getenv func(string) string

	// LeaseTTL is how long the claim on a node job lasts without renewal
	// (default DefaultLeaseTTL): after a controller dies, its nodes can be
	// resumed that much later.
	LeaseTTL time.Duration
	// PollInterval is how often the store is read for a landing while a
	// node is waited for (default DefaultPollInterval).
	PollInterval time.Duration
	// ProbeInterval is how often, while waiting, the BMC is asked whether
	// the override was consumed and the old OS is probed over SSH (default
	// DefaultProbeInterval).
	ProbeInterval time.Duration
	// ProbeTimeout bounds one SSH probe (default DefaultProbeTimeout).
	ProbeTimeout time.Duration
	// FastProbeInterval is how often the old OS is probed over SSH during
	// FastProbeWindow after a kick (default 1 s, each probe bounded by 2 s),
	// so that a board that ignored the override is caught within seconds
	// of its OS answering; later, every ProbeInterval.
	FastProbeInterval time.Duration
	// FastProbeWindow is how long after a kick SSH is probed fast
	// (default 5 min).
	FastProbeWindow time.Duration
	// NodeTimeout bounds one node's whole reinstall (0: only the
	// playbook's step timeouts).
	NodeTimeout time.Duration

	// AgentBinary is the reprov-agent binary pushed to nodes whose
	// ssh.agent is push.
	AgentBinary string
	// Layout, when set, gives lab and test nodes their stand-in layout
	// for the commands path (see host.Layout). Always nil for real nodes.
	Layout func(inventory.Node) *host.Layout
	// RebootDelay is how long a node waits before the in-band reboot
	// (default inband's).
	RebootDelay time.Duration

	// OpenBMC opens a node's BMC (nil: fleet.OpenBMC with Limiter, its
	// requests reported to the observer, see SetObserver).
	OpenBMC func(ctx context.Context, n inventory.Node) (bmc.Client, error)
	// DialSSH connects to a node's running OS (nil: sshx with the node's
	// inventory settings).
	DialSSH func(ctx context.Context, n inventory.Node) (SSHConn, error)

	// Events receives every step transition (nil: none). It is called
	// from many goroutines.
	Events func(Event)

	// ArmLanding opens a job's landing right before the act that makes
	// its node boot: the landing endpoint accepts a landing only after it
	// (default: the store's ArmLanding).
	ArmLanding func(ctx context.Context, jobID int64, owner string) error
	// EndpointCoverage reports whether a landing endpoint answered on the
	// shared store without a gap during [from, to]: how a wait whose
	// controller died is judged (default: the store's endpoint heartbeats).
	EndpointCoverage func(ctx context.Context, from, to time.Time) (bool, error)

	// crashAt, set only by tests (export_test.go), makes a worker stop dead
	// at a step boundary — after a step's intent, or after its act and
	// before its outcome — as if its process had been killed: nothing more
	// is recorded, the lease is not renewed.
	crashAt func(step, phase string) bool
}

// Event is one step transition of one node.
type Event struct {
	Time   time.Time `json:"time"`
	Node   string    `json:"node"`
	JobID  int64     `json:"job_id"`
	RunID  int64     `json:"run_id,omitempty"`
	Step   string    `json:"step"`
	Phase  string    `json:"phase"`            // intent or outcome
	Result string    `json:"result,omitempty"` // outcome: ok, failed, skipped
	// Note is a short human summary (the verdict, the reason).
	Note string `json:"note,omitempty"`
}

// Engine reinstalls nodes. It is safe for concurrent use.
type Engine struct {
	cfg Config
	log *slog.Logger
	obs *metrics.Observer
	// planDial is how plan connects: without recording host keys.
	planDial func(ctx context.Context, n inventory.Node) (SSHConn, error)
	// unrecorded holds the ends (store.NodeJob) this engine's workers
	// reached but could not record in the store (a full disk), by job
	// ID, for the run's watch to report.
	unrecorded sync.Map
	// hostKeys keeps known_hosts parsed across the engine's SSH dials.
	hostKeys *sshx.KnownHosts
	// agentFiles keeps the agent binary read once for every node's push.
	agentFiles *inband.AgentFiles
	// jobs reads the jobs of the nodes waiting for their landing, all in
	// one store query per poll interval.
	jobs *jobPoller
}

// SetObserver makes the engine report step durations, takeovers and the
// requests of the BMCs it opens to the Prometheus metrics (reprov serve).
// Call it before StartWorker.
func (e *Engine) SetObserver(o *metrics.Observer) { e.obs = o }

// New returns an engine for cfg.
func New(cfg Config) (*Engine, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("agent: no job store")
	case cfg.Playbooks == nil:
		return nil, errors.New("agent: no playbooks")
	case cfg.StateDir == "":
		return nil, errors.New("agent: no state dir")
	}
	if cfg.Limiter == nil {
		cfg.Limiter = bmc.NewLimiter(nil)
	}
	if cfg.Getenv == nil {
		cfg.Getenv = os.Getenv
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = DefaultLeaseTTL
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.ProbeInterval <= 0 {
		cfg.ProbeInterval = DefaultProbeInterval
	}
	if cfg.ProbeTimeout <= 0 {
		cfg.ProbeTimeout = DefaultProbeTimeout
	}
	if cfg.FastProbeInterval <= 0 {
		cfg.FastProbeInterval = time.Second
	}
	if cfg.FastProbeWindow <= 0 {
		cfg.FastProbeWindow = 5 * time.Minute
	}
	if cfg.ArmLanding == nil {
		cfg.ArmLanding = cfg.Store.ArmLanding
	}
	if cfg.EndpointCoverage == nil {
		st := cfg.Store
		cfg.EndpointCoverage = func(ctx context.Context, from, to time.Time) (bool, error) {
			// A keeper heartbeats every second and a port changes hands
			// within about 1.5 s (more on a loaded controller); netboot
			// clients retry a failed request (docs/netboot.md), so a gap
			// shorter than their retry period lost nothing.
			ok, _, err := st.EndpointCoverage(ctx, from, to, CoverageGap)
			return ok, err
		}
	}
	e := &Engine{cfg: cfg, log: cfg.Log, hostKeys: sshx.NewKnownHosts(), agentFiles: inband.NewAgentFiles()}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	e.jobs = newJobPoller(cfg.Store, cfg.PollInterval, e.log)
	if cfg.OpenBMC == nil {
		e.cfg.OpenBMC = e.openBMC
	}
	if cfg.DialSSH == nil {
		e.cfg.DialSSH = e.dialSSH
		e.planDial = func(ctx context.Context, n inventory.Node) (SSHConn, error) { return e.dialSSHWith(ctx, n, true) }
	} else {
		e.planDial = cfg.DialSSH
	}
	return e, nil
}

// dialSSH connects with the node's inventory SSH settings.
func (e *Engine) dialSSH(ctx context.Context, n inventory.Node) (SSHConn, error) {
	return e.dialSSHWith(ctx, n, false)
}

// dialSSHWith connects; noRecord (plan, dry runs) leaves known_hosts
// alone even under host_key_policy accept-new.
func (e *Engine) dialSSHWith(ctx context.Context, n inventory.Node, noRecord bool) (SSHConn, error) {
	sc, err := sshx.ConfigFor(n, e.cfg.Getenv)
	if err != nil {
		return nil, err
	}
	sc.NoRecord = noRecord
	sc.Logger = e.log
	sc.KnownHostsCache = e.hostKeys
	sc.DialTimeout = min(sshx.DefaultDialTimeout, e.cfg.ProbeTimeout)
	c, err := sshx.Dial(ctx, sc)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (e *Engine) layout(n inventory.Node) *host.Layout {
	if e.cfg.Layout == nil {
		return nil
	}
	return e.cfg.Layout(n)
}

func (e *Engine) emit(ev Event) {
	if e.cfg.Events != nil {
		ev.Time = time.Now()
		e.cfg.Events(ev)
	}
}

// RunOptions are the options of one reinstall run.
type RunOptions struct {
	// Selection is the operator's selection, as given (recorded on the run).
	Selection string
	// CreatedBy names who started the run (user@host).
	CreatedBy string
	// Options is recorded on the run (JSON-marshalled).
	Options any
	// MaxParallel, PerRack, PerBMC and MaxFailures are the run's limits,
	// enforced in the store where jobs are claimed (store.RunLimits).
	MaxParallel, PerRack, PerBMC, MaxFailures int
	// Progress receives the runner's progress (nil: none).
	Progress io.Writer
	// FetchPollInterval is how often River looks for jobs and the run's
	// jobs are read back (default 200 ms and PollInterval).
	FetchPollInterval time.Duration
	// WindowStart and WindowEnd bound when the run's nodes may start
	// (zero: now, no end).
	WindowStart, WindowEnd time.Time
	// Cutoff, when set, is the last moment a node of the run may start,
	// enforced where jobs are claimed (a reimaging window's end minus its
	// cutoff, docs/windows.md).
	Cutoff time.Time
	// ResumeOnly continues the nodes' unfinished jobs (orphaned by a dead
	// controller, or interrupted) and starts no new one: a node whose
	// latest job ended is reported as that job ended.
	ResumeOnly bool
}

// NodeReport is what happened to one node: the Detail of its fleet
// result row.
type NodeReport struct {
	Node  string `json:"node"`
	JobID int64  `json:"job_id,omitempty"`
	RunID int64  `json:"run_id,omitempty"`
	// Resumed is set when the run continued an earlier job of the node.
	Resumed bool `json:"resumed,omitempty"`
	// State is the job's end state (landed, failed, cancelled,
	// interrupted); empty when no job was worked.
	State store.JobState `json:"state,omitempty"`
	// Playbook is the node's playbook.
	Playbook string `json:"playbook,omitempty"`
	// Path is the path that made the node land (oob or inband), or the
	// last one tried.
	Path string `json:"path,omitempty"`
	// Step is the last step recorded.
	Step string `json:"step,omitempty"`
	// Landing is the strongest landing source seen.
	Landing store.LandingSource `json:"landing,omitempty"`
	// Reason says why the node did not land.
	Reason string `json:"reason,omitempty"`
	// Evidence is what was seen.
	Evidence map[string]any `json:"evidence,omitempty"`
	// Learned lists quirks learned about the node in this run.
	Learned []string `json:"learned,omitempty"`
	// Proposal is advice about the node's model (a quirk learned on
	// another node of the same model).
	Proposal string `json:"proposal,omitempty"`
	// Escalated is set when the node went in-band after the board was
	// caught ignoring the override.
	Escalated bool `json:"escalated,omitempty"`
}

// Report is the outcome of a run.
type Report struct {
	Run     store.Run      `json:"run"`
	Results []fleet.Result `json:"results"`
}

// Reinstall reinstalls nodes: it submits one run to the store — a node job
// per node on its site's shared River queue, or an attachment to the
// node's job already under way — works the shared queues with this
// process's own Worker while the run lasts, and watches the run's jobs in
// the store until every one has ended, whichever controller works them.
// When ctx is cancelled (Ctrl-C) the run is stopped: no further node
// starts, and every started one stops at its next step boundary — an
// in-band wipe unit always finishes — and is recorded interrupted.
func (e *Engine) Reinstall(ctx context.Context, nodes []inventory.Node, opts RunOptions) (*Report, error) {
	if e.cfg.Audit == nil {
		return nil, errors.New("agent: reinstall needs the audit log")
	}
	plan, err := e.prepare(nodes)
	if err != nil {
		return nil, err
	}
	w, err := e.StartWorker(ctx, WorkerOptions{Queues: plan.queues, MaxWorkers: maxParallel(opts), FetchPollInterval: opts.FetchPollInterval})
	if err != nil {
		return nil, err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*e.cfg.LeaseTTL+30*time.Second)
		defer cancel()
		if err := w.Stop(sctx); err != nil {
			e.log.Warn("stop worker", "err", err)
		}
	}()
	sub, err := e.submit(ctx, w.q, nodes, plan.subs, opts)
	if err != nil {
		return nil, err
	}
	e.log.Info("reinstall run started", "run", sub.Run.ID, "nodes", len(nodes), "controller", w.id)
	return e.Watch(ctx, sub, opts), nil
}

// Submission is a run submitted to the shared queues: the run, its nodes
// and, in the same order, what was done for each (a new job, or the job
// under way it attached to).
type Submission struct {
	Run     store.Run
	Nodes   []inventory.Node
	Results []store.SubmitResult
}

// Submit submits a run of nodes to the shared queues and returns at once;
// the controllers' workers do the work (reprov serve, or reinstall's own).
// Watch follows it; store.StopRun stops it.
func (e *Engine) Submit(ctx context.Context, nodes []inventory.Node, opts RunOptions) (*Submission, error) {
	plan, err := e.prepare(nodes)
	if err != nil {
		return nil, err
	}
	q, err := e.cfg.Store.NewQueue(store.QueueConfig{})
	if err != nil {
		return nil, err
	}
	return e.submit(ctx, q, nodes, plan.subs, opts)
}

type prepared struct {
	subs   []store.SubmitNode
	queues []string
}

// prepare checks the nodes' playbooks and makes their submissions.
func (e *Engine) prepare(nodes []inventory.Node) (prepared, error) {
	var p prepared
	sites := map[string]bool{}
	for _, n := range nodes {
		if _, err := e.cfg.Playbooks.Get(n.Playbook); err != nil {
			return p, fmt.Errorf("node %s: %w", n.Name, err)
		}
		sub, err := submitNode(n)
		if err != nil {
			return p, err
		}
		p.subs = append(p.subs, sub)
		if !sites[sub.Site] {
			sites[sub.Site] = true
			p.queues = append(p.queues, store.QueueFor(sub.Site))
		}
	}
	return p, nil
}

func maxParallel(opts RunOptions) int {
	if opts.MaxParallel <= 0 {
		return fleet.DefaultMaxParallel
	}
	return opts.MaxParallel
}

func (e *Engine) submit(ctx context.Context, q *store.Queue, nodes []inventory.Node, subs []store.SubmitNode, opts RunOptions) (*Submission, error) {
	spec := store.RunSpec{CreatedBy: opts.CreatedBy, Selection: opts.Selection, WindowStart: opts.WindowStart, WindowEnd: opts.WindowEnd, Cutoff: opts.Cutoff,
		Limits: store.RunLimits{MaxParallel: maxParallel(opts), PerRack: opts.PerRack, PerBMC: opts.PerBMC, MaxFailures: opts.MaxFailures}}
	if opts.Options != nil {
		spec.Options = mustJSON(opts.Options)
	}
	run, res, err := q.Submit(ctx, spec, subs, store.SubmitOpts{ResumeOnly: opts.ResumeOnly})
	if err != nil {
		return nil, fmt.Errorf("submit run: %w", err)
	}
	return &Submission{Run: run, Nodes: nodes, Results: res}, nil
}

// Watch follows a submitted run's jobs (and the jobs it attached to) in
// the store until each has ended, whichever controller works them,
// reporting progress to opts.Progress, and records the run's end. When
// ctx ends (Ctrl-C) it stops the run — no further node starts; started
// ones stop at their next step boundary and are recorded interrupted —
// and keeps watching until the run's own jobs are recorded.
func (e *Engine) Watch(ctx context.Context, sub *Submission, opts RunOptions) *Report {
	run := sub.Run
	results := e.watch(ctx, run, sub.Nodes, sub.Results, opts)
	state := store.RunFinished
	if ctx.Err() != nil {
		state = store.RunInterrupted
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := e.cfg.Store.SetRunState(sctx, run.ID, state); err != nil {
		e.log.Warn("record run state", "run", run.ID, "err", err)
	}
	if r, err := e.cfg.Store.Run(sctx, run.ID); err == nil {
		run = r
	}
	return &Report{Run: run, Results: results}
}

// ReportEnded is the report of a run whose jobs have all ended, built from
// the store as Watch builds it: jobs are the run's own and those it
// attached to, with their nodes, in order; attached[i] says job i is
// another run's or a resumed one. It records the run's end — finished, or
// interrupted when the run was stopped — as Watch does. A job still
// active is an error.
func (e *Engine) ReportEnded(ctx context.Context, run store.Run, nodes []inventory.Node, jobs []store.NodeJob, attached []bool) (*Report, error) {
	results := make([]fleet.Result, len(jobs))
	for i, j := range jobs {
		if j.State.Active() {
			return nil, fmt.Errorf("run %d: job %d of node %s is %s", run.ID, j.ID, j.Node, j.State)
		}
		results[i] = e.result(nodes[i], j, attached[i], time.Time{})
	}
	state := store.RunFinished
	if run.State == store.RunInterrupted || run.State == store.RunCancelled {
		state = store.RunInterrupted
	}
	if err := e.cfg.Store.SetRunState(ctx, run.ID, state); err != nil {
		return nil, fmt.Errorf("record run state: %w", err)
	}
	r, err := e.cfg.Store.Run(ctx, run.ID)
	if err != nil {
		return nil, err
	}
	return &Report{Run: r, Results: results}, nil
}

// submitNode is a node as the store keeps it for the shared queues: its
// site (the "site" label), rack, BMC and inventory entry.
func submitNode(n inventory.Node) (store.SubmitNode, error) {
	spec, err := nodeSpec(n)
	if err != nil {
		return store.SubmitNode{}, err
	}
	return store.SubmitNode{Node: n.Name, MACs: n.MACs, Site: n.Labels[SiteLabel], Rack: n.Rack,
		BMCKey: bmcKey(n), Spec: spec}, nil
}

// SiteLabel is the inventory label naming a node's site: its jobs go to
// that site's shared queue (store.QueueFor), worked by the controllers
// that serve the site.
const SiteLabel = "site"

// nodeSpec is the inventory entry of a node as JSON (secrets as their
// references only: inventory.Secret marshals redacted).
func nodeSpec(n inventory.Node) (json.RawMessage, error) {
	b, err := json.Marshal(n)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", n.Name, err)
	}
	return b, nil
}

// bmcKey names the BMC a node is reached through, for the per-BMC limit.
func bmcKey(n inventory.Node) string {
	addr, err := inventory.ParseBMCAddress(n.BMC.Address)
	if err != nil || addr.Host == "" {
		return n.BMC.Address
	}
	return fmt.Sprintf("%s:%d", addr.Host, addr.Port)
}

// watch follows the run's jobs (and the jobs it attached to) in the store
// until each has ended, reporting progress, and returns one result per
// node, in the order of nodes. On ctx's end it stops the run and keeps
// watching until the run's own jobs are recorded.
func (e *Engine) watch(ctx context.Context, run store.Run, nodes []inventory.Node, subs []store.SubmitResult, opts RunOptions) []fleet.Result {
	start := time.Now()
	results := make([]fleet.Result, len(nodes))
	idx := map[int64]int{}
	pending := 0
	for i, s := range subs {
		n := nodes[i]
		results[i] = fleet.Result{Node: n.Name, Rack: n.Rack, Op: "reinstall"}
		switch {
		case s.Job.ID == 0:
			reason := "nothing to resume: the node has no unfinished job"
			results[i].Status, results[i].Reason = fleet.StatusSkipped, reason
			results[i].Detail = &NodeReport{Node: n.Name, Playbook: e.playbookName(n), Reason: reason}
		case s.Job.State.Active():
			idx[s.Job.ID] = i
			pending++
			if s.Attached && !s.Resumed {
				e.log.Info("attached to the node's job under way", "node", n.Name, "job", s.Job.ID, "run", s.Job.RunID)
			}
		default:
			// --resume of a node whose latest job ended: report it.
			results[i] = e.result(n, s.Job, true, start)
		}
	}
	// The caller's display (it closes it), or one of our own.
	prog, own := opts.Progress.(*fleet.Display)
	if !own && opts.Progress != nil {
		prog = fleet.NewDisplay(opts.Progress, "reinstall")
		defer prog.Close()
	}
	if prog != nil {
		prog.Start(len(nodes))
	}
	done := func(r fleet.Result) {
		if prog != nil {
			prog.Done(r.Node, r.Status, r.Reason)
		}
	}
	for i := range results {
		if results[i].Status != "" {
			done(results[i])
		}
	}
	poll := opts.FetchPollInterval
	if poll <= 0 {
		poll = e.cfg.PollInterval
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	stopped := false
	var since time.Time
	for pending > 0 {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		jobs, err := e.endedJobs(sctx, run.ID, idx, subs)
		cancel()
		if err != nil {
			e.log.Warn("watching the run's jobs", "run", run.ID, "err", err)
		}
		// Ended by this controller, but the store refused the record (a
		// full disk): reported as it ended, or the run would never end.
		e.unrecorded.Range(func(k, v any) bool {
			if _, ok := idx[k.(int64)]; ok {
				jobs = append(jobs, v.(store.NodeJob))
				e.unrecorded.Delete(k)
			}
			return true
		})
		for _, j := range jobs {
			i, ok := idx[j.ID]
			if !ok {
				continue
			}
			attached := subs[i].Attached && !subs[i].Resumed
			results[i] = e.result(nodes[i], j, attached, start)
			delete(idx, j.ID)
			pending--
			done(results[i])
		}
		if pending == 0 {
			break
		}
		if ctx.Err() != nil && !stopped {
			stopped = true
			since = time.Now()
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			if err := e.cfg.Store.StopRun(sctx, run.ID); err != nil {
				e.log.Warn("stop the run", "run", run.ID, "err", err)
			}
			cancel()
			// Jobs of other runs this run attached to go on: stop
			// watching them.
			for id, i := range idx {
				if subs[i].Job.RunID != run.ID {
					r := fleet.Result{Node: nodes[i].Name, Rack: nodes[i].Rack, Op: "reinstall", Status: fleet.StatusInterrupted,
						Reason: fmt.Sprintf("no longer watched: job %d of run %d goes on", id, subs[i].Job.RunID)}
					r.Detail = &NodeReport{Node: nodes[i].Name, JobID: id, RunID: subs[i].Job.RunID, Reason: r.Reason}
					results[i] = r
					delete(idx, id)
					pending--
					done(r)
				}
			}
			continue
		}
		if stopped && time.Since(since) > 2*time.Minute {
			e.log.Warn("nodes still not recorded two minutes after the run was stopped", "run", run.ID, "pending", pending)
		}
		<-t.C
	}
	return results
}

// endedJobs reads the watched jobs (idx) that have ended. Only those are
// read back: 10,000 rows of jobs under way, read every poll, only loaded
// the store. The run's own jobs are found through the run's index, which
// gives the IDs of its ended jobs without reading a row; the jobs of other
// runs it attached to, by ID.
func (e *Engine) endedJobs(ctx context.Context, runID int64, idx map[int64]int, subs []store.SubmitResult) ([]store.NodeJob, error) {
	ended, err := e.cfg.Store.EndedJobIDs(ctx, runID)
	if err != nil {
		return nil, err
	}
	var read []int64
	for _, id := range ended {
		if _, ok := idx[id]; ok {
			read = append(read, id)
		}
	}
	for id, i := range idx {
		if subs[i].Job.RunID != runID {
			read = append(read, id)
		}
	}
	if len(read) == 0 {
		return nil, nil
	}
	// Read back with their state checked again: a job is only reported
	// once it has ended.
	return e.cfg.Store.EndedJobsByID(ctx, read)
}

func (e *Engine) playbookName(n inventory.Node) string {
	if pb, err := e.cfg.Playbooks.Get(n.Playbook); err == nil {
		return pb.Name
	}
	return n.Playbook
}

// jobEvidence is what a worker records in an ended job's evidence for the
// run's report (see nodeRun.finish).
type jobEvidence struct {
	Path      string   `json:"path"`
	Step      string   `json:"step"`
	Category  string   `json:"category"`
	Escalated bool     `json:"escalated"`
	Learned   []string `json:"learned"`
	Proposal  string   `json:"proposal"`
	Resumed   bool     `json:"resumed"`
}

// result is a node's row from its ended job.
func (e *Engine) result(n inventory.Node, j store.NodeJob, attached bool, start time.Time) fleet.Result {
	rep := &NodeReport{Node: n.Name, JobID: j.ID, RunID: j.RunID, State: j.State, Playbook: e.playbookName(n),
		Path: j.Path, Step: j.Step, Landing: j.LandingSource, Resumed: j.Generation > 0}
	var ev map[string]any
	var je jobEvidence
	if len(j.Evidence) > 0 {
		_ = json.Unmarshal(j.Evidence, &ev)
		_ = json.Unmarshal(j.Evidence, &je)
	}
	if je.Path != "" {
		rep.Path = je.Path
	}
	rep.Escalated, rep.Learned, rep.Proposal = je.Escalated, je.Learned, je.Proposal
	res := fleet.Result{Node: n.Name, Rack: n.Rack, Op: "reinstall", Detail: rep}
	if !j.Started.IsZero() {
		res.Duration = j.Finished.Sub(j.Started)
	}
	switch j.State {
	case store.JobLanded:
		res.Status = fleet.StatusOK
		rep.Evidence = ev
		if ev != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if landings, err := e.cfg.Store.Landings(sctx, j.ID); err == nil {
				seen := make([]map[string]any, 0, len(landings))
				for _, l := range landings {
					var lev any
					_ = json.Unmarshal(l.Evidence, &lev)
					seen = append(seen, map[string]any{"source": l.Source, "time": l.Time.UTC(), "evidence": lev})
				}
				ev["landings"] = seen
			}
		}
	case store.JobFailed:
		res.Status = fleet.StatusFailed
		cat := je.Category
		if cat == "" {
			cat = categoryOf(j.Reason)
		}
		rep.Reason = cat
		rep.Evidence = ev
		res.Reason, res.Error = cat, j.Reason
		if attached {
			res.Error = fmt.Sprintf("job %d of run %d failed: %s", j.ID, j.RunID, j.Reason)
		}
	case store.JobInterrupted:
		res.Status = fleet.StatusInterrupted
		rep.Reason = j.Reason
		res.Reason = ReasonInterrupted
		if j.Started.IsZero() {
			res.Reason = ReasonInterruptedInStart
		}
		res.Error = j.Reason
	default: // cancelled
		res.Status = fleet.StatusSkipped
		rep.Reason = j.Reason
		res.Reason = j.Reason
		switch {
		case strings.HasPrefix(j.Reason, "not started: the run stopped after"):
			res.Reason = ReasonFailureBudget
		case !j.CancelRequested.IsZero():
			res.Reason = ReasonCancelled
		}
		res.Error = j.Reason
	}
	return res
}

// categoryOf is the reason category a stored reason starts with.
func categoryOf(reason string) string {
	for _, r := range Reasons() {
		if strings.HasPrefix(reason, r) {
			return r
		}
	}
	return reason
}

// newClientID names this controller's River client: host, pid and a
// random suffix (River IDs are at most 100 characters).
func newClientID() string {
	h, _ := os.Hostname()
	h = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		if r >= 'A' && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return '_'
	}, h)
	if len(h) > 40 {
		h = h[:40]
	}
	if h == "" {
		h = "host"
	}
	return "reprov_" + h + "_" + strconv.Itoa(os.Getpid()) + "_" + randHex(4)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
