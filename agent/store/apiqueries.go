package store

import (
	"context"
	"fmt"
	"time"
)

// Queries of reprov serve's API (agent/api) and its run sweeper.

// LatestJobs returns every node's latest job, by node.
func (s *Store) LatestJobs(ctx context.Context) (map[string]NodeJob, error) {
	jobs, err := s.listJobs(ctx, `SELECT `+jobCols("")+` FROM reprov_node_job
		WHERE id IN (SELECT MAX(id) FROM reprov_node_job GROUP BY node)`)
	if err != nil {
		return nil, fmt.Errorf("latest jobs: %w", err)
	}
	out := make(map[string]NodeJob, len(jobs))
	for _, j := range jobs {
		out[j.Node] = j
	}
	return out, nil
}

// RunJobCounts counts the run's jobs by state.
func (s *Store) RunJobCounts(ctx context.Context, runID int64) (map[JobState]int, error) {
	rs, err := s.q().query(ctx, `SELECT state, COUNT(*) FROM reprov_node_job WHERE run_id = ? GROUP BY state`, runID)
	if err != nil {
		return nil, fmt.Errorf("run %d: job counts: %w", runID, err)
	}
	defer rs.Close()
	out := map[JobState]int{}
	for rs.Next() {
		var (
			state string
			n     int
		)
		if err := rs.Scan(&state, &n); err != nil {
			return nil, fmt.Errorf("run %d: job counts: %w", runID, err)
		}
		out[JobState(state)] = n
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("run %d: job counts: %w", runID, err)
	}
	return out, nil
}

// AllQuirks returns every learned quirk, by node then name; node "" means
// every node.
func (s *Store) AllQuirks(ctx context.Context, node string) ([]Quirk, error) {
	if node != "" {
		return s.Quirks(ctx, node)
	}
	out, err := s.listQuirks(ctx, `ORDER BY node, quirk`)
	if err != nil {
		return nil, fmt.Errorf("quirks: %w", err)
	}
	return out, nil
}

// ClearQuirks forgets the node's learned quirk (quirk "": every quirk of
// the node) and returns how many were cleared.
func (s *Store) ClearQuirks(ctx context.Context, node, quirk string) (int64, error) {
	if node == "" {
		return 0, fmt.Errorf("clear quirks: need a node")
	}
	q := `DELETE FROM reprov_quirk WHERE node = ?`
	args := []any{node}
	if quirk != "" {
		q += ` AND quirk = ?`
		args = append(args, quirk)
	}
	n, err := s.q().exec(ctx, q, args...)
	if err != nil {
		return 0, fmt.Errorf("clear quirks of node %s: %w", node, err)
	}
	return n, nil
}

// FinishEndedRuns marks finished every running run that has jobs, none of
// them active, and no job change for quiet — the runs whose watcher
// (a reinstall, or the serve that took the run) is gone. The quiet time
// keeps a run whose submission is still going on (in batches) from being
// finished between two batches. It returns the runs finished.
func (s *Store) FinishEndedRuns(ctx context.Context, quiet time.Duration) ([]int64, error) {
	cut := time.Now().Add(-quiet).UnixMicro()
	rs, err := s.q().query(ctx, `SELECT r.id FROM reprov_run r WHERE r.state = 'running' AND r.created_at < ?
		AND EXISTS (SELECT 1 FROM reprov_node_job j WHERE j.run_id = r.id)
		AND NOT EXISTS (SELECT 1 FROM reprov_node_job j WHERE j.run_id = r.id AND (j.state IN `+activeStates+` OR j.updated_at >= ?))
		ORDER BY r.id`, cut, cut)
	if err != nil {
		return nil, fmt.Errorf("finish ended runs: %w", err)
	}
	var ids []int64
	for rs.Next() {
		var id int64
		if err := rs.Scan(&id); err != nil {
			rs.Close()
			return nil, fmt.Errorf("finish ended runs: %w", err)
		}
		ids = append(ids, id)
	}
	err = rs.Err()
	rs.Close()
	if err != nil {
		return nil, fmt.Errorf("finish ended runs: %w", err)
	}
	var out []int64
	for _, id := range ids {
		n, err := s.q().exec(ctx, `UPDATE reprov_run SET state = 'finished', finished_at = ? WHERE id = ? AND state = 'running'
			AND NOT EXISTS (SELECT 1 FROM reprov_node_job j WHERE j.run_id = ? AND j.state IN `+activeStates+`)`, nowMicros(), id, id)
		if err != nil {
			return out, fmt.Errorf("finish run %d: %w", id, err)
		}
		if n == 1 {
			out = append(out, id)
		}
	}
	return out, nil
}
