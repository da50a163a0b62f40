package store

import (
	"context"
	"fmt"
	"strconv"
)

// wakeScan bounds the queued jobs WakeQueued reads for one pick.
const wakeScan = 64

// WakeQueued makes one of a run's waiting jobs workable now: called when
// a node of the run ends, so that the room its end made under the run's
// limits is taken at once, not when some waiting job's snooze runs out
// (docs/performance.md, "Admission"). ended is the node job that ended.
//
// It wakes the oldest queued job of the ended node's rack if there is one
// (the per-rack room it freed), else the oldest queued job of the first
// rack, by name, below the run's per-rack limit. Only a job whose River
// job is snoozed is woken (one already waiting to be fetched needs no
// wake), among the first 64 queued jobs that fit: when none of those is
// snoozed, workable jobs are waiting already. It returns the node job it
// woke, or false when none was waiting.
//
// A wake is a hint: the woken job still claims through the run's limits
// (Store.Claim), and a job that is never woken is still worked when its
// snooze runs out.
func (q *Queue) WakeQueued(ctx context.Context, ended NodeJob) (NodeJob, bool, error) {
	snoozed := `(r.state = 'scheduled' OR (r.state = 'available' AND r.scheduled_at > ` + q.store.nowSQL() + `))`
	var woken NodeJob
	found := false
	err := q.store.inTx(ctx, func(tx querier, raw any) error {
		// pick wakes the first snoozed job among the first wakeScan queued
		// jobs that where admits, in the order of the (run_id, state,
		// rack) index. Bounded: when those are all workable already
		// (never fetched, or waiting to be), another end's place will be
		// taken by them without a wake, and reading on would cost a scan
		// of every queued job of a large run on each node's end.
		pick := func(where string, args ...any) error {
			js, err := q.store.listJobsQ(ctx, tx, `SELECT `+jobCols("j.")+` FROM (SELECT id FROM reprov_node_job
				WHERE run_id = ? AND state = 'queued'`+where+` ORDER BY rack, id LIMIT `+strconv.Itoa(wakeScan)+`) c
				JOIN reprov_node_job j ON j.id = c.id JOIN river_job r ON r.id = j.river_job_id
				WHERE `+snoozed+` ORDER BY j.rack, j.id LIMIT 1`,
				append([]any{ended.RunID}, args...)...)
			if err != nil || len(js) == 0 {
				return err
			}
			woken, found = js[0], true
			return nil
		}
		if err := pick(` AND rack = ?`, ended.Rack); err != nil {
			return err
		}
		if !found {
			var perRack int
			if err := tx.queryRow(ctx, `SELECT per_rack FROM reprov_run WHERE id = ?`, ended.RunID).Scan(&perRack); err != nil {
				return fmt.Errorf("run %d: %w", ended.RunID, err)
			}
			where := ``
			var args []any
			if perRack > 0 {
				where = ` AND rack NOT IN (SELECT rack FROM reprov_node_job
					WHERE run_id = ? AND state = 'running' GROUP BY rack HAVING COUNT(*) >= ?)`
				args = []any{ended.RunID, perRack}
			}
			if err := pick(where, args...); err != nil {
				return err
			}
		}
		if !found {
			return nil
		}
		return q.retryTx(ctx, raw, woken.RiverJobID)
	})
	if err != nil {
		return NodeJob{}, false, fmt.Errorf("wake a queued job of run %d: %w", ended.RunID, err)
	}
	return woken, found, nil
}

// nowSQL is the database's current time in River's timestamp format, for
// comparing with river_job's timestamps.
func (s *Store) nowSQL() string {
	if s.dialect == SQLite {
		return `datetime('now', 'subsec')`
	}
	return `now()`
}
