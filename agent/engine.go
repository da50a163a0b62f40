// Package agent is reprov's reinstall engine: the per-node state machine
// of DESIGN.md §3 (precheck → out-of-band boot override → power action →
// wait for landing → landed, with escalation to the in-band path and a
// failure reason with evidence otherwise), run over a fleet within its
// limits, recorded step by step in the job store so that a killed
// controller resumes without repeating a destructive step.
//
// # River and the fleet runner
//
// Three parts share the work, each doing one job:
//
//   - agent/fleet's Runner admits nodes: rack-interleaved order, overall
//     and per-rack parallelism, the failure budget, Ctrl-C, progress and
//     the result rows. The per-BMC limits are the shared bmc.Limiter.
//   - River executes: when the runner admits a node, the engine holds the
//     node and inserts its River job in one transaction (store
//     Queue.Acquire) into a queue private to this controller process; the
//     process's River client fetches it and its worker runs the node's
//     state machine. A job is thus a durable, unique River job from the
//     moment a node is admitted until it ends.
//   - reprov's store is the truth about the node: the job's lease (renewed
//     while the worker runs), its step record (intent before every act,
//     outcome after), landings, quirks. Resume is driven by that record,
//     not by River's rescuer (which would wait for the job timeout): a
//     reinstall that finds a node's job orphaned (its controller's lease
//     expired) or interrupted resumes it under a new generation in its own
//     queue; the dead controller's River job, should it ever run, is
//     superseded.
//
// Nothing on a node is changed before all of its prechecks passed,
// including the identity check of its running OS when SSH answers.
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

	"github.com/riverqueue/river"

	"github.com/reprov/reprov/agent/audit"
	"github.com/reprov/reprov/agent/fleet"
	"github.com/reprov/reprov/agent/inband"
	"github.com/reprov/reprov/agent/inband/host"
	"github.com/reprov/reprov/agent/inband/sshx"
	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/inventory"
	"github.com/reprov/reprov/playbooks"
)

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

	// OpenBMC opens a node's BMC (nil: fleet.OpenBMC with Limiter).
	OpenBMC func(ctx context.Context, n inventory.Node) (bmc.Client, error)
	// DialSSH connects to a node's running OS (nil: sshx with the node's
	// inventory settings).
	DialSSH func(ctx context.Context, n inventory.Node) (SSHConn, error)

	// Events receives every step transition (nil: none). It is called
	// from many goroutines.
	Events func(Event)
}

// Event is one step transition of one node.
type Event struct {
	Time   time.Time `json:"time"`
	Node   string    `json:"node"`
	JobID  int64     `json:"job_id"`
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
}

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
	e := &Engine{cfg: cfg, log: cfg.Log}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if cfg.OpenBMC == nil {
		e.cfg.OpenBMC = func(ctx context.Context, n inventory.Node) (bmc.Client, error) {
			c, _, err := fleet.OpenBMC(ctx, n, e.cfg.Limiter, e.log)
			return c, err
		}
	}
	if cfg.DialSSH == nil {
		e.cfg.DialSSH = e.dialSSH
	}
	return e, nil
}

