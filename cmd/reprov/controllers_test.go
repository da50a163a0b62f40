package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/reprov/reprov/agent"
	"github.com/reprov/reprov/agent/audit"
	"github.com/reprov/reprov/agent/inband"
	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/lab/fleet"
	"github.com/reprov/reprov/lab/pg"
)

// TestTwoControllersOneKilled: two reprov reinstall processes on one
// PostgreSQL store, started at once on the same 120-node lab selection:
// whichever submits a node first creates its job, the other attaches to it.
// Both work the shared queue. One is SIGKILLed once about 30 % of the nodes
// have started:
// the second takes its jobs over when their leases expire and finishes
// every node, with no resume command, and exits 0. Each node landed once,
// no node was wiped or power-cycled twice, and the per-rack limit held
// across both processes (from the step record's timestamps).
func TestTwoControllersOneKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("a 120-node lab with two controller processes")
	}
	cluster := pg.Start(t)
	url := pg.NewDatabase(t, cluster)
	c := newLabCLI(t, []fleet.ModelCount{{Model: fleet.ModelIPMI, Count: 60}, {Model: fleet.ModelDL360G7, Count: 40}, {Model: fleet.ModelRedfish, Count: 20}},
		400*time.Millisecond)
	cfg, err := os.ReadFile(c.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg = bytes.Replace(cfg, []byte("store:\n"), []byte("store:\n  url: "+url+"\n"), 1)
	if err := os.WriteFile(c.config, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	const perRack = 8
	ctx := ctxFor(t, 8*time.Minute)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	child := func(out *bytes.Buffer, args ...string) *exec.Cmd {
		argv, _ := json.Marshal(append([]string{"--config", c.config}, args...))
		cmd := exec.CommandContext(ctx, exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+string(argv), "HOME="+c.dir, "XDG_CONFIG_HOME="+filepath.Join(c.dir, "config"))
		cmd.Stdout, cmd.Stderr = out, out
		return cmd
	}
	st, err := store.Open(ctx, url, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	var out1, out2 bytes.Buffer
	args := []string{"reinstall", "--all", "--yes", "-o", "json", "--per-rack", "8", "--max-parallel", "32"}
	// Both started at once on the same selection: whichever submits a node
	// first creates its job, the other attaches to it.
	first, second := child(&out1, args...), child(&out2, args...)
	for _, c := range []*exec.Cmd{first, second} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	// The kill must cut the first controller in the middle of acts the
	// survivor then goes on with: a DL360 G7 it power-cycled (the board
	// boots its disk anyway) but has not escalated in-band yet. The
	// survivor finishes that node's unit, so the node's one audit trail
	// holds both controllers' records. "30 % started" alone left it to
	// chance whether any taken-over job had an audited act yet.
	g7 := map[string]bool{}
	for _, n := range c.lab.Nodes() {
		g7[n.Name()] = n.Model() == fleet.ModelDL360G7
	}
	host, _ := os.Hostname()
	firstCtl := fmt.Sprintf("%s/%d", host, first.Process.Pid)
	waitFor(ctx, t, "30 % of the nodes to start and the first controller to power-cycle a DL360 G7 it has not escalated yet", func() bool {
		jobs, err := st.NodeJobs(ctx, store.JobFilter{})
		started := 0
		for _, j := range jobs {
			if !j.Started.IsZero() {
				started++
			}
		}
		if err != nil || started < 36 {
			return false
		}
		recs, err := st.Audit(ctx, store.AuditFilter{})
		if err != nil {
			return false
		}
		cycled, escalated := map[string]bool{}, map[string]bool{}
		for _, r := range recs {
			switch {
			case r.Phase != audit.PhaseIntent || !g7[r.Node]:
			case r.Action == inband.ActionWipe || r.Controller != firstCtl:
				escalated[r.Node] = true
			case strings.HasPrefix(r.Action, "power "):
				cycled[r.Node] = true
			}
		}
		for node := range cycled {
			if !escalated[node] {
				return true
			}
		}
		return false
	})
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	if ws, ok := first.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Fatalf("the first controller was not killed: %v\n%s", first.ProcessState, out1.String())
	}
	running, _ := st.NodeJobs(ctx, store.JobFilter{States: []store.JobState{store.JobRunning}})
	t.Logf("killed the first controller with %d job(s) running", len(running))

	waitErr := second.Wait()
	var rep struct {
		Results []struct {
			Node   string `json:"node"`
			Status string `json:"status"`
			Reason string `json:"reason"`
			Error  string `json:"error"`
		} `json:"results"`
	}
	if err := json.Unmarshal(jsonPart(out2.Bytes()), &rep); err != nil {
		t.Fatalf("the survivor (%v): its -o json: %v\n%s", waitErr, err, tail(out2.String(), 4000))
	}
	if waitErr != nil {
		t.Errorf("the surviving controller: %v", waitErr)
	}
	if len(rep.Results) != 120 {
		t.Errorf("the survivor reported %d nodes, want 120", len(rep.Results))
	}
	for _, r := range rep.Results {
		if r.Status != "ok" {
			t.Errorf("%s: %s (%s: %s), want landed", r.Node, r.Status, r.Reason, r.Error)
		}
	}

	// Each node: one job, landed; its DL360 G7s wiped, the others not.
	// A job's running spans: one per worker that worked it (the killed
	// one, then the one that took it over), from its first step record to
	// its last.
	type span struct {
		rack       string
		start, end time.Time
	}
	var spans []span
	takenOver := 0
	for _, n := range c.lab.Nodes() {
		jobs, err := st.NodeJobs(ctx, store.JobFilter{Node: n.Name()})
		if err != nil || len(jobs) != 1 || jobs[0].State != store.JobLanded {
			t.Errorf("%s: jobs %+v %v; want one job, landed", n.Name(), jobs, err)
			continue
		}
		if jobs[0].Generation > 0 {
			takenOver++
		}
		if n.Model() == fleet.ModelDL360G7 == n.Bootable() {
			t.Errorf("%s (%s): bootable %t after landing", n.Name(), n.Model(), n.Bootable())
		}
		steps, err := st.Steps(ctx, jobs[0].ID)
		if err != nil || len(steps) == 0 {
			t.Errorf("%s: steps %v", n.Name(), err)
			continue
		}
		byOwner := map[string]*span{}
		for _, s := range steps {
			sp := byOwner[s.Owner]
			if sp == nil {
				// The limit is the run's: count per run and rack.
				sp = &span{rack: fmt.Sprintf("%s of run %d", jobs[0].Rack, jobs[0].RunID), start: s.Time}
				byOwner[s.Owner] = sp
			}
			sp.end = s.Time
		}
		for _, sp := range byOwner {
			spans = append(spans, *sp)
		}
	}
	if takenOver == 0 {
		t.Errorf("no job was taken over from the killed controller")
	}
	t.Logf("%d job(s) taken over", takenOver)

	// The per-rack limit, from the step record: at no moment more than
	// perRack jobs of one rack between their first and last step.
	type edge struct {
		at    time.Time
		delta int
	}
	byRack := map[string][]edge{}
	for _, s := range spans {
		byRack[s.rack] = append(byRack[s.rack], edge{s.start, +1}, edge{s.end, -1})
	}
	for rack, es := range byRack {
		sort.Slice(es, func(i, j int) bool {
			if es[i].at.Equal(es[j].at) {
				return es[i].delta < es[j].delta
			}
			return es[i].at.Before(es[j].at)
		})
		cur, peak := 0, 0
		for _, e := range es {
			cur += e.delta
			peak = max(peak, cur)
		}
		if peak > perRack {
			t.Errorf("rack %s: %d jobs at once, over the per-rack limit %d", rack, peak, perRack)
		}
	}

	// The audit trail, as `reprov audit -o json` shows it from the store:
	// both controllers' records in one trail; no node wiped or
	// power-cycled twice.
	recs := auditJSON(t, func(args ...string) (int, string, string) { return c.run(ctx, args...) }, "--limit", "0")
	// Acts per node: an intent with an ok outcome happened; one left
	// without an outcome by the killed controller happened unless the
	// survivor, looking, settled it as not done.
	type acts struct{ power, wipe, notDone int }
	perNode := map[string]*acts{}
	outcome := map[string]string{}
	controllers := map[string]map[string]bool{}
	for _, r := range recs {
		if r["phase"] == audit.PhaseOutcome {
			id, _ := r["record_id"].(string)
			res, _ := r["result"].(string)
			outcome[id] = res
		}
	}
	for _, r := range recs {
		node, _ := r["node"].(string)
		if controllers[node] == nil {
			controllers[node] = map[string]bool{}
			perNode[node] = &acts{}
		}
		ctl, _ := r["controller"].(string)
		controllers[node][ctl] = true
		id, _ := r["record_id"].(string)
		res, settled := outcome[id]
		if r["phase"] != audit.PhaseIntent || (settled && res != audit.ResultOK) {
			continue
		}
		action, _ := r["action"].(string)
		switch {
		case action == inband.ActionWipe:
			perNode[node].wipe++
		case strings.HasPrefix(action, "power "):
			// A cycle that finishes an in-band unit cut between its wipe
			// and its reboot is that unit's reboot, not another attempt.
			if d, _ := r["detail"].(map[string]any); d != nil && strings.Contains(fmt.Sprint(d["why"]), "in-band unit") {
				continue
			}
			perNode[node].power++
		}
	}
	for _, n := range c.lab.Nodes() {
		jobs, _ := st.NodeJobs(ctx, store.JobFilter{Node: n.Name()})
		for _, j := range jobs {
			steps, _ := st.Steps(ctx, j.ID)
			for _, s := range steps {
				if s.Phase == store.PhaseOutcome && s.Result == store.ResultFailed && s.Name == agent.StepPower &&
					strings.Contains(string(s.Detail), `"settled":{`) && perNode[n.Name()] != nil {
					perNode[n.Name()].notDone++
				}
			}
		}
	}
	for node, a := range perNode {
		if a.wipe > 1 || a.power-a.notDone > 1 {
			t.Errorf("%s: %d wipe(s) and %d power action(s) done (%d power intent(s) settled as not done)", node, a.wipe, a.power-a.notDone, a.notDone)
		}
	}
	both := 0
	for _, ctls := range controllers {
		if len(ctls) > 1 {
			both++
		}
	}
	if both == 0 {
		t.Errorf("no node's audit trail shows both controllers (%d records)", len(recs))
	}
	t.Logf("%d node(s) with one audit trail across both controllers", both)
	c.noSecrets(out1.String(), out2.String())
}

func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// jsonPart is the JSON document in a child's combined output (its log
// lines go to the same buffer).
func jsonPart(b []byte) []byte {
	i := bytes.Index(b, []byte("{\n"))
	if i < 0 {
		return b
	}
	j := bytes.LastIndex(b, []byte("\n}"))
	if j < i {
		return b[i:]
	}
	return b[i : j+2]
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
