// Command reprov-agent is the slim in-band agent the reprov controller
// pushes to a node for one run (checksum verified, removed afterwards):
// the "reprov agent" subcommands and nothing else — no job store, no lab,
// no Redfish. Its protocol is the versioned JSON of docs/inband.md.
//
// Exit codes: 0 success; 1 the step failed or refused; 2 usage error;
// 3 interrupted.
package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/reprov/reprov/agent/inband/agentcmd"
)

// version is set at build time (-ldflags -X main.version=…).
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// A dropped terminal must not stop a wipe half-way.
	signal.Ignore(syscall.SIGHUP)
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cmd := agentcmd.New(agentcmd.Options{Use: "reprov-agent", Version: version, Logger: logger})
	code := agentcmd.Main(ctx, cmd, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
