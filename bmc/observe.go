package bmc

import (
	"context"
	"time"
)

// RequestObserver is told about every request a client wrapped by
// WithObserver makes: the client's protocol, the request's error (nil when
// it succeeded) and how long it took. The Prometheus metrics implement it
// (agent/metrics.Observer); it must be safe for concurrent use.
type RequestObserver interface {
	BMCResult(protocol string, err error, d time.Duration)
}

// WithObserver returns a Client that reports each of c's requests (every
// method but Protocol and Close) to o once it returns. Apply it outside
// WithRetry, so that a request is counted once, its retries and waits
// included in its duration.
func WithObserver(c Client, o RequestObserver) Client {
	return &observedClient{c: c, o: o, protocol: c.Protocol()}
}

type observedClient struct {
	c        Client
	o        RequestObserver
	protocol string
}

func (c *observedClient) done(start time.Time, err error) {
	c.o.BMCResult(c.protocol, err, time.Since(start))
}

func (c *observedClient) PowerState(ctx context.Context) (PowerState, error) {
	start := time.Now()
	s, err := c.c.PowerState(ctx)
	c.done(start, err)
	return s, err
}

func (c *observedClient) SetPower(ctx context.Context, a PowerAction) error {
	start := time.Now()
	err := c.c.SetPower(ctx, a)
	c.done(start, err)
	return err
}

func (c *observedClient) SetBootOverride(ctx context.Context, o BootOverride) (BootResult, error) {
	start := time.Now()
	r, err := c.c.SetBootOverride(ctx, o)
	c.done(start, err)
	return r, err
}

func (c *observedClient) BootOverride(ctx context.Context) (BootOverride, error) {
	start := time.Now()
	o, err := c.c.BootOverride(ctx)
	c.done(start, err)
	return o, err
}

func (c *observedClient) Identity(ctx context.Context) (Identity, error) {
	start := time.Now()
	id, err := c.c.Identity(ctx)
	c.done(start, err)
	return id, err
}

func (c *observedClient) SystemIdentity(ctx context.Context) (SystemID, error) {
	start := time.Now()
	id, err := c.c.SystemIdentity(ctx)
	c.done(start, err)
	return id, err
}

func (c *observedClient) Protocol() string { return c.protocol }

func (c *observedClient) Close(ctx context.Context) error { return c.c.Close(ctx) }
