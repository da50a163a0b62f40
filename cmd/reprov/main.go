// Command reprov reprovisions bare-metal fleets: for every selected node it
// sets a one-time network boot through the BMC (IPMI or Redfish), falls back
// to an in-band SSH step on boards that ignore it, and proves the node landed
// on the netboot server.
//
// Exit codes: 0 success; 1 the command ran and some node failed (or
// validate found errors); 2 usage or configuration error; 3 interrupted.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		// The first Ctrl-C (or SIGTERM) stops new work and lets in-flight
		// steps finish and record their state; then the default handling
		// is back, so a second Ctrl-C kills the process at once.
		<-sigs
		signal.Reset(os.Interrupt, syscall.SIGTERM)
		fmt.Fprintln(os.Stderr, "reprov: interrupted: finishing in-flight steps and recording every node's state (Ctrl-C again to kill)")
		cancel()
	}()
	stopProfiling, err := startProfiling(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "reprov:", err)
	}
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	cancel()
	stopProfiling()
	os.Exit(code)
}