// dialSSH connects with the node's inventory SSH settings.
func (e *Engine) dialSSH(ctx context.Context, n inventory.Node) (SSHConn, error) {
	sc, err := sshx.ConfigFor(n, e.cfg.Getenv)
	if err != nil {
		return nil, err
	}
	sc.Logger = e.log
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
	// MaxParallel, PerRack and MaxFailures are the fleet runner's limits.
	MaxParallel, PerRack, MaxFailures int
	// Progress receives the runner's progress (nil: none).
	Progress io.Writer
	// FetchPollInterval is how often River looks for this run's jobs
	// (default 100 ms).
	FetchPollInterval time.Duration
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

// Reinstall reinstalls nodes: one run in the store, the fleet runner
// admitting nodes within opts' limits, each admitted node worked by this
// process's River client. It returns when every started node has ended;
// when ctx is cancelled (Ctrl-C) no new node starts and every started one
// stops at its next step boundary — an in-band wipe unit always finishes —
// and is recorded interrupted.
func (e *Engine) Reinstall(ctx context.Context, nodes []inventory.Node, opts RunOptions) (*Report, error) {
	if e.cfg.Audit == nil {
		return nil, errors.New("agent: reinstall needs the audit log")
	}
	for _, n := range nodes {
		if _, err := e.cfg.Playbooks.Get(n.Playbook); err != nil {
			return nil, fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	spec := store.RunSpec{CreatedBy: opts.CreatedBy, Selection: opts.Selection}
	if opts.Options != nil {
		spec.Options = mustJSON(opts.Options)
	}
	run, err := e.cfg.Store.CreateRun(ctx, spec)
	if err != nil {
		return nil, err
	}
	rc := &runCtx{e: e, run: run, reg: &registry{byNode: map[string]*pending{}},
		clientID: newClientID(), queue: "reprov_" + randHex(8), resumeOnly: opts.ResumeOnly}
	workers := river.NewWorkers()
	river.AddWorker(workers, &reinstallWorker{rc: rc})
	poll := opts.FetchPollInterval
	if poll <= 0 {
		poll = 100 * time.Millisecond
	}
	maxPar := max(opts.MaxParallel, 1)
	if opts.MaxParallel <= 0 {
		maxPar = fleet.DefaultMaxParallel
	}
	q, err := e.cfg.Store.NewQueue(store.QueueConfig{ID: rc.clientID, Workers: workers,
		Queues: map[string]int{rc.queue: maxPar}, FetchPollInterval: poll})
	if err != nil {
		return nil, err
	}
	rc.q = q
	// River's own context must not end with Ctrl-C: that would cancel the
	// workers at once. The engine stops them at step boundaries itself.
	if err := q.Start(context.WithoutCancel(ctx)); err != nil {
		return nil, fmt.Errorf("start job queue: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := q.Stop(sctx); err != nil {
			e.log.Warn("stop job queue", "err", err)
		}
	}()
	e.log.Info("reinstall run started", "run", run.ID, "nodes", len(nodes), "controller", rc.clientID)

	runner := &fleet.Runner{
		MaxParallel:    opts.MaxParallel,
		PerRack:        opts.PerRack,
		MaxFailures:    opts.MaxFailures,
		CancelInFlight: true,
		Progress:       opts.Progress,
		Log:            e.log,
	}
	results := runner.Run(ctx, nodes, "reinstall", rc.runNode)
	for i := range results {
		r := &results[i]
		if r.Detail == nil {
			rep := &NodeReport{Node: r.Node, Reason: r.Reason}
			if pb, err := e.cfg.Playbooks.Get(nodes[i].Playbook); err == nil {
				rep.Playbook = pb.Name
			}
			r.Detail = rep
		}
	}
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
	return &Report{Run: run, Results: results}, nil
}

// runCtx is one run of Reinstall.
type runCtx struct {
	e        *Engine
	run      store.Run
	q        *store.Queue
	reg      *registry
	clientID string
	queue    string
	// resumeOnly: continue unfinished jobs, start none.
	resumeOnly bool
}

// pending is a node admitted by the runner, waiting for or being worked
// by the River worker.
type pending struct {
	node inventory.Node
	ctx  context.Context
	done chan nodeResult

	mu        sync.Mutex
	started   bool
	abandoned bool
}

type nodeResult struct {
	report *NodeReport
	err    error
}

type registry struct {
	mu     sync.Mutex
	byNode map[string]*pending
}

func (r *registry) add(n inventory.Node, ctx context.Context) *pending {
	p := &pending{node: n, ctx: ctx, done: make(chan nodeResult, 1)}
	r.mu.Lock()
	r.byNode[n.Name] = p
	r.mu.Unlock()
	return p
}

func (r *registry) remove(name string) {
	r.mu.Lock()
	delete(r.byNode, name)
	r.mu.Unlock()
}

// start hands the node to the worker, unless the runner gave up on it.
func (r *registry) start(name string) *pending {
	r.mu.Lock()
	p := r.byNode[name]
	r.mu.Unlock()
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.abandoned || p.started {
		return nil
	}
	p.started = true
	return p
}

// abandon gives up on a node whose worker has not started.
func (p *pending) abandon() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started {
		return false
	}
	p.abandoned = true
	return true
}

// runNode is the fleet runner's operation on one node: hold the node and
// enqueue its River job (or resume its earlier job), then wait for the
// worker's result.
func (rc *runCtx) runNode(ctx context.Context, n inventory.Node) (any, error) {
	e := rc.e
	rep := &NodeReport{Node: n.Name}
	if pb, err := e.cfg.Playbooks.Get(n.Playbook); err == nil {
		rep.Playbook = pb.Name
	}
	p := rc.reg.add(n, ctx)
	defer rc.reg.remove(n.Name)

	var job store.NodeJob
	var resumed bool
	var err error
	if rc.resumeOnly {
		var done *nodeResult
		job, done, err = rc.resumable(ctx, n)
		switch {
		case done != nil:
			return done.report, done.err
		case err == nil:
			job, err = rc.resumeJob(ctx, job)
			resumed = true
		}
	} else {
		job, resumed, err = rc.acquire(ctx, n)
	}
	if err != nil {
		var busy *store.NodeBusyError
		switch {
		case errors.As(err, &busy):
			rep.Reason = ReasonBusy + ": " + busy.Error()
			rep.JobID, rep.RunID, rep.State = busy.JobID, busy.RunID, busy.State
			return rep, fleet.Skip(rep.Reason)
		case ctx.Err() != nil:
			rep.Reason = ReasonInterruptedInStart
			return rep, ctx.Err()
		}
		rep.Reason = ReasonStore
		return rep, fail(ReasonStore, "", err, nil)
	}
	rep.JobID, rep.RunID, rep.Resumed = job.ID, job.RunID, resumed

	select {
	case res := <-p.done:
		return res.report, res.err
	case <-ctx.Done():
	}
	if p.abandon() {
		// The worker never started: the node was not touched.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if _, err := e.cfg.Store.FinishNode(sctx, job.ID, store.Finish{State: store.JobInterrupted,
			Reason: ReasonInterrupted + " before the node was started"}); err != nil && !errors.Is(err, store.ErrNotActive) {
			e.log.Warn("record interrupted node", "node", n.Name, "job", job.ID, "err", err)
		}
		if j, err := e.cfg.Store.NodeJob(sctx, job.ID); err == nil && j.RiverJobID != 0 {
			_, _ = rc.q.JobCancel(sctx, j.RiverJobID)
		}
		rep.State, rep.Reason = store.JobInterrupted, ReasonInterruptedInStart
		return rep, ctx.Err()
	}
	// The worker stops at its next step boundary and reports.
	res := <-p.done
	return res.report, res.err
}

