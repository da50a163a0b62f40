package redfish_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/bmc/redfish"
	"github.com/reprov/reprov/lab/redfishbmc"
)

const sessionsPath = "/redfish/v1/SessionService/Sessions"

func TestBasicAuthOpensNoSession(t *testing.T) {
	b := startBMC(t, redfishbmc.Config{})
	c := open(t, b.Endpoint())
	if _, err := c.PowerState(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if n := b.Requests("POST", sessionsPath); n != 0 || b.Sessions() != 0 {
		t.Errorf("basic auth created %d sessions (%d open)", n, b.Sessions())
	}
}

func TestSessionClosedOnEveryPath(t *testing.T) {
	b := startBMC(t, redfishbmc.Config{BootTargets: []string{"None", "Hdd"}})
	ep := b.Endpoint()
	ep.Options.RedfishSession = true

	t.Run("after operations", func(t *testing.T) {
		c, err := redfish.Open(ctxT(t), ep, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		ctx := ctxT(t)
		if _, err := c.PowerState(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := c.SetBootOverride(ctx, bmc.BootOverride{Device: bmc.BootDisk}); err != nil {
			t.Fatal(err)
		}
		if err := c.SetPower(ctx, bmc.ActionCycle); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Identity(ctx); err != nil {
			t.Fatal(err)
		}
		if n := b.Sessions(); n != 1 {
			t.Errorf("%d sessions open during use, want exactly 1", n)
		}
		if err := c.Close(ctx); err != nil {
			t.Fatalf("close: %v", err)
		}
		if n := b.Sessions(); n != 0 {
			t.Errorf("%d sessions open after Close", n)
		}
	})
	t.Run("after an error", func(t *testing.T) {
		c, err := redfish.Open(ctxT(t), ep, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.SetBootOverride(ctxT(t), bmc.BootOverride{Device: bmc.BootPXE}); !errors.Is(err, bmc.ErrUnsupported) {
			t.Fatalf("err = %v, want ErrUnsupported", err)
		}
		if err := c.Close(ctxT(t)); err != nil {
			t.Fatalf("close: %v", err)
		}
		if n := b.Sessions(); n != 0 {
			t.Errorf("%d sessions open after Close", n)
		}
	})
	t.Run("after cancellation, closed with the cancelled context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		c, err := redfish.Open(ctx, ep, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		if _, err := c.PowerState(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want Canceled", err)
		}
		if err := c.Close(ctx); err != nil {
			t.Fatalf("close with a cancelled context: %v", err)
		}
		if n := b.Sessions(); n != 0 {
			t.Errorf("%d sessions open after Close", n)
		}
		if err := c.Close(ctx); err != nil {
			t.Errorf("second close: %v", err)
		}
	})
	t.Run("failed open", func(t *testing.T) {
		bad := ep
		bad.SystemPath = "/redfish/v1/Systems/nope"
		if _, err := redfish.Open(ctxT(t), bad, testLogger(t)); err == nil {
			t.Fatal("open with a wrong system path succeeded")
		}
		if n := b.Sessions(); n != 0 {
			t.Errorf("%d sessions open after a failed Open", n)
		}
	})
	if n := b.Requests("POST", sessionsPath); n != 4 {
		t.Errorf("%d logins, want one per Open (4)", n)
	}
}

func TestSessionLimit(t *testing.T) {
	b := startBMC(t, redfishbmc.Config{Quirks: redfishbmc.Quirks{SessionLimit: 1}})
	ep := b.Endpoint()
	ep.Options.RedfishSession = true
	first, err := redfish.Open(ctxT(t), ep, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	_, err = redfish.Open(ctxT(t), ep, testLogger(t))
	if !bmc.IsTemporary(err) || !strings.Contains(err.Error(), "SessionLimitExceeded") {
		t.Errorf("second session over the limit: %v; want a temporary SessionLimitExceeded", err)
	}
	if err := first.Close(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	second := open(t, ep)
	if _, err := second.PowerState(ctxT(t)); err != nil {
		t.Errorf("after the first session closed: %v", err)
	}
}

func TestCloseRetriesBusyLogout(t *testing.T) {
	b := startBMC(t, redfishbmc.Config{})
	ep := b.Endpoint()
	ep.Options.RedfishSession = true
	c, err := redfish.Open(ctxT(t), ep, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	b.SetQuirks(redfishbmc.Quirks{Storm: 2})
	if err := c.Close(ctxT(t)); err != nil {
		t.Fatalf("close through a short storm: %v", err)
	}
	if n := b.Sessions(); n != 0 {
		t.Errorf("%d sessions open after Close", n)
	}
}

func TestStormAnswersAreTemporaryWithRetryAfter(t *testing.T) {
	for _, status := range []int{503, 429, 500} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			b := startBMC(t, redfishbmc.Config{})
			c := open(t, b.Endpoint())
			b.SetQuirks(redfishbmc.Quirks{Storm: 1, StormStatus: status, StormRetryAfter: 2 * time.Second})
			_, err := c.PowerState(ctxT(t))
			if !bmc.IsTemporary(err) {
				t.Fatalf("err = %v, want temporary", err)
			}
			var he *redfish.HTTPError
			if !errors.As(err, &he) || he.StatusCode != status || he.RetryAfter() != 2*time.Second {
				t.Fatalf("err = %v; want an *HTTPError %d with RetryAfter 2s", err, status)
			}
			var ra bmc.RetryAfterer
			if !errors.As(err, &ra) || ra.RetryAfter() != 2*time.Second {
				t.Errorf("bmc.RetryAfterer not found in %v", err)
			}
			if !strings.Contains(err.Error(), b.URL()) || strings.Contains(err.Error(), b.Endpoint().Password) {
				t.Errorf("error %q: want the BMC URL and no password", err)
			}
			if _, err := c.PowerState(ctxT(t)); err != nil {
				t.Errorf("after the storm: %v", err)
			}
		})
	}
}

func TestStormDuringCycleIsRetriedAndCyclesOnce(t *testing.T) {
	b := startBMC(t, redfishbmc.Config{Powered: true})
	log := testLogger(t)
	c := bmc.WithRetry(open(t, b.Endpoint()), bmc.RetryPolicy{Base: 10 * time.Millisecond}, log)
	m := b.Machine()
	before := m.PowerOns()
	b.SetQuirks(redfishbmc.Quirks{Storm: 1, StormRetryAfter: time.Second})
	start := time.Now()
	if err := c.SetPower(ctxT(t), bmc.ActionCycle); err != nil {
		t.Fatalf("cycle through a storm: %v", err)
	}
	if got := m.PowerOns() - before; got != 1 || !m.Powered() {
		t.Errorf("%d boots (powered %v), want exactly one", got, m.Powered())
	}
	if waited := time.Since(start); waited < time.Second {
		t.Errorf("retried after %v, before the BMC's Retry-After of 1s", waited)
	}
}

func TestTimeoutIsTemporaryNoAnswer(t *testing.T) {
	// A listener that accepts and never answers.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	host, port := splitHostPort(t, l.Addr().String())
	ep := bmc.Endpoint{Scheme: "http", Host: host, Port: port, Options: bmc.Options{Timeout: 200 * time.Millisecond}}
	_, err = redfish.Open(ctxT(t), ep, nil)
	if !bmc.IsTemporary(err) || !errors.Is(err, bmc.ErrNoAnswer) {
		t.Errorf("err = %v, want temporary ErrNoAnswer", err)
	}
}
