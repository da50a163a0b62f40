package store_test

import (
	"slices"
	"testing"
	"time"

	"github.com/reprov/reprov/agent/store"
)

// testEndedJobIDs: a run's ended jobs, whatever way they ended, and none
// under way or of another run.
func testEndedJobIDs(t *testing.T, _ store.Dialect, fresh newURL) {
	s := open(t, fresh(t))
	ctx := ctxT(t)
	q, err := s.NewQueue(store.QueueConfig{ID: "ended"})
	if err != nil {
		t.Fatal(err)
	}
	submit := func(nodes ...string) (store.Run, map[string]store.NodeJob) {
		t.Helper()
		var sub []store.SubmitNode
		for _, n := range nodes {
			sub = append(sub, store.SubmitNode{Node: n, Rack: "r1"})
		}
		run, res, err := q.Submit(ctx, store.RunSpec{CreatedBy: "test", Selection: "all", WindowStart: time.Now().Add(time.Hour),
			Limits: store.RunLimits{MaxParallel: 10}}, sub, store.SubmitOpts{})
		if err != nil {
			t.Fatal(err)
		}
		jobs := map[string]store.NodeJob{}
		for _, r := range res {
			jobs[r.Job.Node] = r.Job
		}
		return run, jobs
	}
	finish := func(j store.NodeJob, st store.JobState) {
		t.Helper()
		if _, err := s.Claim(ctx, j.ID, j.Generation, "test", time.Hour); err != nil {
			t.Fatalf("claim %s: %v", j.Node, err)
		}
		if st == store.JobRunning {
			return
		}
		if _, err := s.FinishNode(ctx, j.ID, store.Finish{State: st}); err != nil {
			t.Fatalf("finish %s: %v", j.Node, err)
		}
	}
	run, jobs := submit("a", "b", "c", "d")
	_, other := submit("e")
	finish(jobs["a"], store.JobLanded)
	finish(jobs["b"], store.JobFailed)
	finish(jobs["c"], store.JobRunning)
	finish(other["e"], store.JobLanded)

	got, err := s.EndedJobIDs(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	want := []int64{jobs["a"].ID, jobs["b"].ID}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("EndedJobIDs = %v, want %v (a landed, b failed; c running, d queued, e of another run)", got, want)
	}
}
