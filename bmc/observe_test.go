package bmc

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

type recordedRequest struct {
	protocol string
	err      error
}

type requestLog struct {
	mu   sync.Mutex
	reqs []recordedRequest
}

func (l *requestLog) BMCResult(protocol string, err error, _ time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reqs = append(l.reqs, recordedRequest{protocol, err})
}

// TestWithObserverCountsARetriedRequestOnce: a request is reported once
// with its final error, retries included, and Close is not a request.
func TestWithObserverCountsARetriedRequestOnce(t *testing.T) {
	f := newFake()
	f.fail("PowerState", Temporary(ErrBusy))
	f.fail("SetBootOverride", ErrUnsupported)
	var log requestLog
	c := WithObserver(WithRetry(f, RetryPolicy{Retries: 2, Clock: newFakeClock()}, nil), &log)
	ctx := context.Background()
	if _, err := c.PowerState(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetBootOverride(ctx, BootOverride{Device: BootPXE}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("SetBootOverride: %v", err)
	}
	_ = c.SetPower(ctx, ActionCycle)
	_, _ = c.BootOverride(ctx)
	_, _ = c.Identity(ctx)
	_, _ = c.SystemIdentity(ctx)
	_ = c.Close(ctx)
	got := fmt.Sprint(log.reqs)
	want := fmt.Sprint([]recordedRequest{{"fake", nil}, {"fake", ErrUnsupported}, {"fake", nil}, {"fake", nil}, {"fake", nil}, {"fake", nil}})
	if got != want {
		t.Errorf("observed requests\n got %s\nwant %s", got, want)
	}
	if f.count("PowerState") != 2 {
		t.Errorf("PowerState reached the BMC %d times, want 2 (one retry)", f.count("PowerState"))
	}
	if c.Protocol() != "fake" {
		t.Errorf("Protocol() = %q", c.Protocol())
	}
}
