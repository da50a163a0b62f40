package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/riverqueue/river"

	"github.com/reprov/reprov/agent/fleet"
	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/inventory"
)

// WorkerOptions configure a Worker.
type WorkerOptions struct {
	// Queues are the shared queues to work (store.QueueFor of each site
	// served); empty: the default queue only.
	Queues []string
	// MaxWorkers bounds the nodes this process works at once (default
	// fleet.DefaultMaxParallel). Runs' own limits are enforced in the
	// store, across processes.
	MaxWorkers int
	// FetchPollInterval is how often River looks for jobs enqueued by
	// other processes (default 200 ms).
	FetchPollInterval time.Duration
}

// Worker is this process's share of the work: a River client on the
// shared queues whose worker runs node jobs of any run — submitted by this
// process or another — and a loop that takes over the jobs of controllers
// that died (their lease expired) by requeueing them for any live worker.
type Worker struct {
	e  *Engine
	q  *store.Queue
	id string
	// ctx ends (cause errHandover) when the worker stops: its nodes stop at
	// their next step boundary and are handed back to the queue.
	ctx    context.Context
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup
	// inventory is this controller's view of the nodes: a job is worked
	// only for a node this controller knows, with the same entry.
	inventory map[string]inventory.Node
}

// errHandover stops a node's work at its next step boundary because this
// controller is stopping; the job goes back to the shared queue.
var errHandover = errors.New("the controller is stopping: the node is handed over")

// StartWorker starts this process's worker on the shared queues. Stop it
// before closing the store.
func (e *Engine) StartWorker(ctx context.Context, o WorkerOptions) (*Worker, error) {
	queues := map[string]int{}
	n := o.MaxWorkers
	if n <= 0 {
		n = fleet.DefaultMaxParallel
	}
	if len(o.Queues) == 0 {
		o.Queues = []string{store.DefaultQueue}
	}
	for _, q := range o.Queues {
		queues[q] = n
	}
	poll := o.FetchPollInterval
	if poll <= 0 {
		poll = 200 * time.Millisecond
	}
	wctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	w := &Worker{e: e, id: newClientID(), ctx: wctx, cancel: cancel, inventory: map[string]inventory.Node{}}
	for _, n := range e.cfg.Inventory {
		w.inventory[n.Name] = n
	}
	workers := river.NewWorkers()
	river.AddWorker(workers, &reinstallWorker{w: w})
	q, err := e.cfg.Store.NewQueue(store.QueueConfig{ID: w.id, Workers: workers, Queues: queues, FetchPollInterval: poll})
	if err != nil {
		cancel(nil)
		return nil, err
	}
	w.q = q
	// River's context does not end with Ctrl-C: the engine stops nodes at
	// step boundaries itself.
	if err := q.Start(wctx); err != nil {
		cancel(nil)
		return nil, fmt.Errorf("start job queue: %w", err)
	}
	w.wg.Add(1)
	go w.takeOverLoop()
	e.log.Debug("worker started", "controller", w.id, "queues", o.Queues)
	return w, nil
}

// ID is the worker's controller ID (its River client's).
func (w *Worker) ID() string { return w.id }

// Stop stops claiming jobs; nodes in flight stop at their next step
// boundary (an in-band wipe unit always finishes) and go back to the
// shared queue for another controller. It returns when they have.
func (w *Worker) Stop(ctx context.Context) error {
	w.cancel(errHandover)
	w.wg.Wait()
	if err := w.q.Stop(ctx); err != nil {
		return fmt.Errorf("stop job queue: %w", err)
	}
	return nil
}

// takeOverLoop requeues the jobs of dead controllers (lease expired) every
// quarter lease, so a live worker continues them within 2× the lease.
func (w *Worker) takeOverLoop() {
	defer w.wg.Done()
	e := w.e
	every := e.cfg.LeaseTTL / 4
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(w.ctx, every*2)
		jobs, err := w.q.TakeOver(ctx, 2*e.cfg.LeaseTTL)
		cancel()
		if err != nil && w.ctx.Err() == nil {
			e.log.Warn("taking over the jobs of stopped controllers", "err", err)
		}
		e.obs.Takeovers(len(jobs))
		for _, j := range jobs {
			e.log.Info("took over the job of a controller that stopped renewing its lease", "node", j.Node, "job", j.ID, "run", j.RunID, "generation", j.Generation)
		}
	}
}

// reinstallWorker is the River worker of reinstall jobs.
type reinstallWorker struct {
	river.WorkerDefaults[store.ReinstallArgs]
	w *Worker
}

