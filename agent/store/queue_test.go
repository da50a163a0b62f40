package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/lab/labtool"
)

// landWorker is a trivial engine: claim, one recorded step, land, finish.
type landWorker struct {
	river.WorkerDefaults[store.ReinstallArgs]
	st       *store.Store
	clientID string

	mu     sync.Mutex
	worked []store.ReinstallArgs
}

func (w *landWorker) Work(ctx context.Context, job *river.Job[store.ReinstallArgs]) error {
	a := job.Args
	owner := store.OwnerID(w.clientID, job.ID)
	nj, err := w.st.ClaimNodeJob(ctx, a.NodeJobID, a.Generation, owner, time.Minute)
	if errors.Is(err, store.ErrSuperseded) || errors.Is(err, store.ErrNotActive) || errors.Is(err, store.ErrWindowClosed) {
		return nil
	}
	if err != nil {
		return err
	}
	w.mu.Lock()
	w.worked = append(w.worked, a)
	w.mu.Unlock()
	intent, err := w.st.RecordStep(ctx, store.Step{JobID: nj.ID, Name: "power_cycle", Phase: store.PhaseIntent, Owner: owner})
	if err != nil {
		return err
	}
	if _, err := w.st.RecordStep(ctx, store.Step{Phase: store.PhaseOutcome, IntentID: intent.ID, Result: store.ResultOK}); err != nil {
		return err
	}
	if err := w.st.ArmLanding(ctx, nj.ID, owner); err != nil {
		return err
	}
	if _, err := w.st.MarkLanded(ctx, nj.ID, store.LandingIPXE, json.RawMessage(fmt.Sprintf(`{"river_job":%d}`, job.ID))); err != nil {
		return err
	}
	_, err = w.st.FinishNode(ctx, nj.ID, store.Finish{State: store.JobLanded, Owner: owner})
	return err
}

func (w *landWorker) workedCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.worked)
}

// startWorker opens its own Store (a second controller) and starts a queue
// that works reinstall jobs.
func startWorker(t *testing.T, url, id string) (*store.Store, *store.Queue, *landWorker) {
	t.Helper()
	st := open(t, url)
	w := &landWorker{st: st, clientID: id}
	workers := river.NewWorkers()
	river.AddWorker(workers, w)
	q, err := st.NewQueue(store.QueueConfig{ID: id, Workers: workers, FetchPollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("NewQueue: %v", err)
	}
	if q.ID() != id {
		t.Fatalf("queue ID = %q, want %q", q.ID(), id)
	}
	ctx := ctxT(t)
	if err := q.Start(ctx); err != nil {
		t.Fatalf("start queue: %v", err)
	}
	t.Cleanup(func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := q.Stop(stopCtx); err != nil {
			t.Errorf("stop queue: %v", err)
		}
	})
	return st, q, w
}

func waitJobState(t *testing.T, s *store.Store, jobID int64, want store.JobState) store.NodeJob {
	t.Helper()
	var got store.NodeJob
	labtool.Eventually(t, 30*time.Second, fmt.Sprintf("job %d to be %s", jobID, want), func() bool {
		j, err := s.NodeJob(context.Background(), jobID)
		if err != nil {
			t.Fatalf("NodeJob(%d): %v", jobID, err)
		}
		got = j
		return j.State == want
	})
	return got
}

func waitRiverState(t *testing.T, q *store.Queue, id int64, want rivertype.JobState) {
	t.Helper()
	labtool.Eventually(t, 30*time.Second, fmt.Sprintf("River job %d to be %s", id, want), func() bool {
		j, err := q.JobGet(context.Background(), id)
		if err != nil {
			t.Fatalf("River JobGet(%d): %v", id, err)
		}
		return j.State == want
	})
}