// acquire holds the node for this run and enqueues its River job into this
// process's queue, or resumes the node's earlier job when that one was
// interrupted or its controller died. A node held by a live controller is
// busy.
func (rc *runCtx) acquire(ctx context.Context, n inventory.Node) (store.NodeJob, bool, error) {
	st, q, e := rc.e.cfg.Store, rc.q, rc.e
	enq := store.EnqueueOpts{Queue: rc.queue, MaxAttempts: 1}
	if last, err := st.NodeJobs(ctx, store.JobFilter{Node: n.Name, Limit: 1}); err == nil && len(last) == 1 && last[0].State == store.JobInterrupted {
		job, err := q.Resume(ctx, last[0].ID, enq)
		if err == nil {
			e.log.Info("resuming the interrupted job of the node", "node", n.Name, "job", job.ID, "run", job.RunID)
			return job, true, nil
		}
		e.log.Debug("interrupted job not resumed; starting a new one", "node", n.Name, "job", last[0].ID, "err", err)
	}
	for attempt := 0; ; attempt++ {
		job, err := q.Acquire(ctx, store.AcquireRequest{RunID: rc.run.ID, Node: n.Name, MACs: n.MACs}, enq)
		if err == nil {
			return job, false, nil
		}
		var busy *store.NodeBusyError
		if !errors.As(err, &busy) || attempt >= 3 {
			return store.NodeJob{}, false, err
		}
		resumable, err := rc.watchHolder(ctx, busy.JobID)
		if err != nil {
			return store.NodeJob{}, false, err
		}
		if !resumable {
			// The holder finished while we watched: try again.
			continue
		}
		job, err = q.Resume(ctx, busy.JobID, enq)
		if err == nil {
			e.log.Info("resuming the node's job: its controller stopped renewing its lease", "node", n.Name, "job", job.ID, "run", job.RunID, "was_owner", busy.Owner)
			return job, true, nil
		}
		if errors.Is(err, store.ErrNotActive) {
			continue
		}
		return store.NodeJob{}, false, err
	}
}

