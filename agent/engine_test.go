package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/reprov/reprov/agent"
	"github.com/reprov/reprov/agent/audit"
	"github.com/reprov/reprov/agent/fleet"
	"github.com/reprov/reprov/agent/inband"
	"github.com/reprov/reprov/agent/inband/steps"
	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/inventory"
	labfleet "github.com/reprov/reprov/lab/fleet"
	"github.com/reprov/reprov/lab/labtool"
	"github.com/reprov/reprov/lab/udpproxy"
	"github.com/reprov/reprov/playbooks"
)

func TestMixedRackEndsInTheRightStates(t *testing.T) {
	r := newRig(t, rigOpts{mix: []labfleet.ModelCount{
		{Model: labfleet.ModelIPMI, Count: 2}, {Model: labfleet.ModelDL360G7, Count: 2}, {Model: labfleet.ModelRedfish, Count: 1},
		{Model: labfleet.ModelUEFI, Count: 1}, {Model: labfleet.ModelDeadBMC, Count: 1}, {Model: labfleet.ModelWrongIdentity, Count: 1},
	}})
	ctx := ctxT(t, 2*time.Minute)
	wrong := r.lab.NodesOf(labfleet.ModelWrongIdentity)[0]
	dead := r.lab.NodesOf(labfleet.ModelDeadBMC)[0]
	wrongSector := wrong.BootSector()
	e := r.engine(nil)
	rep, err := e.Reinstall(ctx, r.nodes, agent.RunOptions{MaxParallel: 8, Selection: "--all"})
	if err != nil {
		t.Fatal(err)
	}
	reps := reportOf(t, rep)
	results := map[string]fleet.Result{}
	for _, res := range rep.Results {
		results[res.Node] = res
	}
	defer func() {
		if t.Failed() {
			t.Logf("events:\n%s", r.events)
		}
	}()

	for _, n := range r.lab.Nodes() {
		res, nr := results[n.Name()], reps[n.Name()]
		switch n.Model() {
		case labfleet.ModelIPMI, labfleet.ModelRedfish, labfleet.ModelUEFI:
			if res.Status != fleet.StatusOK || nr.State != store.JobLanded || nr.Path != "oob" || nr.Landing != store.LandingIPXE || nr.Escalated {
				t.Errorf("%s: %s %+v, want landed out-of-band (ipxe)", n.Name(), res.Status, nr)
			}
			if !n.Bootable() {
				t.Errorf("%s: the out-of-band path wrote its disk", n.Name())
			}
			if ev, _ := json.Marshal(nr.Evidence["landings"]); !strings.Contains(string(ev), n.MAC()) {
				t.Errorf("%s: the report's landing evidence %s lacks the MAC iPXE sent (%s)", n.Name(), ev, n.MAC())
			}
		case labfleet.ModelDL360G7:
			if res.Status != fleet.StatusOK || nr.Path != "inband" || nr.Landing != store.LandingIPXE {
				t.Errorf("%s: %s %+v, want landed in-band", n.Name(), res.Status, nr)
			}
			if n.Bootable() {
				t.Errorf("%s: landed in-band with its boot sector intact", n.Name())
			}
			steps := stepNames(t, r.st, nr.JobID)
			if n.Playbook() == "default" {
				// Out-of-band first, caught ignoring it, escalated.
				if !nr.Escalated || strings.Join(nr.Learned, ",") != store.QuirkIgnoresOOBPXE ||
					!strings.HasPrefix(steps, "precheck oob_boot power wait_landing inband wait_landing") {
					t.Errorf("%s (default playbook): escalated %t, learned %v, steps %q; want detection and escalation", n.Name(), nr.Escalated, nr.Learned, steps)
				}
				qs, err := r.st.Quirks(ctx, n.Name())
				if err != nil || len(qs) != 1 || qs[0].Model != string(labfleet.ModelDL360G7) || qs[0].Quirk != store.QuirkIgnoresOOBPXE {
					t.Errorf("%s: quirks %+v %v, want ignores-oob-pxe for model hp-dl360-g7", n.Name(), qs, err)
				}
			} else if steps != "precheck inband wait_landing" || nr.Escalated {
				t.Errorf("%s (hp-dl360-g7): steps %q, want in-band first without an out-of-band attempt", n.Name(), steps)
			}
			recs, err := r.st.SectorRecords(ctx, n.Name(), rep.Run.ID)
			if err != nil || len(recs) != 1 {
				t.Fatalf("%s: sector records %v %v", n.Name(), recs, err)
			}
			saved, err := steps2Saved(recs[0].Path)
			if err != nil || saved.SHA256 != recs[0].SHA256 {
				t.Errorf("%s: saved boot sector %s: %v", n.Name(), recs[0].Path, err)
			}
		case labfleet.ModelDeadBMC:
			if res.Status != fleet.StatusFailed || res.Reason != agent.ReasonBMCUnreachable {
				t.Errorf("%s: %s (%s), want failed: %s", n.Name(), res.Status, res.Reason, agent.ReasonBMCUnreachable)
			}
			if st := dead.Status(); st.BootCount != 0 || !dead.Bootable() {
				t.Errorf("%s was touched: %+v", n.Name(), st)
			}
		case labfleet.ModelWrongIdentity:
			if res.Status != fleet.StatusFailed || res.Reason != agent.ReasonIdentityMismatch || !strings.Contains(res.Error, "serial expected") {
				t.Errorf("%s: %s (%s: %s), want failed: identity mismatch", n.Name(), res.Status, res.Reason, res.Error)
			}
			if st := wrong.Status(); st.BootCount != 0 || string(wrong.BootSector()) != string(wrongSector) {
				t.Errorf("%s was touched: %+v", n.Name(), st)
			}
			if d := wrong.IPMIBMC().Machine().BootDevice(); d != bmc.BootNone {
				t.Errorf("%s: its BMC got a boot override (%s) although the identity check failed", n.Name(), d)
			}
		}
		// Every intent has its outcome; the job is finished.
		if nr.JobID != 0 {
			open, err := r.st.UnsettledSteps(ctx, n.Name())
			if err != nil || len(open) != 0 {
				t.Errorf("%s: unsettled intents %+v %v", n.Name(), open, err)
			}
		}
	}
	checkAudit(t, filepath.Join(r.stateDir, "audit.jsonl"))
	if sum := agent.Summarize(rep.Results); sum.LandedOOB != 4 || sum.LandedInband != 2 || sum.Escalated != 1 || sum.FailedCount() != 2 {
		t.Errorf("summary %+v", sum)
	}

	// The learned quirk: once the escalated node runs its OS again, the
	// next reinstall goes in-band first, without an out-of-band attempt.
	var esc *labfleet.Node
	for _, n := range r.lab.NodesOf(labfleet.ModelDL360G7) {
		if n.Playbook() == "default" {
			esc = n
		}
	}
	bootFromDisk(t, r, esc, rep.Run.ID)
	rep2, err := e.Reinstall(ctx, []inventory.Node{esc.InventoryNode()}, agent.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nr := reportOf(t, rep2)[esc.Name()]
	if steps := stepNames(t, r.st, nr.JobID); rep2.Results[0].Status != fleet.StatusOK || nr.Path != "inband" || nr.Escalated || steps != "precheck inband wait_landing" {
		t.Errorf("second run of %s: %s %+v steps %q; want in-band first from the learned quirk", esc.Name(), rep2.Results[0].Status, nr, steps)
	}
}

// bootFromDisk makes a landed lab node run an OS again, as if its install
// had finished: the saved boot sector back, a power cycle.
func bootFromDisk(t *testing.T, r *rig, n *labfleet.Node, run int64) {
	t.Helper()
	ctx := ctxT(t, 30*time.Second)
	recs, err := r.st.SectorRecords(ctx, n.Name(), run)
	if err != nil || len(recs) == 0 {
		t.Fatalf("no saved sector of %s: %v", n.Name(), err)
	}
	saved, err := steps2Saved(recs[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := steps.RestoreBootSector(ctx, n.Host(), steps.RestoreOptions{Saved: saved}); err != nil {
		t.Fatal(err)
	}
	n.PowerOff()
	n.PowerOn()
	if _, err := n.Wait(ctx, func(s labfleet.Status) bool { return s.OSUp }); err != nil {
		t.Fatal(err)
	}
}

func steps2Saved(path string) (*steps.SavedSectors, error) { return steps.ReadSavedFile(path) }

// stepNames is the job's intents, in order.
func stepNames(t *testing.T, st *store.Store, job int64) string {
	t.Helper()
	all, err := st.Steps(context.Background(), job)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range all {
		if s.Phase == store.PhaseIntent {
			names = append(names, s.Name)
		}
	}
	return strings.Join(names, " ")
}

// checkAudit checks the audit log: every outcome follows its intent, and
// each node's boot sector was wiped at most once.
func checkAudit(t *testing.T, path string) []audit.Record {
	t.Helper()
	recs, err := audit.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	wipes := map[string]int{}
	for _, rec := range recs {
		switch rec.Phase {
		case audit.PhaseIntent:
			seen[rec.ID] = true
			if rec.Action == inband.ActionWipe {
				wipes[rec.Node]++
			}
		case audit.PhaseOutcome:
			if !seen[rec.ID] {
				t.Errorf("audit outcome without an earlier intent: %+v", rec)
			}
		}
	}
	for node, n := range wipes {
		if n > 1 {
			t.Errorf("audit log: node %s's boot sector was wiped %d times", node, n)
		}
	}
	return recs
}

func TestFailureBudgetStopsStartingNodes(t *testing.T) {
	r := newRig(t, rigOpts{mix: []labfleet.ModelCount{{Model: labfleet.ModelDeadBMC, Count: 3}, {Model: labfleet.ModelIPMI, Count: 3}}})
	e := r.engine(nil)
	rep, err := e.Reinstall(ctxT(t, time.Minute), r.nodes, agent.RunOptions{MaxParallel: 1, MaxFailures: 2})
	if err != nil {
		t.Fatal(err)
	}
	c := fleet.Count(rep.Results)
	if c.Failed != 2 || c.Skipped != 4 || c.OK != 0 {
		t.Fatalf("counts %+v, want 2 failed then 4 not started:\n%+v", c, rep.Results)
	}
	for _, res := range rep.Results[2:] {
		if res.Status != fleet.StatusSkipped || !strings.HasPrefix(res.Reason, agent.ReasonFailureBudget) {
			t.Errorf("%s: %s (%s), want skipped: %s", res.Node, res.Status, res.Reason, agent.ReasonFailureBudget)
		}
		// Its job was submitted with the run and ended unstarted: no step
		// was ever recorded for it.
		jobs, _ := r.st.NodeJobs(context.Background(), store.JobFilter{Node: res.Node})
		if len(jobs) != 1 || jobs[0].State != store.JobCancelled || !jobs[0].Started.IsZero() {
			t.Errorf("%s was not started but has jobs %+v", res.Node, jobs)
		} else if steps := stepNames(t, r.st, jobs[0].ID); steps != "" {
			t.Errorf("%s was not started but has steps %q", res.Node, steps)
		}
		if n := r.lab.Node(res.Node); n.Status().BootCount != 0 {
			t.Errorf("%s was not started but booted %d times", res.Node, n.Status().BootCount)
		}
	}
	if sum := agent.Summarize(rep.Results); sum.SkippedCount() != 4 {
		t.Errorf("summary %+v", sum)
	}
}

func TestRackAndBMCLimitsHold(t *testing.T) {
	r := newRig(t, rigOpts{mix: []labfleet.ModelCount{{Model: labfleet.ModelIPMI, Count: 9}}})
	// Three racks of three.
	for i := range r.nodes {
		r.nodes[i].Rack = fmt.Sprintf("r%d", i%3+1)
	}
	// The first three nodes share one BMC (like blades behind one chassis
	// manager), reached through a proxy that counts requests in flight.
	shared := r.lab.Nodes()[0].IPMIBMC()
	var mu sync.Mutex
	inFlight, maxInFlight, requests := 0, 0, 0
	px, err := udpproxy.Start(context.Background(), udpproxy.Config{Target: shared.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { px.Close() })
	px.SetFilter(func(dir udpproxy.Direction, _ []byte) bool {
		mu.Lock()
		defer mu.Unlock()
		if dir == udpproxy.Requests {
			inFlight++
			requests++
			maxInFlight = max(maxInFlight, inFlight)
		} else if inFlight > 0 {
			inFlight--
		}
		return false
	})
	for i := range 3 {
		r.nodes[i].BMC.Address = "ipmi://" + px.Addr()
	}
	e := r.engine(nil)
	if _, err := e.Reinstall(ctxT(t, time.Minute), r.nodes, agent.RunOptions{MaxParallel: 9, PerRack: 1}); err != nil {
		t.Fatal(err)
	}
	// In flight per rack, from the engine's events: a node is in flight
	// from its first step to its end.
	rackOf := map[string]string{}
	for _, n := range r.nodes {
		rackOf[n.Name] = n.Rack
	}
	cur, peak := map[string]int{}, map[string]int{}
	total, peakTotal := 0, 0
	started := map[string]bool{}
	r.events.mu.Lock()
	for _, ev := range r.events.evs {
		rack := rackOf[ev.Node]
		switch {
		case !started[ev.Node]:
			started[ev.Node] = true
			cur[rack]++
			total++
		case ev.Phase == "end":
			cur[rack]--
			total--
		}
		peak[rack] = max(peak[rack], cur[rack])
		peakTotal = max(peakTotal, total)
	}
	r.events.mu.Unlock()
	for rack, p := range peak {
		if p > 1 {
			t.Errorf("rack %s had %d nodes in flight at once, the limit is 1", rack, p)
		}
	}
	if peakTotal < 2 {
		t.Errorf("at most %d node in flight overall: the racks were not worked in parallel", peakTotal)
	}
	mu.Lock()
	defer mu.Unlock()
	if requests == 0 {
		t.Fatal("no request went through the shared BMC's proxy")
	}
	if maxInFlight > 1 {
		t.Errorf("the shared BMC had %d requests in flight at once; the per-BMC limit is 1", maxInFlight)
	}
}

// TestResumeSettlesByLooking: a controller died right after recording the
// intent of a power action. The next run looks at the BMC: the override
// is still pending, so the power action did not happen; it is done once.
func TestResumeSettlesByLooking(t *testing.T) {
	for _, tc := range []struct {
		name       string
		powerDone  bool
		wantSettle string
	}{
		{"power not done", false, store.ResultFailed},
		{"power done", true, store.ResultOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, rigOpts{mix: []labfleet.ModelCount{{Model: labfleet.ModelIPMI, Count: 1}}})
			ctx := ctxT(t, time.Minute)
			n := r.lab.Nodes()[0]
			node := r.nodes[0]
			run, err := r.st.CreateRun(ctx, store.RunSpec{CreatedBy: "dead controller"})
			if err != nil {
				t.Fatal(err)
			}
			job, err := r.st.AcquireNode(ctx, store.AcquireRequest{RunID: run.ID, Node: node.Name, MACs: node.MACs})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.st.ClaimNodeJob(ctx, job.ID, job.Generation, "dead/job-1", 200*time.Millisecond); err != nil {
				t.Fatal(err)
			}
			step := func(name string, intent, outcome string) {
				in, err := r.st.RecordStep(ctx, store.Step{JobID: job.ID, Name: name, Phase: store.PhaseIntent, Owner: "dead/job-1", Detail: json.RawMessage(intent)})
				if err != nil {
					t.Fatal(err)
				}
				if outcome != "" {
					if _, err := r.st.RecordStep(ctx, store.Step{Phase: store.PhaseOutcome, IntentID: in.ID, Result: store.ResultOK, Detail: json.RawMessage(outcome)}); err != nil {
						t.Fatal(err)
					}
				}
			}
			// The dead controller's step record, as it writes it (typed
			// records, version 1).
			step(agent.StepPrecheck, `{"v":1,"playbook":"default","paths":["oob"]}`, `{"v":1,"boot_id":"`+n.Status().BootID+`"}`)
			step(agent.StepOOBBoot, `{"v":1,"override":{"device":"pxe","mode":"legacy"}}`, `{"v":1}`)
			step(agent.StepPower, `{"v":1,"power_action":"cycle"}`, "")
			// What the dead controller did: the override, and maybe the
			// cycle (its landing armed right before, as the engine does).
			if err := r.st.ArmLanding(ctx, job.ID, "dead/job-1"); err != nil {
				t.Fatal(err)
			}
			c := openBMC(t, node)
			if _, err := c.SetBootOverride(ctx, bmc.BootOverride{Device: bmc.BootPXE, Mode: bmc.BootModeLegacy}); err != nil {
				t.Fatal(err)
			}
			if tc.powerDone {
				if err := c.SetPower(ctx, bmc.ActionCycle); err != nil {
					t.Fatal(err)
				}
				if _, err := n.Wait(ctx, func(s labfleet.Status) bool { return s.Landings > 0 }); err != nil {
					t.Fatal(err)
				}
			}
			c.Close(ctx)
			boots := n.Status().BootCount

			e := r.engine(nil)
			rep, err := e.Reinstall(ctx, r.nodes, agent.RunOptions{ResumeOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			res := rep.Results[0]
			nr := res.Detail.(*agent.NodeReport)
			if res.Status != fleet.StatusOK || !nr.Resumed || nr.JobID != job.ID {
				t.Fatalf("resume: %s %+v (%s), want the same job resumed and landed\n%s", res.Status, nr, res.Error, r.events)
			}
			all, _ := r.st.Steps(ctx, job.ID)
			var settled *store.Step
			for i := range all {
				if all[i].Phase == store.PhaseOutcome && all[i].Name == agent.StepPower {
					settled = &all[i]
					break
				}
			}
			if settled == nil || settled.Result != tc.wantSettle || !strings.Contains(string(settled.Detail), `"settled":{"by_job":`) {
				t.Fatalf("the dead controller's power intent settled as %+v, want %s by looking", settled, tc.wantSettle)
			}
			// The power action ran exactly once in all.
			want := boots
			if !tc.powerDone {
				want++
			}
			if got := n.Status().BootCount; got != want {
				t.Errorf("the node booted %d times after the resume, want %d in all (the power action must not be repeated)", got-boots, want-boots)
			}
		})
	}
}

func openBMC(t *testing.T, n inventory.Node) bmc.Client {
	t.Helper()
	c, _, err := fleet.OpenBMC(context.Background(), n, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestEveryReasonIsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/runbooks/when-a-node-does-not-land.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range agent.Reasons() {
		if !strings.Contains(string(doc), "`"+r+"`") {
			t.Errorf("failure reason %q is not in docs/runbooks/when-a-node-does-not-land.md", r)
		}
	}
}

// TestCtrlCRecordsEveryNodeAndResumes: Ctrl-C while nodes are awaited.
// Every started node is recorded interrupted (or landed), nothing is left
// running, and --resume finishes them without mistaking the boot from disk
// that happened meanwhile for a board ignoring the override.
func TestCtrlCRecordsEveryNodeAndResumes(t *testing.T) {
	r := newRig(t, rigOpts{bootDelay: 700 * time.Millisecond,
		mix: []labfleet.ModelCount{{Model: labfleet.ModelIPMI, Count: 3}, {Model: labfleet.ModelDL360G7, Count: 2}}})
	ctx := ctxT(t, 2*time.Minute)
	runCtx, interrupt := context.WithCancel(ctx)
	powered := make(chan struct{}, 16)
	e := r.engine(func(c *agent.Config) {
		c.Events = func(ev agent.Event) {
			r.events.add(ev)
			if ev.Step == agent.StepPower && ev.Phase == "outcome" {
				powered <- struct{}{}
			}
		}
	})
	go func() {
		for range 3 {
			<-powered
		}
		interrupt() // Ctrl-C
	}()
	rep, err := e.Reinstall(runCtx, r.nodes, agent.RunOptions{MaxParallel: 5})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Run.State != store.RunInterrupted {
		t.Errorf("run state %s, want interrupted", rep.Run.State)
	}
	c := fleet.Count(rep.Results)
	if c.Interrupted == 0 {
		t.Fatalf("no node interrupted: %+v\n%s", rep.Results, r.events)
	}
	for _, n := range r.nodes {
		jobs, err := r.st.NodeJobs(ctx, store.JobFilter{Node: n.Name})
		if err != nil || len(jobs) != 1 {
			t.Fatalf("%s: jobs %+v %v", n.Name, jobs, err)
		}
		if st := jobs[0].State; st != store.JobInterrupted && st != store.JobLanded {
			t.Errorf("%s: job %s after Ctrl-C, want interrupted or landed", n.Name, st)
		}
		if open, _ := r.st.UnsettledSteps(ctx, n.Name); len(open) != 0 {
			t.Errorf("%s: intents without outcome after Ctrl-C: %+v", n.Name, open)
		}
	}
	// Meanwhile the nodes that were made to boot ask the endpoint, which
	// holds them in their network boot (their jobs are interrupted, not
	// ended) instead of sending them to their disk.
	for _, n := range r.lab.NodesOf(labfleet.ModelIPMI) {
		if n.Status().BootCount == 0 {
			continue
		}
		if _, err := n.Wait(ctx, func(s labfleet.Status) bool {
			return s.State == labfleet.StateNetboot && s.LandingRequests > 0 || s.State == labfleet.StateLanded
		}); err != nil {
			t.Fatal(err)
		}
		if st := n.Status(); st.DiskBoots > 0 && n.Model() == labfleet.ModelIPMI {
			t.Errorf("%s booted its disk while its job was interrupted: %+v", n.Name(), st)
		}
	}
	rep2, err := e.Reinstall(ctx, r.nodes, agent.RunOptions{MaxParallel: 5, ResumeOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range rep2.Results {
		nr := res.Detail.(*agent.NodeReport)
		if res.Status != fleet.StatusOK {
			t.Errorf("%s after --resume: %s (%s: %s)\n%s", res.Node, res.Status, res.Reason, res.Error, r.events)
		}
		if n := r.lab.Node(res.Node); n.Model() == labfleet.ModelIPMI && (nr.Path != "oob" || len(nr.Learned) > 0 || !n.Bootable()) {
			t.Errorf("%s (honours the override) after --resume: path %s, learned %v, bootable %t; the boot from disk during the interruption was taken for an ignored override",
				res.Node, nr.Path, nr.Learned, n.Bootable())
		}
	}
	for _, n := range r.lab.NodesOf(labfleet.ModelIPMI) {
		if qs, _ := r.st.Quirks(ctx, n.Name()); len(qs) != 0 {
			t.Errorf("%s: quirks learned %+v", n.Name(), qs)
		}
	}
	checkAudit(t, filepath.Join(r.stateDir, "audit.jsonl"))
}

// TestResumeFinishesACutInbandUnit: the controller died after the in-band
// wipe and before the reboot. The next run looks — the node still runs
// with the same boot id, the audit log holds the wipe — and finishes the
// unit with a power cycle through the BMC: the node lands, its boot sector
// is not wiped a second time.
func TestResumeFinishesACutInbandUnit(t *testing.T) {
	r := newRig(t, rigOpts{mix: []labfleet.ModelCount{{Model: labfleet.ModelDL360G7, Count: 2}}})
	ctx := ctxT(t, time.Minute)
	n := r.lab.NodesOf(labfleet.ModelDL360G7)[1] // playbook hp-dl360-g7
	var node inventory.Node
	for _, in := range r.nodes {
		if in.Name == n.Name() {
			node = in
		}
	}
	bootID := n.Status().BootID
	run, err := r.st.CreateRun(ctx, store.RunSpec{CreatedBy: "dead controller"})
	if err != nil {
		t.Fatal(err)
	}
	job, err := r.st.AcquireNode(ctx, store.AcquireRequest{RunID: run.ID, Node: node.Name, MACs: node.MACs})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.st.ClaimNodeJob(ctx, job.ID, job.Generation, "dead/job-1", 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	saved := inband.SavedPath(r.stateDir, node.Name, agent.RunTag(run.ID))
	rec := func(name string, intent, outcome map[string]any) {
		intent["v"] = 1
		b, _ := json.Marshal(intent)
		in, err := r.st.RecordStep(ctx, store.Step{JobID: job.ID, Name: name, Phase: store.PhaseIntent, Owner: "dead/job-1", Detail: b})
		if err != nil {
			t.Fatal(err)
		}
		if outcome != nil {
			outcome["v"] = 1
			b, _ := json.Marshal(outcome)
			if _, err := r.st.RecordStep(ctx, store.Step{Phase: store.PhaseOutcome, IntentID: in.ID, Result: store.ResultOK, Detail: b}); err != nil {
				t.Fatal(err)
			}
		}
	}
	rec(agent.StepPrecheck, map[string]any{"playbook": "hp-dl360-g7", "paths": []string{"inband"}}, map[string]any{"boot_id": bootID})
	rec(agent.StepInband, map[string]any{"saved_file": saved, "boot_id": bootID, "unit": "wipe, next-boot, reboot"}, nil)
	// What the dead controller did in its unit: arm the landing, save,
	// audit, wipe.
	if err := r.st.ArmLanding(ctx, job.ID, "dead/job-1"); err != nil {
		t.Fatal(err)
	}
	_, sectors, err := steps.PlanWipe(ctx, n.Host(), "/dev/sda", steps.ScopeMBR)
	if err != nil {
		t.Fatal(err)
	}
	sectors.Node, sectors.Run = node.Name, agent.RunTag(run.ID)
	if err := steps.WriteSavedFile(saved, sectors); err != nil {
		t.Fatal(err)
	}
	p, err := r.audit.Intent(node.Name, inband.ActionWipe, map[string]any{"disk": "/dev/sda", "saved_file": saved})
	if err != nil {
		t.Fatal(err)
	}
	d, err := n.Host().OpenDisk(ctx, "/dev/sda", true)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Zero(ctx, 0, 512); err != nil {
		t.Fatal(err)
	}
	d.Close()
	_ = p.Done(nil, nil)
	// Wait until the store itself calls the dead controller's job orphaned.
	labtool.Eventually(t, 10*time.Second, "the dead controller's lease to run out", func() bool {
		orphans, err := r.st.OrphanedJobs(ctx)
		return err == nil && len(orphans) == 1 && orphans[0].ID == job.ID
	})

	e := r.engine(nil)
	rep, err := e.Reinstall(ctx, r.nodes[1:2], agent.RunOptions{ResumeOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	res := rep.Results[0]
	nr := res.Detail.(*agent.NodeReport)
	if res.Node != node.Name || res.Status != fleet.StatusOK || nr.Path != "inband" || nr.JobID != job.ID {
		t.Fatalf("resume of the cut unit: %s %s %+v (%s)\n%s", res.Node, res.Status, nr, res.Error, r.events)
	}
	all, _ := r.st.Steps(ctx, job.ID)
	found := false
	for _, s := range all {
		if s.Phase == store.PhaseOutcome && s.Name == agent.StepInband && s.Result == store.ResultOK && strings.Contains(string(s.Detail), `"finished_by":"bmc power cycle"`) {
			found = true
		}
	}
	if !found {
		t.Errorf("the cut unit was not settled as finished through the BMC: %s", stepNames(t, r.st, job.ID))
	}
	counts := map[string]int{}
	for _, rec := range checkAudit(t, filepath.Join(r.stateDir, "audit.jsonl")) {
		if rec.Phase == audit.PhaseIntent && rec.Node == node.Name {
			counts[rec.Action]++
		}
	}
	if counts[inband.ActionWipe] != 1 || counts[inband.ActionRestore] != 0 || counts["power cycle"] != 1 {
		t.Errorf("audit intents of %s: %v; want the one wipe, no restore, one power cycle", node.Name, counts)
	}
	if n.Bootable() {
		t.Error("the node's boot sector is bootable again")
	}
}

// TestHooksRunWhereThePlaybookPromises: pre-hooks after the prechecks and
// before the first change, a failing one stopping its node untouched;
// post-hooks for every node whose pre-hooks ran, with the result; plan
// lists them and runs none.
func TestHooksRunWhereThePlaybookPromises(t *testing.T) {
	r := newRig(t, rigOpts{mix: []labfleet.ModelCount{{Model: labfleet.ModelIPMI, Count: 2}}})
	log := filepath.Join(t.TempDir(), "hooks.log")
	fs := fstest.MapFS{}
	for k, v := range fastPlaybooks {
		fs[k] = v
	}
	fs["hooked.yaml"] = &fstest.MapFile{Data: []byte(fmt.Sprintf(`name: hooked
extends: default
pre_hooks: ['echo "pre $REPROV_NODE $REPROV_RUN" >> %[1]s']
post_hooks: ['echo "post $REPROV_NODE $REPROV_RESULT" >> %[1]s']
`, log))}
	fs["badhook.yaml"] = &fstest.MapFile{Data: []byte(fmt.Sprintf(`name: badhook
extends: default
pre_hooks: ['echo "pre $REPROV_NODE" >> %[1]s; echo "drain refused" >&2; exit 3', 'echo never >> %[1]s']
post_hooks: ['echo "post $REPROV_NODE $REPROV_RESULT $REPROV_REASON" >> %[1]s']
`, log))}
	var err error
	if r.pbs, err = playbooks.LoadFS(fs); err != nil {
		t.Fatal(err)
	}
	r.nodes[0].Playbook, r.nodes[1].Playbook = "hooked", "badhook"
	e := r.engine(nil)
	ctx := ctxT(t, time.Minute)

	p, err := e.Plan(ctx, r.nodes[0], agent.PlanOptions{Offline: true})
	if err != nil || len(p.PreHooks) != 1 || !strings.Contains(p.PreHooks[0], "echo \"pre $REPROV_NODE") || len(p.PostHooks) != 1 {
		t.Fatalf("plan hooks: %+v %v", p, err)
	}
	if _, err := os.Stat(log); err == nil {
		t.Fatal("plan ran a hook")
	}

	rep, err := e.Reinstall(ctx, r.nodes, agent.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res := reportOf(t, rep)
	if rep.Results[0].Status != fleet.StatusOK {
		t.Errorf("%s: %s (%s)", rep.Results[0].Node, rep.Results[0].Status, rep.Results[0].Error)
	}
	if got := stepNames(t, r.st, res[r.nodes[0].Name].JobID); got != "precheck pre_hooks oob_boot power wait_landing post_hooks" {
		t.Errorf("steps of the hooked node: %q", got)
	}
	bad := rep.Results[1]
	if bad.Status != fleet.StatusFailed || bad.Reason != agent.ReasonPreHook || !strings.Contains(bad.Error, "exit status 3: drain refused") {
		t.Errorf("%s: %s (%s: %s), want failed: %s", bad.Node, bad.Status, bad.Reason, bad.Error, agent.ReasonPreHook)
	}
	if got := stepNames(t, r.st, res[bad.Node].JobID); got != "precheck pre_hooks post_hooks" {
		t.Errorf("steps of the node whose pre-hook failed: %q", got)
	}
	if n := r.lab.Node(bad.Node); n.Status().BootCount != 0 || n.IPMIBMC().Machine().BootDevice() != bmc.BootNone {
		t.Errorf("%s was changed although its pre-hook failed", bad.Node)
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	want := map[string]bool{
		fmt.Sprintf("pre %s run-%d", r.nodes[0].Name, rep.Run.ID): true,
		"post " + r.nodes[0].Name + " landed":                     true,
		"pre " + bad.Node:                                         true,
	}
	for _, l := range lines {
		switch {
		case want[l]:
			delete(want, l)
		case strings.HasPrefix(l, "post "+bad.Node+" failed "+agent.ReasonPreHook):
		default:
			t.Errorf("unexpected hook output line %q", l)
		}
	}
	if len(want) > 0 || len(lines) != 4 {
		t.Errorf("hook log %q: missing %v", lines, want)
	}
}

// TestBMCForAnotherMachineStopsTheNode: the node's BMC answers for another
// machine (its system GUID and serial are another node's) while the node's
// own OS is the right one. Before any power action the precheck compares
// the BMC's GUID with the inventory: the node stops untouched.
func TestBMCForAnotherMachineStopsTheNode(t *testing.T) {
	r := newRig(t, rigOpts{mix: []labfleet.ModelCount{{Model: labfleet.ModelWrongBMC, Count: 1}, {Model: labfleet.ModelIPMI, Count: 1}}})
	ctx := ctxT(t, time.Minute)
	rep, err := r.engine(nil).Reinstall(ctx, r.nodes, agent.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range rep.Results {
		n := r.lab.Node(res.Node)
		switch n.Model() {
		case labfleet.ModelWrongBMC:
			if res.Status != fleet.StatusFailed || res.Reason != agent.ReasonBMCIdentity || !strings.Contains(res.Error, "guid") {
				t.Errorf("%s: %s %q (%s), want failed %q naming the GUID", res.Node, res.Status, res.Reason, res.Error, agent.ReasonBMCIdentity)
			}
			if s := n.Status(); s.BootCount != 0 || !n.Bootable() {
				t.Errorf("%s: booted %d times, bootable %t: want untouched", res.Node, s.BootCount, n.Bootable())
			}
		default:
			if res.Status != fleet.StatusOK {
				t.Errorf("%s: %s (%s), want landed", res.Node, res.Status, res.Error)
			}
		}
	}
	for _, rec := range checkAudit(t, filepath.Join(r.stateDir, "audit.jsonl")) {
		n := r.lab.Node(rec.Node)
		changes := strings.HasPrefix(rec.Action, agent.ActionPowerPrefix) || rec.Action == agent.ActionSetBootOverride || rec.Action == inband.ActionWipe
		if n != nil && n.Model() == labfleet.ModelWrongBMC && changes {
			t.Errorf("a change to the node whose BMC is another machine's: %+v", rec)
		}
	}
}

// TestStopBeforeTheWipeWritesNothing: Ctrl-C (the run stopped) or an
// operator's `jobs cancel` arriving while the in-band step identifies the
// node stops it right before the wipe: the boot sector is not written, no
// wipe is audited, the node is not rebooted.
func TestStopBeforeTheWipeWritesNothing(t *testing.T) {
	for _, how := range []string{"ctrl-c", "jobs cancel"} {
		t.Run(how, func(t *testing.T) {
			r := newRig(t, rigOpts{mix: []labfleet.ModelCount{{Model: labfleet.ModelDL360G7, Count: 2}}})
			n := r.lab.NodesOf(labfleet.ModelDL360G7)[1] // playbook hp-dl360-g7: in-band first
			var node inventory.Node
			for _, in := range r.nodes {
				if in.Name == n.Name() {
					node = in
				}
			}
			ctx := ctxT(t, time.Minute)
			stopped := false
			e := r.engine(func(c *agent.Config) {
				c.Events = func(ev agent.Event) {
					r.events.add(ev)
					if ev.Step != agent.StepInband || ev.Phase != string(store.PhaseIntent) || stopped {
						return
					}
					stopped = true
					// In the worker, right after the in-band intent: the
					// stop arrives while the unit's identify runs.
					j, err := r.st.NodeJob(ctx, ev.JobID)
					if err != nil {
						t.Error(err)
						return
					}
					if how == "ctrl-c" {
						err = r.st.StopRun(ctx, j.RunID)
					} else {
						_, err = r.st.CancelNode(ctx, j.Node, "test")
					}
					if err != nil {
						t.Error(err)
					}
				}
			})
			rep, err := e.Reinstall(ctx, []inventory.Node{node}, agent.RunOptions{})
			if err != nil {
				t.Fatal(err)
			}
			res := rep.Results[0]
			if !stopped {
				t.Fatalf("the in-band step never started: %s %s", res.Status, res.Error)
			}
			if res.Status == fleet.StatusOK || !n.Bootable() || n.Status().BootCount != 0 {
				t.Errorf("%s: %s (%s), bootable %t, booted %d times: want stopped before the wipe, untouched",
					n.Name(), res.Status, res.Error, n.Bootable(), n.Status().BootCount)
			}
			for _, rec := range checkAudit(t, filepath.Join(r.stateDir, "audit.jsonl")) {
				if rec.Action == inband.ActionWipe || rec.Action == inband.ActionReboot {
					t.Errorf("audited after the stop: %+v", rec)
				}
			}
			want := store.JobInterrupted
			if how == "jobs cancel" {
				want = store.JobCancelled
			}
			if nr := res.Detail.(*agent.NodeReport); nr.State != want {
				t.Errorf("job state %s, want %s", nr.State, want)
			}
		})
	}
}
