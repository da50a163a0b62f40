package store_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/reprov/reprov/agent/store"
)

func testAuditTrail(t *testing.T, _ store.Dialect, fresh newURL) {
	ctx := ctxT(t)
	url := fresh(t)
	a, b := open(t, url), open(t, url) // two controllers on one store
	if v := store.SchemaVersion(); v < 2 {
		t.Fatalf("schema version %d, want the audit migration (2)", v)
	}
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	rec := func(at time.Duration, id, phase, node, ctl string) store.AuditRecord {
		r := store.AuditRecord{At: t0.Add(at), RecordID: id, Phase: phase, Node: node, Action: "power cycle",
			Controller: ctl, Run: "7", JobID: 42}
		if phase == "outcome" {
			r.Result = "ok"
		} else {
			r.Detail = json.RawMessage(`{"bmc":"127.0.0.1:623"}`)
		}
		return r
	}
	if err := a.AppendAudit(ctx, []store.AuditRecord{rec(0, "i1", "intent", "n1", "ctl-a/1"), rec(1*time.Millisecond, "i2", "intent", "n2", "ctl-a/1")}); err != nil {
		t.Fatal(err)
	}
	if err := b.AppendAudit(ctx, []store.AuditRecord{rec(2*time.Millisecond, "i3", "intent", "n1", "ctl-b/2")}); err != nil {
		t.Fatal(err)
	}
	ad := rec(3*time.Millisecond, "i1", "outcome", "n1", "ctl-a/1")
	ad.JobID, ad.Run = 0, ""
	if err := a.AppendAudit(ctx, []store.AuditRecord{ad}); err != nil {
		t.Fatal(err)
	}

	trail := func(recs []store.AuditRecord) string {
		var s []string
		for _, r := range recs {
			s = append(s, fmt.Sprintf("%s/%s/%s/%s", r.Node, r.RecordID, r.Phase, r.Controller))
		}
		return strings.Join(s, " ")
	}
	for _, tc := range []struct {
		name string
		f    store.AuditFilter
		want string
	}{
		{"all, oldest first, both controllers", store.AuditFilter{},
			"n1/i1/intent/ctl-a/1 n2/i2/intent/ctl-a/1 n1/i3/intent/ctl-b/2 n1/i1/outcome/ctl-a/1"},
		{"one node", store.AuditFilter{Nodes: []string{"n1"}},
			"n1/i1/intent/ctl-a/1 n1/i3/intent/ctl-b/2 n1/i1/outcome/ctl-a/1"},
		{"run", store.AuditFilter{Run: "7"},
			"n1/i1/intent/ctl-a/1 n2/i2/intent/ctl-a/1 n1/i3/intent/ctl-b/2"},
		{"job and node", store.AuditFilter{JobID: 42, Nodes: []string{"n1", "n9"}},
			"n1/i1/intent/ctl-a/1 n1/i3/intent/ctl-b/2"},
		{"newest two", store.AuditFilter{Limit: 2},
			"n1/i3/intent/ctl-b/2 n1/i1/outcome/ctl-a/1"},
		{"no match", store.AuditFilter{Nodes: []string{"n9"}}, ""},
	} {
		got, err := b.Audit(ctx, tc.f)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if trail(got) != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, trail(got), tc.want)
		}
	}

	// Round trip of every field.
	got, err := a.Audit(ctx, store.AuditFilter{Nodes: []string{"n2"}})
	if err != nil || len(got) != 1 {
		t.Fatalf("Audit(n2) = %+v, %v", got, err)
	}
	g := got[0]
	if g.ID == 0 || !g.At.Equal(t0.Add(time.Millisecond)) || g.Action != "power cycle" || g.JobID != 42 || g.Run != "7" {
		t.Errorf("record %+v", g)
	}
	jsonEqual(t, g.Detail, `{"bmc":"127.0.0.1:623"}`)

	// A selection longer than the query's parameter list is filtered too.
	many := []string{"n2"}
	for i := range 600 {
		many = append(many, fmt.Sprintf("x%d", i))
	}
	if got, err := a.Audit(ctx, store.AuditFilter{Nodes: many, Limit: 5}); err != nil || trail(got) != "n2/i2/intent/ctl-a/1" {
		t.Errorf("Audit(601 nodes) = %s, %v", trail(got), err)
	}

	// One batch is one transaction: a bad record leaves nothing behind.
	bad := []store.AuditRecord{rec(5*time.Millisecond, "i4", "intent", "n3", "ctl-a/1"), {RecordID: "i5", Phase: "intent", Node: "n3", Action: "x", Detail: json.RawMessage(`{`)}}
	if err := a.AppendAudit(ctx, bad); err == nil {
		t.Fatal("AppendAudit accepted invalid detail JSON")
	}
	if got, err := a.Audit(ctx, store.AuditFilter{Nodes: []string{"n3"}}); err != nil || len(got) != 0 {
		t.Errorf("after a failed batch: %s, %v; want nothing", trail(got), err)
	}
	// A batch of more records than one INSERT carries: all of them, in
	// order, every field kept.
	var bulk []store.AuditRecord
	for i := range 450 {
		r := rec(time.Second, fmt.Sprintf("b%03d", i), "intent", "bulk", "ctl-a/1")
		if i%2 == 1 {
			r.Phase, r.Result, r.Error, r.Detail, r.JobID = "outcome", "failed", "no", nil, 0
		}
		bulk = append(bulk, r)
	}
	if err := a.AppendAudit(ctx, bulk); err != nil {
		t.Fatal(err)
	}
	got, err = b.Audit(ctx, store.AuditFilter{Nodes: []string{"bulk"}})
	if err != nil || len(got) != len(bulk) {
		t.Fatalf("Audit(bulk) = %d records, %v; want %d", len(got), err, len(bulk))
	}
	for i, g := range got {
		w := bulk[i]
		if g.RecordID != w.RecordID || g.Phase != w.Phase || g.Result != w.Result || g.Error != w.Error || g.JobID != w.JobID ||
			(w.Detail == nil) != (g.Detail == nil) || !g.At.Equal(w.At) {
			t.Fatalf("bulk record %d: %+v, want %+v", i, g, w)
		}
	}
}