func testRiverEndToEnd(t *testing.T, _ store.Dialect, fresh newURL) {
	ctx := ctxT(t)
	url := fresh(t)
	// Controller A only enqueues; controller B (its own Store) works.
	a := open(t, url)
	qa, err := a.NewQueue(store.QueueConfig{})
	if err != nil {
		t.Fatal(err)
	}
	_, qb, w := startWorker(t, url, "ctl-b")
	run := mustRun(t, a)

	job, err := qa.Acquire(ctx, store.AcquireRequest{RunID: run.ID, Node: "web-014", MACs: []string{"3c:4a:92:11:22:33"}}, store.EnqueueOpts{})
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	if job.RiverJobID == 0 || job.State != store.JobQueued {
		t.Fatalf("acquired job = %+v; want queued with a River job", job)
	}
	done := waitJobState(t, a, job.ID, store.JobLanded)
	if done.Owner != store.OwnerID("ctl-b", job.RiverJobID) || done.LandingSource != store.LandingIPXE {
		t.Fatalf("landed job = %+v", done)
	}
	steps, err := a.Steps(ctx, job.ID)
	if err != nil || len(steps) != 2 || steps[0].Name != "power_cycle" {
		t.Fatalf("steps recorded by the worker = %+v, %v", steps, err)
	}
	waitRiverState(t, qb, job.RiverJobID, rivertype.JobStateCompleted)

	// The node is free again and a second reinstall is queued and worked,
	// although River still holds the first, completed job.
	second, err := qa.Acquire(ctx, store.AcquireRequest{RunID: run.ID, Node: "web-014"}, store.EnqueueOpts{})
	if err != nil {
		t.Fatalf("second Acquire after completion: %v", err)
	}
	if second.RiverJobID == job.RiverJobID {
		t.Fatal("second reinstall reused the completed River job")
	}
	waitJobState(t, a, second.ID, store.JobLanded)
	if n := w.workedCount(); n != 2 {
		t.Fatalf("worker ran %d jobs, want 2", n)
	}
}

