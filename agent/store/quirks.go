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

// LearnQuirk records (or refreshes: evidence, model, run and time) a quirk of
// q.Node, so later runs adapt (e.g. go in-band directly).
func (s *Store) LearnQuirk(ctx context.Context, q Quirk) error {
	if q.Node == "" || q.Quirk == "" {
		return errors.New("learn quirk: need a node and a quirk")
	}
	ev, err := jsonArg(q.Evidence, "quirk evidence")
	if err != nil {
		return fmt.Errorf("learn quirk %s of node %s: %w", q.Quirk, q.Node, err)
	}
	learned := q.Learned
	if learned.IsZero() {
		learned = time.Now()
	}
	var run any
	if q.RunID != 0 {
		run = q.RunID
	}
	_, err = s.q().exec(ctx, `INSERT INTO reprov_quirk (node, quirk, model, evidence, run_id, learned_at) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (node, quirk) DO UPDATE SET model = excluded.model, evidence = excluded.evidence,
			run_id = excluded.run_id, learned_at = excluded.learned_at`,
		q.Node, q.Quirk, q.Model, ev, run, learned.UnixMicro())
	if err != nil {
		return fmt.Errorf("learn quirk %s of node %s: %w", q.Quirk, q.Node, err)
	}
	return nil
}

// Quirks returns the quirks learned for node, by name.
func (s *Store) Quirks(ctx context.Context, node string) ([]Quirk, error) {
	out, err := s.listQuirks(ctx, `WHERE node = ? ORDER BY quirk`, node)
	if err != nil {
		return nil, fmt.Errorf("quirks of node %s: %w", node, err)
	}
	return out, nil
}

// QuirksOf returns, in one read, the quirks learned about node and those
// learned about other nodes of model ("" reads none of those): what a
// node's job reads once before its precheck.
func (s *Store) QuirksOf(ctx context.Context, node, model string) (own, ofModel []Quirk, err error) {
	all, err := s.listQuirks(ctx, `WHERE node = ? OR (? <> '' AND model = ?) ORDER BY node, quirk`, node, model, model)
	if err != nil {
		return nil, nil, fmt.Errorf("quirks of node %s: %w", node, err)
	}
	for _, q := range all {
		if q.Node == node {
			own = append(own, q)
		} else {
			ofModel = append(ofModel, q)
		}
	}
	return own, ofModel, nil
}

// ModelQuirks returns the quirks learned on any node of the given model,
// by node then name.
func (s *Store) ModelQuirks(ctx context.Context, model string) ([]Quirk, error) {
	out, err := s.listQuirks(ctx, `WHERE model = ? ORDER BY node, quirk`, model)
	if err != nil {
		return nil, fmt.Errorf("quirks of model %s: %w", model, err)
	}
	return out, nil
}

// QuirkDeviceOnlyBMC: the node's IPMI BMC keeps a written boot device but
// reads the valid bit back clear (OpenIPMI ipmi_sim, some old BMCs); the
// node needs bmc.options.verify: device-only. Learned by `reprov bootdev`
// (and the reinstall engine, when it records it), shown by `reprov plan`.
const QuirkDeviceOnlyBMC = "device-only-bmc"

// QuirkFilter selects learned quirks: every one whose fields match the
// non-empty fields of the filter; the zero filter selects all.
type QuirkFilter struct {
	Node  string
	Model string
	Quirk string
}

func (f QuirkFilter) where() (string, []any) {
	var conds []string
	var args []any
	for _, c := range []struct{ col, v string }{{"node", f.Node}, {"model", f.Model}, {"quirk", f.Quirk}} {
		if c.v != "" {
			conds = append(conds, c.col+" = ?")
			args = append(args, c.v)
		}
	}
	if len(conds) == 0 {
		return "", nil
	}
	return "WHERE " + strings.Join(conds, " AND "), args
}

// ListQuirks returns the learned quirks f selects, by node then name.
func (s *Store) ListQuirks(ctx context.Context, f QuirkFilter) ([]Quirk, error) {
	where, args := f.where()
	out, err := s.listQuirks(ctx, where+` ORDER BY node, quirk`, args...)
	if err != nil {
		return nil, fmt.Errorf("list quirks: %w", err)
	}
	return out, nil
}

