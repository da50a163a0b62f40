package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// auditMigration is schema version 2: the shared audit trail. Every
// controller's audit log mirrors its records here, so `reprov audit` shows
// one trail across controllers (docs/architecture.md, "Audit").
func auditMigration() migration {
	return migration{
		version: 2,
		name:    "audit",
		stmts: []string{
			// One audit record: an intent before an act, or its outcome
			// (same record_id). job_id is the store's node job (NULL for
			// ad-hoc commands); no foreign key, so that a record is never
			// refused for the job it names.
			`CREATE TABLE IF NOT EXISTS reprov_audit (
			id         {{id}},
			at         BIGINT NOT NULL,
			record_id  TEXT   NOT NULL,
			phase      TEXT   NOT NULL CHECK (phase IN ('intent', 'outcome')),
			run        TEXT   NOT NULL DEFAULT '',
			node       TEXT   NOT NULL,
			action     TEXT   NOT NULL,
			job_id     BIGINT,
			controller TEXT   NOT NULL DEFAULT '',
			result     TEXT   NOT NULL DEFAULT '',
			error      TEXT   NOT NULL DEFAULT '',
			detail     TEXT
		)`,
			`CREATE INDEX IF NOT EXISTS reprov_audit_node ON reprov_audit (node, id)`,
			`CREATE INDEX IF NOT EXISTS reprov_audit_job ON reprov_audit (job_id)`,
			`CREATE INDEX IF NOT EXISTS reprov_audit_run ON reprov_audit (run)`,
		},
	}
}

// AuditRecord is one record of the shared audit trail, as a controller's
// audit log wrote it (see agent/audit.Record). Detail never holds a secret.
type AuditRecord struct {
	// ID is the store's sequence number (set by Audit; ignored by
	// AppendAudit).
	ID int64 `json:"id"`
	// At is when the controller wrote the record (microsecond precision).
	At time.Time `json:"at"`
	// RecordID is shared by an intent and its outcome.
	RecordID   string          `json:"record_id"`
	Phase      string          `json:"phase"` // intent or outcome
	Run        string          `json:"run,omitempty"`
	Node       string          `json:"node"`
	Action     string          `json:"action"`
	JobID      int64           `json:"job_id,omitempty"`
	Controller string          `json:"controller,omitempty"`
	Result     string          `json:"result,omitempty"` // outcome: ok, failed, skipped
	Error      string          `json:"error,omitempty"`
	Detail     json.RawMessage `json:"detail,omitempty"`
}

// AuditFilter selects audit records; zero fields select everything.
type AuditFilter struct {
	Nodes []string // only these nodes' records
	Run   string   // only this run's
	JobID int64    // only this node job's
	// Limit keeps the newest Limit records (0: all).
	Limit int
}

// auditChunk is the most records one INSERT of AppendAudit carries (11
// parameters each: far below SQLite's and PostgreSQL's limits).
const auditChunk = 200

// maxNodeParams is the longest node list put in a query as parameters;
// longer selections are filtered after reading.
const maxNodeParams = 500

// AppendAudit appends recs to the audit trail in one transaction: all of
// them or none.
func (s *Store) AppendAudit(ctx context.Context, recs []AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	details := make([]any, len(recs))
	for i, r := range recs {
		if r.RecordID == "" || r.Node == "" || r.Action == "" || (r.Phase != "intent" && r.Phase != "outcome") {
			return fmt.Errorf("append audit: record %q of node %q: need a record id, node, action and phase intent or outcome",
				r.RecordID, r.Node)
		}
		detail, err := jsonArg(r.Detail, "audit detail")
		if err != nil {
			return fmt.Errorf("append audit: record %s of node %s: %w", r.RecordID, r.Node, err)
		}
		details[i] = detail
	}
	// One INSERT of many rows per chunk: one statement to parse and run
	// instead of one per record (a 64-node fan-out hands over batches of
	// dozens of records).
	const cols = 11
	args := make([]any, 0, min(len(recs), auditChunk)*cols)
	err := s.inTx(ctx, func(q querier, _ any) error {
		for start := 0; start < len(recs); start += auditChunk {
			chunk := recs[start:min(start+auditChunk, len(recs))]
			args = args[:0]
			for i, r := range chunk {
				detail := details[start+i]
				var job any
				if r.JobID != 0 {
					job = r.JobID
				}
				at := r.At
				if at.IsZero() {
					at = time.Now()
				}
				args = append(args, at.UnixMicro(), r.RecordID, r.Phase, r.Run, r.Node, r.Action, job, r.Controller, r.Result, r.Error, detail)
			}
			stmt := `INSERT INTO reprov_audit (at, record_id, phase, run, node, action, job_id, controller, result, error, detail) VALUES ` +
				strings.Repeat("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?), ", len(chunk)-1) + "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
			if _, err := q.exec(ctx, stmt, args...); err != nil {
				return fmt.Errorf("records %s (node %s) to %s (node %s): %w",
					chunk[0].RecordID, chunk[0].Node, chunk[len(chunk)-1].RecordID, chunk[len(chunk)-1].Node, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("append %d audit records: %w", len(recs), err)
	}
	return nil
}

// Audit returns the audit records f selects, oldest first (by time, then
// by the order the store received them): one trail across every
// controller that wrote to the store.
func (s *Store) Audit(ctx context.Context, f AuditFilter) ([]AuditRecord, error) {
	if f.Limit < 0 {
		return nil, errors.New("audit records: negative limit")
	}
	var where []string
	var args []any
	filterNodes := len(f.Nodes) > maxNodeParams
	if len(f.Nodes) > 0 && !filterNodes {
		where = append(where, "node IN (?"+strings.Repeat(", ?", len(f.Nodes)-1)+")")
		for _, n := range f.Nodes {
			args = append(args, n)
		}
	}
	if f.Run != "" {
		where = append(where, "run = ?")
		args = append(args, f.Run)
	}
	if f.JobID != 0 {
		where = append(where, "job_id = ?")
		args = append(args, f.JobID)
	}
	q := `SELECT id, at, record_id, phase, run, node, action, job_id, controller, result, error, detail FROM reprov_audit`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY at DESC, id DESC"
	if f.Limit > 0 && !filterNodes {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rs, err := s.q().query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("audit records: %w", err)
	}
	defer rs.Close()
	var want map[string]bool
	if filterNodes {
		want = make(map[string]bool, len(f.Nodes))
		for _, n := range f.Nodes {
			want[n] = true
		}
	}
	var out []AuditRecord
	for rs.Next() {
		var (
			r      AuditRecord
			at     int64
			job    sql.NullInt64
			detail sql.NullString
		)
		if err := rs.Scan(&r.ID, &at, &r.RecordID, &r.Phase, &r.Run, &r.Node, &r.Action, &job, &r.Controller,
			&r.Result, &r.Error, &detail); err != nil {
			return nil, fmt.Errorf("audit records: %w", err)
		}
		if want != nil && !want[r.Node] {
			continue
		}
		r.At = time.UnixMicro(at).UTC()
		r.JobID = job.Int64
		if detail.Valid {
			r.Detail = json.RawMessage(detail.String)
		}
		out = append(out, r)
		if f.Limit > 0 && len(out) == f.Limit {
			break
		}
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("audit records: %w", err)
	}
	slices.Reverse(out)
	return out, nil
}
