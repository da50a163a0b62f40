package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Reimaging windows (docs/windows.md): a window is a named schedule over a
// selection of nodes; each time it opens is an occurrence, one row per
// (window, scheduled start) — the unique key is what makes exactly one
// controller run an occurrence however many share the store. The
// occurrence's owner holds a lease on it, like a node job's worker, so a
// controller that dies mid-occurrence is replaced by another.

func windowsMigration() migration {
	return migration{
		version: 6,
		name:    "windows",
		stmts: []string{
			// A window: its specification as JSON (agent/window.Spec), and
			// whether an operator paused it.
			`CREATE TABLE IF NOT EXISTS reprov_window (
			name         TEXT   NOT NULL PRIMARY KEY,
			spec         TEXT   NOT NULL,
			created_at   BIGINT NOT NULL,
			created_by   TEXT   NOT NULL DEFAULT '',
			updated_at   BIGINT NOT NULL,
			paused_at    BIGINT,
			paused_by    TEXT   NOT NULL DEFAULT '',
			pause_reason TEXT   NOT NULL DEFAULT ''
		)`,
			// One occurrence of a window: started (or missed) once, by one
			// controller. state: running | paused | gated | stopping |
			// overrunning | done | stopped | missed.
			`CREATE TABLE IF NOT EXISTS reprov_window_occurrence (
			id              {{id}},
			window_name     TEXT   NOT NULL,
			scheduled_at    BIGINT NOT NULL,
			end_at          BIGINT NOT NULL,
			cutoff_at       BIGINT NOT NULL,
			state           TEXT   NOT NULL,
			started_at      BIGINT,
			finished_at     BIGINT,
			owner           TEXT   NOT NULL DEFAULT '',
			lease_until     BIGINT,
			batch           BIGINT NOT NULL DEFAULT 0,
			batches         BIGINT NOT NULL DEFAULT 0,
			run_id          BIGINT,
			reason          TEXT   NOT NULL DEFAULT '',
			gate            TEXT   NOT NULL DEFAULT '',
			gate_ok         BIGINT NOT NULL DEFAULT 1,
			gate_checked_at BIGINT,
			UNIQUE (window_name, scheduled_at)
		)`,
			`CREATE INDEX IF NOT EXISTS reprov_window_occurrence_state ON reprov_window_occurrence (state)`,
			// The nodes of an occurrence, planned when it starts: their batch,
			// the job that worked them, how they ended or why they were not
			// started, and whether they overran the window's end.
			`CREATE TABLE IF NOT EXISTS reprov_window_node (
			occurrence_id BIGINT NOT NULL REFERENCES reprov_window_occurrence (id),
			node          TEXT   NOT NULL,
			rack          TEXT   NOT NULL DEFAULT '',
			batch         BIGINT NOT NULL,
			position      BIGINT NOT NULL,
			job_id        BIGINT,
			run_id        BIGINT,
			state         TEXT   NOT NULL DEFAULT 'pending',
			overran       BIGINT NOT NULL DEFAULT 0,
			reason        TEXT   NOT NULL DEFAULT '',
			PRIMARY KEY (occurrence_id, node)
		)`,
			// A run's cutoff (no job starts after it) and hold (why no job may
			// start now: paused window, failing gate), both checked where jobs
			// are claimed.
			`ALTER TABLE reprov_run ADD COLUMN cutoff_at BIGINT`,
			`ALTER TABLE reprov_run ADD COLUMN hold TEXT NOT NULL DEFAULT ''`,
		},
	}
}

// WindowCutoffReason is the reason of a node not started because its
// window's cutoff passed.
func WindowCutoffReason(cut time.Time) string {
	return "not started: the window's cutoff passed at " + cut.UTC().Format(time.RFC3339)
}

// ErrWindowExists: a window of that name exists.
var ErrWindowExists = errors.New("window exists")

// WindowRecord is a reimaging window as the store keeps it.
type WindowRecord struct {
	Name string `json:"name"`
	// Spec is the window's specification (agent/window.Spec as JSON).
	Spec        json.RawMessage `json:"spec"`
	Created     time.Time       `json:"created"`
	CreatedBy   string          `json:"created_by,omitempty"`
	Updated     time.Time       `json:"updated"`
	Paused      time.Time       `json:"paused"` // zero: not paused
	PausedBy    string          `json:"paused_by,omitempty"`
	PauseReason string          `json:"pause_reason,omitempty"`
}

