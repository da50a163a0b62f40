package bmc

import (
	"context"
	"sync"
	"time"
)

// Limiter keeps BMCs from being overwhelmed: per BMC (keyed by its
// address), at most MaxConcurrent commands in flight (default 1) and at
// least MinInterval between them (docs/bmc.md: BMCs have few sessions and
// some crash under rapid commands). It is a registry created once per
// process or run and shared by every client of that run, so nodes that
// share a BMC (blades behind one chassis manager, several Redfish systems
// of one service) share its limits. It is safe for concurrent use.
type Limiter struct {
	clock Clock
	mu    sync.Mutex
	bmcs  map[string]*bmcSlots
}

// bmcSlots is the state of one BMC.
type bmcSlots struct {
	inFlight    int
	max         int
	minInterval time.Duration
	// next is the earliest time the next command may start.
	next time.Time
	// freed is closed (and replaced) whenever a slot is released.
	freed chan struct{}
}

// NewLimiter returns an empty registry. clock may be nil (real time).
func NewLimiter(clock Clock) *Limiter {
	return &Limiter{clock: clockOrReal(clock), bmcs: make(map[string]*bmcSlots)}
}

// Acquire waits until a command to the BMC key may start under o's limits
// (MaxConcurrent, MinInterval) and returns the function that ends it, which
// must be called exactly once. It returns ctx's error if ctx ends first.
//
// When nodes sharing a BMC ask for different limits, the strictest
// registered so far applies: the lowest concurrency and the longest interval. The
// interval is kept between the starts of two commands, and also from the
// end of a command to the start of the next, so with one command at a time
// the BMC gets MinInterval of quiet between commands.
func (l *Limiter) Acquire(ctx context.Context, key string, o Options) (release func(), err error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		l.mu.Lock()
		s := l.slots(key, o)
		if s.inFlight < s.max {
			s.inFlight++
			now := l.clock.Now()
			start := now
			if s.next.After(start) {
				start = s.next
			}
			s.next = start.Add(s.minInterval)
			l.mu.Unlock()
			rel := l.releaser(s)
			if wait := start.Sub(now); wait > 0 {
				if err := l.clock.Sleep(ctx, wait); err != nil {
					rel()
					return nil, err
				}
			}
			return rel, nil
		}
		freed := s.freed
		l.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Register records o's limits for the BMC key without waiting, so that
// the strictest limits of every node sharing the BMC apply from the start.
// Acquire and WithLimit register too.
func (l *Limiter) Register(key string, o Options) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.slots(key, o)
}

// slots returns key's state, creating it and tightening its limits to o.
// l.mu must be held.
func (l *Limiter) slots(key string, o Options) *bmcSlots {
	s, ok := l.bmcs[key]
	if !ok {
		s = &bmcSlots{max: 1, freed: make(chan struct{})}
		if o.MaxConcurrent > 0 {
			s.max = o.MaxConcurrent
		}
		s.minInterval = max(o.MinInterval, 0)
		l.bmcs[key] = s
		return s
	}
	if o.MaxConcurrent > 0 && o.MaxConcurrent < s.max {
		s.max = o.MaxConcurrent
	}
	if o.MinInterval > s.minInterval {
		s.minInterval = o.MinInterval
	}
	return s
}

func (l *Limiter) releaser(s *bmcSlots) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			s.inFlight--
			if end := l.clock.Now().Add(s.minInterval); end.After(s.next) {
				s.next = end
			}
			close(s.freed)
			s.freed = make(chan struct{})
		})
	}
}

// WithLimit returns a Client whose every call, Close included, first takes
// one of the BMC's slots in l (Limiter.Acquire with key and o) and gives it
// back when the call returns. A call whose ctx ends while it waits returns
// ctx's error without reaching the BMC. Apply it inside WithRetry, so that
// the waits between retries do not hold the slot.
func WithLimit(c Client, l *Limiter, key string, o Options) Client {
	l.Register(key, o)
	return &limitClient{c: c, l: l, key: key, o: o}
}

type limitClient struct {
	c   Client
	l   *Limiter
	key string
	o   Options
}

func (c *limitClient) acquire(ctx context.Context) (func(), error) {
	return c.l.Acquire(ctx, c.key, c.o)
}

func (c *limitClient) PowerState(ctx context.Context) (PowerState, error) {
	rel, err := c.acquire(ctx)
	if err != nil {
		return PowerUnknown, err
	}
	defer rel()
	return c.c.PowerState(ctx)
}

func (c *limitClient) SetPower(ctx context.Context, a PowerAction) error {
	rel, err := c.acquire(ctx)
	if err != nil {
		return err
	}
	defer rel()
	return c.c.SetPower(ctx, a)
}

func (c *limitClient) SetBootOverride(ctx context.Context, o BootOverride) (BootResult, error) {
	rel, err := c.acquire(ctx)
	if err != nil {
		return BootResult{}, err
	}
	defer rel()
	return c.c.SetBootOverride(ctx, o)
}

func (c *limitClient) BootOverride(ctx context.Context) (BootOverride, error) {
	rel, err := c.acquire(ctx)
	if err != nil {
		return BootOverride{}, err
	}
	defer rel()
	return c.c.BootOverride(ctx)
}

func (c *limitClient) Identity(ctx context.Context) (Identity, error) {
	rel, err := c.acquire(ctx)
	if err != nil {
		return Identity{}, err
	}
	defer rel()
	return c.c.Identity(ctx)
}

func (c *limitClient) SystemIdentity(ctx context.Context) (SystemID, error) {
	release, err := c.acquire(ctx)
	if err != nil {
		return SystemID{}, err
	}
	defer release()
	return c.c.SystemIdentity(ctx)
}

func (c *limitClient) Protocol() string { return c.c.Protocol() }

func (c *limitClient) Close(ctx context.Context) error {
	rel, err := c.acquire(ctx)
	if err != nil {
		// Closing must not be skipped (a leaked session locks operators
		// out): close without the slot rather than not at all.
		return c.c.Close(ctx)
	}
	defer rel()
	return c.c.Close(ctx)
}
