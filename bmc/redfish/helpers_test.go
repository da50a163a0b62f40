package redfish_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/bmc/redfish"
	"github.com/reprov/reprov/lab/redfishbmc"
)

// startBMC starts a Redfish test BMC for t, closed when t ends.
func startBMC(t *testing.T, cfg redfishbmc.Config) *redfishbmc.BMC {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := redfishbmc.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start Redfish test BMC: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// tWriter sends log lines to t.Log.
type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

// open opens a client on ep, closed when t ends.
func open(t *testing.T, ep bmc.Endpoint) bmc.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := redfish.Open(ctx, ep, testLogger(t))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.Close(ctx)
	})
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
