package window

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/reprov/reprov/agent/store"
)

// Create validates a window and records it in the store.
func Create(ctx context.Context, st *store.Store, sp Spec, by string) (store.WindowRecord, error) {
	if err := sp.Validate(); err != nil {
		return store.WindowRecord{}, err
	}
	b, err := json.Marshal(sp)
	if err != nil {
		return store.WindowRecord{}, err
	}
	return st.CreateWindow(ctx, store.WindowRecord{Name: sp.Name, Spec: b, CreatedBy: by})
}

// Status is a window as `reprov window show` and the API show it: its
// spec, whether it is paused, its next start and its latest occurrence.
type Status struct {
	Name        string            `json:"name"`
	Spec        Spec              `json:"spec"`
	Created     time.Time         `json:"created"`
	CreatedBy   string            `json:"created_by,omitempty"`
	Paused      time.Time         `json:"paused"`
	PausedBy    string            `json:"paused_by,omitempty"`
	PauseReason string            `json:"pause_reason,omitempty"`
	Next        time.Time         `json:"next"` // zero: none
	Last        *OccurrenceReport `json:"last,omitempty"`
}

// OccurrenceReport is an occurrence with its nodes counted by outcome
// and, on request, listed.
type OccurrenceReport struct {
	store.Occurrence
	// Late is how long after its start time a controller started it.
	Late string `json:"late,omitempty"`
	// Counts: landed, failed, not_started, overran, in_flight, pending,
	// cancelled, interrupted.
	Counts map[string]int     `json:"counts"`
	Nodes  []store.WindowNode `json:"nodes,omitempty"`
}

// Summary is the counts in one line, e.g. "38 landed, 2 failed".
func (r OccurrenceReport) Summary() string {
	out := ""
	for _, k := range []string{"landed", "failed", "not_started", "overran", "in_flight", "pending", "cancelled", "interrupted"} {
		if n := r.Counts[k]; n > 0 {
			if out != "" {
				out += ", "
			}
			out += fmt.Sprintf("%d %s", n, strings.ReplaceAll(k, "_", " "))
		}
	}
	return out
}

// Describe is a window's Status at now.
func Describe(ctx context.Context, st *store.Store, rec store.WindowRecord, now time.Time, lateAfter time.Duration) (Status, error) {
	sp, err := ParseSpec(rec)
	if err != nil {
		return Status{}, err
	}
	s := Status{Name: rec.Name, Spec: sp, Created: rec.Created, CreatedBy: rec.CreatedBy, Paused: rec.Paused,
		PausedBy: rec.PausedBy, PauseReason: rec.PauseReason, Next: sp.Next(now)}
	occs, err := st.Occurrences(ctx, rec.Name, 1)
	if err != nil {
		return Status{}, err
	}
	if len(occs) > 0 {
		r, err := Report(ctx, st, occs[0], false, lateAfter)
		if err != nil {
			return Status{}, err
		}
		s.Last = &r
	}
	return s, nil
}

// Report is an occurrence's report (its nodes listed when withNodes).
func Report(ctx context.Context, st *store.Store, o store.Occurrence, withNodes bool, lateAfter time.Duration) (OccurrenceReport, error) {
	nodes, err := st.OccurrenceNodes(ctx, o.ID)
	if err != nil {
		return OccurrenceReport{}, err
	}
	r := OccurrenceReport{Occurrence: o, Counts: map[string]int{}}
	if lateAfter <= 0 {
		lateAfter = DefaultLateAfter
	}
	if !o.Started.IsZero() && o.Started.Sub(o.Start) > lateAfter {
		r.Late = o.Started.Sub(o.Start).Round(time.Second).String()
	}
	for _, n := range nodes {
		switch n.State {
		case store.WindowNodeState(store.JobQueued), store.WindowNodeState(store.JobRunning):
			r.Counts["in_flight"]++
		default:
			r.Counts[string(n.State)]++
		}
		if n.Overran {
			r.Counts["overran"]++
		}
	}
	if withNodes {
		r.Nodes = nodes
	}
	return r, nil
}
