package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"
)

// EndpointSession is one time a controller's landing endpoint bound its
// listen address, kept alive by a heartbeat (docs/netboot.md, "One endpoint
// for every controller").
type EndpointSession struct {
	ID         int64     `json:"id"`
	Controller string    `json:"controller"`
	Listen     string    `json:"listen"`
	BoundSince time.Time `json:"bound_since"`
	SeenAt     time.Time `json:"seen_at"`  // the latest heartbeat
	Released   time.Time `json:"released"` // zero: not released (still bound, or its process died)
}

// endpointRetention is how long ended endpoint sessions are kept.
const endpointRetention = 30 * 24 * time.Hour

// EndpointBound records that controller's landing endpoint bound listen now
// and returns the session's ID for EndpointHeartbeat and EndpointReleased.
// It also forgets sessions older than 30 days.
func (s *Store) EndpointBound(ctx context.Context, controller, listen string) (int64, error) {
	now := nowMicros()
	if _, err := s.q().exec(ctx, `DELETE FROM reprov_endpoint_session WHERE seen_at < ?`,
		now-endpointRetention.Microseconds()); err != nil {
		return 0, fmt.Errorf("endpoint session: %w", err)
	}
	var id int64
	err := s.q().queryRow(ctx, `INSERT INTO reprov_endpoint_session (controller, listen, bound_since, seen_at)
		VALUES (?, ?, ?, ?) RETURNING id`, controller, listen, now, now).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("endpoint session: %w", err)
	}
	return id, nil
}

// EndpointHeartbeat records that the session's endpoint is still bound.
func (s *Store) EndpointHeartbeat(ctx context.Context, id int64) error {
	n, err := s.q().exec(ctx, `UPDATE reprov_endpoint_session SET seen_at = ? WHERE id = ? AND released_at IS NULL`, nowMicros(), id)
	if err != nil {
		return fmt.Errorf("endpoint heartbeat: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("endpoint session %d: %w", id, ErrNotFound)
	}
	return nil
}

// EndpointReleased records that the session's endpoint let its address go.
func (s *Store) EndpointReleased(ctx context.Context, id int64) error {
	now := nowMicros()
	_, err := s.q().exec(ctx, `UPDATE reprov_endpoint_session SET seen_at = ?, released_at = ? WHERE id = ? AND released_at IS NULL`, now, now, id)
	if err != nil {
		return fmt.Errorf("endpoint released: %w", err)
	}
	return nil
}

// EndpointSessions returns the endpoint sessions that overlap [from, to],
// oldest first.
func (s *Store) EndpointSessions(ctx context.Context, from, to time.Time) ([]EndpointSession, error) {
	rs, err := s.q().query(ctx, `SELECT id, controller, listen, bound_since, seen_at, released_at FROM reprov_endpoint_session
		WHERE bound_since <= ? AND seen_at >= ? ORDER BY bound_since, id`, to.UnixMicro(), from.UnixMicro())
	if err != nil {
		return nil, fmt.Errorf("endpoint sessions: %w", err)
	}
	defer rs.Close()
	var out []EndpointSession
	for rs.Next() {
		var (
			e           EndpointSession
			bound, seen int64
			released    sql.NullInt64
		)
		if err := rs.Scan(&e.ID, &e.Controller, &e.Listen, &bound, &seen, &released); err != nil {
			return nil, fmt.Errorf("endpoint sessions: %w", err)
		}
		e.BoundSince, e.SeenAt, e.Released = time.UnixMicro(bound).UTC(), time.UnixMicro(seen).UTC(), fromMicros(released)
		out = append(out, e)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("endpoint sessions: %w", err)
	}
	return out, nil
}

// EndpointCoverage reports whether some reprov landing endpoint was bound, without a gap longer
// than maxGap, during all of [from, to] (heartbeats of every controller sharing the store).
//
// A session covers [its bind, its latest heartbeat]: a controller that died
// covers up to its last heartbeat (at most a heartbeat interval, 1 s, before
// it died). gaps lists the uncovered stretches longer than maxGap, in order;
// covered is true when there is none.
func (s *Store) EndpointCoverage(ctx context.Context, from, to time.Time, maxGap time.Duration) (covered bool, gaps [][2]time.Time, err error) {
	if to.Before(from) {
		return false, nil, errors.New("endpoint coverage: the end is before the start")
	}
	sessions, err := s.EndpointSessions(ctx, from, to)
	if err != nil {
		return false, nil, err
	}
	spans := make([][2]time.Time, 0, len(sessions))
	for _, e := range sessions {
		spans = append(spans, [2]time.Time{e.BoundSince, e.SeenAt})
	}
	slices.SortFunc(spans, func(a, b [2]time.Time) int { return a[0].Compare(b[0]) })
	at := from // covered up to here
	for _, sp := range spans {
		if sp[0].After(at) {
			if sp[0].Sub(at) > maxGap {
				gaps = append(gaps, [2]time.Time{at, minTime(sp[0], to)})
			}
		}
		if sp[1].After(at) {
			at = sp[1]
		}
		if !at.Before(to) {
			break
		}
	}
	if at.Before(to) && to.Sub(at) > maxGap {
		gaps = append(gaps, [2]time.Time{at, to})
	}
	return len(gaps) == 0, gaps, nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
