package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

const activeStates = `('queued', 'running')`

func jobCols(prefix string) string {
	cols := []string{"id", "run_id", "node", "state", "path", "step", "reason", "evidence", "macs",
		"owner", "lease_until", "generation", "river_job_id", "cancel_requested_at", "cancel_reason",
		"landed_at", "landing_source", "created_at", "started_at", "updated_at", "finished_at",
		"site", "rack", "bmc_key"}
	for i, c := range cols {
		cols[i] = prefix + c
	}
	return strings.Join(cols, ", ")
}

func scanJob(r row) (NodeJob, error) {
	var (
		j                                  NodeJob
		state, macs, source                string
		evidence                           sql.NullString
		lease, riverJob, cancelReq, landed sql.NullInt64
		created, updated                   int64
		started, finished                  sql.NullInt64
	)
	err := r.Scan(&j.ID, &j.RunID, &j.Node, &state, &j.Path, &j.Step, &j.Reason, &evidence, &macs,
		&j.Owner, &lease, &j.Generation, &riverJob, &cancelReq, &j.CancelReason,
		&landed, &source, &created, &started, &updated, &finished,
		&j.Site, &j.Rack, &j.BMCKey)
	if err != nil {
		return NodeJob{}, err
	}
	j.State = JobState(state)
	if evidence.Valid {
		j.Evidence = json.RawMessage(evidence.String)
	}
	if macs != "" {
		j.MACs = strings.Split(macs, ",")
	}
	j.LeaseUntil = fromMicros(lease)
	j.RiverJobID = riverJob.Int64
	j.CancelRequested = fromMicros(cancelReq)
	j.LandedAt = fromMicros(landed)
	j.LandingSource = LandingSource(source)
	j.Created = time.UnixMicro(created).UTC()
	j.Started = fromMicros(started)
	j.Updated = time.UnixMicro(updated).UTC()
	j.Finished = fromMicros(finished)
	return j, nil
}

func jsonArg(raw json.RawMessage, what string) (any, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	if !json.Valid(raw) {
		return nil, fmt.Errorf("%s is not valid JSON", what)
	}
	return string(raw), nil
}

// NormalizeMAC returns mac in reprov's canonical form (lower case,
// colon-separated), accepting the forms net.ParseMAC accepts.
func NormalizeMAC(mac string) (string, error) {
	hw, err := net.ParseMAC(strings.TrimSpace(mac))
	if err != nil {
		return "", fmt.Errorf("bad MAC %q: %w", mac, err)
	}
	return hw.String(), nil
}

// AcquireRequest asks for a node job.
type AcquireRequest struct {
	RunID int64
	Node  string
	MACs  []string // the node's MACs, for the landing endpoint
	Path  string   // the planned path (may change later with SetPath)
}

// AcquireNode creates a queued job for req.Node in run req.RunID. It fails
// with a *NodeBusyError (errors.Is ErrNodeBusy) naming the holder when the
// node already has an active job, whichever process or controller created
// it: the database's unique index decides.
//
// AcquireNode does not enqueue a River job; Queue.Acquire does both at once.
func (s *Store) AcquireNode(ctx context.Context, req AcquireRequest) (NodeJob, error) {
	var job NodeJob
	err := s.inTx(ctx, func(q querier, _ any) error {
		var err error
		job, err = s.acquireTx(ctx, q, req)
		return err
	})
	return job, err
}

