package agent_test

import (
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

// TestCrashAtEveryStepBoundary kills the worker (it stops dead: nothing more
// recorded, its lease not renewed) at every boundary of the step table —
// right after a step's intent, and right after its act before its outcome —
// on an out-of-band node and on an in-band-first DL360 G7. A live worker
// takes the job over when the lease expires, with no operator command, and
// settles the dead worker's intent by looking at the node. Each case
// asserts that the settlement matches what really happened on the BMC or
// the disk, that the node lands, and that no act was repeated: one power
// action, one wipe. The cut inside the in-band unit (wiped, not yet
// rebooted) is TestResumeFinishesACutInbandUnit.
func TestCrashAtEveryStepBoundary(t *testing.T) {
	type crash struct {
		model labfleet.Model
		step  string
		phase string
		// acted: whether the act had happened when the worker died, which
		// is what settling by looking must find (for steps with something
		// to look at).
		acted bool
	}
	var cases []crash
	for _, s := range []string{agent.StepPrecheck, agent.StepOOBBoot, agent.StepPower, agent.StepWaitLanding} {
		cases = append(cases, crash{labfleet.ModelIPMI, s, "intent", false}, crash{labfleet.ModelIPMI, s, "act", true})
	}
	for _, s := range []string{agent.StepPrecheck, agent.StepInband, agent.StepWaitLanding} {
		cases = append(cases, crash{labfleet.ModelDL360G7, s, "intent", false}, crash{labfleet.ModelDL360G7, s, "act", true})
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
			var once sync.Once
			crashed := false
			e := r.engine(func(cfg *agent.Config) {
				cfg.Inventory = r.nodes
				cfg.LeaseTTL = time.Second
				agent.SetCrashPoint(cfg, func(step, phase string) bool {
					hit := false
					if step == c.step && phase == c.phase {
						once.Do(func() { hit, crashed = true, true })
					}
					return hit
				})
			})
			ctx := ctxT(t, time.Minute)
			rep, err := e.Reinstall(ctx, r.nodes, agent.RunOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if t.Failed() {
					t.Logf("events:\n%s", r.events)
				}
			}()
			if !crashed {
				t.Fatalf("the crash point %s/%s was never reached", c.step, c.phase)
			}
			res := rep.Results[0]
			nr := res.Detail.(*agent.NodeReport)
			if res.Status != fleet.StatusOK || nr.State != store.JobLanded || !nr.Resumed {
				t.Fatalf("after the crash: %s %+v (%s), want the same job taken over and landed", res.Status, nr, res.Error)
			}

			// The dead worker's intent, settled by the live one.
			steps, err := r.st.Steps(ctx, nr.JobID)
			if err != nil {
				t.Fatal(err)
			}
			var intent, settled *store.Step
			for i := range steps {
				s := &steps[i]
				if intent == nil && s.Phase == store.PhaseIntent && s.Name == c.step {
					intent = s
				}
				if intent != nil && s.Phase == store.PhaseOutcome && s.IntentID == intent.ID {
					settled = s
				}
			}
			if intent == nil || settled == nil || !strings.Contains(string(settled.Detail), `"settled":{"by_job":`) {
				t.Fatalf("the dead worker's %s intent %+v was not settled by looking (outcome %+v)", c.step, intent, settled)
			}
			want := store.ResultSkipped // nothing on the node to look at
			switch c.step {
			case agent.StepOOBBoot, agent.StepPower, agent.StepInband:
				want = store.ResultFailed
				if c.acted {
					want = store.ResultOK
				}
			}
			if settled.Result != want {
				t.Errorf("the %s intent (worker killed after its %s) settled %s, want %s: %s", c.step, c.phase, settled.Result, want, settled.Detail)
			}

			// No act repeated: one power action for the out-of-band node,
			// one wipe (and no power action) for the in-band one.
			counts := map[string]int{}
			for _, rec := range checkAudit(t, filepath.Join(r.stateDir, "audit.jsonl")) {
				if rec.Phase == audit.PhaseIntent && rec.Node == node.Name {
					counts[rec.Action]++
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
				if n.Bootable() {
					t.Error("the in-band node landed with its boot sector intact")
				}
			}
		})
	}
}