const windowCols = `name, spec, created_at, created_by, updated_at, paused_at, paused_by, pause_reason`

func scanWindow(r row) (WindowRecord, error) {
	var (
		w                WindowRecord
		spec             string
		created, updated int64
		paused           sql.NullInt64
	)
	if err := r.Scan(&w.Name, &spec, &created, &w.CreatedBy, &updated, &paused, &w.PausedBy, &w.PauseReason); err != nil {
		return WindowRecord{}, err
	}
	w.Spec = json.RawMessage(spec)
	w.Created = time.UnixMicro(created).UTC()
	w.Updated = time.UnixMicro(updated).UTC()
	w.Paused = fromMicros(paused)
	return w, nil
}

// CreateWindow records a new window (ErrWindowExists if the name is taken).
func (s *Store) CreateWindow(ctx context.Context, w WindowRecord) (WindowRecord, error) {
	if !json.Valid(w.Spec) {
		return WindowRecord{}, fmt.Errorf("create window %s: spec is not valid JSON", w.Name)
	}
	now := nowMicros()
	out, err := scanWindow(s.q().queryRow(ctx, `INSERT INTO reprov_window (name, spec, created_at, created_by, updated_at)
		VALUES (?, ?, ?, ?, ?) RETURNING `+windowCols, w.Name, string(w.Spec), now, w.CreatedBy, now))
	if isUniqueViolation(err) {
		return WindowRecord{}, fmt.Errorf("create window %s: %w", w.Name, ErrWindowExists)
	}
	if err != nil {
		return WindowRecord{}, fmt.Errorf("create window %s: %w", w.Name, err)
	}
	return out, nil
}