func (s *Store) acquireTx(ctx context.Context, q querier, req AcquireRequest) (NodeJob, error) {
	if req.Node == "" {
		return NodeJob{}, errors.New("acquire: empty node name")
	}
	macs := make([]string, 0, len(req.MACs))
	seen := make(map[string]bool)
	for _, m := range req.MACs {
		n, err := NormalizeMAC(m)
		if err != nil {
			return NodeJob{}, fmt.Errorf("acquire node %s: %w", req.Node, err)
		}
		if !seen[n] {
			seen[n] = true
			macs = append(macs, n)
		}
	}
	var runState string
	err := q.queryRow(ctx, `SELECT state FROM reprov_run WHERE id = ?`, req.RunID).Scan(&runState)
	if errors.Is(err, sql.ErrNoRows) {
		return NodeJob{}, fmt.Errorf("acquire node %s: run %d: %w", req.Node, req.RunID, ErrNotFound)
	}
	if err != nil {
		return NodeJob{}, fmt.Errorf("acquire node %s: %w", req.Node, err)
	}
	if rs := RunState(runState); rs != RunScheduled && rs != RunRunning {
		return NodeJob{}, fmt.Errorf("acquire node %s: run %d is %s", req.Node, req.RunID, rs)
	}

	// The holder may finish between the conflict and the look-up: try again.
	for range 5 {
		now := nowMicros()
		var id int64
		err := q.queryRow(ctx, `INSERT INTO reprov_node_job (run_id, node, state, path, macs, created_at, updated_at)
			VALUES (?, ?, 'queued', ?, ?, ?, ?)
			ON CONFLICT (node) WHERE state IN `+activeStates+` DO NOTHING
			RETURNING id`,
			req.RunID, req.Node, req.Path, strings.Join(macs, ","), now, now).Scan(&id)
		if err == nil {
			for _, m := range macs {
				if _, err := q.exec(ctx, `INSERT INTO reprov_job_mac (job_id, mac) VALUES (?, ?)`, id, m); err != nil {
					return NodeJob{}, fmt.Errorf("acquire node %s: record MAC: %w", req.Node, err)
				}
			}
			job, err := scanJob(q.queryRow(ctx, `SELECT `+jobCols("")+` FROM reprov_node_job WHERE id = ?`, id))
			if err != nil {
				return NodeJob{}, fmt.Errorf("acquire node %s: %w", req.Node, err)
			}
			return job, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return NodeJob{}, fmt.Errorf("acquire node %s: %w", req.Node, err)
		}
		holder, err := scanJob(q.queryRow(ctx, `SELECT `+jobCols("")+` FROM reprov_node_job WHERE node = ? AND state IN `+activeStates, req.Node))
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return NodeJob{}, fmt.Errorf("acquire node %s: find holder: %w", req.Node, err)
		}
		return NodeJob{}, busyError(holder, "")
	}
	return NodeJob{}, fmt.Errorf("acquire node %s: active job kept changing; try again", req.Node)
}

func busyError(holder NodeJob, reason string) error {
	return &NodeBusyError{Node: holder.Node, JobID: holder.ID, RunID: holder.RunID, State: holder.State,
		Owner: holder.Owner, Reason: reason}
}

// NodeJob returns the job with the given ID (ErrNotFound if none).
func (s *Store) NodeJob(ctx context.Context, id int64) (NodeJob, error) {
	return s.nodeJob(ctx, s.q(), id)
}

