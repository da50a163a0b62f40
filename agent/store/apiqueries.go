package store

import (
	"context"
	"fmt"
	"time"
)

// Queries of reprov serve's API (agent/api) and its run sweeper.

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