// resumable decides, for --resume, about a node: its latest job is
// unfinished (go on and resume it), or ended (report it as it ended), or
// there is none.
func (rc *runCtx) resumable(ctx context.Context, n inventory.Node) (store.NodeJob, *nodeResult, error) {
	jobs, err := rc.e.cfg.Store.NodeJobs(ctx, store.JobFilter{Node: n.Name, Limit: 1})
	if err != nil {
		return store.NodeJob{}, nil, err
	}
	if len(jobs) == 0 {
		reason := "nothing to resume: the node has no job"
		return store.NodeJob{}, &nodeResult{report: &NodeReport{Node: n.Name, Reason: reason}, err: fleet.Skip(reason)}, nil
	}
	j := jobs[0]
	if j.State.Active() || j.State == store.JobInterrupted {
		return j, nil, nil
	}
	rep := &NodeReport{Node: n.Name, JobID: j.ID, RunID: j.RunID, State: j.State, Path: j.Path, Step: j.Step,
		Landing: j.LandingSource, Reason: j.Reason}
	if pb, err := rc.e.cfg.Playbooks.Get(n.Playbook); err == nil {
		rep.Playbook = pb.Name
	}
	var ev map[string]any
	_ = json.Unmarshal(j.Evidence, &ev)
	if p, ok := ev["path"].(string); ok && p != "" {
		rep.Path = p
	}
	if b, _ := ev["escalated"].(bool); b {
		rep.Escalated = true
	}
	switch j.State {
	case store.JobLanded:
		return j, &nodeResult{report: rep}, nil
	case store.JobFailed:
		cat := j.Reason
		for _, r := range Reasons() {
			if strings.HasPrefix(j.Reason, r) {
				cat = r
				break
			}
		}
		rep.Reason = cat
		return j, &nodeResult{report: rep, err: fail(cat, j.Step, fmt.Errorf("job %d of run %d failed: %s", j.ID, j.RunID, j.Reason), nil)}, nil
	}
	reason := fmt.Sprintf("nothing to resume: job %d of run %d is %s", j.ID, j.RunID, j.State)
	rep.Reason = reason
	return j, &nodeResult{report: rep, err: fleet.Skip(reason)}, nil
}

// resumeJob resumes an unfinished job (interrupted, or active under a
// controller that stopped renewing its lease); a live holder is busy.
func (rc *runCtx) resumeJob(ctx context.Context, j store.NodeJob) (store.NodeJob, error) {
	enq := store.EnqueueOpts{Queue: rc.queue, MaxAttempts: 1}
	if j.State.Active() {
		resumable, err := rc.watchHolder(ctx, j.ID)
		if err != nil {
			return store.NodeJob{}, err
		}
		if !resumable {
			return store.NodeJob{}, &store.NodeBusyError{Node: j.Node, JobID: j.ID, RunID: j.RunID, State: j.State,
				Reason: "it ended while its controller was being watched; nothing to resume"}
		}
	}
	job, err := rc.q.Resume(ctx, j.ID, enq)
	if err == nil {
		rc.e.log.Info("resuming the node's unfinished job", "node", j.Node, "job", job.ID, "run", job.RunID, "was", j.State)
	}
	return job, err
}