// Window returns the named window (ErrNotFound if none).
func (s *Store) Window(ctx context.Context, name string) (WindowRecord, error) {
	w, err := scanWindow(s.q().queryRow(ctx, `SELECT `+windowCols+` FROM reprov_window WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return WindowRecord{}, fmt.Errorf("window %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return WindowRecord{}, fmt.Errorf("window %s: %w", name, err)
	}
	return w, nil
}

// Windows returns every window, by name.
func (s *Store) Windows(ctx context.Context) ([]WindowRecord, error) {
	rs, err := s.q().query(ctx, `SELECT `+windowCols+` FROM reprov_window ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list windows: %w", err)
	}
	defer rs.Close()
	var out []WindowRecord
	for rs.Next() {
		w, err := scanWindow(rs)
		if err != nil {
			return nil, fmt.Errorf("list windows: %w", err)
		}
		out = append(out, w)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("list windows: %w", err)
	}
	return out, nil
}

// DeleteWindow removes a window; its occurrences stay as history, and an
// open one admits no further node.
func (s *Store) DeleteWindow(ctx context.Context, name string) error {
	n, err := s.q().exec(ctx, `DELETE FROM reprov_window WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("delete window %s: %w", name, err)
	}
	if n == 0 {
		return fmt.Errorf("window %s: %w", name, ErrNotFound)
	}
	return nil
}

// PauseWindow pauses (paused true) or resumes a window, saying who and why.
func (s *Store) PauseWindow(ctx context.Context, name string, paused bool, by, reason string) (WindowRecord, error) {
	var at any
	if paused {
		at = nowMicros()
	} else {
		by, reason = "", ""
	}
	w, err := scanWindow(s.q().queryRow(ctx, `UPDATE reprov_window SET paused_at = ?, paused_by = ?, pause_reason = ?, updated_at = ?
		WHERE name = ? RETURNING `+windowCols, at, by, reason, nowMicros(), name))
	if errors.Is(err, sql.ErrNoRows) {
		return WindowRecord{}, fmt.Errorf("window %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return WindowRecord{}, fmt.Errorf("pause window %s: %w", name, err)
	}
	return w, nil
}

// OccurrenceState is an occurrence's state.
type OccurrenceState string

// Occurrence states.
const (
	OccurrenceRunning     OccurrenceState = "running"     // admitting batches
	OccurrencePaused      OccurrenceState = "paused"      // its window is paused
	OccurrenceGated       OccurrenceState = "gated"       // its gate fails
	OccurrenceStopping    OccurrenceState = "stopping"    // failure budget spent; nodes in flight finish
	OccurrenceOverrunning OccurrenceState = "overrunning" // past its end with nodes in flight
	OccurrenceDone        OccurrenceState = "done"
	OccurrenceStopped     OccurrenceState = "stopped" // ended by its failure budget or deletion
	OccurrenceMissed      OccurrenceState = "missed"  // no controller started it before its cutoff
)

// Open reports whether the occurrence still has a controller's work to do.
func (s OccurrenceState) Open() bool {
	switch s {
	case OccurrenceDone, OccurrenceStopped, OccurrenceMissed:
		return false
	}
	return true
}

// Occurrence is one opening of a window.
type Occurrence struct {
	ID     int64           `json:"id"`
	Window string          `json:"window"`
	Start  time.Time       `json:"scheduled"` // when it was due to start
	End    time.Time       `json:"end"`
	Cutoff time.Time       `json:"cutoff"` // no node starts after it
	State  OccurrenceState `json:"state"`
	// Started is when a controller started it (late when after Start).
	Started    time.Time `json:"started"`
	Finished   time.Time `json:"finished"`
	Owner      string    `json:"owner,omitempty"`
	LeaseUntil time.Time `json:"lease_until"`
	// Batch is the last batch admitted (0: none yet) of Batches.
	Batch   int `json:"batch"`
	Batches int `json:"batches"`
	// RunID is the run of the last batch admitted.
	RunID  int64  `json:"run_id,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Gate is the last gate check's result (the hook's output, the
	// query's answer); GateOK whether it let the window go on.
	Gate        string    `json:"gate,omitempty"`
	GateOK      bool      `json:"gate_ok"`
	GateChecked time.Time `json:"gate_checked"`
}

const occurrenceCols = `id, window_name, scheduled_at, end_at, cutoff_at, state, started_at, finished_at, owner, lease_until,
	batch, batches, run_id, reason, gate, gate_ok, gate_checked_at`

func scanOccurrence(r row) (Occurrence, error) {
	var (
		o                                   Occurrence
		start, end, cut                     int64
		state                               string
		started, finished, lease, gateCheck sql.NullInt64
		runID                               sql.NullInt64
		batch, batches, gateOK              int64
	)
	err := r.Scan(&o.ID, &o.Window, &start, &end, &cut, &state, &started, &finished, &o.Owner, &lease,
		&batch, &batches, &runID, &o.Reason, &o.Gate, &gateOK, &gateCheck)
	if err != nil {
		return Occurrence{}, err
	}
	o.Start, o.End, o.Cutoff = time.UnixMicro(start).UTC(), time.UnixMicro(end).UTC(), time.UnixMicro(cut).UTC()
	o.State = OccurrenceState(state)
	o.Started, o.Finished, o.LeaseUntil, o.GateChecked = fromMicros(started), fromMicros(finished), fromMicros(lease), fromMicros(gateCheck)
	o.Batch, o.Batches, o.RunID, o.GateOK = int(batch), int(batches), runID.Int64, gateOK != 0
	return o, nil
}

// WindowNodeState is what became of a node of an occurrence.
type WindowNodeState string

// Window node states: pending (its batch not admitted yet), the states of
// its job once submitted, and not_started (the occurrence ended before its
// batch was admitted: the reason says why).
const (
	WindowNodePending    WindowNodeState = "pending"
	WindowNodeNotStarted WindowNodeState = "not_started"
)

// WindowNode is one node of an occurrence.
type WindowNode struct {
	Node     string          `json:"node"`
	Rack     string          `json:"rack,omitempty"`
	Batch    int             `json:"batch"`
	Position int             `json:"position"`
	JobID    int64           `json:"job_id,omitempty"`
	RunID    int64           `json:"run_id,omitempty"`
	State    WindowNodeState `json:"state"`
	// Overran: the node was still being worked at the window's end.
	Overran bool   `json:"overran,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// Terminal reports whether nothing more will happen to the node in its
// occurrence.
func (n WindowNode) Terminal() bool {
	switch n.State {
	case WindowNodePending, WindowNodeState(JobQueued), WindowNodeState(JobRunning):
		return false
	}
	return true
}

// InsertOccurrence records an occurrence with its planned nodes, unless
// the window's occurrence at that start exists: then it returns that one
// and created false. Of any number of controllers racing to start one
// occurrence, exactly one creates it.
func (s *Store) InsertOccurrence(ctx context.Context, o Occurrence, nodes []WindowNode) (Occurrence, bool, error) {
	var (
		out     Occurrence
		created bool
	)
	err := s.inTx(ctx, func(q querier, _ any) error {
		created = false
		var err error
		out, err = scanOccurrence(q.queryRow(ctx, `INSERT INTO reprov_window_occurrence (window_name, scheduled_at, end_at, cutoff_at,
				state, started_at, finished_at, owner, lease_until, batches, reason, gate_ok)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)
			ON CONFLICT (window_name, scheduled_at) DO NOTHING RETURNING `+occurrenceCols,
			o.Window, o.Start.UnixMicro(), o.End.UnixMicro(), o.Cutoff.UnixMicro(), string(o.State), micros(o.Started), micros(o.Finished),
			o.Owner, micros(o.LeaseUntil), o.Batches, o.Reason))
		if errors.Is(err, sql.ErrNoRows) {
			out, err = scanOccurrence(q.queryRow(ctx, `SELECT `+occurrenceCols+` FROM reprov_window_occurrence
				WHERE window_name = ? AND scheduled_at = ?`, o.Window, o.Start.UnixMicro()))
			return err
		}
		if err != nil {
			return err
		}
		created = true
		for _, n := range nodes {
			if _, err := q.exec(ctx, `INSERT INTO reprov_window_node (occurrence_id, node, rack, batch, position, state, reason)
				VALUES (?, ?, ?, ?, ?, ?, ?)`, out.ID, n.Node, n.Rack, n.Batch, n.Position, string(n.State), n.Reason); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return Occurrence{}, false, fmt.Errorf("window %s: occurrence at %s: %w", o.Window, o.Start.Format(time.RFC3339), err)
	}
	return out, created, nil
}

// Occurrences returns a window's occurrences, newest first (limit ≤ 0:
// all).
func (s *Store) Occurrences(ctx context.Context, window string, limit int) ([]Occurrence, error) {
	q := `SELECT ` + occurrenceCols + ` FROM reprov_window_occurrence WHERE window_name = ? ORDER BY scheduled_at DESC, id DESC`
	args := []any{window}
	if limit > 0 {
		q += ` LIMIT ?`
		args = append(args, limit)
	}
	return s.listOccurrences(ctx, q, args...)
}

// OpenOccurrences returns the occurrences not yet ended, oldest first.
func (s *Store) OpenOccurrences(ctx context.Context) ([]Occurrence, error) {
	return s.listOccurrences(ctx, `SELECT `+occurrenceCols+` FROM reprov_window_occurrence
		WHERE state NOT IN ('done', 'stopped', 'missed') ORDER BY scheduled_at, id`)
}

// Occurrence returns one occurrence (ErrNotFound if none).
func (s *Store) Occurrence(ctx context.Context, id int64) (Occurrence, error) {
	o, err := scanOccurrence(s.q().queryRow(ctx, `SELECT `+occurrenceCols+` FROM reprov_window_occurrence WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Occurrence{}, fmt.Errorf("occurrence %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Occurrence{}, fmt.Errorf("occurrence %d: %w", id, err)
	}
	return o, nil
}

func (s *Store) listOccurrences(ctx context.Context, q string, args ...any) ([]Occurrence, error) {
	rs, err := s.q().query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list occurrences: %w", err)
	}
	defer rs.Close()
	var out []Occurrence
	for rs.Next() {
		o, err := scanOccurrence(rs)
		if err != nil {
			return nil, fmt.Errorf("list occurrences: %w", err)
		}
		out = append(out, o)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("list occurrences: %w", err)
	}
	return out, nil
}

