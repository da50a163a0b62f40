package agent_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/reprov/reprov/agent"
	"github.com/reprov/reprov/agent/audit"
	"github.com/reprov/reprov/agent/fleet"
	"github.com/reprov/reprov/agent/store"
	labfleet "github.com/reprov/reprov/lab/fleet"
	"github.com/reprov/reprov/playbooks"
)

// TestSlowStoreDoesNotFailAHealthyNode holds the store's write lock from
// another connection — as another process on the same SQLite file does,
// or as a store with hundreds of nodes in flight on one connection makes
// every call wait — for 12 s: longer than SQLite's 5 s busy timeout and
// than the 10 s the engine used to give arming the landing. It does so at
// each point of a healthy node's path where a store call must answer:
// right after the precheck's intent (its quirks read and its outcome),
// right after the power step's intent (arming the landing, in a power step
// of 10 s), right after the power action (its outcome, the next intent),
// and right after the node landed (the wait's outcome, the job's end). In
// each case the node waits for the store and lands on the out-of-band
// path, with one power action: a slow store delays a node, it never fails
// it (before, each of these failed the node with "job store error").
func TestSlowStoreDoesNotFailAHealthyNode(t *testing.T) {
	const hold = 12 * time.Second
	// The lab's timings, but a wait for the landing that outlasts the hold
	// (the landing endpoint cannot record a landing while the store is held).
	const timeouts = "timeouts: {precheck: 3s, oob_boot: 10s, power: 10s, wait_landing: 60s, inband: 20s, reboot: 4s}\n"
	pbs, err := playbooks.LoadFS(fstest.MapFS{"default.yaml": {Data: []byte("name: default\nextends: default\n" + timeouts)}})
	if err != nil {
		t.Fatal(err)
	}
	for _, at := range []struct{ step, phase string }{
		{agent.StepPrecheck, "intent"},
		{agent.StepPower, "intent"},
		{agent.StepPower, "act"},
		{agent.StepWaitLanding, "act"},
	} {
		t.Run(at.step+"/"+at.phase, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, rigOpts{mix: []labfleet.ModelCount{{Model: labfleet.ModelIPMI, Count: 1}}})
			db := rawStore(t, r.stateDir)
			var (
				once     sync.Once
				released = make(chan struct{})
			)
			e := r.engine(func(cfg *agent.Config) {
				cfg.Playbooks = pbs
				cfg.LeaseTTL = 30 * time.Second
				agent.SetCrashPoint(cfg, func(step, phase string) bool {
					if step == at.step && phase == at.phase {
						once.Do(func() { holdWriteLock(t, db, hold, released) })
					}
					return false
				})
			})
			rep, err := e.Reinstall(ctxT(t, 3*time.Minute), r.nodes, agent.RunOptions{Selection: "test"})
			if err != nil {
				t.Fatal(err)
			}
			select {
			case <-released:
			default:
				t.Fatalf("the store was never held at %s/%s; steps:\n%s", at.step, at.phase, r.events)
			}
			res := rep.Results[0]
			nr := reportOf(t, rep)[res.Node]
			if res.Status != fleet.StatusOK || nr.State != store.JobLanded || nr.Path != "oob" || nr.Escalated {
				t.Fatalf("the store held for %s at %s/%s: %s %s (path %s, escalated %v): %s; steps:\n%s",
					hold, at.step, at.phase, res.Status, nr.State, nr.Path, nr.Escalated, res.Error, r.events)
			}
			if steps := stepNames(t, r.st, nr.JobID); steps != "precheck oob_boot power wait_landing" {
				t.Errorf("steps %q: want each step once", steps)
			}
			powers := 0
			for _, rec := range checkAudit(t, filepath.Join(r.stateDir, "audit.jsonl")) {
				if rec.Phase == audit.PhaseIntent && strings.HasPrefix(rec.Action, agent.ActionPowerPrefix) {
					powers++
				}
			}
			if powers != 1 {
				t.Errorf("%d power actions: want one", powers)
			}
		})
	}
}

// holdWriteLock takes the store's write lock on a connection of its own
// (waiting for it as long as SQLite's busy timeout allows) and lets it go
// after hold, closing released then.
func holdWriteLock(t *testing.T, db *sql.DB, hold time.Duration, released chan<- struct{}) {
	t.Helper()
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Errorf("hold the store: %v", err)
		close(released)
		return
	}
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Errorf("hold the store: %v", err)
		conn.Close()
		close(released)
		return
	}
	time.AfterFunc(hold, func() {
		defer close(released)
		defer conn.Close()
		if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
			t.Errorf("release the store: %v", err)
		}
	})
}