func testRiverUnique(t *testing.T, _ store.Dialect, fresh newURL) {
	ctx := ctxT(t)
	s := open(t, fresh(t))
	q, err := s.NewQueue(store.QueueConfig{}) // insert-only: jobs stay scheduled
	if err != nil {
		t.Fatal(err)
	}
	run := mustRun(t, s)
	later := store.EnqueueOpts{ScheduledAt: time.Now().Add(time.Hour)}
	job, err := q.Acquire(ctx, store.AcquireRequest{RunID: run.ID, Node: "n1"}, later)
	if err != nil {
		t.Fatal(err)
	}
	rj, err := q.JobGet(ctx, job.RiverJobID)
	if err != nil {
		t.Fatal(err)
	}
	if rj.State != rivertype.JobStateScheduled || rj.Kind != store.ReinstallKind {
		t.Fatalf("River job = %s %s, want scheduled %s", rj.State, rj.Kind, store.ReinstallKind)
	}
	// A second reinstall of the node is refused, and enqueues nothing.
	if _, err := q.Acquire(ctx, store.AcquireRequest{RunID: run.ID, Node: "n1"}, later); !errors.Is(err, store.ErrNodeBusy) {
		t.Fatalf("second Acquire: %v, want ErrNodeBusy", err)
	}
	// Enqueueing the same node job again (e.g. retried after a crash) is a
	// duplicate in River, not a second job.
	args := store.ReinstallArgs{NodeJobID: job.ID, Generation: job.Generation, Node: "n1", RunID: run.ID}
	res, err := q.Insert(ctx, args, &river.InsertOpts{ScheduledAt: later.ScheduledAt})
	if err != nil {
		t.Fatal(err)
	}
	if !res.UniqueSkippedAsDuplicate || res.Job.ID != job.RiverJobID {
		t.Fatalf("re-insert: duplicate=%v job %d; want duplicate of %d", res.UniqueSkippedAsDuplicate, res.Job.ID, job.RiverJobID)
	}
	list, err := q.JobList(ctx, river.NewJobListParams().Kinds(store.ReinstallKind).States(rivertype.JobStateScheduled, rivertype.JobStateAvailable))
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Jobs) != 1 {
		t.Fatalf("River holds %d reinstall jobs, want 1", len(list.Jobs))
	}
	// A run's window start schedules its River jobs.
	start := time.Now().Add(2 * time.Hour).Truncate(time.Second)
	win, err := s.CreateRun(ctx, store.RunSpec{WindowStart: start, WindowEnd: start.Add(4 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	wj, err := q.Acquire(ctx, store.AcquireRequest{RunID: win.ID, Node: "batch-1"}, store.EnqueueOpts{})
	if err != nil {
		t.Fatal(err)
	}
	rw, err := q.JobGet(ctx, wj.RiverJobID)
	if err != nil {
		t.Fatal(err)
	}
	if !rw.ScheduledAt.Equal(start) || rw.State != rivertype.JobStateScheduled {
		t.Fatalf("window job scheduled at %v (%s), want %v", rw.ScheduledAt, rw.State, start)
	}
}

func testResumeOrphan(t *testing.T, _ store.Dialect, fresh newURL) {
	ctx := ctxT(t)
	url := fresh(t)
	a := open(t, url)
	qa, err := a.NewQueue(store.QueueConfig{})
	if err != nil {
		t.Fatal(err)
	}
	run := mustRun(t, a)
	// The first controller enqueued the job far in the future and claimed it
	// itself, then died mid-job without renewing its lease.
	job, err := qa.Acquire(ctx, store.AcquireRequest{RunID: run.ID, Node: "dl360-07"}, store.EnqueueOpts{ScheduledAt: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	dead := mustClaim(t, a, job, store.OwnerID("ctl-dead", job.RiverJobID), 50*time.Millisecond)
	wipe, err := a.RecordStep(ctx, store.Step{JobID: job.ID, Name: "wipe_boot_sector", Phase: store.PhaseIntent})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := qa.Resume(ctx, job.ID, store.EnqueueOpts{}); !errors.Is(err, store.ErrNodeBusy) {
		t.Fatalf("Resume under a live lease: %v, want ErrNodeBusy", err)
	}
	labtool.Eventually(t, 10*time.Second, "the dead controller's lease to expire", func() bool { return time.Now().After(dead.LeaseUntil) })
	orphans, err := a.OrphanedJobs(ctx)
	if err != nil || len(orphans) != 1 || orphans[0].ID != job.ID {
		t.Fatalf("OrphanedJobs = %+v, %v", orphans, err)
	}

	_, qb, w := startWorker(t, url, "ctl-b")
	resumed, err := qa.Resume(ctx, job.ID, store.EnqueueOpts{})
	if err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if resumed.Generation != job.Generation+1 || resumed.RiverJobID == job.RiverJobID {
		t.Fatalf("resumed job = %+v; want generation %d and a new River job", resumed, job.Generation+1)
	}
	done := waitJobState(t, a, job.ID, store.JobLanded)
	if done.Generation != resumed.Generation {
		t.Fatalf("landed under generation %d, want %d", done.Generation, resumed.Generation)
	}
	waitRiverState(t, qb, resumed.RiverJobID, rivertype.JobStateCompleted)
	// The resumed worker saw the unsettled wipe on the node's record.
	if u, err := a.UnsettledSteps(ctx, "dl360-07"); err != nil || len(u) != 1 || u[0].ID != wipe.ID {
		t.Fatalf("UnsettledSteps after resume = %+v, %v", u, err)
	}
	// The old generation's River job, should River ever run it, does nothing.
	if _, err := a.ClaimNodeJob(ctx, job.ID, job.Generation, "late/1", time.Minute); !errors.Is(err, store.ErrSuperseded) {
		t.Fatalf("claim by the old generation: %v, want ErrSuperseded", err)
	}
	if n := w.workedCount(); n != 1 {
		t.Fatalf("worker ran %d jobs, want 1", n)
	}
	// An interrupted job resumes when its node is free.
	intr := mustClaim(t, a, mustAcquire(t, a, run.ID, "n2"), "x/1", time.Minute)
	if _, err := a.FinishNode(ctx, intr.ID, store.Finish{State: store.JobInterrupted, Reason: "SIGINT"}); err != nil {
		t.Fatal(err)
	}
	blocker := mustAcquire(t, a, run.ID, "n2")
	if _, err := qa.Resume(ctx, intr.ID, store.EnqueueOpts{}); !errors.Is(err, store.ErrNodeBusy) {
		t.Fatalf("Resume of interrupted job while node busy: %v, want ErrNodeBusy", err)
	}
	if _, err := a.FinishNode(ctx, blocker.ID, store.Finish{State: store.JobCancelled}); err != nil {
		t.Fatal(err)
	}
	if _, err := qa.Resume(ctx, intr.ID, store.EnqueueOpts{}); err != nil {
		t.Fatalf("Resume of interrupted job: %v", err)
	}
	waitJobState(t, a, intr.ID, store.JobLanded)
	if _, err := qa.Resume(ctx, intr.ID, store.EnqueueOpts{}); !errors.Is(err, store.ErrNotActive) {
		t.Fatalf("Resume of a landed job: %v, want ErrNotActive", err)
	}
}