// Work claims one node job (within its run's limits) and runs its state
// machine. A job whose run's limits are reached is snoozed; a job for a
// node this controller does not know (or knows differently) is left for
// another controller.
func (rw *reinstallWorker) Work(ctx context.Context, job *river.Job[store.ReinstallArgs]) error {
	w := rw.w
	e := w.e
	a := job.Args
	if w.ctx.Err() != nil {
		return river.JobSnooze(0)
	}
	log := e.log.With("node", a.Node, "job", a.NodeJobID)
	n, ok := w.inventory[a.Node]
	if !ok {
		log.Warn("a job for a node this controller's inventory does not have: left for another controller")
		return river.JobSnooze(5 * time.Second)
	}
	if spec, err := e.cfg.Store.JobSpec(ctx, a.NodeJobID); err == nil && spec != nil {
		mine, _ := nodeSpec(n)
		if !sameJSON(spec, mine) {
			log.Warn("this controller's inventory entry for the node differs from the one the job was submitted with: left for another controller")
			return river.JobSnooze(5 * time.Second)
		}
	}
	owner := store.OwnerID(w.id, job.ID)
	nj, err := e.cfg.Store.Claim(ctx, a.NodeJobID, a.Generation, owner, e.cfg.LeaseTTL)
	var na *store.NotAdmittedError
	switch {
	case errors.As(err, &na) && na.Limit == "hold":
		// The run is held (its window paused, or its gate failing) for
		// minutes or hours: look again every few seconds.
		e.obs.AdmissionWait(na.Limit)
		return river.JobSnooze(2*time.Second + rand.N(time.Second))
	case errors.As(err, &na):
		// One of the run's limits is reached: the end of one of the run's
		// nodes wakes a waiting job (wakeNext); until then, look again
		// after a snooze that doubles each time, so that thousands of
		// waiting jobs do not keep the store busy while nodes boot.
		e.obs.AdmissionWait(na.Limit)
		return river.JobSnooze(admissionSnooze(snoozes(job.Metadata)))
	case errors.Is(err, store.ErrSuperseded), errors.Is(err, store.ErrNotActive), errors.Is(err, store.ErrNodeBusy):
		log.Debug("nothing to do for this River job", "err", err)
		return nil
	case errors.Is(err, store.ErrRunStopped):
		log.Info("not started", "err", err)
		return nil
	case err != nil:
		log.Warn("claim failed; retrying", "err", err)
		return river.JobSnooze(time.Second)
	}
	w.wg.Add(1)
	defer w.wg.Done()
	defer func() {
		if v := recover(); v != nil {
			log.Error("reinstall worker panicked", "panic", v)
			sctx, cancel := context.WithTimeout(context.WithoutCancel(w.ctx), 10*time.Second)
			defer cancel()
			_, _ = e.cfg.Store.FinishNode(sctx, nj.ID, store.Finish{State: store.JobFailed, Owner: owner,
				Reason: fmt.Sprintf("%s: panic: %v", ReasonInternal, v)})
		}
	}()
	e.work(w, nj, owner, n)
	w.wakeNext(nj)
	return nil
}

// Admission snoozes: the first 0.25–0.5 s, doubling with each snooze of
// the job up to 10 s (with up to as much again of jitter, so that
// controllers don't claim in lockstep). docs/performance.md, "Admission".
const (
	admissionSnoozeFirst = 250 * time.Millisecond
	admissionSnoozeMax   = 10 * time.Second
)

// admissionSnooze is how long a job turned away by its run's limits
// waits, after it has been snoozed n times.
func admissionSnooze(n int) time.Duration {
	d := admissionSnoozeMax
	if n < 6 {
		d = min(admissionSnoozeFirst<<n, admissionSnoozeMax)
	}
	return d + rand.N(d)
}

// snoozes is how many times River has snoozed a job (its metadata's
// "snoozes"; 0 when absent or unreadable).
func snoozes(metadata []byte) int {
	var m struct {
		Snoozes int `json:"snoozes"`
	}
	if json.Unmarshal(metadata, &m) != nil {
		return 0
	}
	return m.Snoozes
}

// wakeNext wakes one of the run's waiting jobs after node job nj ended
// here: the room its end made under the run's limits is taken at once
// rather than at the end of a snooze. Not when the worker stops; a wake
// that fails only delays a job to its snooze's end.
func (w *Worker) wakeNext(nj store.NodeJob) {
	if w.ctx.Err() != nil {
		return
	}
	ctx, cancel := context.WithTimeout(w.ctx, 10*time.Second)
	defer cancel()
	woken, ok, err := w.q.WakeQueued(ctx, nj)
	switch {
	case err != nil:
		w.e.log.Debug("no waiting job woken", "run", nj.RunID, "after", nj.Node, "err", err)
	case ok:
		w.e.log.Debug("woke a waiting job", "run", nj.RunID, "after", nj.Node, "node", woken.Node, "job", woken.ID)
	}
}

func sameJSON(a, b []byte) bool {
	var x, y bytes.Buffer
	if json.Compact(&x, a) != nil || json.Compact(&y, b) != nil {
		return false
	}
	return bytes.Equal(x.Bytes(), y.Bytes())
}
