package bmc

import (
	"context"
	"sync"
	"time"
)

// fakeClient is a Client that counts calls and fails as told. Errors queued
// in errs[method] are returned one per call before the method succeeds.
type fakeClient struct {
	mu     sync.Mutex
	calls  map[string]int
	errs   map[string][]error
	power  PowerState
	during func(method string) // called inside every method, if set
	// onSetPower changes the power state as a real BMC would, even when
	// the call then reports an error (the answer was lost).
	applyPowerEvenOnError bool
}

func newFake() *fakeClient {
	return &fakeClient{calls: make(map[string]int), errs: make(map[string][]error), power: PowerOff}
}

func (f *fakeClient) fail(method string, errs ...error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs[method] = append(f.errs[method], errs...)
}

func (f *fakeClient) count(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

func (f *fakeClient) enter(method string) error {
	f.mu.Lock()
	f.calls[method]++
	var err error
	if q := f.errs[method]; len(q) > 0 {
		err, f.errs[method] = q[0], q[1:]
	}
	during := f.during
	f.mu.Unlock()
	if during != nil {
		during(method)
	}
	return err
}

func (f *fakeClient) PowerState(ctx context.Context) (PowerState, error) {
	if err := f.enter("PowerState"); err != nil {
		return PowerUnknown, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.power, nil
}

func (f *fakeClient) SetPower(ctx context.Context, a PowerAction) error {
	err := f.enter("SetPower")
	if err == nil || f.applyPowerEvenOnError {
		f.mu.Lock()
		switch a {
		case ActionOn, ActionCycle, ActionReset:
			f.power = PowerOn
		case ActionOff:
			f.power = PowerOff
		}
		f.mu.Unlock()
	}
	return err
}

func (f *fakeClient) SetBootOverride(ctx context.Context, o BootOverride) (BootResult, error) {
	if err := f.enter("SetBootOverride"); err != nil {
		return BootResult{}, err
	}
	return BootResult{Verified: VerifyFull, ReadBack: o}, nil
}

func (f *fakeClient) BootOverride(ctx context.Context) (BootOverride, error) {
	if err := f.enter("BootOverride"); err != nil {
		return BootOverride{}, err
	}
	return BootOverride{Device: BootNone}, nil
}

func (f *fakeClient) Identity(ctx context.Context) (Identity, error) {
	if err := f.enter("Identity"); err != nil {
		return Identity{}, err
	}
	return Identity{Protocol: "fake"}, nil
}

func (f *fakeClient) SystemIdentity(ctx context.Context) (SystemID, error) {
	if err := f.enter("SystemIdentity"); err != nil {
		return SystemID{}, err
	}
	return SystemID{GUID: "4c4c4544-0042-3510-8052-b7c04f4e3232", Serial: "CZJ1234ABC"}, nil
}

func (f *fakeClient) Protocol() string { return "fake" }

func (f *fakeClient) Close(ctx context.Context) error { return f.enter("Close") }

// fakeClock is a Clock whose time moves only when someone sleeps on it or
// advances it. It records every sleep.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
	// onSleep, if set, runs at the start of every Sleep.
	onSleep func()
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 11, 1, 2, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if c.onSleep != nil {
		c.onSleep()
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
	return nil
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *fakeClock) recorded() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.sleeps...)
}
