package web

import (
	"context"
	"errors"
	"slices"

	"github.com/reprov/reprov/agent/store"
)

// storeAudit reads node's latest limit records of the store's audit trail,
// newest first.
func storeAudit(ctx context.Context, st *store.Store, node string, limit int) ([]AuditEntry, error) {
	if limit <= 0 {
		return nil, errors.New("audit trail: the page needs a limit")
	}
	recs, err := st.Audit(ctx, store.AuditFilter{Nodes: []string{node}, Limit: limit})
	if err != nil {
		return nil, err
	}
	slices.Reverse(recs) // the store answers oldest first
	out := make([]AuditEntry, len(recs))
	for i, r := range recs {
		out[i] = AuditEntry{Time: r.At, Phase: r.Phase, JobID: r.JobID, Action: r.Action, Result: r.Result,
			Error: r.Error, Detail: string(r.Detail), Controller: r.Controller}
	}
	return out, nil
}
