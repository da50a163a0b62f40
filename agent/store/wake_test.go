package store_test

import (
	"testing"
	"time"

	"github.com/reprov/reprov/agent/store"
)

// testWakeQueued: when a node of a run ends, WakeQueued makes one waiting
// job of the run workable at once — one of the freed rack first, else the
// oldest of a rack below the per-rack limit — and leaves alone jobs that
// are already workable and racks that are full.
func testWakeQueued(t *testing.T, _ store.Dialect, fresh newURL) {
	s := open(t, fresh(t))
	ctx := ctxT(t)
	q, err := s.NewQueue(store.QueueConfig{ID: "wake"})
	if err != nil {
		t.Fatal(err)
	}
	sub := []store.SubmitNode{
		{Node: "a1", Rack: "r1"}, {Node: "b1", Rack: "r2"}, {Node: "b2", Rack: "r2"},
		{Node: "c1", Rack: "r3"}, {Node: "a2", Rack: "r1"}, {Node: "a3", Rack: "r1"},
	}
	// The run's River jobs wait for its window, an hour away: "scheduled",
	// as a job snoozed by the run's limits waits.
	_, res, err := q.Submit(ctx, store.RunSpec{CreatedBy: "test", Selection: "all", WindowStart: time.Now().Add(time.Hour),
		Limits: store.RunLimits{MaxParallel: 10, PerRack: 1}}, sub, store.SubmitOpts{})
	if err != nil {
		t.Fatal(err)
	}
	job := map[string]store.NodeJob{}
	for _, r := range res {
		job[r.Job.Node] = r.Job
	}
	riverState := func(node string) string {
		t.Helper()
		row, err := q.JobGet(ctx, job[node].RiverJobID)
		if err != nil {
			t.Fatalf("River job of %s: %v", node, err)
		}
		return string(row.State)
	}
	for _, n := range []string{"a1", "b1"} {
		if _, err := s.Claim(ctx, job[n].ID, job[n].Generation, "test", time.Hour); err != nil {
			t.Fatalf("claim %s: %v", n, err)
		}
	}
	if _, err := s.FinishNode(ctx, job["a1"].ID, store.Finish{State: store.JobLanded}); err != nil {
		t.Fatal(err)
	}
	wake := func(want string) {
		t.Helper()
		woken, ok, err := q.WakeQueued(ctx, job["a1"])
		switch {
		case err != nil:
			t.Fatalf("WakeQueued: %v", err)
		case want == "" && ok:
			t.Fatalf("woke %s, want none (r1 and r3 have no waiting job left, r2 is at its limit)", woken.Node)
		case want != "" && !ok:
			t.Fatalf("woke none, want %s", want)
		case want != "" && woken.Node != want:
			t.Fatalf("woke %s, want %s", woken.Node, want)
		}
		if want != "" {
			if st := riverState(want); st != "available" {
				t.Fatalf("%s's River job is %s after the wake, want available", want, st)
			}
		}
	}
	// a1 (rack r1) ended: r1's oldest waiting job, not the older c1 (whose
	// rack has room too) or b2.
	wake("a2")
	if st := riverState("a3"); st != "scheduled" {
		t.Fatalf("a3's River job is %s, want still scheduled: one wake per end", st)
	}
	// a2 is workable already: the next wake takes a3.
	wake("a3")
	// r1 has no waiting job left: the oldest job of a rack with room, c1,
	// not the older b2, whose rack is at its per-rack limit (b1 runs).
	wake("c1")
	wake("")
	if st := riverState("b2"); st != "scheduled" {
		t.Fatalf("b2's River job is %s, want scheduled: its rack is full", st)
	}
	// b1 ends: r2 has room, and r2's job is woken after an r1 end too.
	if _, err := s.FinishNode(ctx, job["b1"].ID, store.Finish{State: store.JobFailed, Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	wake("b2")
}
