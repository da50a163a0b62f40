// Command bmcfarm starts N simulated IPMI BMCs (lab/ipmibmc) on loopback
// addresses, prints one "host port" line per BMC on standard output, then
// "ready" on standard error, and serves until interrupted. It backs
// scripts/bench-peers.sh and manual experiments with ipmitool or FreeIPMI.
//
//	bmcfarm -n 256 -user admin -password-file FILE
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/reprov/reprov/lab/ipmibmc"
)

func main() {
	n := flag.Int("n", 256, "number of BMCs")
	user := flag.String("user", ipmibmc.DefaultUsername, "administrator user name")
	pwFile := flag.String("password-file", "", "file holding the administrator password (default: "+ipmibmc.DefaultPassword+")")
	sessions := flag.Int("max-sessions", 4, "RMCP+ sessions per BMC")
	idle := flag.Duration("inactivity-timeout", 60*time.Second, "session inactivity timeout")
	stats := flag.Bool("stats", true, "print total datagrams received on exit (standard error)")
	flag.Parse()

	pass := ""
	if *pwFile != "" {
		b, err := os.ReadFile(*pwFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bmcfarm:", err)
			os.Exit(2)
		}
		pass = strings.TrimRight(string(b), "\r\n")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	start := time.Now()
	bmcs, err := ipmibmc.StartMany(ctx, *n, ipmibmc.Config{
		Username:          *user,
		Password:          pass,
		MaxSessions:       *sessions,
		InactivityTimeout: *idle,
		InitiallyOn:       true,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "bmcfarm:", err)
		os.Exit(1)
	}
	w := bufio.NewWriter(os.Stdout)
	for _, b := range bmcs {
		fmt.Fprintf(w, "%s %d\n", b.Host(), b.Port())
	}
	_ = w.Flush()
	fmt.Fprintf(os.Stderr, "bmcfarm: %d BMCs ready in %v\n", len(bmcs), time.Since(start).Round(time.Millisecond))
	<-ctx.Done()
	if *stats {
		var recv, boots uint64
		for _, b := range bmcs {
			recv += b.Stats().Received
			boots += uint64(len(b.Machine().Boots()))
		}
		fmt.Fprintf(os.Stderr, "bmcfarm: datagrams received %d, boots %d\n", recv, boots)
	}
	ipmibmc.CloseAll(bmcs)
}