// watchHolder decides about a node's active job held by someone else:
// alive (it renews its lease, or claims the queued job) → the busy error;
// dead (the lease expires unrenewed, or a queued job stays unclaimed for
// two leases) → resumable; finished meanwhile → (false, nil).
func (rc *runCtx) watchHolder(ctx context.Context, jobID int64) (bool, error) {
	st, ttl := rc.e.cfg.Store, rc.e.cfg.LeaseTTL
	first, err := st.NodeJob(ctx, jobID)
	if err != nil {
		return false, err
	}
	for {
		j, err := st.NodeJob(ctx, jobID)
		if err != nil {
			return false, err
		}
		now := time.Now()
		switch {
		case !j.State.Active():
			return false, nil
		case j.Generation != first.Generation || j.Owner != first.Owner || j.LeaseUntil.After(first.LeaseUntil):
			// Renewed, claimed or taken over: someone is working it.
			return false, busyOf(j)
		case j.State == store.JobRunning && j.LeaseUntil.Before(now):
			return true, nil
		case j.State == store.JobQueued && now.Sub(j.Updated) > 2*ttl:
			return true, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(min(200*time.Millisecond, ttl/10+time.Millisecond)):
		}
	}
}

func busyOf(j store.NodeJob) error {
	return &store.NodeBusyError{Node: j.Node, JobID: j.ID, RunID: j.RunID, State: j.State, Owner: j.Owner}
}

// reinstallWorker is the River worker of reinstall jobs.
type reinstallWorker struct {
	river.WorkerDefaults[store.ReinstallArgs]
	rc *runCtx
}

// Work runs one node job's state machine.
func (w *reinstallWorker) Work(ctx context.Context, job *river.Job[store.ReinstallArgs]) error {
	rc := w.rc
	e := rc.e
	a := job.Args
	p := rc.reg.start(a.Node)
	if p == nil {
		// Not admitted by this run's runner (or given up on): leave the
		// node alone. Another run resumes it from the store if needed.
		e.log.Debug("River job without an admitted node; ignored", "node", a.Node, "job", a.NodeJobID)
		return nil
	}
	res := nodeResult{report: &NodeReport{Node: a.Node, JobID: a.NodeJobID, RunID: a.RunID}}
	defer func() {
		if v := recover(); v != nil {
			e.log.Error("reinstall worker panicked", "node", a.Node, "panic", v)
			res.err = fail(ReasonInternal, "", fmt.Errorf("panic: %v", v), nil)
			res.report.Reason = ReasonInternal
		}
		p.done <- res
	}()
	owner := store.OwnerID(rc.clientID, job.ID)
	nj, err := e.cfg.Store.ClaimNodeJob(p.ctx, a.NodeJobID, a.Generation, owner, e.cfg.LeaseTTL)
	if err != nil {
		var busy *store.NodeBusyError
		switch {
		case errors.As(err, &busy):
			res.report.Reason = ReasonBusy + ": " + busy.Error()
			res.err = fleet.Skip(res.report.Reason)
		case errors.Is(err, store.ErrSuperseded), errors.Is(err, store.ErrNotActive), errors.Is(err, store.ErrWindowClosed):
			res.report.Reason = ReasonLeaseLost + ": " + err.Error()
			res.err = fleet.Skip(res.report.Reason)
		case p.ctx.Err() != nil:
			res.report.Reason = ReasonInterruptedInStart
			res.err = p.ctx.Err()
		default:
			res.report.Reason = ReasonStore
			res.err = fail(ReasonStore, "", err, nil)
		}
		return nil
	}
	res.report, res.err = e.work(p.ctx, nj, owner, p.node)
	return nil
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