// LeaseOccurrence makes owner the controller of an open occurrence until
// until, if it holds it already or nobody's lease is live at now. It
// reports whether owner holds it.
func (s *Store) LeaseOccurrence(ctx context.Context, id int64, owner string, now, until time.Time) (bool, error) {
	n, err := s.q().exec(ctx, `UPDATE reprov_window_occurrence SET owner = ?, lease_until = ?
		WHERE id = ? AND state NOT IN ('done', 'stopped', 'missed')
		  AND (owner = ? OR owner = '' OR lease_until IS NULL OR lease_until < ?)`,
		owner, until.UnixMicro(), id, owner, now.UnixMicro())
	if err != nil {
		return false, fmt.Errorf("lease occurrence %d: %w", id, err)
	}
	return n == 1, nil
}

// SaveOccurrence records an occurrence's progress; only its owner may
// (ErrLeaseLost otherwise).
func (s *Store) SaveOccurrence(ctx context.Context, o Occurrence) error {
	gateOK := 0
	if o.GateOK {
		gateOK = 1
	}
	var runID any
	if o.RunID != 0 {
		runID = o.RunID
	}
	n, err := s.q().exec(ctx, `UPDATE reprov_window_occurrence SET state = ?, finished_at = ?, batch = ?, run_id = ?, reason = ?,
			gate = ?, gate_ok = ?, gate_checked_at = ?
		WHERE id = ? AND owner = ?`,
		string(o.State), micros(o.Finished), o.Batch, runID, o.Reason, o.Gate, gateOK, micros(o.GateChecked), o.ID, o.Owner)
	if err != nil {
		return fmt.Errorf("save occurrence %d: %w", o.ID, err)
	}
	if n == 0 {
		return fmt.Errorf("save occurrence %d: %w", o.ID, ErrLeaseLost)
	}
	return nil
}

