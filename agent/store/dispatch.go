package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Shared queues (docs/architecture.md, "River does the work"): every node
// job of every run goes to the River queue of its node's site, and every
// reprov process that runs the engine works those queues. A run's limits are
// checked here, in the store, when a worker claims a job, so they hold
// however many controllers share the store.

// DefaultQueue is the River queue of nodes without a site.
const DefaultQueue = "reprov"

// QueueFor is the shared River queue of a site: "reprov" for none, else
// "reprov_site_" and the site in River's queue-name alphabet.
func QueueFor(site string) string {
	if site == "" {
		return DefaultQueue
	}
	b := strings.Builder{}
	b.WriteString("reprov_site_")
	for _, r := range strings.ToLower(site) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	s := b.String()
	if len(s) > 100 {
		s = s[:100]
	}
	return s
}

// NotAdmittedError says why a queued job may not start now: one of its
// run's limits is reached. The worker tries again later.
type NotAdmittedError struct {
	JobID int64
	Node  string
	Limit string // max_parallel, per_rack, per_bmc, or hold
	Value int
	// Hold says why the run is held (Limit "hold"): its window is paused
	// or its gate fails.
	Hold string
}

func (e *NotAdmittedError) Error() string {
	if e.Limit == "hold" {
		return fmt.Sprintf("job %d (node %s) not started yet: the run is held: %s", e.JobID, e.Node, e.Hold)
	}
	return fmt.Sprintf("job %d (node %s) not started yet: the run's %s limit (%d) is reached", e.JobID, e.Node, e.Limit, e.Value)
}

// ErrRunStopped: the job's run was stopped (interrupted, cancelled, or its
// failure budget spent) before the job started; the job has been finished
// with the reason and must not be worked.
var ErrRunStopped = errors.New("run stopped before the job started")

// SubmitNode is one node of a submitted run.
type SubmitNode struct {
	Node   string
	MACs   []string
	Site   string
	Rack   string
	BMCKey string
	// Spec is the node's inventory entry as JSON (secrets as references
	// only); a worker works the job only when its own inventory agrees.
	Spec json.RawMessage
}

// SubmitResult is what Submit did with one node, in the order given.
type SubmitResult struct {
	Node string
	// Job is the node's job: a new one, or the active job of the node that
	// the run attaches to (Attached), or the interrupted job it resumed
	// (Resumed).
	Job      NodeJob
	Attached bool
	Resumed  bool
}

// SubmitOpts tune Submit.
type SubmitOpts struct {
	// ResumeOnly: resume the nodes' interrupted or unfinished jobs and
	// create no new one; a node whose latest job ended is reported with
	// that job (Attached) and nothing is queued for it.
	ResumeOnly bool
	// ScheduledAt: when the jobs become available (zero: the run's window
	// start, or now).
	ScheduledAt time.Time
}