func (s *Store) nodeJob(ctx context.Context, q querier, id int64) (NodeJob, error) {
	job, err := scanJob(q.queryRow(ctx, `SELECT `+jobCols("")+` FROM reprov_node_job WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return NodeJob{}, fmt.Errorf("job %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return NodeJob{}, fmt.Errorf("job %d: %w", id, err)
	}
	return job, nil
}

// ActiveJob returns node's active (queued or running) job, or ErrNotFound.
// Ad-hoc BMC commands use it to refuse touching a node under reinstall.
func (s *Store) ActiveJob(ctx context.Context, node string) (NodeJob, error) {
	job, err := scanJob(s.q().queryRow(ctx, `SELECT `+jobCols("")+` FROM reprov_node_job WHERE node = ? AND state IN `+activeStates, node))
	if errors.Is(err, sql.ErrNoRows) {
		return NodeJob{}, fmt.Errorf("node %s: no active job: %w", node, ErrNotFound)
	}
	if err != nil {
		return NodeJob{}, fmt.Errorf("node %s: active job: %w", node, err)
	}
	return job, nil
}

// JobFilter selects node jobs. Zero fields don't filter.
type JobFilter struct {
	Node   string
	RunID  int64
	States []JobState
	Limit  int // ≤ 0: no limit
}

// NodeJobs returns the jobs matching f, newest first (reprov jobs list).
func (s *Store) NodeJobs(ctx context.Context, f JobFilter) ([]NodeJob, error) {
	q := `SELECT ` + jobCols("") + ` FROM reprov_node_job WHERE 1 = 1`
	var args []any
	if f.Node != "" {
		q += ` AND node = ?`
		args = append(args, f.Node)
	}
	if f.RunID != 0 {
		q += ` AND run_id = ?`
		args = append(args, f.RunID)
	}
	if len(f.States) > 0 {
		q += ` AND state IN (` + strings.TrimSuffix(strings.Repeat("?, ", len(f.States)), ", ") + `)`
		for _, st := range f.States {
			args = append(args, string(st))
		}
	}
	q += ` ORDER BY id DESC`
	if f.Limit > 0 {
		q += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	return s.listJobs(ctx, q, args...)
}

func (s *Store) listJobs(ctx context.Context, q string, args ...any) ([]NodeJob, error) {
	return s.listJobsQ(ctx, s.q(), q, args...)
}

// listJobsQ is listJobs through querier db (a transaction's).
func (s *Store) listJobsQ(ctx context.Context, db querier, q string, args ...any) ([]NodeJob, error) {
	rs, err := db.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	defer rs.Close()
	var out []NodeJob
	for rs.Next() {
		j, err := scanJob(rs)
		if err != nil {
			return nil, fmt.Errorf("list jobs: %w", err)
		}
		out = append(out, j)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	return out, nil
}

// OrphanedJobs returns running jobs whose owner's lease has expired: their
// controller died or lost the database. Resume them with Queue.Resume; their
// step record says where they stopped.
func (s *Store) OrphanedJobs(ctx context.Context) ([]NodeJob, error) {
	return s.listJobs(ctx, `SELECT `+jobCols("")+` FROM reprov_node_job
		WHERE state = 'running' AND (lease_until IS NULL OR lease_until < ?) ORDER BY id`, nowMicros())
}

// OwnerID names one worker attempt for ClaimNodeJob: the River client's ID
// and the River job it is working. Two attempts never share an owner, so a
// stalled worker cannot pass a newer one's lease checks.
func OwnerID(clientID string, riverJobID int64) string {
	return fmt.Sprintf("%s/job-%d", clientID, riverJobID)
}

// ClaimNodeJob makes owner the worker of the job's given generation for ttl
// and marks it running. The claim succeeds when the job is queued, or
// running under the same owner or under an expired lease (a takeover). It
// fails with ErrSuperseded when the job was resumed under a newer
// generation, ErrNotActive when it is finished (for instance cancelled while
// queued), a *NodeBusyError when another live owner holds it, and
// ErrWindowClosed (after finishing the job as cancelled) when the job is
// still queued after its run's window ended.
func (s *Store) ClaimNodeJob(ctx context.Context, jobID, generation int64, owner string, ttl time.Duration) (NodeJob, error) {
	if owner == "" || ttl <= 0 {
		return NodeJob{}, fmt.Errorf("claim job %d: need an owner and a positive lease", jobID)
	}
	job, err := s.NodeJob(ctx, jobID)
	if err != nil {
		return NodeJob{}, fmt.Errorf("claim: %w", err)
	}
	if job.State == JobQueued && job.Generation == generation {
		var windowEnd sql.NullInt64
		if err := s.q().queryRow(ctx, `SELECT window_end FROM reprov_run WHERE id = ?`, job.RunID).Scan(&windowEnd); err != nil {
			return NodeJob{}, fmt.Errorf("claim job %d (node %s): run %d: %w", jobID, job.Node, job.RunID, err)
		}
		if end := fromMicros(windowEnd); !end.IsZero() && time.Now().After(end) {
			reason := "run window ended at " + end.Format(time.RFC3339) + " before the node started"
			now := nowMicros()
			n, err := s.q().exec(ctx, `UPDATE reprov_node_job SET state = 'cancelled', reason = ?, finished_at = ?, updated_at = ?
				WHERE id = ? AND state = 'queued'`, reason, now, now, jobID)
			if err != nil {
				return NodeJob{}, fmt.Errorf("claim job %d (node %s): %w", jobID, job.Node, err)
			}
			if n == 1 {
				return NodeJob{}, fmt.Errorf("job %d (node %s): %w: %s", jobID, job.Node, ErrWindowClosed, reason)
			}
		}
	}
	now := time.Now()
	n, err := s.q().exec(ctx, `UPDATE reprov_node_job
		SET state = 'running', owner = ?, lease_until = ?, started_at = COALESCE(started_at, ?), updated_at = ?
		WHERE id = ? AND generation = ?
		  AND (state = 'queued' OR (state = 'running' AND (owner = ? OR lease_until IS NULL OR lease_until < ?)))`,
		owner, now.Add(ttl).UnixMicro(), now.UnixMicro(), now.UnixMicro(), jobID, generation, owner, now.UnixMicro())
	if err != nil {
		return NodeJob{}, fmt.Errorf("claim job %d (node %s): %w", jobID, job.Node, err)
	}
	job, err = s.NodeJob(ctx, jobID)
	if err != nil {
		return NodeJob{}, fmt.Errorf("claim: %w", err)
	}
	if n == 1 {
		return job, nil
	}
	switch {
	case job.Generation != generation:
		return NodeJob{}, fmt.Errorf("claim job %d (node %s): generation %d, now %d: %w", jobID, job.Node, generation, job.Generation, ErrSuperseded)
	case !job.State.Active():
		return NodeJob{}, fmt.Errorf("claim job %d (node %s): it is %s: %w", jobID, job.Node, job.State, ErrNotActive)
	default:
		return NodeJob{}, fmt.Errorf("claim job %d: %w", jobID, busyError(job, "another controller holds the job"))
	}
}

// RenewLease extends owner's claim on the job to ttl from now. It fails with
// ErrLeaseLost when another owner took the job over (or it was resumed) and
// ErrNotActive when it is finished: the caller must stop working the node.
func (s *Store) RenewLease(ctx context.Context, jobID int64, owner string, ttl time.Duration) error {
	now := time.Now()
	n, err := s.q().exec(ctx, `UPDATE reprov_node_job SET lease_until = ?, updated_at = ?
		WHERE id = ? AND owner = ? AND state = 'running'`, now.Add(ttl).UnixMicro(), now.UnixMicro(), jobID, owner)
	if err != nil {
		return fmt.Errorf("renew lease of job %d: %w", jobID, err)
	}
	if n == 1 {
		return nil
	}
	return s.explainLost(ctx, jobID, "renew lease")
}

func (s *Store) explainLost(ctx context.Context, jobID int64, what string) error {
	job, err := s.NodeJob(ctx, jobID)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if !job.State.Active() {
		return fmt.Errorf("%s of job %d (node %s): it is %s: %w", what, jobID, job.Node, job.State, ErrNotActive)
	}
	return fmt.Errorf("%s of job %d (node %s): now held by %q: %w", what, jobID, job.Node, job.Owner, ErrLeaseLost)
}

// SetPath records the job's path (e.g. when oob escalates to inband).
func (s *Store) SetPath(ctx context.Context, jobID int64, path string) error {
	n, err := s.q().exec(ctx, `UPDATE reprov_node_job SET path = ?, updated_at = ? WHERE id = ?`, path, nowMicros(), jobID)
	if err != nil {
		return fmt.Errorf("job %d: set path: %w", jobID, err)
	}
	if n == 0 {
		return fmt.Errorf("job %d: %w", jobID, ErrNotFound)
	}
	return nil
}

// Finish says how a job ended.
type Finish struct {
	State    JobState        // landed, failed, cancelled or interrupted
	Reason   string          // why (failed, cancelled, interrupted); no secrets
	Evidence json.RawMessage // JSON proof of the end state
	// Owner, when set, fences the finish: it applies only while the job is
	// running under this owner (else ErrLeaseLost).
	Owner string
}

// FinishNode ends an active job, releasing its node. It fails with
// ErrNotActive when the job already ended.
func (s *Store) FinishNode(ctx context.Context, jobID int64, f Finish) (NodeJob, error) {
	if !f.State.valid() || f.State.Active() {
		return NodeJob{}, fmt.Errorf("finish job %d: %q is not an end state", jobID, f.State)
	}
	evidence, err := jsonArg(f.Evidence, "evidence")
	if err != nil {
		return NodeJob{}, fmt.Errorf("finish job %d: %w", jobID, err)
	}
	now := nowMicros()
	n, err := s.q().exec(ctx, `UPDATE reprov_node_job
		SET state = ?, reason = ?, evidence = ?, lease_until = NULL, finished_at = ?, updated_at = ?
		WHERE id = ? AND state IN `+activeStates+` AND (? = '' OR (owner = ? AND state = 'running'))`,
		string(f.State), f.Reason, evidence, now, now, jobID, f.Owner, f.Owner)
	if err != nil {
		return NodeJob{}, fmt.Errorf("finish job %d: %w", jobID, err)
	}
	if n == 0 {
		return NodeJob{}, s.explainLost(ctx, jobID, "finish")
	}
	return s.NodeJob(ctx, jobID)
}

// CancelNode cancels node's active job for an operator (reprov jobs cancel).
// A queued job is cancelled at once. A running job whose controller is alive
// gets a cancel request: the controller stops at its next step boundary
// (CancelRequested) and finishes it as cancelled. A running job whose lease
// expired (no controller is working it) is cancelled at once; its unsettled
// intents stay on the node's step record for the next job to settle.
// It returns the job as it is afterwards, or ErrNotFound.
func (s *Store) CancelNode(ctx context.Context, node, reason string) (NodeJob, error) {
	if reason == "" {
		reason = "cancelled by operator"
	}
	for range 5 {
		job, err := s.ActiveJob(ctx, node)
		if err != nil {
			return NodeJob{}, fmt.Errorf("cancel: %w", err)
		}
		now := time.Now()
		nowUS := now.UnixMicro()
		var n int64
		switch {
		case job.State == JobQueued:
			n, err = s.q().exec(ctx, `UPDATE reprov_node_job
				SET state = 'cancelled', reason = ?, cancel_requested_at = ?, cancel_reason = ?, finished_at = ?, updated_at = ?
				WHERE id = ? AND state = 'queued'`, reason, nowUS, reason, nowUS, nowUS, job.ID)
		case job.LeaseUntil.Before(now):
			r := reason + " (no controller was working it: lease expired " + job.LeaseUntil.Format(time.RFC3339) + ")"
			n, err = s.q().exec(ctx, `UPDATE reprov_node_job
				SET state = 'cancelled', reason = ?, cancel_requested_at = COALESCE(cancel_requested_at, ?), cancel_reason = ?,
				    lease_until = NULL, finished_at = ?, updated_at = ?
				WHERE id = ? AND state = 'running' AND owner = ? AND (lease_until IS NULL OR lease_until < ?)`,
				r, nowUS, reason, nowUS, nowUS, job.ID, job.Owner, nowUS)
		default:
			n, err = s.q().exec(ctx, `UPDATE reprov_node_job
				SET cancel_requested_at = COALESCE(cancel_requested_at, ?), cancel_reason = ?, updated_at = ?
				WHERE id = ? AND state = 'running'`, nowUS, reason, nowUS, job.ID)
		}
		if err != nil {
			return NodeJob{}, fmt.Errorf("cancel job %d (node %s): %w", job.ID, node, err)
		}
		if n == 1 {
			return s.NodeJob(ctx, job.ID)
		}
		// The job changed state under us (claimed, finished): look again.
	}
	return NodeJob{}, fmt.Errorf("cancel node %s: its job kept changing; try again", node)
}

// CancelRequested reports whether the job's worker should stop at this step
// boundary: an operator asked to cancel it, or it is no longer active.
func (s *Store) CancelRequested(ctx context.Context, jobID int64) (bool, error) {
	var (
		state     string
		requested sql.NullInt64
	)
	err := s.q().queryRow(ctx, `SELECT state, cancel_requested_at FROM reprov_node_job WHERE id = ?`, jobID).Scan(&state, &requested)
	if errors.Is(err, sql.ErrNoRows) {
		return false, fmt.Errorf("job %d: %w", jobID, ErrNotFound)
	}
	if err != nil {
		return false, fmt.Errorf("job %d: cancel check: %w", jobID, err)
	}
	return requested.Valid || !JobState(state).Active(), nil
}
