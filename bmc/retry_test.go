package bmc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

// retryAfterErr is what a Redfish client returns for HTTP 429/503.
type retryAfterErr struct{ after time.Duration }

func (e retryAfterErr) Error() string             { return fmt.Sprintf("HTTP 503, retry after %v", e.after) }
func (e retryAfterErr) RetryAfter() time.Duration { return e.after }

func timeout() error { return Temporary(fmt.Errorf("read 127.0.0.1:623: %w", ErrNoAnswer)) }
func busy() error    { return Temporary(fmt.Errorf("completion code 0xc0: %w", ErrBusy)) }

func policy(clock Clock, retries int) RetryPolicy {
	return RetryPolicy{Retries: retries, Base: 100 * time.Millisecond, Max: 350 * time.Millisecond,
		Clock: clock, Jitter: func() float64 { return 0 }}
}

func TestRetryTemporaryThenSuccess(t *testing.T) {
	f, clock := newFake(), newFakeClock()
	f.fail("PowerState", timeout(), busy(), timeout())
	c := WithRetry(f, policy(clock, 3), nil)

	got, err := c.PowerState(context.Background())
	if err != nil {
		t.Fatalf("power state after 3 temporary failures with 3 retries: %v", err)
	}
	if got != PowerOff {
		t.Errorf("power state %q, want off", got)
	}
	if n := f.count("PowerState"); n != 4 {
		t.Errorf("BMC asked %d times, want 4 (1 + 3 retries)", n)
	}
	// Equal jitter with a zero random part: half of 100, 200, then 400 capped at 350 ms.
	want := []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 175 * time.Millisecond}
	if got := clock.recorded(); !slices.Equal(got, want) {
		t.Errorf("waits %v, want exponential %v", got, want)
	}
}

func TestRetryGivesUpAfterRetries(t *testing.T) {
	for _, retries := range []int{1, 2, 5} {
		t.Run(fmt.Sprint(retries), func(t *testing.T) {
			f, clock := newFake(), newFakeClock()
			for range 10 {
				f.fail("Identity", timeout())
			}
			_, err := WithRetry(f, policy(clock, retries), nil).Identity(context.Background())
			if n := f.count("Identity"); n != retries+1 {
				t.Errorf("BMC asked %d times, want %d", n, retries+1)
			}
			var re *RetryError
			if !errors.As(err, &re) || re.Tries != retries+1 {
				t.Fatalf("error %v: want a RetryError with %d tries", err, retries+1)
			}
			if !errors.Is(err, ErrNoAnswer) {
				t.Errorf("error %v no longer says the BMC did not answer", err)
			}
		})
	}
}

func TestRetryDefaultAndNone(t *testing.T) {
	f, clock := newFake(), newFakeClock()
	for range 10 {
		f.fail("BootOverride", timeout())
	}
	_, _ = WithRetry(f, RetryPolicy{Clock: clock}, nil).BootOverride(context.Background())
	if n := f.count("BootOverride"); n != DefaultRetries+1 {
		t.Errorf("zero policy: BMC asked %d times, want %d", n, DefaultRetries+1)
	}
	for i, d := range clock.recorded() {
		nominal := min(DefaultRetryBase<<i, DefaultRetryMax)
		if d < nominal/2 || d > nominal {
			t.Errorf("wait %d = %v, want within [%v, %v]", i, d, nominal/2, nominal)
		}
	}

	f2 := newFake()
	f2.fail("BootOverride", timeout())
	_, err := WithRetry(f2, RetryPolicy{Retries: -1, Clock: clock}, nil).BootOverride(context.Background())
	if n := f2.count("BootOverride"); n != 1 || err == nil {
		t.Errorf("retries -1: BMC asked %d times (err %v), want once and the error", n, err)
	}
}

func TestRetryNotTemporaryIsNotRetried(t *testing.T) {
	f, clock := newFake(), newFakeClock()
	f.fail("SetBootOverride", fmt.Errorf("user admin: %w", ErrAuthentication))
	_, err := WithRetry(f, policy(clock, 3), nil).SetBootOverride(context.Background(), BootOverride{Device: BootPXE})
	if !errors.Is(err, ErrAuthentication) {
		t.Fatalf("error %v, want authentication failure", err)
	}
	if n := f.count("SetBootOverride"); n != 1 {
		t.Errorf("a refused password was tried %d times, want 1", n)
	}
	if len(clock.recorded()) != 0 {
		t.Errorf("waited %v before giving up on a permanent error", clock.recorded())
	}
}

func TestRetryHonoursRetryAfter(t *testing.T) {
	f, clock := newFake(), newFakeClock()
	f.fail("Identity", Temporary(retryAfterErr{after: 7 * time.Second}))
	if _, err := WithRetry(f, policy(clock, 3), nil).Identity(context.Background()); err != nil {
		t.Fatalf("identity: %v", err)
	}
	if got := clock.recorded(); !slices.Equal(got, []time.Duration{7 * time.Second}) {
		t.Errorf("waits %v, want the BMC's Retry-After of 7s", got)
	}
}

