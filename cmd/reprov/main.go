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
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}