// ForgetQuirks deletes the learned quirks f selects and returns them, so
// that the caller can say what was forgotten. The zero filter is refused:
// forgetting every quirk of every node takes an explicit model or node.
func (s *Store) ForgetQuirks(ctx context.Context, f QuirkFilter) ([]Quirk, error) {
	if f == (QuirkFilter{}) {
		return nil, errors.New("forget quirks: need a node, a model or a quirk")
	}
	where, args := f.where()
	gone, err := s.queryQuirks(ctx, `DELETE FROM reprov_quirk `+where+` RETURNING `+quirkColumns, args...)
	if err != nil {
		return nil, fmt.Errorf("forget quirks: %w", err)
	}
	return gone, nil
}

const quirkColumns = `node, quirk, model, evidence, run_id, learned_at`

func (s *Store) listQuirks(ctx context.Context, where string, args ...any) ([]Quirk, error) {
	return s.queryQuirks(ctx, `SELECT `+quirkColumns+` FROM reprov_quirk `+where, args...)
}

// queryQuirks runs a statement that returns quirkColumns.
func (s *Store) queryQuirks(ctx context.Context, query string, args ...any) ([]Quirk, error) {
	rs, err := s.q().query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []Quirk
	for rs.Next() {
		var (
			q   Quirk
			ev  sql.NullString
			run sql.NullInt64
			at  int64
		)
		if err := rs.Scan(&q.Node, &q.Quirk, &q.Model, &ev, &run, &at); err != nil {
			return nil, err
		}
		if ev.Valid {
			q.Evidence = json.RawMessage(ev.String)
		}
		q.RunID = run.Int64
		q.Learned = time.UnixMicro(at).UTC()
		out = append(out, q)
	}
	return out, rs.Err()
}

func isSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// SaveSectorRecord records boot sectors saved on disk before a wipe and
// returns the stored record (ID and time filled in).
func (s *Store) SaveSectorRecord(ctx context.Context, r SectorRecord) (SectorRecord, error) {
	if r.Node == "" || r.Path == "" || r.RunID == 0 {
		return SectorRecord{}, errors.New("save sector record: need node, run and path")
	}
	if !isSHA256Hex(r.SHA256) {
		return SectorRecord{}, fmt.Errorf("save sector record of node %s: sha256 must be 64 lower-case hex digits", r.Node)
	}
	if r.Saved.IsZero() {
		r.Saved = time.Now()
	}
	var job any
	if r.JobID != 0 {
		job = r.JobID
	}
	err := s.q().queryRow(ctx, `INSERT INTO reprov_sector (node, run_id, job_id, device, path, sha256, size, saved_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		r.Node, r.RunID, job, r.Device, r.Path, r.SHA256, r.Size, r.Saved.UnixMicro()).Scan(&r.ID)
	if err != nil {
		return SectorRecord{}, fmt.Errorf("save sector record of node %s: %w", r.Node, err)
	}
	r.Saved = time.UnixMicro(r.Saved.UnixMicro()).UTC()
	return r, nil
}

// SectorRecords returns the node's saved-sector records, newest first; runID
// 0 means every run.
func (s *Store) SectorRecords(ctx context.Context, node string, runID int64) ([]SectorRecord, error) {
	q := `SELECT id, node, run_id, job_id, device, path, sha256, size, saved_at FROM reprov_sector WHERE node = ?`
	args := []any{node}
	if runID != 0 {
		q += ` AND run_id = ?`
		args = append(args, runID)
	}
	rs, err := s.q().query(ctx, q+` ORDER BY id DESC`, args...)
	if err != nil {
		return nil, fmt.Errorf("sector records of node %s: %w", node, err)
	}
	defer rs.Close()
	var out []SectorRecord
	for rs.Next() {
		var (
			r   SectorRecord
			job sql.NullInt64
			at  int64
		)
		if err := rs.Scan(&r.ID, &r.Node, &r.RunID, &job, &r.Device, &r.Path, &r.SHA256, &r.Size, &at); err != nil {
			return nil, fmt.Errorf("sector records of node %s: %w", node, err)
		}
		r.JobID = job.Int64
		r.Saved = time.UnixMicro(at).UTC()
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("sector records of node %s: %w", node, err)
	}
	return out, nil
}
