package window_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/agent/window"
	"github.com/reprov/reprov/lab/pg"
)

// clock is the injected clock every rule is decided on.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// env is a store, an inventory of nodes, and schedulers on the clock. Node
// jobs are worked by hand (claim, finish) as a worker would.
type env struct {
	t     *testing.T
	url   string
	st    *store.Store
	q     *store.Queue
	clk   *clock
	nodes []window.Node
	gate  window.Gate
	obs   []string
	mu    sync.Mutex
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func newEnv(t *testing.T, racks map[string]int) *env {
	return newEnvOn(t, "sqlite://"+filepath.Join(t.TempDir(), "reprov.db"), racks)
}

func newEnvOn(t *testing.T, url string, racks map[string]int) *env {
	t.Helper()
	e := &env{t: t, url: url, clk: &clock{}}
	e.st = e.open()
	var err error
	if e.q, err = e.st.NewQueue(store.QueueConfig{}); err != nil {
		t.Fatal(err)
	}
	var names []string
	for r := range racks {
		names = append(names, r)
	}
	slices.Sort(names)
	for _, r := range names {
		for i := 1; i <= racks[r]; i++ {
			e.nodes = append(e.nodes, window.Node{Name: fmt.Sprintf("%s-n%02d", r, i), Rack: r})
		}
	}
	return e
}

func (e *env) open() *store.Store {
	st, err := store.Open(ctxT(e.t), e.url, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { st.Close() })
	return st
}

func (e *env) resolve(_ context.Context, sp window.Spec) ([]window.Node, error) {
	var out []window.Node
	for _, n := range e.nodes {
		if sp.Selection.All || slices.Contains(sp.Selection.Names, n.Name) || slices.Contains(sp.Selection.Racks, n.Rack) {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no node selected")
	}
	return out, nil
}

// scheduler is a controller's scheduler on st (the env's store when nil).
func (e *env) scheduler(owner string, st *store.Store) *window.Scheduler {
	e.t.Helper()
	if st == nil {
		st = e.st
	}
	q, err := st.NewQueue(store.QueueConfig{})
	if err != nil {
		e.t.Fatal(err)
	}
	rack := map[string]string{}
	for _, n := range e.nodes {
		rack[n.Name] = n.Rack
	}
	gate := e.gate
	s, err := window.New(window.Config{
		Store: st, Owner: owner, Now: e.clk.Now, Resolve: e.resolve,
		Gate: func(ctx context.Context, sp window.Spec) window.GateResult {
			if gate == nil {
				return window.GateResult{OK: true}
			}
			return gate(ctx, sp)
		},
		Observe: func(r string) { e.mu.Lock(); e.obs = append(e.obs, r); e.mu.Unlock() },
		Submit: func(ctx context.Context, req window.SubmitRequest) (store.Run, []store.SubmitResult, error) {
			subs := make([]store.SubmitNode, len(req.Nodes))
			for i, n := range req.Nodes {
				subs[i] = store.SubmitNode{Node: n, Rack: rack[n]}
			}
			return q.Submit(ctx, store.RunSpec{CreatedBy: "window " + req.Spec.Name, Selection: req.Spec.Selection.Text(),
				WindowEnd: req.Occurrence.End, Cutoff: req.Occurrence.Cutoff, Limits: req.Limits}, subs, store.SubmitOpts{})
		},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *env) create(sp window.Spec) {
	e.t.Helper()
	if sp.Duration == 0 {
		sp.Duration = window.Duration(4 * time.Hour)
	}
	if sp.Selection.Empty() {
		sp.Selection.All = true
	}
	if _, err := window.Create(ctxT(e.t), e.st, sp, "test"); err != nil {
		e.t.Fatal(err)
	}
}

func tick(t *testing.T, s *window.Scheduler) {
	t.Helper()
	if err := s.Tick(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

// occ is the window's latest occurrence and its nodes by name.
func (e *env) occ(name string) (store.Occurrence, map[string]store.WindowNode) {
	e.t.Helper()
	occs, err := e.st.Occurrences(ctxT(e.t), name, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	if len(occs) == 0 {
		e.t.Fatalf("window %s has no occurrence", name)
	}
	nodes, err := e.st.OccurrenceNodes(ctxT(e.t), occs[0].ID)
	if err != nil {
		e.t.Fatal(err)
	}
	m := map[string]store.WindowNode{}
	for _, n := range nodes {
		m[n.Node] = n
	}
	return occs[0], m
}

// claim starts the node's queued job as a worker would.
func (e *env) claim(node string) (store.NodeJob, error) {
	j, err := e.st.ActiveJob(ctxT(e.t), node)
	if err != nil {
		return store.NodeJob{}, err
	}
	return e.st.Claim(ctxT(e.t), j.ID, j.Generation, "worker-1", time.Hour)
}

// work starts and ends the node's job.
func (e *env) work(node string, end store.JobState) {
	e.t.Helper()
	j, err := e.claim(node)
	if err != nil {
		e.t.Fatalf("start %s: %v", node, err)
	}
	if _, err := e.st.FinishNode(ctxT(e.t), j.ID, store.Finish{State: end, Owner: "worker-1", Reason: map[bool]string{true: "power: BMC refused"}[end == store.JobFailed]}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) jobsOf(node string) []store.NodeJob {
	e.t.Helper()
	js, err := e.st.NodeJobs(ctxT(e.t), store.JobFilter{Node: node})
	if err != nil {
		e.t.Fatal(err)
	}
	return js
}

func byBatch(nodes map[string]store.WindowNode, b int) []string {
	var out []string
	for _, n := range nodes {
		if n.Batch == b {
			out = append(out, n.Node)
		}
	}
	slices.Sort(out)
	return out
}

func states(nodes map[string]store.WindowNode) map[store.WindowNodeState]int {
	m := map[store.WindowNodeState]int{}
	for _, n := range nodes {
		m[n.State]++
	}
	return m
}

// recent is a start in the recent past: node jobs then finish after the
// occurrence started on the injected clock, and the store (which checks
// ends and cutoffs on the real clock) still admits them.
func recent() time.Time { return time.Now().Add(-time.Hour).Truncate(time.Minute) }

func TestStartsAtCronTimeInItsTimeZone(t *testing.T) {
	e := newEnv(t, map[string]int{"r1": 2})
	e.create(window.Spec{Name: "sat", Cron: "0 2 * * SAT", TZ: "Europe/Berlin", Duration: window.Duration(4 * time.Hour), Cutoff: window.Duration(30 * time.Minute)})
	berlin, _ := time.LoadLocation("Europe/Berlin")
	sp := window.Spec{Cron: "0 2 * * SAT", TZ: "Europe/Berlin"}
	start := sp.Next(time.Now())
	if w := start.In(berlin); w.Weekday() != time.Saturday || w.Hour() != 2 || w.Minute() != 0 {
		t.Fatalf("next start %s is not Saturday 02:00 in Berlin", w)
	}
	s := e.scheduler("c1", nil)
	e.clk.Set(start.Add(-time.Second))
	tick(t, s)
	if occs, _ := e.st.Occurrences(ctxT(t), "sat", 0); len(occs) != 0 {
		t.Fatalf("an occurrence opened a second early: %+v", occs)
	}
	e.clk.Set(start)
	tick(t, s)
	o, nodes := e.occ("sat")
	if !o.Start.Equal(start) || !o.End.Equal(start.Add(4*time.Hour)) || !o.Cutoff.Equal(start.Add(210*time.Minute)) {
		t.Fatalf("occurrence %s–%s cutoff %s, want start %s, 4h, cutoff 30m before the end", o.Start, o.End, o.Cutoff, start)
	}
	if o.State != store.OccurrenceRunning || o.Batch != 1 {
		t.Fatalf("occurrence is %s at batch %d, want running batch 1", o.State, o.Batch)
	}
	for _, n := range nodes {
		if n.State != store.WindowNodeState(store.JobQueued) || n.JobID == 0 {
			t.Fatalf("node %s is %s (job %d), want queued", n.Node, n.State, n.JobID)
		}
	}
}

func TestPlanIsRackAware(t *testing.T) {
	nodes := []window.Node{{"a1", "A"}, {"a2", "A"}, {"a3", "A"}, {"b1", "B"}, {"b2", "B"}, {"c1", "C"}}
	got := window.Plan(nodes, window.Amount{N: 3})
	var order []string
	for _, n := range got {
		order = append(order, fmt.Sprintf("%s:%d", n.Node, n.Batch))
	}
	want := "a1:1 b1:1 c1:1 a2:2 b2:2 a3:2"
	if strings.Join(order, " ") != want {
		t.Fatalf("plan %s, want %s", strings.Join(order, " "), want)
	}
	if got := window.Plan(nodes, window.Amount{Percent: 50}); got[len(got)-1].Batch != 2 {
		t.Fatalf("50%% of 6 nodes: %d batches, want 2", got[len(got)-1].Batch)
	}
	if got := window.Plan(nodes, window.Amount{}); got[len(got)-1].Batch != 1 {
		t.Fatalf("no batch size: %d batches, want 1", got[len(got)-1].Batch)
	}
}

func TestNextBatchOnlyWhenPreviousIsTerminal(t *testing.T) {
	e := newEnv(t, map[string]int{"r1": 3, "r2": 3})
	at := recent()
	e.create(window.Spec{Name: "w", At: at, Batch: window.Amount{N: 4}})
	s := e.scheduler("c1", nil)
	e.clk.Set(at)
	tick(t, s)
	_, nodes := e.occ("w")
	b1 := byBatch(nodes, 1)
	if want := []string{"r1-n01", "r1-n02", "r2-n01", "r2-n02"}; !slices.Equal(b1, want) {
		t.Fatalf("batch 1 is %v, want %v (racks take turns)", b1, want)
	}
	for _, n := range byBatch(nodes, 2) {
		if nodes[n].JobID != 0 {
			t.Fatalf("node %s of batch 2 has a job while batch 1 runs", n)
		}
	}
	for _, n := range b1[:3] {
		e.work(n, store.JobLanded)
	}
	e.clk.Add(time.Minute)
	tick(t, s)
	o, _ := e.occ("w")
	if o.Batch != 1 {
		t.Fatalf("batch %d admitted with a node of batch 1 still queued", o.Batch)
	}
	e.work(b1[3], store.JobLanded)
	tick(t, s)
	o, nodes = e.occ("w")
	if o.Batch != 2 {
		t.Fatalf("batch %d, want 2 once batch 1 is terminal", o.Batch)
	}
	for _, n := range byBatch(nodes, 2) {
		if nodes[n].State != store.WindowNodeState(store.JobQueued) {
			t.Fatalf("node %s of batch 2 is %s, want queued", n, nodes[n].State)
		}
		e.work(n, store.JobLanded)
	}
	tick(t, s)
	o, _ = e.occ("w")
	if o.State != store.OccurrenceDone {
		t.Fatalf("occurrence %s, want done", o.State)
	}
	if e.obs[len(e.obs)-1] != "ok" {
		t.Fatalf("observed %v, want ok last", e.obs)
	}
}

func TestNoNodeStartsAfterTheCutoff(t *testing.T) {
	e := newEnv(t, map[string]int{"r1": 6})
	at := recent()
	e.create(window.Spec{Name: "w", At: at, Duration: window.Duration(2 * time.Hour), Cutoff: window.Duration(30 * time.Minute), Batch: window.Amount{N: 2}})
	s := e.scheduler("c1", nil)
	e.clk.Set(at)
	tick(t, s)
	_, nodes := e.occ("w")
	b1 := byBatch(nodes, 1)
	e.work(b1[0], store.JobLanded)
	// The cutoff passes with the batch's second node still queued.
	e.clk.Set(at.Add(90 * time.Minute))
	tick(t, s)
	o, nodes := e.occ("w")
	reason := store.WindowCutoffReason(at.Add(90 * time.Minute))
	if n := nodes[b1[1]]; n.State != store.WindowNodeNotStarted || n.Reason != reason {
		t.Fatalf("queued node at the cutoff: %s %q, want not started %q", n.State, n.Reason, reason)
	}
	if _, err := e.claim(b1[1]); err == nil {
		t.Fatal("a node was started after the cutoff")
	}
	for _, n := range append(byBatch(nodes, 2), byBatch(nodes, 3)...) {
		if nodes[n].State != store.WindowNodeNotStarted || nodes[n].Reason != reason || len(e.jobsOf(n)) != 0 {
			t.Fatalf("node %s: %s %q, jobs %d; want not started, no job", n, nodes[n].State, nodes[n].Reason, len(e.jobsOf(n)))
		}
	}
	if o.State != store.OccurrenceDone || o.Reason != reason {
		t.Fatalf("occurrence %s %q, want done with the cutoff's reason", o.State, o.Reason)
	}
}

func TestClaimRefusedAfterTheRunsCutoff(t *testing.T) {
	// The store enforces the cutoff where jobs are claimed, on every
	// controller, on the real clock.
	e := newEnv(t, map[string]int{"r1": 1})
	cut := time.Now().Add(-time.Second)
	_, res, err := e.q.Submit(ctxT(t), store.RunSpec{Cutoff: cut}, []store.SubmitNode{{Node: "r1-n01"}}, store.SubmitOpts{})
	if err != nil {
		t.Fatal(err)
	}
	j := res[0].Job
	_, err = e.st.Claim(ctxT(t), j.ID, j.Generation, "w", time.Minute)
	if !errors.Is(err, store.ErrRunStopped) {
		t.Fatalf("claim after the cutoff: %v, want ErrRunStopped", err)
	}
	got, _ := e.st.NodeJob(ctxT(t), j.ID)
	if got.State != store.JobCancelled || !got.Started.IsZero() || !strings.HasPrefix(got.Reason, "not started: the window's cutoff passed at") {
		t.Fatalf("job after a refused claim: %s started %v %q", got.State, got.Started, got.Reason)
	}
}

func TestNodesInFlightAtTheEndFinishAndAreReportedOverrunning(t *testing.T) {
	e := newEnv(t, map[string]int{"r1": 2})
	at := recent()
	e.create(window.Spec{Name: "w", At: at, Duration: window.Duration(2 * time.Hour)})
	s := e.scheduler("c1", nil)
	e.clk.Set(at)
	tick(t, s)
	e.work("r1-n01", store.JobLanded)
	running, err := e.claim("r1-n02")
	if err != nil {
		t.Fatal(err)
	}
	e.clk.Set(at.Add(2 * time.Hour))
	tick(t, s)
	o, nodes := e.occ("w")
	if o.State != store.OccurrenceOverrunning || !nodes["r1-n02"].Overran || nodes["r1-n01"].Overran {
		t.Fatalf("at the end: occurrence %s, n02 overran %v, n01 overran %v", o.State, nodes["r1-n02"].Overran, nodes["r1-n01"].Overran)
	}
	if st, _ := e.st.StopRequested(ctxT(t), running.ID); st != store.StopNone {
		t.Fatalf("the overrunning node was asked to stop (%s): it must finish", st)
	}
	if _, err := e.st.FinishNode(ctxT(t), running.ID, store.Finish{State: store.JobLanded, Owner: "worker-1"}); err != nil {
		t.Fatal(err)
	}
	e.clk.Add(10 * time.Minute)
	tick(t, s)
	o, _ = e.occ("w")
	r, err := window.Report(ctxT(t), e.st, o, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	if o.State != store.OccurrenceDone || r.Counts["landed"] != 2 || r.Counts["overran"] != 1 {
		t.Fatalf("occurrence %s, counts %v; want done, 2 landed, 1 overran", o.State, r.Counts)
	}
}

func TestMissedAndLateStarts(t *testing.T) {
	e := newEnv(t, map[string]int{"r1": 1})
	at := recent()
	e.create(window.Spec{Name: "missed", At: at.Add(-2 * time.Hour), Duration: window.Duration(time.Hour), Cutoff: window.Duration(10 * time.Minute)})
	e.create(window.Spec{Name: "late", At: at, Duration: window.Duration(time.Hour), Cutoff: window.Duration(10 * time.Minute)})
	s := e.scheduler("c1", nil)
	// No controller ran from before the first start until 30 minutes
	// after the second.
	e.clk.Set(at.Add(30 * time.Minute))
	tick(t, s)
	o, nodes := e.occ("missed")
	if o.State != store.OccurrenceMissed || !strings.HasPrefix(o.Reason, "missed: no controller started it") || len(nodes) != 0 {
		t.Fatalf("window past its cutoff: %s %q, %d nodes; want missed", o.State, o.Reason, len(nodes))
	}
	o, nodes = e.occ("late")
	r, _ := window.Report(ctxT(t), e.st, o, false, 0)
	if o.State != store.OccurrenceRunning || r.Late != "30m0s" || !strings.HasPrefix(o.Reason, "started late by 30m0s") {
		t.Fatalf("window before its cutoff: %s late %q %q; want running, 30m late", o.State, r.Late, o.Reason)
	}
	if nodes["r1-n01"].JobID == 0 {
		t.Fatal("the late occurrence submitted nothing")
	}
	if !slices.Contains(e.obs, "skipped") {
		t.Fatalf("observed %v, want the missed one as skipped", e.obs)
	}
}

func TestFailureBudgetStopsTheWindow(t *testing.T) {
	e := newEnv(t, map[string]int{"r1": 5, "r2": 5})
	at := recent()
	e.create(window.Spec{Name: "w", At: at, Batch: window.Amount{N: 4}, MaxFailures: window.Amount{Percent: 20}})
	s := e.scheduler("c1", nil)
	e.clk.Set(at)
	tick(t, s)
	_, nodes := e.occ("w")
	b1 := byBatch(nodes, 1)
	e.work(b1[0], store.JobFailed)
	e.work(b1[1], store.JobFailed)
	// The store stops the batch's run at once: the budget (20 % of 10)
	// is spent.
	if _, err := e.claim(b1[2]); !errors.Is(err, store.ErrRunStopped) {
		t.Fatalf("a node started after the budget was spent: %v", err)
	}
	e.clk.Add(time.Minute)
	tick(t, s)
	o, nodes := e.occ("w")
	want := "not started: window stopped after 2 failures"
	if o.State != store.OccurrenceStopped || o.Reason != want {
		t.Fatalf("occurrence %s %q, want stopped %q", o.State, o.Reason, want)
	}
	c := states(nodes)
	if c[store.WindowNodeState(store.JobFailed)] != 2 || c[store.WindowNodeNotStarted] != 8 {
		t.Fatalf("node states %v, want 2 failed, 8 not started", c)
	}
	for _, n := range byBatch(nodes, 2) {
		if nodes[n].Reason != want || len(e.jobsOf(n)) != 0 {
			t.Fatalf("node %s: %q with %d jobs, want %q, untouched", n, nodes[n].Reason, len(e.jobsOf(n)), want)
		}
	}
	if e.obs[len(e.obs)-1] != "budget_spent" {
		t.Fatalf("observed %v", e.obs)
	}
}

func TestPauseStopsAdmittingAndResumeContinues(t *testing.T) {
	e := newEnv(t, map[string]int{"r1": 4})
	at := recent()
	e.create(window.Spec{Name: "w", At: at, Batch: window.Amount{N: 2}})
	s := e.scheduler("c1", nil)
	e.clk.Set(at)
	tick(t, s)
	_, nodes := e.occ("w")
	b1 := byBatch(nodes, 1)
	e.work(b1[0], store.JobLanded)
	if _, err := e.st.PauseWindow(ctxT(t), "w", true, "alice", "change freeze"); err != nil {
		t.Fatal(err)
	}
	e.clk.Add(time.Minute)
	tick(t, s)
	o, _ := e.occ("w")
	if o.State != store.OccurrencePaused || !strings.Contains(o.Reason, "paused by alice") || !strings.Contains(o.Reason, "change freeze") {
		t.Fatalf("paused: occurrence %s %q", o.State, o.Reason)
	}
	var na *store.NotAdmittedError
	if _, err := e.claim(b1[1]); !errors.As(err, &na) || na.Limit != "hold" {
		t.Fatalf("claim while paused: %v, want held", err)
	}
	if _, err := e.st.PauseWindow(ctxT(t), "w", false, "", ""); err != nil {
		t.Fatal(err)
	}
	e.clk.Add(time.Minute)
	tick(t, s)
	o, _ = e.occ("w")
	if o.State != store.OccurrenceRunning || o.Reason != "" {
		t.Fatalf("resumed: occurrence %s %q", o.State, o.Reason)
	}
	e.work(b1[1], store.JobLanded)
	tick(t, s)
	o, nodes = e.occ("w")
	if o.Batch != 2 || nodes[byBatch(nodes, 2)[0]].JobID == 0 {
		t.Fatalf("after resume: batch %d; want the same occurrence's batch 2 admitted", o.Batch)
	}
	if occs, _ := e.st.Occurrences(ctxT(t), "w", 0); len(occs) != 1 {
		t.Fatalf("%d occurrences, want 1", len(occs))
	}
}

func TestNodeOfTwoOverlappingWindowsIsWorkedOnce(t *testing.T) {
	e := newEnv(t, map[string]int{"r1": 2, "r2": 1})
	at := recent()
	e.create(window.Spec{Name: "a", At: at, Selection: window.Selection{Racks: []string{"r1"}}})
	e.create(window.Spec{Name: "b", At: at, Selection: window.Selection{Names: []string{"r1-n01", "r2-n01"}}, Batch: window.Amount{N: 1}})
	s := e.scheduler("c1", nil)
	e.clk.Set(at)
	tick(t, s)
	// b's first batch is r1-n01 or r2-n01; r1-n01 has one job whichever
	// window submitted it.
	if js := e.jobsOf("r1-n01"); len(js) != 1 {
		t.Fatalf("r1-n01 has %d jobs, want 1", len(js))
	}
	for _, n := range []string{"r1-n01", "r1-n02", "r2-n01"} {
		if _, err := e.st.ActiveJob(ctxT(t), n); err == nil {
			e.work(n, store.JobLanded)
		}
	}
	for range 3 {
		e.clk.Add(time.Minute)
		tick(t, s)
		for _, n := range []string{"r1-n01", "r1-n02", "r2-n01"} {
			if _, err := e.st.ActiveJob(ctxT(t), n); err == nil {
				e.work(n, store.JobLanded)
			}
		}
	}
	oa, na := e.occ("a")
	ob, nb := e.occ("b")
	if oa.State != store.OccurrenceDone || ob.State != store.OccurrenceDone {
		t.Fatalf("occurrences %s and %s, want done", oa.State, ob.State)
	}
	if js := e.jobsOf("r1-n01"); len(js) != 1 {
		t.Fatalf("r1-n01 was worked %d times, want once", len(js))
	}
	if na["r1-n01"].JobID != nb["r1-n01"].JobID || na["r1-n01"].State != store.WindowNodeState(store.JobLanded) || nb["r1-n01"].State != store.WindowNodeState(store.JobLanded) {
		t.Fatalf("r1-n01: a %+v, b %+v; want the same landed job", na["r1-n01"], nb["r1-n01"])
	}
}

func TestTwoControllersRunAnOccurrenceOnceAndATakeoverDoesNotRedoLandedNodes(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testTwoControllers(t, newEnv(t, map[string]int{"r1": 4, "r2": 4})) })
	t.Run("postgres", func(t *testing.T) {
		testTwoControllers(t, newEnvOn(t, pg.NewDatabase(t, pg.Start(t)), map[string]int{"r1": 4, "r2": 4}))
	})
}

func testTwoControllers(t *testing.T, e *env) {
	at := recent()
	e.create(window.Spec{Name: "w", At: at, Batch: window.Amount{N: 4}})
	a := e.scheduler("controller-a", e.open())
	b := e.scheduler("controller-b", e.open())
	e.clk.Set(at)
	var wg sync.WaitGroup
	var failures atomic.Int32
	for _, s := range []*window.Scheduler{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				if err := s.Tick(context.Background()); err != nil {
					t.Error(err)
					failures.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if failures.Load() > 0 {
		t.FailNow()
	}
	occs, err := e.st.Occurrences(ctxT(t), "w", 0)
	if err != nil || len(occs) != 1 {
		t.Fatalf("%d occurrences (%v), want exactly 1", len(occs), err)
	}
	owner := occs[0].Owner
	_, nodes := e.occ("w")
	b1 := byBatch(nodes, 1)
	for _, n := range e.nodes {
		want := 0
		if slices.Contains(b1, n.Name) {
			want = 1
		}
		if js := e.jobsOf(n.Name); len(js) != want {
			t.Fatalf("node %s has %d jobs, want %d", n.Name, len(js), want)
		}
	}
	for _, n := range b1 {
		e.work(n, store.JobLanded)
	}
	// The owner stops; the other controller takes the occurrence over
	// once the lease has expired, and goes on with batch 2 only.
	other := a
	if owner == "controller-a" {
		other = b
	}
	e.clk.Add(window.DefaultLease + time.Second)
	tick(t, other)
	o, nodes := e.occ("w")
	if o.Owner == owner || o.Batch != 2 {
		t.Fatalf("after the takeover: owner %s batch %d; want the other controller at batch 2", o.Owner, o.Batch)
	}
	for _, n := range b1 {
		if js := e.jobsOf(n); len(js) != 1 || nodes[n].State != store.WindowNodeState(store.JobLanded) {
			t.Fatalf("landed node %s: %d jobs, %s; want not redone", n, len(js), nodes[n].State)
		}
	}
}

func TestALandedNodeIsNotRedoneWhenItsBatchIsSubmittedAgain(t *testing.T) {
	// A controller that died between submitting a batch and recording it
	// leaves the batch pending; the next one must not redo its landed
	// nodes.
	e := newEnv(t, map[string]int{"r1": 2})
	at := recent()
	e.create(window.Spec{Name: "w", At: at})
	s := e.scheduler("c1", nil)
	e.clk.Set(at)
	tick(t, s)
	e.work("r1-n01", store.JobLanded)
	e.work("r1-n02", store.JobLanded)
	o, nodes := e.occ("w")
	var reset []store.WindowNode
	for _, n := range nodes {
		n.State, n.JobID, n.RunID = store.WindowNodePending, 0, 0
		reset = append(reset, n)
	}
	if err := e.st.SaveOccurrenceNodes(ctxT(t), o.ID, reset); err != nil {
		t.Fatal(err)
	}
	o.Batch = 0
	if err := e.st.SaveOccurrence(ctxT(t), o); err != nil {
		t.Fatal(err)
	}
	tick(t, s)
	o, nodes = e.occ("w")
	for _, n := range nodes {
		if len(e.jobsOf(n.Node)) != 1 || n.State != store.WindowNodeState(store.JobLanded) || !strings.Contains(n.Reason, "not redone") {
			t.Fatalf("node %s: %s %q, %d jobs", n.Node, n.State, n.Reason, len(e.jobsOf(n.Node)))
		}
	}
	if o.State != store.OccurrenceDone {
		t.Fatalf("occurrence %s", o.State)
	}
}

func TestFailingGatePausesAndIsRecheckedEveryMinute(t *testing.T) {
	e := newEnv(t, map[string]int{"r1": 4})
	var calls atomic.Int32
	var open atomic.Bool
	e.gate = func(context.Context, window.Spec) window.GateResult {
		calls.Add(1)
		if open.Load() {
			return window.GateResult{OK: true, Output: "quiet"}
		}
		return window.GateResult{Output: "alert DiskFailing firing"}
	}
	at := recent()
	e.create(window.Spec{Name: "w", At: at, Batch: window.Amount{N: 2}, GatePrometheus: "http://127.0.0.1:1", GateQuery: "ALERTS"})
	s := e.scheduler("c1", nil)
	e.clk.Set(at)
	tick(t, s)
	o, nodes := e.occ("w")
	if o.State != store.OccurrenceGated || !strings.Contains(o.Reason, "alert DiskFailing firing") || o.Batch != 0 {
		t.Fatalf("gate failing at the start: %s %q batch %d", o.State, o.Reason, o.Batch)
	}
	for _, n := range nodes {
		if n.JobID != 0 {
			t.Fatalf("node %s submitted behind a failing gate", n.Node)
		}
	}
	e.clk.Add(30 * time.Second)
	tick(t, s)
	if calls.Load() != 1 {
		t.Fatalf("gate checked %d times within a minute, want once", calls.Load())
	}
	open.Store(true)
	e.clk.Add(30 * time.Second)
	tick(t, s)
	o, _ = e.occ("w")
	if calls.Load() != 2 || o.State != store.OccurrenceRunning || o.Batch != 1 || o.Gate != "quiet" {
		t.Fatalf("a minute later, gate passing: %d checks, %s batch %d gate %q", calls.Load(), o.State, o.Batch, o.Gate)
	}
}

// TestGateCheckEndsWithinHalfTheLease: the gate is checked inside a tick,
// and the tick renews the occurrence's lease only when it ends; a check
// that could run as long as the lease would let another controller take
// the occurrence over meanwhile.
func TestGateCheckEndsWithinHalfTheLease(t *testing.T) {
	e := newEnv(t, map[string]int{"r1": 2})
	var left atomic.Int64
	e.gate = func(ctx context.Context, _ window.Spec) window.GateResult {
		if dl, ok := ctx.Deadline(); ok {
			left.Store(int64(time.Until(dl)))
		} else {
			left.Store(-1)
		}
		return window.GateResult{OK: true}
	}
	at := recent()
	e.create(window.Spec{Name: "w", At: at, Batch: window.Amount{N: 1}, GatePrometheus: "http://127.0.0.1:1", GateQuery: "ALERTS"})
	s := e.scheduler("c1", nil)
	e.clk.Set(at)
	tick(t, s)
	if d := time.Duration(left.Load()); d <= 0 || d > window.DefaultLease/2 {
		t.Fatalf("gate check bounded by %v, want at most half the %v lease", d, window.DefaultLease)
	}
}

// promStub is a Prometheus HTTP API peer on loopback answering
// /api/v1/query with the series given.
func promStub(t *testing.T, series *atomic.Value) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/query" || r.URL.Query().Get("query") != `ALERTS{alertstate="firing"}` {
			http.Error(w, `{"status":"error","error":"bad query"}`, http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":[%s]}}`, series.Load().(string))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestPrometheusGateMustReturnNothing(t *testing.T) {
	var series atomic.Value
	series.Store(`{"metric":{"alertname":"NodeDown","instance":"r1-n03"},"value":[1,"1"]}`)
	srv := promStub(t, &series)
	gate := window.Checker(srv.Client())
	sp := window.Spec{Name: "w", GatePrometheus: srv.URL, GateQuery: `ALERTS{alertstate="firing"}`}
	r := gate(ctxT(t), sp)
	if r.OK || !strings.Contains(r.Output, `alertname="NodeDown"`) {
		t.Fatalf("firing alert: %+v, want closed naming the series", r)
	}
	series.Store(``)
	if r := gate(ctxT(t), sp); !r.OK {
		t.Fatalf("no alert: %+v, want open", r)
	}
	srv.Close()
	if r := gate(ctxT(t), sp); r.OK || !strings.Contains(r.Output, "unreachable") {
		t.Fatalf("Prometheus down: %+v, want closed (never blind)", r)
	}
}

func TestGateHookExitStatusAndOutput(t *testing.T) {
	dir := t.TempDir()
	hook := filepath.Join(dir, "gate.sh")
	flag := filepath.Join(dir, "open")
	script := "#!/bin/sh\nif [ -e " + flag + " ]; then echo all quiet; exit 0; fi\necho \"change freeze for $REPROV_WINDOW\"; exit 3\n"
	if err := os.WriteFile(hook, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	sp := window.Spec{Name: "sat", GateHook: hook}
	r := window.Checker(nil)(ctxT(t), sp)
	if r.OK || !strings.Contains(r.Output, "exited 3") || !strings.Contains(r.Output, "change freeze for sat") {
		t.Fatalf("hook exiting 3: %+v", r)
	}
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := window.Checker(nil)(ctxT(t), sp); !r.OK || !strings.Contains(r.Output, "all quiet") {
		t.Fatalf("hook exiting 0: %+v", r)
	}
	// A hook that does not finish in time is killed, and says so.
	slow := filepath.Join(dir, "slow.sh")
	if err := os.WriteFile(slow, []byte("#!/bin/sh\necho checking\nexec sleep 60\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctxT(t), 500*time.Millisecond)
	defer cancel()
	if r := window.Checker(nil)(sctx, window.Spec{Name: "sat", GateHook: slow}); r.OK || !strings.Contains(r.Output, "did not finish in time") {
		t.Fatalf("slow hook: %+v", r)
	}
	if err := os.Chmod(hook, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := sp.Validate(); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Fatalf("world-writable hook accepted: %v", err)
	}
}

func TestValidateNamesTheFlag(t *testing.T) {
	for _, c := range []struct {
		spec window.Spec
		want string
	}{
		{window.Spec{Name: "w", Selection: window.Selection{All: true}, Duration: window.Duration(time.Hour)}, "--cron or --at"},
		{window.Spec{Name: "w", Selection: window.Selection{All: true}, Cron: "61 * * * *", Duration: window.Duration(time.Hour)}, "--cron"},
		{window.Spec{Name: "w", Selection: window.Selection{All: true}, Cron: "@every 1h", Duration: window.Duration(time.Hour)}, "not @every"},
		{window.Spec{Name: "w", Selection: window.Selection{All: true}, Cron: "0 2 * * *", TZ: "Mars/Olympus", Duration: window.Duration(time.Hour)}, "--tz"},
		{window.Spec{Name: "w", Selection: window.Selection{All: true}, Cron: "0 2 * * *", Duration: window.Duration(time.Hour), Cutoff: window.Duration(time.Hour)}, "--cutoff"},
		{window.Spec{Name: "w", Selection: window.Selection{All: true}, Cron: "0 2 * * *", Duration: window.Duration(time.Hour), GateQuery: "up"}, "--gate-prometheus"},
		{window.Spec{Name: "W!", Selection: window.Selection{All: true}, Cron: "0 2 * * *", Duration: window.Duration(time.Hour)}, "name"},
		{window.Spec{Name: "w", Cron: "0 2 * * *", Duration: window.Duration(time.Hour)}, "selection"},
	} {
		if err := c.spec.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error naming %s", c.spec, err, c.want)
		}
	}
	// A Prometheus URL with credentials is refused without echoing them.
	cred := window.Spec{Name: "w", Selection: window.Selection{All: true}, Cron: "0 2 * * *", Duration: window.Duration(time.Hour),
		GatePrometheus: "http://ops:s3cret-pw@127.0.0.1:9090", GateQuery: "ALERTS"}
	if err := cred.Validate(); err == nil || !strings.Contains(err.Error(), "--gate-prometheus") || strings.Contains(err.Error(), "s3cret-pw") {
		t.Errorf("a gate URL with a password: %v, want a refusal naming --gate-prometheus and not the password", err)
	}
	if _, err := window.ParseAmount("--batch", "0"); err == nil {
		t.Error("--batch 0 accepted")
	}
	if a, err := window.ParseAmount("--batch", "25%"); err != nil || a.Of(10) != 3 {
		t.Errorf("25%% of 10: %v %v, want 3", a.Of(10), err)
	}
}

func TestDeletingAWindowStopsItsOpenOccurrence(t *testing.T) {
	e := newEnv(t, map[string]int{"r1": 4})
	at := recent()
	e.create(window.Spec{Name: "w", At: at, Batch: window.Amount{N: 2}})
	s := e.scheduler("c1", nil)
	e.clk.Set(at)
	tick(t, s)
	_, nodes := e.occ("w")
	b1 := byBatch(nodes, 1)
	e.work(b1[0], store.JobLanded)
	if err := e.st.DeleteWindow(ctxT(t), "w"); err != nil {
		t.Fatal(err)
	}
	e.clk.Add(time.Minute)
	tick(t, s)
	o, nodes := e.occ("w")
	want := "not started: the window was deleted"
	if o.State != store.OccurrenceStopped || o.Reason != want {
		t.Fatalf("occurrence of a deleted window: %s %q", o.State, o.Reason)
	}
	if c := states(nodes); c[store.WindowNodeNotStarted] != 3 || c[store.WindowNodeState(store.JobLanded)] != 1 {
		t.Fatalf("node states %v, want 1 landed, 3 not started", c)
	}
	if _, err := e.claim(b1[1]); err == nil {
		t.Fatal("a queued node of a deleted window was started")
	}
}

func TestOneOffWindowWhoseCutoffPassedIsRefused(t *testing.T) {
	sp := window.Spec{At: time.Now().Add(-2 * time.Hour), Duration: window.Duration(2 * time.Hour), Cutoff: window.Duration(10 * time.Minute)}
	if err := sp.CheckAt(time.Now()); err == nil || !strings.Contains(err.Error(), "cutoff") {
		t.Fatalf("a window whose cutoff passed: %v", err)
	}
	sp.At = time.Now().Add(-time.Hour)
	if err := sp.CheckAt(time.Now()); err != nil {
		t.Fatalf("a window still before its cutoff: %v", err)
	}
}
