package bmc

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// gatedClient blocks every PowerState call until the test lets one go,
// and tracks how many calls are inside at once.
type gatedClient struct {
	*fakeClient
	inside, maxInside atomic.Int32
	gate              chan struct{}
}

func newGated() *gatedClient {
	g := &gatedClient{fakeClient: newFake(), gate: make(chan struct{})}
	g.during = func(string) {
		n := g.inside.Add(1)
		for {
			m := g.maxInside.Load()
			if n <= m || g.maxInside.CompareAndSwap(m, n) {
				break
			}
		}
		<-g.gate
		g.inside.Add(-1)
	}
	return g
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestLimitConcurrencyNeverExceeded(t *testing.T) {
	for _, limit := range []int{1, 2, 3} {
		t.Run(fmt.Sprint("limit ", limit), func(t *testing.T) {
			g := newGated()
			lim := NewLimiter(nil)
			c := WithLimit(g, lim, "10.1.12.14:623", Options{MaxConcurrent: limit})
			const calls = 12
			var wg sync.WaitGroup
			for range calls {
				wg.Go(func() {
					if _, err := c.PowerState(context.Background()); err != nil {
						t.Errorf("power state: %v", err)
					}
				})
			}
			for done := 0; done < calls; done++ {
				// Wait until as many calls as allowed are at the BMC (or all
				// that remain), then let one finish.
				want := int32(min(limit, calls-done))
				waitFor(t, "calls to reach the BMC", func() bool { return g.inside.Load() == want })
				g.gate <- struct{}{}
			}
			wg.Wait()
			if got := g.maxInside.Load(); got != int32(limit) {
				t.Errorf("at most %d calls were at the BMC at once, want exactly the limit %d", got, limit)
			}
			if n := g.count("PowerState"); n != calls {
				t.Errorf("%d calls reached the BMC, want %d", n, calls)
			}
		})
	}
}

func TestLimitIsPerBMC(t *testing.T) {
	lim := NewLimiter(nil)
	a, b := newGated(), newGated()
	ca := WithLimit(a, lim, "bmc-a", Options{})
	cb := WithLimit(b, lim, "bmc-b", Options{})
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = ca.PowerState(context.Background()) })
	wg.Go(func() { _, _ = cb.PowerState(context.Background()) })
	waitFor(t, "one call at each BMC at the same time", func() bool {
		return a.inside.Load() == 1 && b.inside.Load() == 1
	})
	a.gate <- struct{}{}
	b.gate <- struct{}{}
	wg.Wait()
}

func TestLimitSharedBMCUsesStrictestLimit(t *testing.T) {
	lim := NewLimiter(nil)
	g := newGated()
	// Two nodes behind one chassis manager, configured differently.
	c1 := WithLimit(g, lim, "chassis:443", Options{MaxConcurrent: 1})
	c2 := WithLimit(g, lim, "chassis:443", Options{MaxConcurrent: 4})
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() { _, _ = c1.PowerState(context.Background()) })
		wg.Go(func() { _, _ = c2.PowerState(context.Background()) })
	}
	for range 6 {
		waitFor(t, "a call at the BMC", func() bool { return g.inside.Load() == 1 })
		g.gate <- struct{}{}
	}
	wg.Wait()
	if got := g.maxInside.Load(); got != 1 {
		t.Errorf("%d calls at the shared BMC at once, want 1", got)
	}
}

func TestLimitMinInterval(t *testing.T) {
	clock := newFakeClock()
	f := newFake()
	const cmdTime, interval = 30 * time.Millisecond, 200 * time.Millisecond
	type span struct{ start, end time.Time }
	var mu sync.Mutex
	var spans []span
	f.during = func(string) {
		s := clock.Now()
		clock.advance(cmdTime) // the command takes a while
		mu.Lock()
		spans = append(spans, span{s, clock.Now()})
		mu.Unlock()
	}
	lim := NewLimiter(clock)
	c := WithLimit(f, lim, "10.1.12.14:623", Options{MinInterval: interval})

	// Sequential commands: each starts exactly one interval after the
	// previous one ended.
	for range 4 {
		if _, err := c.PowerState(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i < len(spans); i++ {
		if gap := spans[i].start.Sub(spans[i-1].end); gap != interval {
			t.Errorf("command %d started %v after the previous one ended, want %v", i, gap, interval)
		}
	}

	// Concurrent commands: the gaps still hold.
	spans = nil
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { _, _ = c.Identity(context.Background()) })
	}
	wg.Wait()
	if len(spans) != 8 {
		t.Fatalf("%d commands ran, want 8", len(spans))
	}
	for i := 1; i < len(spans); i++ {
		if gap := spans[i].start.Sub(spans[i-1].end); gap < interval {
			t.Errorf("concurrent command %d started %v after the previous one ended, want ≥ %v", i, gap, interval)
		}
	}
}

func TestLimitFirstCommandDoesNotWait(t *testing.T) {
	clock := newFakeClock()
	c := WithLimit(newFake(), NewLimiter(clock), "k", Options{MinInterval: time.Second})
	if _, err := c.PowerState(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := clock.recorded(); len(s) != 0 {
		t.Errorf("first command to a BMC waited %v", s)
	}
}

func TestLimitWaitEndsWithContext(t *testing.T) {
	g := newGated()
	lim := NewLimiter(nil)
	c := WithLimit(g, lim, "k", Options{})
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = c.PowerState(context.Background()) })
	waitFor(t, "first call at the BMC", func() bool { return g.inside.Load() == 1 })

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.SetPower(ctx, ActionCycle) }()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("waiting call returned %v, want context.Canceled", err)
	}
	if n := g.count("SetPower"); n != 0 {
		t.Errorf("cancelled call reached the BMC %d times", n)
	}
	g.gate <- struct{}{}
	wg.Wait()

	// The slot is free again.
	done := make(chan error, 1)
	go func() { _, err := c.Identity(context.Background()); done <- err }()
	g.gate <- struct{}{}
	if err := <-done; err != nil {
		t.Errorf("call after cancellation: %v", err)
	}
}

func TestLimitCancelledDuringIntervalReleasesSlot(t *testing.T) {
	clock := newFakeClock()
	lim := NewLimiter(clock)
	f := newFake()
	c := WithLimit(f, lim, "k", Options{MinInterval: time.Second})
	if _, err := c.PowerState(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.PowerState(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if _, err := c.PowerState(context.Background()); err != nil {
		t.Fatalf("slot leaked by a cancelled wait: %v", err)
	}
	if n := f.count("PowerState"); n != 2 {
		t.Errorf("BMC asked %d times, want 2", n)
	}
}
