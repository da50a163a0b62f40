package agent_test

import (
	"context"
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

// TestCtrlCAtEveryStepBoundary presses Ctrl-C (the run's context is
// cancelled) at every boundary of the step table — right after a step's
// intent, and right after its act before its outcome — on an out-of-band
// node and on an in-band-first DL360 G7. An act whose intent was recorded
// before the Ctrl-C finishes (its BMC write is one request); nothing else
// is done: no step starts after the Ctrl-C, the in-band wipe does not
// start once its intent is stopped (the stop is checked right before the
// wipe's audit intent), at most one power action or one wipe, and the node
// ends interrupted (or landed, when the act already made it land), with
// its state recorded for --resume.
func TestCtrlCAtEveryStepBoundary(t *testing.T) {
	type stop struct {
		model labfleet.Model
		step  string
		phase string
	}
	var cases []stop
	for _, s := range []string{agent.StepPrecheck, agent.StepOOBBoot, agent.StepPower, agent.StepWaitLanding} {
		cases = append(cases, stop{labfleet.ModelIPMI, s, "intent"}, stop{labfleet.ModelIPMI, s, "act"})
	}
	for _, s := range []string{agent.StepPrecheck, agent.StepInband, agent.StepWaitLanding} {
		cases = append(cases, stop{labfleet.ModelDL360G7, s, "intent"}, stop{labfleet.ModelDL360G7, s, "act"})
	}
	// The audited acts of each step: the only ones that may follow a Ctrl-C
	// that came after the step's intent.
	actsOf := map[string]func(string) bool{
		agent.StepOOBBoot: func(a string) bool { return a == agent.ActionSetBootOverride },
		agent.StepPower:   func(a string) bool { return strings.HasPrefix(a, agent.ActionPowerPrefix) },
	}
	for _, c := range cases {
		t.Run(string(c.model)+"/"+c.step+"/"+c.phase, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, rigOpts{mix: []labfleet.ModelCount{{Model: c.model, Count: 1}}})
			node := r.nodes[0]
			if c.model == labfleet.ModelDL360G7 {
				node.Playbook = "hp-dl360-g7" // in-band first
				r.nodes[0] = node
			}
			ctx := ctxT(t, time.Minute)
			runCtx, ctrlC := context.WithCancel(ctx)
			var once sync.Once
			var pressed time.Time
			e := r.engine(func(cfg *agent.Config) {
				cfg.Inventory = r.nodes
				agent.SetCrashPoint(cfg, func(step, phase string) bool {
					if step == c.step && phase == c.phase {
						once.Do(func() {
							pressed = time.Now()
							ctrlC()
							// The run records the Ctrl-C in the store, where
							// every worker reads it at its next boundary:
							// wait until it is there.
							j, err := r.st.ActiveJob(ctx, node.Name)
							if err != nil {
								t.Errorf("the job of %s: %v", node.Name, err)
								return
							}
							for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
								if stop, err := r.st.StopRequested(ctx, j.ID); err == nil && stop != store.StopNone {
									pressed = time.Now()
									return
								}
							}
							t.Errorf("the Ctrl-C never reached the store")
						})
					}
					return false
				})
			})
			rep, err := e.Reinstall(runCtx, r.nodes, agent.RunOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if t.Failed() {
					t.Logf("events:\n%s", r.events)
				}
			}()
			if pressed.IsZero() {
				t.Fatalf("the boundary %s/%s was never reached", c.step, c.phase)
			}
			res := rep.Results[0]
			nr := res.Detail.(*agent.NodeReport)
			// Landed is right when the kick was done (or in flight) before
			// the Ctrl-C: the node booted the installer.
			kicked := c.step == agent.StepWaitLanding || (c.step == agent.StepPower || c.step == agent.StepInband) && c.phase == "act" ||
				c.step == agent.StepPower && c.phase == "intent"
			if res.Status != fleet.StatusInterrupted && !(res.Status == fleet.StatusOK && kicked) {
				t.Errorf("after Ctrl-C at %s/%s: %s (%s), want interrupted", c.step, c.phase, res.Status, res.Error)
			}
			if res.Status == fleet.StatusInterrupted && (!strings.Contains(res.Error+res.Reason, "interrupted") || nr.JobID == 0) {
				t.Errorf("interrupted node: reason %q, error %q, job %d: want the reason and the job recorded", res.Reason, res.Error, nr.JobID)
			}
			steps, err := r.st.Steps(ctx, nr.JobID)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range steps {
				if s.Phase == store.PhaseIntent && s.Time.After(pressed) && s.Name != agent.StepInterrupted {
					t.Errorf("step %s started at %s, after Ctrl-C at %s", s.Name, s.Time.Format(time.RFC3339Nano), pressed.Format(time.RFC3339Nano))
				}
			}
			counts := map[string]int{}
			for _, rec := range checkAudit(t, filepath.Join(r.stateDir, "audit.jsonl")) {
				if rec.Phase != audit.PhaseIntent || rec.Node != node.Name {
					continue
				}
				counts[rec.Action]++
				inFlight := c.phase == "intent" && actsOf[c.step] != nil && actsOf[c.step](rec.Action)
				if changesNode(rec.Action) && rec.Time.After(pressed) && !inFlight {
					t.Errorf("act %s on %s after Ctrl-C at %s/%s", rec.Action, node.Name, c.step, c.phase)
				}
			}
			power := counts["power cycle"] + counts["power on"] + counts["power reset"]
			if power > 1 || counts[inband.ActionWipe] > 1 {
				t.Errorf("audit intents %v: an act repeated", counts)
			}
			if c.step == agent.StepInband && c.phase == "intent" && counts[inband.ActionWipe] != 0 {
				t.Errorf("Ctrl-C during the in-band step's identify, yet the boot sector was wiped: %v", counts)
			}
		})
	}
}
