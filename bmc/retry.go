package bmc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"
)

// Defaults of a RetryPolicy.
const (
	DefaultRetries       = 3
	DefaultRetryBase     = 500 * time.Millisecond
	DefaultRetryMax      = 8 * time.Second
	DefaultMaxRetryAfter = 60 * time.Second
)

// ErrPowerOutcomeUnknown marks a power cycle or reset that failed in a way
// that does not tell whether the BMC carried it out (a timeout after the
// request was sent). The retry wrapper does not repeat such an action: a
// second cycle would reboot the node twice. Callers settle it by looking
// (power state, landing), never by repeating it blindly.
var ErrPowerOutcomeUnknown = errors.New("power action outcome unknown")

// Clock is the time source of the wrappers. Tests inject a fake one; nil
// means real time.
type Clock interface {
	Now() time.Time
	// Sleep waits for d or until ctx is done, whichever comes first, and
	// returns ctx.Err() in the latter case.
	Sleep(ctx context.Context, d time.Duration) error
}

// realClock is the wall clock.
type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func clockOrReal(c Clock) Clock {
	if c == nil {
		return realClock{}
	}
	return c
}

// RetryAfterer is implemented by errors that carry a server's requested
// wait, such as a Redfish 429 or 503 with a Retry-After header. The retry
// wrapper finds it anywhere in an error's chain (errors.As).
type RetryAfterer interface {
	RetryAfter() time.Duration
}

// RetryPolicy says how often and how patiently a temporary failure is
// retried. The zero value means the defaults.
type RetryPolicy struct {
	// Retries is how many times a failed operation is tried again after
	// the first attempt: 0 means DefaultRetries, a negative value none.
	Retries int
	// Base is the wait before the first retry (default DefaultRetryBase);
	// it doubles on each further retry, up to Max (default DefaultRetryMax).
	// Each wait is jittered to between half and all of its nominal length.
	Base, Max time.Duration
	// MaxRetryAfter caps how long a server-requested Retry-After is
	// honoured (default DefaultMaxRetryAfter); a BMC that asks for a longer
	// wait is not retried.
	MaxRetryAfter time.Duration
	// Clock is the time source (nil: real time).
	Clock Clock
	// Jitter returns a number in [0, 1) (nil: math/rand/v2).
	Jitter func() float64
}

// RetryPolicyFrom returns the policy a node's options ask for.
func RetryPolicyFrom(o Options) RetryPolicy {
	return RetryPolicy{Retries: o.Retries}
}

// tries is the total number of attempts the policy allows.
func (p RetryPolicy) tries() int {
	switch {
	case p.Retries < 0:
		return 1
	case p.Retries == 0:
		return DefaultRetries + 1
	}
	return p.Retries + 1
}

// backoff is the nominal, jittered wait before retry number n (1-based).
func (p RetryPolicy) backoff(n int) time.Duration {
	base, maxd := p.Base, p.Max
	if base <= 0 {
		base = DefaultRetryBase
	}
	if maxd <= 0 {
		maxd = DefaultRetryMax
	}
	d := base
	for i := 1; i < n && d < maxd; i++ {
		d *= 2
	}
	d = min(d, maxd)
	jitter := p.Jitter
	if jitter == nil {
		jitter = rand.Float64
	}
	// "Equal jitter": half fixed, half random, so waits never collapse
	// to zero and BMCs shared by many nodes see spread-out retries.
	return d/2 + time.Duration(jitter()*float64(d/2))
}

// RetryError is the error of an operation whose every allowed attempt
// failed. It wraps the last attempt's error.
type RetryError struct {
	Op    string
	Tries int
	Err   error
}

// Error implements error.
func (e *RetryError) Error() string {
	return fmt.Sprintf("%v (gave up after %d tries)", e.Err, e.Tries)
}

// Unwrap returns the last attempt's error.
func (e *RetryError) Unwrap() error { return e.Err }

// WithRetry returns a Client that retries c's operations when they fail
// with a temporary error (IsTemporary): at most p's tries, with exponential
// backoff and jitter between them, the BMC's Retry-After when the error
// carries one (RetryAfterer), and never past ctx.
//
// Idempotence decides what is retried:
//   - Reads (PowerState, BootOverride, Identity, SystemIdentity) and SetBootOverride (writing
//     the same override twice is the same as once) are retried as is.
//   - SetPower on and off are retried, but first the power state is read
//     again: when the node already is where the action would take it, the
//     earlier attempt evidently worked and nothing is sent again.
//   - SetPower cycle and reset are not idempotent: a timed-out cycle may
//     have happened, and a second one would reboot the node twice. They are
//     retried only when the BMC's answer proves the command was refused
//     without effect (ErrBusy, or an error carrying a Retry-After, such as
//     HTTP 429/503 with that header). Any other temporary failure is returned at once,
//     marked ErrPowerOutcomeUnknown, for the caller to settle by looking.
//   - Close and Protocol are passed through.
//
// Apply WithRetry once per client (bmc/connect does); layered retry
// wrappers multiply their tries. log may be nil.
func WithRetry(c Client, p RetryPolicy, log *slog.Logger) Client {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &retryClient{c: c, p: p, clock: clockOrReal(p.Clock), log: log}
}

type retryClient struct {
	c     Client
	p     RetryPolicy
	clock Clock
	log   *slog.Logger
}