// OccurrenceNodes returns an occurrence's nodes in batch order.
func (s *Store) OccurrenceNodes(ctx context.Context, id int64) ([]WindowNode, error) {
	rs, err := s.q().query(ctx, `SELECT node, rack, batch, position, job_id, run_id, state, overran, reason
		FROM reprov_window_node WHERE occurrence_id = ? ORDER BY batch, position`, id)
	if err != nil {
		return nil, fmt.Errorf("occurrence %d: nodes: %w", id, err)
	}
	defer rs.Close()
	var out []WindowNode
	for rs.Next() {
		var (
			n              WindowNode
			batch, pos, ov int64
			job, run       sql.NullInt64
			state          string
		)
		if err := rs.Scan(&n.Node, &n.Rack, &batch, &pos, &job, &run, &state, &ov, &n.Reason); err != nil {
			return nil, fmt.Errorf("occurrence %d: nodes: %w", id, err)
		}
		n.Batch, n.Position, n.JobID, n.RunID, n.State, n.Overran = int(batch), int(pos), job.Int64, run.Int64, WindowNodeState(state), ov != 0
		out = append(out, n)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("occurrence %d: nodes: %w", id, err)
	}
	return out, nil
}

// SaveOccurrenceNodes records what became of the given nodes of an
// occurrence (job, run, state, overran, reason), in one transaction.
func (s *Store) SaveOccurrenceNodes(ctx context.Context, id int64, nodes []WindowNode) error {
	if len(nodes) == 0 {
		return nil
	}
	err := s.inTx(ctx, func(q querier, _ any) error {
		for _, n := range nodes {
			var job, run any
			if n.JobID != 0 {
				job = n.JobID
			}
			if n.RunID != 0 {
				run = n.RunID
			}
			ov := 0
			if n.Overran {
				ov = 1
			}
			if _, err := q.exec(ctx, `UPDATE reprov_window_node SET job_id = ?, run_id = ?, state = ?, overran = ?, reason = ?
				WHERE occurrence_id = ? AND node = ?`, job, run, string(n.State), ov, n.Reason, id, n.Node); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("occurrence %d: save nodes: %w", id, err)
	}
	return nil
}

// SetRunHold holds a run (no job of it starts while hold is set: claims
// wait) or, with "", releases it.
func (s *Store) SetRunHold(ctx context.Context, runID int64, hold string) error {
	if _, err := s.q().exec(ctx, `UPDATE reprov_run SET hold = ? WHERE id = ?`, hold, runID); err != nil {
		return fmt.Errorf("run %d: hold: %w", runID, err)
	}
	return nil
}

// CancelQueuedJobs ends the run's queued jobs cancelled with reason,
// unstarted (their River jobs then find nothing to do); running ones go
// on. It returns how many were cancelled.
func (s *Store) CancelQueuedJobs(ctx context.Context, runID int64, reason string) (int64, error) {
	now := nowMicros()
	n, err := s.q().exec(ctx, `UPDATE reprov_node_job SET state = 'cancelled', reason = ?, finished_at = ?, updated_at = ?
		WHERE run_id = ? AND state = 'queued'`, reason, now, now, runID)
	if err != nil {
		return 0, fmt.Errorf("run %d: cancel queued jobs: %w", runID, err)
	}
	return n, nil
}

// LatestJobsOf returns each named node's latest job (nodes without one are
// left out).
func (s *Store) LatestJobsOf(ctx context.Context, nodes []string) (map[string]NodeJob, error) {
	out := make(map[string]NodeJob, len(nodes))
	for _, n := range nodes {
		j, err := scanJob(s.q().queryRow(ctx, `SELECT `+jobCols("")+` FROM reprov_node_job WHERE node = ? ORDER BY id DESC LIMIT 1`, n))
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("node %s: latest job: %w", n, err)
		}
		out[n] = j
	}
	return out, nil
}