// Submit creates a run and, for each node in order, its node job and River
// job on the node's shared queue — or attaches the run to the node's active
// job, or resumes the node's interrupted job — all in one transaction: a
// controller killed while submitting leaves no half-submitted run whose
// other nodes nobody would ever start.
func (q *Queue) Submit(ctx context.Context, spec RunSpec, nodes []SubmitNode, opts SubmitOpts) (Run, []SubmitResult, error) {
	var run Run
	out := make([]SubmitResult, 0, len(nodes))
	err := q.store.inTx(ctx, func(tx querier, raw any) error {
		out = out[:0]
		var err error
		if run, err = q.store.createRunTx(ctx, tx, spec); err != nil {
			return err
		}
		for _, n := range nodes {
			r, err := q.submitOne(ctx, tx, raw, run, n, opts)
			if err != nil {
				return fmt.Errorf("submit node %s: %w", n.Node, err)
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return Run{}, nil, err
	}
	return run, out, nil
}

func (q *Queue) submitOne(ctx context.Context, tx querier, raw any, run Run, n SubmitNode, opts SubmitOpts) (SubmitResult, error) {
	res := SubmitResult{Node: n.Node}
	enq := EnqueueOpts{Queue: QueueFor(n.Site), ScheduledAt: opts.ScheduledAt}
	latest, err := scanJob(tx.queryRow(ctx, `SELECT `+jobCols("")+` FROM reprov_node_job WHERE node = ? ORDER BY id DESC LIMIT 1`, n.Node))
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return res, err
	case latest.State.Active():
		res.Job, res.Attached = latest, true
		return res, nil
	case latest.State == JobInterrupted:
		j, err := q.resumeTx(ctx, tx, raw, latest, enq)
		if err != nil {
			return res, err
		}
		res.Job, res.Attached, res.Resumed = j, true, true
		return res, nil
	case opts.ResumeOnly:
		res.Job, res.Attached = latest, true
		return res, nil
	}
	if opts.ResumeOnly {
		// Nothing to resume: report the node without a job.
		return res, nil
	}
	j, err := q.store.acquireTx(ctx, tx, AcquireRequest{RunID: run.ID, Node: n.Node, MACs: n.MACs})
	var busy *NodeBusyError
	if errors.As(err, &busy) {
		// Another submission won the race for the node: attach to its job.
		holder, err := q.store.nodeJob(ctx, tx, busy.JobID)
		if err != nil {
			return res, err
		}
		res.Job, res.Attached = holder, true
		return res, nil
	}
	if err != nil {
		return res, err
	}
	spec, err := jsonArg(n.Spec, "node spec")
	if err != nil {
		return res, err
	}
	if _, err := tx.exec(ctx, `UPDATE reprov_node_job SET site = ?, rack = ?, bmc_key = ?, spec = ? WHERE id = ?`,
		n.Site, n.Rack, n.BMCKey, spec, j.ID); err != nil {
		return res, err
	}
	j.Site, j.Rack, j.BMCKey = n.Site, n.Rack, n.BMCKey
	res.Job, err = q.insertForJob(ctx, tx, raw, j, enq)
	return res, err
}

// resumeTx requeues an unfinished job under a new generation with a new
// River job on its site's queue, and puts its run back to running.
func (q *Queue) resumeTx(ctx context.Context, tx querier, raw any, j NodeJob, enq EnqueueOpts) (NodeJob, error) {
	now := time.Now().UnixMicro()
	n, err := tx.exec(ctx, `UPDATE reprov_node_job
		SET state = 'queued', owner = '', lease_until = NULL, generation = generation + 1,
		    reason = '', finished_at = NULL, cancel_requested_at = NULL, cancel_reason = '', updated_at = ?
		WHERE id = ? AND generation = ? AND state = ?`, now, j.ID, j.Generation, string(j.State))
	if isUniqueViolation(err) {
		return NodeJob{}, &NodeBusyError{Node: j.Node, JobID: j.ID, RunID: j.RunID, State: j.State, Reason: "another job became active"}
	}
	if err != nil {
		return NodeJob{}, err
	}
	if n == 0 {
		return NodeJob{}, fmt.Errorf("job %d (node %s) changed while resuming; try again", j.ID, j.Node)
	}
	if _, err := tx.exec(ctx, `UPDATE reprov_run SET state = 'running', finished_at = NULL WHERE id = ? AND state <> 'running'`, j.RunID); err != nil {
		return NodeJob{}, err
	}
	j, err = q.store.nodeJob(ctx, tx, j.ID)
	if err != nil {
		return NodeJob{}, err
	}
	if enq.Queue == "" {
		enq.Queue = QueueFor(j.Site)
	}
	return q.insertForJob(ctx, tx, raw, j, enq)
}

// JobSpec returns the inventory entry a job was submitted with (nil for
// jobs of older reprov versions).
func (s *Store) JobSpec(ctx context.Context, jobID int64) (json.RawMessage, error) {
	var spec sql.NullString
	err := s.q().queryRow(ctx, `SELECT spec FROM reprov_node_job WHERE id = ?`, jobID).Scan(&spec)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("job %d: %w", jobID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("job %d: spec: %w", jobID, err)
	}
	if !spec.Valid {
		return nil, nil
	}
	return json.RawMessage(spec.String), nil
}

// Claim makes owner the worker of the job's generation for ttl, like
// ClaimNodeJob, and for a queued job first checks its run, in the same
// transaction: a stopped run (interrupted, cancelled) or a spent failure
// budget finishes the job unstarted (ErrRunStopped); a reached limit
// (max_parallel, per_rack, per_bmc over the run's running jobs) refuses
// with a *NotAdmittedError and changes nothing.
func (s *Store) Claim(ctx context.Context, jobID, generation int64, owner string, ttl time.Duration) (NodeJob, error) {
	if owner == "" || ttl <= 0 {
		return NodeJob{}, fmt.Errorf("claim job %d: need an owner and a positive lease", jobID)
	}
	var job NodeJob
	var stopped error
	err := s.inTx(ctx, func(q querier, _ any) error {
		stopped = nil
		j, err := s.nodeJob(ctx, q, jobID)
		if err != nil {
			return err
		}
		if j.State == JobQueued && j.Generation == generation {
			if s.dialect == Postgres {
				// One claim per run at a time: the counts below stay true
				// until this transaction commits.
				if _, err := q.exec(ctx, `SELECT pg_advisory_xact_lock(?)`, j.RunID); err != nil {
					return err
				}
			}
			err := s.admit(ctx, q, j)
			if errors.Is(err, ErrRunStopped) {
				// Commit the job's unstarted end.
				stopped = err
				return nil
			}
			if err != nil {
				return err
			}
		}
		now := time.Now()
		n, err := q.exec(ctx, `UPDATE reprov_node_job
			SET state = 'running', owner = ?, lease_until = ?, started_at = COALESCE(started_at, ?), updated_at = ?
			WHERE id = ? AND generation = ?
			  AND (state = 'queued' OR (state = 'running' AND owner = ?))`,
			owner, now.Add(ttl).UnixMicro(), now.UnixMicro(), now.UnixMicro(), jobID, generation, owner)
		if err != nil {
			return err
		}
		job, err = s.nodeJob(ctx, q, jobID)
		if err != nil || n == 1 {
			return err
		}
		switch {
		case job.Generation != generation:
			return fmt.Errorf("generation %d, now %d: %w", generation, job.Generation, ErrSuperseded)
		case !job.State.Active():
			return fmt.Errorf("it is %s: %w", job.State, ErrNotActive)
		}
		return busyError(job, "another controller holds the job")
	})
	if err != nil {
		var na *NotAdmittedError
		if errors.As(err, &na) {
			return NodeJob{}, err
		}
		return NodeJob{}, fmt.Errorf("claim job %d: %w", jobID, err)
	}
	if stopped != nil {
		return NodeJob{}, stopped
	}
	return job, nil
}

// admit checks a queued job against its run (see Claim).
func (s *Store) admit(ctx context.Context, q querier, j NodeJob) error {
	run, err := scanRun(q.queryRow(ctx, `SELECT `+runCols+` FROM reprov_run WHERE id = ?`, j.RunID))
	if err != nil {
		return fmt.Errorf("run %d: %w", j.RunID, err)
	}
	stop := func(state JobState, reason string) error {
		now := nowMicros()
		if _, err := q.exec(ctx, `UPDATE reprov_node_job SET state = ?, reason = ?, finished_at = ?, updated_at = ?
			WHERE id = ? AND state = 'queued'`, string(state), reason, now, now, j.ID); err != nil {
			return err
		}
		return fmt.Errorf("job %d (node %s): %w: %s", j.ID, j.Node, ErrRunStopped, reason)
	}
	switch run.State {
	case RunInterrupted:
		return stop(JobInterrupted, fmt.Sprintf("interrupted before the node was started (run %d was interrupted); reprov reinstall --resume %s continues it", run.ID, j.Node))
	case RunCancelled, RunFinished:
		return stop(JobCancelled, fmt.Sprintf("not started: run %d is %s", run.ID, run.State))
	}
	if end := run.WindowEnd; !end.IsZero() && time.Now().After(end) {
		return stop(JobCancelled, "not started: the run's window ended at "+end.Format(time.RFC3339))
	}
	if cut := run.Cutoff; !cut.IsZero() && time.Now().After(cut) {
		return stop(JobCancelled, WindowCutoffReason(cut))
	}
	if run.Hold != "" {
		return &NotAdmittedError{JobID: j.ID, Node: j.Node, Limit: "hold", Hold: run.Hold}
	}
	l := run.Limits
	count := func(extra string, args ...any) (int, error) {
		var n int
		err := q.queryRow(ctx, `SELECT COUNT(*) FROM reprov_node_job WHERE run_id = ? AND `+extra, append([]any{j.RunID}, args...)...).Scan(&n)
		return n, err
	}
	if l.MaxFailures > 0 {
		n, err := count(`state = 'failed'`)
		if err != nil {
			return err
		}
		if n >= l.MaxFailures {
			return stop(JobCancelled, fmt.Sprintf("not started: the run stopped after %d failure(s) (--max-failures %d)", n, l.MaxFailures))
		}
	}
	checks := []struct {
		name  string
		limit int
		extra string
		arg   []any
	}{
		{"max_parallel", l.MaxParallel, `state = 'running'`, nil},
		{"per_rack", l.PerRack, `state = 'running' AND rack = ?`, []any{j.Rack}},
		{"per_bmc", l.PerBMC, `state = 'running' AND bmc_key = ? AND bmc_key <> ''`, []any{j.BMCKey}},
	}
	for _, c := range checks {
		if c.limit <= 0 || (c.name == "per_bmc" && j.BMCKey == "") {
			continue
		}
		n, err := count(c.extra, c.arg...)
		if err != nil {
			return err
		}
		if n >= c.limit {
			return &NotAdmittedError{JobID: j.ID, Node: j.Node, Limit: c.name, Value: c.limit}
		}
	}
	return nil
}

// Release hands a running job back to the shared queue: a new generation
// and a new River job, for another worker to continue from its step
// record. The worker releasing it (owner) must hold it; it is how a
// controller that stops hands over its nodes at a step boundary.
func (q *Queue) Release(ctx context.Context, jobID int64, owner string) (NodeJob, error) {
	var job NodeJob
	err := q.store.inTx(ctx, func(tx querier, raw any) error {
		j, err := q.store.nodeJob(ctx, tx, jobID)
		if err != nil {
			return err
		}
		if j.State != JobRunning || j.Owner != owner {
			return q.store.explainLost(ctx, jobID, "release")
		}
		job, err = q.resumeTx(ctx, tx, raw, j, EnqueueOpts{})
		return err
	})
	if err != nil {
		return NodeJob{}, fmt.Errorf("release job %d: %w", jobID, err)
	}
	return job, nil
}

// TakeOver requeues, under a new generation on its shared queue for any
// live worker to continue, every running job whose lease expired (its
// controller died), and every queued job whose River job a controller
// fetched and never claimed for longer than stuckAfter (it died between
// the fetch and the claim: its River job would stay "running" for River's
// rescuer, an hour later). It returns the jobs taken over.
func (q *Queue) TakeOver(ctx context.Context, stuckAfter time.Duration) ([]NodeJob, error) {
	orphans, err := q.store.OrphanedJobs(ctx)
	if err != nil {
		return nil, err
	}
	stuck, err := q.stuckQueued(ctx, stuckAfter)
	if err != nil {
		return nil, err
	}
	orphans = append(orphans, stuck...)
	var out []NodeJob
	for _, o := range orphans {
		var j NodeJob
		err := q.store.inTx(ctx, func(tx querier, raw any) error {
			cur, err := q.store.nodeJob(ctx, tx, o.ID)
			if err != nil {
				return err
			}
			switch {
			case cur.Generation != o.Generation:
				return nil // taken over meanwhile
			case cur.State == JobRunning && cur.LeaseUntil.After(time.Now()):
				return nil // renewed meanwhile
			case cur.State != JobRunning && cur.State != JobQueued:
				return nil // finished meanwhile
			case cur.State == JobQueued && cur.RiverJobID != o.RiverJobID:
				return nil
			}
			j, err = q.resumeTx(ctx, tx, raw, cur, EnqueueOpts{})
			return err
		})
		if err != nil {
			return out, fmt.Errorf("take over job %d (node %s): %w", o.ID, o.Node, err)
		}
		if j.ID != 0 {
			out = append(out, j)
		}
	}
	return out, nil
}

// StopRun stops a run (Ctrl-C of the reinstall that watches it): the run
// becomes interrupted, its queued jobs end interrupted unstarted when a
// worker next claims them, and its running jobs are asked to stop at their
// next step boundary (StopRequested), where they are recorded interrupted.
func (s *Store) StopRun(ctx context.Context, runID int64) error {
	return s.inTx(ctx, func(q querier, _ any) error {
		now := nowMicros()
		if _, err := q.exec(ctx, `UPDATE reprov_run SET state = 'interrupted', finished_at = ? WHERE id = ? AND state IN ('scheduled', 'running')`, now, runID); err != nil {
			return err
		}
		_, err := q.exec(ctx, `UPDATE reprov_node_job SET state = 'interrupted',
				reason = 'interrupted before the node was started; reprov reinstall --resume ' || node || ' continues it',
				finished_at = ?, updated_at = ?
			WHERE run_id = ? AND state = 'queued'`, now, now, runID)
		return err
	})
}

// StopRequest says why a running job's worker must stop at its next step
// boundary ("" : it may go on).
type StopRequest string

// Stop requests.
const (
	StopNone      StopRequest = ""
	StopCancelled StopRequest = "cancelled"   // an operator cancelled the job
	StopRun       StopRequest = "interrupted" // its run was stopped (Ctrl-C)
	StopInactive  StopRequest = "inactive"    // the job is no longer active
)

// StopRequested reports, in one read, whether the job's worker must stop
// at this step boundary and why.
func (s *Store) StopRequested(ctx context.Context, jobID int64) (StopRequest, error) {
	var (
		state, runState string
		requested       sql.NullInt64
	)
	err := s.q().queryRow(ctx, `SELECT j.state, j.cancel_requested_at, r.state FROM reprov_node_job j
		JOIN reprov_run r ON r.id = j.run_id WHERE j.id = ?`, jobID).Scan(&state, &requested, &runState)
	if errors.Is(err, sql.ErrNoRows) {
		return StopNone, fmt.Errorf("job %d: %w", jobID, ErrNotFound)
	}
	if err != nil {
		return StopNone, fmt.Errorf("job %d: stop check: %w", jobID, err)
	}
	switch {
	case !JobState(state).Active():
		return StopInactive, nil
	case requested.Valid:
		return StopCancelled, nil
	case RunState(runState) == RunInterrupted || RunState(runState) == RunCancelled:
		return StopRun, nil
	}
	return StopNone, nil
}

// idChunk is how many job IDs one query names (SQLite's default limit
// of bound parameters is far above it).
const idChunk = 500

// inIDs calls fn with each chunk of ids as query arguments and the
// matching "?, ?, …" list.
func inIDs(ids []int64, fn func(list string, args []any) error) error {
	for start := 0; start < len(ids); start += idChunk {
		part := ids[start:min(start+idChunk, len(ids))]
		args := make([]any, len(part))
		for i, id := range part {
			args[i] = id
		}
		if err := fn(strings.TrimSuffix(strings.Repeat("?, ", len(part)), ", "), args); err != nil {
			return err
		}
	}
	return nil
}

// WatchedJob is a job as a worker waiting for its node's landing sees it:
// the job, and whether its worker must stop (StopRequested's answer).
type WatchedJob struct {
	Job  NodeJob
	Stop StopRequest
}

// WatchJobs reads the jobs with the given IDs and their stop requests
// (missing ones are left out): for every node waiting for its landing,
// one query per chunk of IDs instead of two per node.
func (s *Store) WatchJobs(ctx context.Context, ids []int64) ([]WatchedJob, error) {
	var out []WatchedJob
	err := inIDs(ids, func(list string, args []any) error {
		rs, err := s.q().query(ctx, `SELECT `+jobCols("j.")+`, r.state FROM reprov_node_job j
			JOIN reprov_run r ON r.id = j.run_id WHERE j.id IN (`+list+`)`, args...)
		if err != nil {
			return err
		}
		defer rs.Close()
		for rs.Next() {
			var runState string
			j, err := scanJob(extraRow{rs, []any{&runState}})
			if err != nil {
				return err
			}
			w := WatchedJob{Job: j}
			switch {
			case !j.State.Active():
				w.Stop = StopInactive
			case !j.CancelRequested.IsZero():
				w.Stop = StopCancelled
			case RunState(runState) == RunInterrupted || RunState(runState) == RunCancelled:
				w.Stop = StopRun
			}
			out = append(out, w)
		}
		return rs.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("watch %d jobs: %w", len(ids), err)
	}
	return out, nil
}

// EndedJobsByID returns those of the jobs with the given IDs that have
// ended (any order): what a run's watch reads, without reading back every
// job still under way.
func (s *Store) EndedJobsByID(ctx context.Context, ids []int64) ([]NodeJob, error) {
	var out []NodeJob
	err := inIDs(ids, func(list string, args []any) error {
		js, err := s.listJobs(ctx, `SELECT `+jobCols("")+` FROM reprov_node_job WHERE id IN (`+list+`)
			AND state NOT IN `+activeStates, args...)
		out = append(out, js...)
		return err
	})
	return out, err
}

// EndedJobIDs returns the IDs of the run's jobs that have ended, read from
// the run's (run_id, state, rack) index alone: how a run's watcher learns
// which of its nodes ended without reading back every job it still waits
// for on every poll (docs/performance.md).
func (s *Store) EndedJobIDs(ctx context.Context, runID int64) ([]int64, error) {
	rs, err := s.q().query(ctx, `SELECT id FROM reprov_node_job WHERE run_id = ? AND state NOT IN `+activeStates, runID)
	if err != nil {
		return nil, fmt.Errorf("ended jobs of run %d: %w", runID, err)
	}
	defer rs.Close()
	var ids []int64
	for rs.Next() {
		var id int64
		if err := rs.Scan(&id); err != nil {
			return nil, fmt.Errorf("ended jobs of run %d: %w", runID, err)
		}
		ids = append(ids, id)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("ended jobs of run %d: %w", runID, err)
	}
	return ids, nil
}

// JobsByID returns the jobs with the given IDs (any order; missing ones
// are left out).
func (s *Store) JobsByID(ctx context.Context, ids []int64) ([]NodeJob, error) {
	var out []NodeJob
	for start := 0; start < len(ids); start += 500 {
		part := ids[start:min(start+500, len(ids))]
		args := make([]any, len(part))
		for i, id := range part {
			args[i] = id
		}
		js, err := s.listJobs(ctx, `SELECT `+jobCols("")+` FROM reprov_node_job WHERE id IN (`+
			strings.TrimSuffix(strings.Repeat("?, ", len(part)), ", ")+`)`, args...)
		if err != nil {
			return nil, err
		}
		out = append(out, js...)
	}
	return out, nil
}

// stuckQueued returns the queued jobs whose River job is running — fetched
// by some controller — since longer than after, without the job having been
// claimed (a claim follows a fetch within milliseconds).
func (q *Queue) stuckQueued(ctx context.Context, after time.Duration) ([]NodeJob, error) {
	cands, err := q.store.listJobs(ctx, `SELECT `+jobCols("j.")+` FROM reprov_node_job j
		JOIN river_job r ON r.id = j.river_job_id
		WHERE j.state = 'queued' AND r.state = 'running'`)
	if err != nil {
		return nil, fmt.Errorf("stuck queued jobs: %w", err)
	}
	var out []NodeJob
	for _, j := range cands {
		row, err := q.JobGet(ctx, j.RiverJobID)
		if err != nil || row.AttemptedAt == nil {
			continue
		}
		if string(row.State) == "running" && time.Since(*row.AttemptedAt) > after {
			out = append(out, j)
		}
	}
	return out, nil
}
