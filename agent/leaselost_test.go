package agent_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reprov/reprov/agent"
	"github.com/reprov/reprov/agent/audit"
	"github.com/reprov/reprov/agent/fleet"
	"github.com/reprov/reprov/agent/inband"
	"github.com/reprov/reprov/agent/store"
	labfleet "github.com/reprov/reprov/lab/fleet"
)

// TestLeaseLostAtEveryStepBoundary takes the lease away from a live worker
// at every boundary of the step table — right after a step's intent, and
// right after its act before its outcome — on an out-of-band node and on an
// in-band-first DL360 G7: the store hands the job to another owner whose
// lease has already run out (a controller that took it and died). The
// worker goes on running, renewing, fencing; it must notice and do nothing
// more to the node. Each case asserts 0 wrong writes: no act (audit intent)
// between the loss and the takeover by a live worker, no step intent from
// the worker that lost the lease after the loss, one power action for the
// out-of-band node and one wipe for the in-band one (never two), and the
// node handed over: the live worker settles what it finds and the node
// lands under the same job.
func TestLeaseLostAtEveryStepBoundary(t *testing.T) {
	type loss struct {
		model labfleet.Model
		step  string
		phase string
	}
	var cases []loss
	for _, s := range []string{agent.StepPrecheck, agent.StepOOBBoot, agent.StepPower, agent.StepWaitLanding} {
		cases = append(cases, loss{labfleet.ModelIPMI, s, "intent"}, loss{labfleet.ModelIPMI, s, "act"})
	}
	for _, s := range []string{agent.StepPrecheck, agent.StepInband, agent.StepWaitLanding} {
		cases = append(cases, loss{labfleet.ModelDL360G7, s, "intent"}, loss{labfleet.ModelDL360G7, s, "act"})
	}
	for _, c := range cases {
		t.Run(string(c.model)+"/"+c.step+"/"+c.phase, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, rigOpts{mix: []labfleet.ModelCount{{Model: c.model, Count: 1}}})
			n := r.lab.Nodes()[0]
			node := r.nodes[0]
			if c.model == labfleet.ModelDL360G7 {
				node.Playbook = "hp-dl360-g7" // in-band first
				r.nodes[0] = node
			}
			db := rawStore(t, r.stateDir)
			var (
				once   sync.Once
				lostAt time.Time
				loser  string
				jobID  int64
			)
			e := r.engine(func(cfg *agent.Config) {
				cfg.Inventory = r.nodes
				cfg.LeaseTTL = time.Second
				agent.SetCrashPoint(cfg, func(step, phase string) bool {
					if step != c.step || phase != c.phase {
						return false
					}
					once.Do(func() {
						// The store takes the lease away: another owner,
						// whose lease has already run out.
						ctx := context.Background()
						j, err := r.st.ActiveJob(ctx, node.Name)
						if err != nil {
							t.Errorf("the job of %s: %v", node.Name, err)
							return
						}
						past := time.Now().Add(-time.Second).UnixMicro()
						if _, err := db.ExecContext(ctx, `UPDATE reprov_node_job SET owner = 'another-controller/job-0', lease_until = ? WHERE id = ?`, past, j.ID); err != nil {
							t.Errorf("take the lease away: %v", err)
							return
						}
						lostAt, loser, jobID = time.Now(), j.Owner, j.ID
					})
					return false // the worker lives on
				})
			})
			ctx := ctxT(t, 2*time.Minute)
			rep, err := e.Reinstall(ctx, r.nodes, agent.RunOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if t.Failed() {
					t.Logf("events:\n%s", r.events)
				}
			}()
			if lostAt.IsZero() {
				t.Fatalf("the boundary %s/%s was never reached", c.step, c.phase)
			}
			res := rep.Results[0]
			nr := res.Detail.(*agent.NodeReport)
			if res.Status != fleet.StatusOK || nr.State != store.JobLanded || nr.JobID != jobID {
				t.Fatalf("after the lease was lost: %s %+v (%s), want job %d handed over and landed", res.Status, nr, res.Error, jobID)
			}

			// Who recorded what: the loser no intent after the loss; the
			// first intent of a live owner marks the takeover.
			steps, err := r.st.Steps(ctx, jobID)
			if err != nil {
				t.Fatal(err)
			}
			var takeover time.Time
			for _, s := range steps {
				if s.Phase != store.PhaseIntent {
					continue
				}
				if s.Owner == loser && s.Time.After(lostAt) {
					t.Errorf("the worker that lost the lease recorded intent %s at %s, after the loss at %s", s.Name, s.Time.Format(time.RFC3339Nano), lostAt.Format(time.RFC3339Nano))
				}
				if s.Owner != loser && s.Time.After(lostAt) && takeover.IsZero() {
					takeover = s.Time
				}
			}
			// Handed over: a live worker took the job over, or the node's
			// own landing (of an act done before the loss) ended the job.
			if takeover.IsZero() {
				takeover = time.Now().Add(time.Hour)
			}

			// 0 wrong writes: no act that changes the node between the loss
			// and the takeover (reads before the wipe may finish: the lease
			// is checked right before every act); one power action or one
			// wipe in all.
			counts := map[string]int{}
			for _, rec := range checkAudit(t, filepath.Join(r.stateDir, "audit.jsonl")) {
				if rec.Phase != audit.PhaseIntent || rec.Node != node.Name {
					continue
				}
				counts[rec.Action]++
				if changesNode(rec.Action) && rec.Time.After(lostAt) && rec.Time.Before(takeover) {
					t.Errorf("act %s on %s at %s: after the lease was lost (%s), before any takeover (%s)", rec.Action, node.Name,
						rec.Time.Format(time.RFC3339Nano), lostAt.Format(time.RFC3339Nano), takeover.Format(time.RFC3339Nano))
				}
			}
			power := counts["power cycle"] + counts["power on"] + counts["power reset"]
			switch c.model {
			case labfleet.ModelIPMI:
				if power != 1 || counts[inband.ActionWipe] != 0 {
					t.Errorf("audit intents %v: want exactly one power action and no wipe", counts)
				}
				if !n.Bootable() {
					t.Error("the out-of-band node's boot sector was written")
				}
			case labfleet.ModelDL360G7:
				if counts[inband.ActionWipe] != 1 || power != 0 {
					t.Errorf("audit intents %v: want exactly one wipe and no BMC power action", counts)
				}
			}
			if strings.Contains(r.events.String(), "another-controller") {
				t.Errorf("the owner that never worked the node acted:\n%s", r.events)
			}
		})
	}
}

// changesNode reports whether an audited action changes the node (the
// BMC's power or boot override, the node's disk, next boot or power).
func changesNode(action string) bool {
	switch action {
	case agent.ActionSetBootOverride, inband.ActionWipe, inband.ActionNextBoot, inband.ActionReboot, inband.ActionRestore:
		return true
	}
	return strings.HasPrefix(action, agent.ActionPowerPrefix)
}

// rawStore opens the rig's SQLite store file a second time, as another
// controller's store connection would, to change a job behind the engine.
func rawStore(t *testing.T, stateDir string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(stateDir, "reprov.db")+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
