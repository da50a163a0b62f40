// Package auditstore connects an audit log to the job store: the store's
// shared trail is the log's Sink. It lives apart from both so that neither
// agent/audit nor agent/store imports the other.
package auditstore

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/reprov/reprov/agent/audit"
	"github.com/reprov/reprov/agent/store"
)

// Appender is what the sink needs of the store (*store.Store has it).
type Appender interface {
	AppendAudit(ctx context.Context, recs []store.AuditRecord) error
}

// Sink returns an audit.Sink that appends every batch to st's audit trail,
// in one transaction.
func Sink(st Appender) audit.Sink {
	return audit.SinkFunc(func(ctx context.Context, recs []audit.Record) error {
		out := make([]store.AuditRecord, 0, len(recs))
		for _, r := range recs {
			sr, err := Convert(r)
			if err != nil {
				return err
			}
			out = append(out, sr)
		}
		return st.AppendAudit(ctx, out)
	})
}

// Convert maps an audit record to the store's form.
func Convert(r audit.Record) (store.AuditRecord, error) {
	sr := store.AuditRecord{At: r.Time, RecordID: r.ID, Phase: r.Phase, Run: r.Run, Node: r.Node, Action: r.Action,
		JobID: r.Job, Controller: r.Controller, Result: r.Result, Error: r.Error}
	if len(r.Detail) > 0 {
		b, err := json.Marshal(r.Detail)
		if err != nil {
			return store.AuditRecord{}, fmt.Errorf("audit record %s of node %s: detail: %w", r.ID, r.Node, err)
		}
		sr.Detail = b
	}
	return sr, nil
}
