package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/reprov/reprov/agent/audit"
	"github.com/reprov/reprov/agent/audit/auditstore"
	"github.com/reprov/reprov/agent/store"
)

// auditJSON runs `reprov audit ARGS -o json` and decodes the trail.
func auditJSON(t *testing.T, run func(args ...string) (int, string, string), args ...string) []map[string]any {
	t.Helper()
	code, out, errOut := run(append([]string{"audit", "-o", "json"}, args...)...)
	if code != exitOK {
		t.Fatalf("reprov audit: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	var recs []map[string]any
	if err := json.Unmarshal([]byte(out), &recs); err != nil {
		t.Fatalf("reprov audit -o json: %v\n%s", err, out)
	}
	return recs
}

func TestAuditShowsPowerCycleTrail(t *testing.T) {
	f := newBMCFleet(t)
	// On first, so that every cycle is carried out (a BMC refuses to cycle
	// a machine that is off: that is recorded as skipped, then an on).
	if code, out, errOut := f.run("power", "on", "web-01", "web-02", "db-01"); code != exitOK {
		t.Fatalf("power on: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if code, out, errOut := f.run("power", "cycle", "web-01", "web-02", "db-01", "--yes"); code != exitOK {
		t.Fatalf("power cycle: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	recs := cycles(auditJSON(t, f.run))
	type pair struct{ intent, outcome map[string]any }
	byNode := map[string]*pair{}
	for _, r := range recs {
		for _, k := range []string{"at", "record_id", "phase", "node", "action", "controller"} {
			if r[k] == nil || r[k] == "" {
				t.Errorf("record %v has no %s", r, k)
			}
		}
		if at, _ := r["at"].(string); strings.HasPrefix(at, "0001-01-01") {
			t.Errorf("record %v has a zero time", r)
		}
		for k := range r {
			if k != strings.ToLower(k) {
				t.Errorf("field %q is not snake_case", k)
			}
		}
		n, _ := r["node"].(string)
		p := byNode[n]
		if p == nil {
			p = &pair{}
			byNode[n] = p
		}
		switch r["phase"] {
		case audit.PhaseIntent:
			p.intent = r
		case audit.PhaseOutcome:
			if p.intent == nil {
				t.Errorf("%s: outcome before its intent", n)
			}
			p.outcome = r
		}
	}
	if len(recs) != 6 || len(byNode) != 3 {
		t.Fatalf("trail of %d records for %d nodes, want 6 for 3:\n%v", len(recs), len(byNode), recs)
	}
	for n, p := range byNode {
		if p.intent == nil || p.outcome == nil || p.intent["record_id"] != p.outcome["record_id"] ||
			p.intent["action"] != "power cycle" || p.outcome["result"] != audit.ResultOK ||
			p.intent["controller"] != audit.DefaultController() {
			t.Errorf("%s: intent %v outcome %v; want a settled power cycle by %s", n, p.intent, p.outcome, audit.DefaultController())
		}
	}
	// The selection narrows the trail; the table names what happened.
	if got := cycles(auditJSON(t, f.run, "web-02")); len(got) != 2 || got[0]["node"] != "web-02" {
		t.Errorf("audit web-02: %v", got)
	}
	code, out, _ := f.run("audit", "db-01")
	if code != exitOK || !strings.Contains(out, "CONTROLLER") || strings.Count(out, "power cycle") != 2 || !strings.Contains(out, audit.DefaultController()) {
		t.Errorf("audit db-01 table (exit %d):\n%s", code, out)
	}
	f.noSecrets(t, out)
}

// cycles keeps the power cycle records of a trail.
func cycles(recs []map[string]any) []map[string]any {
	var out []map[string]any
	for _, r := range recs {
		if r["action"] == "power cycle" {
			out = append(out, r)
		}
	}
	return out
}

// TestAuditOneTrailAcrossControllers: two controllers' audit logs (two
// files, two store handles) write to one store; reprov audit shows one
// ordered trail with both.
func TestAuditOneTrailAcrossControllers(t *testing.T) {
	c := newCLI(t)
	ctx := context.Background()
	url := "sqlite://" + filepath.Join(c.env["REPROV_STATE_DIR"], "reprov.db")
	var logs []*audit.Log
	for i, ctl := range []string{"ctl-a/101", "ctl-b/202"} {
		st, err := store.Open(ctx, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		l, err := audit.Open(filepath.Join(c.dir, fmt.Sprintf("audit-%d.jsonl", i)), "", audit.Options{Sink: auditstore.Sink(st), Controller: ctl})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		logs = append(logs, l)
	}
	act := func(l *audit.Log, node, action string, job int64) {
		t.Helper()
		if err := l.Do(ctx, audit.Entry{Node: node, Action: action, Job: job},
			func(context.Context) (map[string]any, error) { return nil, nil }); err != nil {
			t.Fatal(err)
		}
	}
	// Controller a starts node-1, dies; controller b takes over.
	act(logs[0], "node-1", "set boot override", 7)
	act(logs[0], "node-2", "set boot override", 8)
	act(logs[1], "node-1", "power cycle", 7)

	got := auditJSON(t, c.run, "--job", "7")
	var trail []string
	for _, r := range got {
		trail = append(trail, fmt.Sprintf("%s %s %s %s", r["node"], r["action"], r["phase"], r["controller"]))
	}
	want := []string{
		"node-1 set boot override intent ctl-a/101",
		"node-1 set boot override outcome ctl-a/101",
		"node-1 power cycle intent ctl-b/202",
		"node-1 power cycle outcome ctl-b/202",
	}
	if strings.Join(trail, "\n") != strings.Join(want, "\n") {
		t.Errorf("trail of job 7:\n%s\nwant:\n%s", strings.Join(trail, "\n"), strings.Join(want, "\n"))
	}
	if all := auditJSON(t, c.run); len(all) != 6 {
		t.Errorf("whole trail has %d records, want 6", len(all))
	}
	if code, _, errOut := c.run("audit", "--limit", "-1"); code != exitUsage {
		t.Errorf("--limit -1: exit %d, want %d\n%s", code, exitUsage, errOut)
	}
}