func TestRetryAfterBeyondCapIsNotWaited(t *testing.T) {
	f, clock := newFake(), newFakeClock()
	f.fail("Identity", Temporary(retryAfterErr{after: 10 * time.Minute}))
	_, err := WithRetry(f, policy(clock, 3), nil).Identity(context.Background())
	if err == nil {
		t.Fatal("a BMC asking for a 10 minute pause was retried")
	}
	if n := f.count("Identity"); n != 1 || len(clock.recorded()) != 0 {
		t.Errorf("asked %d times, waited %v; want one try and no wait", n, clock.recorded())
	}
}

func TestRetryStopsWhenCancelledDuringWait(t *testing.T) {
	f, clock := newFake(), newFakeClock()
	for range 5 {
		f.fail("PowerState", timeout())
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clock.onSleep = cancel // Ctrl-C arrives while waiting to retry
	_, err := WithRetry(f, policy(clock, 3), nil).PowerState(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v does not say the run was cancelled", err)
	}
	if !errors.Is(err, ErrNoAnswer) {
		t.Errorf("error %v lost the failure that was being retried", err)
	}
	if n := f.count("PowerState"); n != 1 {
		t.Errorf("BMC asked %d times after cancellation, want 1", n)
	}
}

func TestRetryDoesNotWaitPastDeadline(t *testing.T) {
	f, clock := newFake(), newFakeClock()
	clock.now = time.Now()
	for range 5 {
		f.fail("PowerState", timeout())
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	p := policy(clock, 3)
	p.Base, p.Max = 4*time.Hour, 4*time.Hour
	_, err := WithRetry(f, p, nil).PowerState(ctx)
	var re *RetryError
	if !errors.As(err, &re) || !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("error %v: want the BMC's failure, not a wait into the deadline", err)
	}
	if n := f.count("PowerState"); n != 1 || len(clock.recorded()) != 0 {
		t.Errorf("asked %d times, waited %v", n, clock.recorded())
	}
}

func TestRetryPowerCycleNotRepeatedWhenOutcomeUnknown(t *testing.T) {
	for _, a := range []PowerAction{ActionCycle, ActionReset} {
		t.Run(string(a), func(t *testing.T) {
			f, clock := newFake(), newFakeClock()
			f.applyPowerEvenOnError = true // the BMC acted, the answer was lost
			f.fail("SetPower", timeout())
			err := WithRetry(f, policy(clock, 3), nil).SetPower(context.Background(), a)
			if !errors.Is(err, ErrPowerOutcomeUnknown) || !errors.Is(err, ErrNoAnswer) {
				t.Fatalf("error %v: want outcome unknown wrapping no answer", err)
			}
			if n := f.count("SetPower"); n != 1 {
				t.Errorf("a %s whose outcome is unknown was sent %d times, want 1", a, n)
			}
		})
	}
}

func TestRetryPowerCycleRetriedWhenRefused(t *testing.T) {
	for name, refusal := range map[string]error{
		"busy":        busy(),
		"retry-after": Temporary(retryAfterErr{after: time.Second}),
	} {
		t.Run(name, func(t *testing.T) {
			f, clock := newFake(), newFakeClock()
			f.fail("SetPower", refusal, refusal)
			if err := WithRetry(f, policy(clock, 3), nil).SetPower(context.Background(), ActionCycle); err != nil {
				t.Fatalf("cycle after two refusals: %v", err)
			}
			if n := f.count("SetPower"); n != 3 {
				t.Errorf("cycle sent %d times, want 3 (2 refused, 1 done)", n)
			}
		})
	}
}

func TestRetryPowerOnChecksStateBeforeResending(t *testing.T) {
	t.Run("took effect", func(t *testing.T) {
		f, clock := newFake(), newFakeClock()
		f.applyPowerEvenOnError = true
		f.fail("SetPower", timeout())
		if err := WithRetry(f, policy(clock, 3), nil).SetPower(context.Background(), ActionOn); err != nil {
			t.Fatalf("power on: %v", err)
		}
		if n := f.count("SetPower"); n != 1 {
			t.Errorf("power on sent %d times although the node was on after the first, want 1", n)
		}
		if n := f.count("PowerState"); n != 1 {
			t.Errorf("power state read %d times, want 1", n)
		}
	})
	t.Run("did not", func(t *testing.T) {
		f, clock := newFake(), newFakeClock()
		f.fail("SetPower", timeout())
		if err := WithRetry(f, policy(clock, 3), nil).SetPower(context.Background(), ActionOn); err != nil {
			t.Fatalf("power on: %v", err)
		}
		if n := f.count("SetPower"); n != 2 {
			t.Errorf("power on sent %d times, want 2", n)
		}
		if f.power != PowerOn {
			t.Errorf("node is %s, want on", f.power)
		}
	})
}

func TestRetryCloseIsNotRetried(t *testing.T) {
	f, clock := newFake(), newFakeClock()
	f.fail("Close", timeout())
	if err := WithRetry(f, policy(clock, 3), nil).Close(context.Background()); err == nil {
		t.Error("close error swallowed")
	}
	if n := f.count("Close"); n != 1 {
		t.Errorf("close called %d times, want 1", n)
	}
}
