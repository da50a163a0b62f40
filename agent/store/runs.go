package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

const runCols = `id, created_at, created_by, selection, options, window_start, window_end, state, finished_at,
	max_parallel, per_rack, per_bmc, max_failures, cutoff_at, hold`

func scanRun(r row) (Run, error) {
	var (
		run                                Run
		created                            int64
		options                            string
		windowStart, windowEnd, finishedAt sql.NullInt64
		cutoff                             sql.NullInt64
		state                              string
	)
	var lim [4]int64
	err := r.Scan(&run.ID, &created, &run.CreatedBy, &run.Selection, &options, &windowStart, &windowEnd, &state, &finishedAt,
		&lim[0], &lim[1], &lim[2], &lim[3], &cutoff, &run.Hold)
	if err != nil {
		return Run{}, err
	}
	run.Created = time.UnixMicro(created).UTC()
	run.Options = json.RawMessage(options)
	run.WindowStart = fromMicros(windowStart)
	run.WindowEnd = fromMicros(windowEnd)
	run.State = RunState(state)
	run.Finished = fromMicros(finishedAt)
	run.Cutoff = fromMicros(cutoff)
	run.Limits = RunLimits{MaxParallel: int(lim[0]), PerRack: int(lim[1]), PerBMC: int(lim[2]), MaxFailures: int(lim[3])}
	return run, nil
}

// CreateRun records a new run. A run whose window starts in the future is
// RunScheduled, otherwise RunRunning.
func (s *Store) CreateRun(ctx context.Context, spec RunSpec) (Run, error) {
	return s.createRunTx(ctx, s.q(), spec)
}

func (s *Store) createRunTx(ctx context.Context, q querier, spec RunSpec) (Run, error) {
	options := string(spec.Options)
	if options == "" {
		options = "{}"
	}
	if !json.Valid([]byte(options)) {
		return Run{}, errors.New("create run: options are not valid JSON")
	}
	if !spec.WindowStart.IsZero() && !spec.WindowEnd.IsZero() && !spec.WindowEnd.After(spec.WindowStart) {
		return Run{}, fmt.Errorf("create run: window end %s is not after its start %s",
			spec.WindowEnd.Format(time.RFC3339), spec.WindowStart.Format(time.RFC3339))
	}
	now := time.Now()
	state := RunRunning
	if spec.WindowStart.After(now) {
		state = RunScheduled
	}
	l := spec.Limits
	r := q.queryRow(ctx, `INSERT INTO reprov_run (created_at, created_by, selection, options, window_start, window_end, state,
			max_parallel, per_rack, per_bmc, max_failures, cutoff_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING `+runCols,
		now.UnixMicro(), spec.CreatedBy, spec.Selection, options, micros(spec.WindowStart), micros(spec.WindowEnd), string(state),
		max(l.MaxParallel, 0), max(l.PerRack, 0), max(l.PerBMC, 0), max(l.MaxFailures, 0), micros(spec.Cutoff))
	run, err := scanRun(r)
	if err != nil {
		return Run{}, fmt.Errorf("create run: %w", err)
	}
	return run, nil
}

// Run returns the run with the given ID (ErrNotFound if none).
func (s *Store) Run(ctx context.Context, id int64) (Run, error) {
	run, err := scanRun(s.q().queryRow(ctx, `SELECT `+runCols+` FROM reprov_run WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Run{}, fmt.Errorf("run %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Run{}, fmt.Errorf("run %d: %w", id, err)
	}
	return run, nil
}

// Runs returns the most recent runs, newest first (limit ≤ 0: all).
func (s *Store) Runs(ctx context.Context, limit int) ([]Run, error) {
	q := `SELECT ` + runCols + ` FROM reprov_run ORDER BY id DESC`
	var args []any
	if limit > 0 {
		q += ` LIMIT ?`
		args = append(args, limit)
	}
	rs, err := s.q().query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	defer rs.Close()
	var out []Run
	for rs.Next() {
		run, err := scanRun(rs)
		if err != nil {
			return nil, fmt.Errorf("list runs: %w", err)
		}
		out = append(out, run)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	return out, nil
}

// SetRunState records a run's state; finished, cancelled and interrupted
// also stamp its finish time.
func (s *Store) SetRunState(ctx context.Context, id int64, state RunState) error {
	var finished any
	switch state {
	case RunScheduled, RunRunning:
	case RunFinished, RunCancelled, RunInterrupted:
		finished = nowMicros()
	default:
		return fmt.Errorf("run %d: unknown run state %q", id, state)
	}
	n, err := s.q().exec(ctx, `UPDATE reprov_run SET state = ?, finished_at = ? WHERE id = ?`, string(state), finished, id)
	if err != nil {
		return fmt.Errorf("run %d: set state %s: %w", id, state, err)
	}
	if n == 0 {
		return fmt.Errorf("run %d: %w", id, ErrNotFound)
	}
	return nil
}
