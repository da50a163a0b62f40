package ipmi_test

import (
	"context"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/bmc/ipmi"
	"github.com/reprov/reprov/lab/ipmibmc"
	"github.com/reprov/reprov/lab/labtool"
)

// testLogger writes the client's log to the test log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

// startBMC starts a go-ipmi reference BMC for one test, with a short
// session inactivity timeout so a leaked session would be visible.
func startBMC(t testing.TB, cfg ipmibmc.Config) *ipmibmc.BMC {
	t.Helper()
	if cfg.InactivityTimeout == 0 {
		cfg.InactivityTimeout = 2 * time.Second
	}
	b, err := ipmibmc.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start BMC: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func endpoint(host string, port int, user, pass string, opts bmc.Options) bmc.Endpoint {
	return bmc.Endpoint{Protocol: "ipmi", Host: host, Port: port, Username: user, Password: pass, Options: opts}
}

func bmcEndpoint(b *ipmibmc.BMC, opts bmc.Options) bmc.Endpoint {
	return endpoint(b.Host(), b.Port(), b.Username(), b.Password(), opts)
}

func open(t testing.TB, ep bmc.Endpoint) bmc.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := ipmi.Open(ctx, ep, testLogger(t))
	if err != nil {
		t.Fatalf("open %s:%d: %v", ep.Host, ep.Port, err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// noSessionsLeft waits until the BMC's session table is empty again.
func noSessionsLeft(t testing.TB, b *ipmibmc.BMC) {
	t.Helper()
	labtool.Eventually(t, 15*time.Second, "no IPMI session left open on the BMC", func() bool {
		return b.ActiveSessions() == 0
	})
}

func itoa(i int) string { return strconv.Itoa(i) }