// Retry runs fn until it succeeds, fails with an error that is not
// temporary, or p's tries are spent, waiting between attempts as WithRetry
// describes. op names the operation in logs and errors. It is what
// WithRetry uses and serves callers that retry something other than a
// Client method, such as opening a connection.
func Retry(ctx context.Context, p RetryPolicy, log *slog.Logger, op string, fn func(ctx context.Context) error) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return retry(ctx, p, clockOrReal(p.Clock), log, op, fn, nil)
}

// retry is Retry with an optional gate consulted before each retry:
// retryable(err) says whether err may be retried, and again(ctx) whether
// the retry is still needed (false: the earlier attempt took effect).
func retry(ctx context.Context, p RetryPolicy, clock Clock, log *slog.Logger, op string,
	fn func(ctx context.Context) error, gate *retryGate) error {
	tries := p.tries()
	maxAfter := p.MaxRetryAfter
	if maxAfter <= 0 {
		maxAfter = DefaultMaxRetryAfter
	}
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := fn(ctx)
		if err == nil || ctx.Err() != nil {
			return err
		}
		if gate != nil && gate.retryable != nil && !gate.retryable(err) && (IsTemporary(err) || errors.Is(err, ErrNoAnswer)) {
			// A cycle or reset sent and not answered may have happened.
			return fmt.Errorf("%w: %w", ErrPowerOutcomeUnknown, err)
		}
		if !IsTemporary(err) {
			return err
		}
		if attempt >= tries {
			if tries == 1 {
				return err
			}
			return &RetryError{Op: op, Tries: attempt, Err: err}
		}
		wait := p.backoff(attempt)
		var ra RetryAfterer
		if errors.As(err, &ra) && ra.RetryAfter() > 0 {
			if ra.RetryAfter() > maxAfter {
				return fmt.Errorf("%w (the BMC asked to retry after %v, more than the %v reprov waits)",
					err, ra.RetryAfter(), maxAfter)
			}
			wait = max(wait, ra.RetryAfter())
		}
		if dl, ok := ctx.Deadline(); ok && clock.Now().Add(wait).After(dl) {
			// Waiting would outlive the caller's deadline: fail now with
			// the real cause instead of a bare "deadline exceeded".
			return &RetryError{Op: op, Tries: attempt, Err: err}
		}
		log.Debug("bmc: retrying", "op", op, "attempt", attempt, "of", tries, "wait", wait, "err", err)
		if serr := clock.Sleep(ctx, wait); serr != nil {
			return fmt.Errorf("%w (interrupted while waiting to retry: %w)", err, serr)
		}
		if gate != nil && gate.again != nil {
			again, gerr := gate.again(ctx)
			if gerr == nil && !again {
				log.Debug("bmc: earlier attempt took effect", "op", op, "attempt", attempt)
				return nil
			}
		}
	}
}

type retryGate struct {
	retryable func(err error) bool
	again     func(ctx context.Context) (bool, error)
}

func (r *retryClient) do(ctx context.Context, op string, fn func(ctx context.Context) error) error {
	return retry(ctx, r.p, r.clock, r.log, op, fn, nil)
}

func (r *retryClient) PowerState(ctx context.Context) (PowerState, error) {
	var s PowerState
	err := r.do(ctx, "power status", func(ctx context.Context) error {
		var err error
		s, err = r.c.PowerState(ctx)
		return err
	})
	return s, err
}

func (r *retryClient) SetPower(ctx context.Context, a PowerAction) error {
	op := "power " + string(a)
	var gate retryGate
	switch a {
	case ActionOn, ActionOff:
		want := PowerOn
		if a == ActionOff {
			want = PowerOff
		}
		gate.again = func(ctx context.Context) (bool, error) {
			s, err := r.c.PowerState(ctx)
			if err != nil {
				return true, err
			}
			return s != want, nil
		}
	default:
		gate.retryable = refusedWithoutEffect
	}
	return retry(ctx, r.p, r.clock, r.log, op, func(ctx context.Context) error {
		return r.c.SetPower(ctx, a)
	}, &gate)
}

// refusedWithoutEffect reports whether err proves the BMC did not act: it
// answered busy (ErrBusy), or asked to be retried later (a Retry-After, as
// with HTTP 429/503). A bare HTTP 500 proves nothing and is not included.
func refusedWithoutEffect(err error) bool {
	if errors.Is(err, ErrBusy) {
		return true
	}
	var ra RetryAfterer
	return errors.As(err, &ra) && ra.RetryAfter() > 0
}

func (r *retryClient) SetBootOverride(ctx context.Context, o BootOverride) (BootResult, error) {
	var res BootResult
	err := r.do(ctx, "set boot override", func(ctx context.Context) error {
		var err error
		res, err = r.c.SetBootOverride(ctx, o)
		return err
	})
	return res, err
}

func (r *retryClient) BootOverride(ctx context.Context) (BootOverride, error) {
	var o BootOverride
	err := r.do(ctx, "read boot override", func(ctx context.Context) error {
		var err error
		o, err = r.c.BootOverride(ctx)
		return err
	})
	return o, err
}

func (r *retryClient) Identity(ctx context.Context) (Identity, error) {
	var id Identity
	err := r.do(ctx, "identity", func(ctx context.Context) error {
		var err error
		id, err = r.c.Identity(ctx)
		return err
	})
	return id, err
}

func (r *retryClient) SystemIdentity(ctx context.Context) (SystemID, error) {
	var id SystemID
	err := r.do(ctx, "system identity", func(ctx context.Context) error {
		var err error
		id, err = r.c.SystemIdentity(ctx)
		return err
	})
	return id, err
}

func (r *retryClient) Protocol() string { return r.c.Protocol() }

func (r *retryClient) Close(ctx context.Context) error { return r.c.Close(ctx) }
