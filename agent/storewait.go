package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/reprov/reprov/agent/store"
)

// storeRetryPause is how long a worker pauses before asking a busy store
// again.
const storeRetryPause = 250 * time.Millisecond

// leaseEnd is when the lease this worker last renewed runs out.
func (r *nodeRun) leaseEnd() time.Time { return time.Unix(0, r.leaseUntil.Load()) }

// errLeaseRanOut cuts a store call that did not answer before this
// worker's lease (or its floor) ran out.
var errLeaseRanOut = errors.New("this worker's lease ran out")

// untilLease makes a store call on the node's path that a slow or busy
// store must not turn into a failure of a healthy node (a store shared by
// hundreds of nodes in flight, or held by another process, can take
// longer than any fixed bound). It waits for op's answer for as long as
// the lease this worker holds lasts — the renewal loop extends it
// whenever the store answers, and no other controller can take the job
// before it runs out — and at least a third of the lease's length (what a
// lease check is given: an outcome is worth recording even when the lease
// ran out during its act, and the store itself refuses what the lease
// must cover). It asks again after an answer that says the store did
// nothing because it was busy (store.Retryable). Any other answer is
// op's, returned as it is. When the lease runs out first, the error says
// the store did not answer what in time: the caller stops the node with a
// store failure rather than guess. ctx's end stops the wait (op's error
// is returned).
func (r *nodeRun) untilLease(ctx context.Context, what string, op func(context.Context) error) error {
	floor := time.Now().Add(r.e.cfg.LeaseTTL / 3)
	for tries := 1; ; tries++ {
		tctx, cancel := r.leaseCtx(ctx, floor)
		err := op(tctx)
		ranOut := errors.Is(context.Cause(tctx), errLeaseRanOut)
		cancel()
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return err
		case ranOut:
			return fmt.Errorf("the store did not answer (%s) before %s at %s, after %d tries: %w",
				what, errLeaseRanOut, r.leaseEnd().UTC().Format(time.RFC3339), tries, err)
		case store.Retryable(err):
			r.log.Warn("the store is busy; asking again while the lease holds", "what", what, "try", tries, "err", err)
		default:
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(storeRetryPause):
		}
	}
}

// leaseCtx is ctx, cut with errLeaseRanOut once both floor and the lease
// this worker holds have passed — the lease as the renewal loop extends it
// meanwhile, not as it was when the call started.
func (r *nodeRun) leaseCtx(ctx context.Context, floor time.Time) (context.Context, context.CancelFunc) {
	tctx, cancel := context.WithCancelCause(ctx)
	stop := make(chan struct{})
	go func() {
		for {
			end := r.leaseEnd()
			if end.Before(floor) {
				end = floor
			}
			d := time.Until(end)
			if d <= 0 {
				cancel(errLeaseRanOut)
				return
			}
			t := time.NewTimer(d)
			select {
			case <-stop:
				t.Stop()
				return
			case <-tctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}()
	return tctx, func() { close(stop); cancel(nil) }
}

// jobPoller reads, once per poll interval and in one query per chunk of
// IDs (store.WatchJobs), the jobs of every node of this engine waiting
// for its landing, and hands each waiter its job: one store round trip
// per interval for all of them instead of two per waiting node, which on
// a single SQLite connection with hundreds of nodes in flight is what
// made every other store call wait.
type jobPoller struct {
	st    *store.Store
	every time.Duration
	log   *slog.Logger

	mu      sync.Mutex
	subs    map[int64]map[chan store.WatchedJob]struct{}
	running bool
}

func newJobPoller(st *store.Store, every time.Duration, log *slog.Logger) *jobPoller {
	return &jobPoller{st: st, every: every, log: log, subs: map[int64]map[chan store.WatchedJob]struct{}{}}
}

// subscribe returns a channel that receives the job's latest reading
// after each poll (a reader that falls behind gets the newest one), and
// the func that ends the subscription.
func (p *jobPoller) subscribe(id int64) (<-chan store.WatchedJob, func()) {
	ch := make(chan store.WatchedJob, 1)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.subs[id] == nil {
		p.subs[id] = map[chan store.WatchedJob]struct{}{}
	}
	p.subs[id][ch] = struct{}{}
	if !p.running {
		p.running = true
		go p.loop()
	}
	return ch, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		delete(p.subs[id], ch)
		if len(p.subs[id]) == 0 {
			delete(p.subs, id)
		}
	}
}

// loop polls while anyone waits, and ends when nobody does.
func (p *jobPoller) loop() {
	t := time.NewTicker(p.every)
	defer t.Stop()
	for range t.C {
		p.mu.Lock()
		if len(p.subs) == 0 {
			p.running = false
			p.mu.Unlock()
			return
		}
		ids := make([]int64, 0, len(p.subs))
		for id := range p.subs {
			ids = append(ids, id)
		}
		p.mu.Unlock()

		// A reading that does not come in time is skipped: the waiters
		// go on probing, and the next poll asks again.
		ctx, cancel := context.WithTimeout(context.Background(), max(10*p.every, 30*time.Second))
		jobs, err := p.st.WatchJobs(ctx, ids)
		cancel()
		if err != nil {
			p.log.Warn("reading the jobs of the nodes waiting for their landing", "jobs", len(ids), "err", err)
			continue
		}
		p.mu.Lock()
		for _, j := range jobs {
			for ch := range p.subs[j.Job.ID] {
				select {
				case <-ch: // drop the stale reading
				default:
				}
				ch <- j
			}
		}
		p.mu.Unlock()
	}
}
