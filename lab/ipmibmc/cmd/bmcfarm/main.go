// Command bmcfarm starts N simulated IPMI BMCs (lab/ipmibmc) on loopback
// addresses, prints one "host port" line per BMC on standard output, then
// "ready" on standard error, and serves until interrupted. It backs
// scripts/bench-peers.sh and manual experiments with ipmitool or FreeIPMI.
//
//	bmcfarm -n 256 -user admin -password-file FILE [-port 623] [-control]
//
// With -control it also reads commands on standard input, one a line, and
// answers each with one line on standard output (after the address list):
//
//	stats  →  "stats received=R sessions=S boots=B pxe_boots=P open=O"
//
// totals since start over every BMC: datagrams received (every request and
// retransmission), RMCP+ Open Session Requests, boots, boots that used a
// valid PXE override, and sessions open right now. End of input stops the
// farm like an interrupt.
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

	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/lab/ipmibmc"
)

func main() {
	n := flag.Int("n", 256, "number of BMCs")
	user := flag.String("user", ipmibmc.DefaultUsername, "administrator user name")
	pwFile := flag.String("password-file", "", "file holding the administrator password (default: "+ipmibmc.DefaultPassword+")")
	sessions := flag.Int("max-sessions", 4, "RMCP+ sessions per BMC")
	idle := flag.Duration("inactivity-timeout", 60*time.Second, "session inactivity timeout")
	stats := flag.Bool("stats", true, "print total datagrams received on exit (standard error)")
	port := flag.Int("port", 0, "UDP port of every BMC (0: a free port each)")
	control := flag.Bool("control", false, "answer commands on standard input (see the package doc)")
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
	var cancel context.CancelFunc
	ctx, cancel = context.WithCancel(ctx)
	defer cancel()
	bmcs, err := ipmibmc.StartMany(ctx, *n, ipmibmc.Config{
		Addr:              fmt.Sprintf("127.0.0.1:%d", *port),
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
	if *control {
		go func() {
			defer cancel()
			sc := bufio.NewScanner(os.Stdin)
			for sc.Scan() {
				switch strings.TrimSpace(sc.Text()) {
				case "stats":
					t := totals(bmcs)
					fmt.Printf("stats received=%d sessions=%d boots=%d pxe_boots=%d open=%d\n",
						t.received, t.sessions, t.boots, t.pxeBoots, t.open)
				default:
					fmt.Println("error unknown command")
				}
			}
		}()
	}
	<-ctx.Done()
	if *stats {
		t := totals(bmcs)
		fmt.Fprintf(os.Stderr, "bmcfarm: datagrams received %d, sessions opened %d, boots %d\n", t.received, t.sessions, t.boots)
	}
	ipmibmc.CloseAll(bmcs)
}

type farmTotals struct {
	received, sessions, boots, pxeBoots, open uint64
}

func totals(bmcs []*ipmibmc.BMC) farmTotals {
	var t farmTotals
	for _, b := range bmcs {
		st := b.Stats()
		t.received += st.Received
		t.sessions += st.SessionsOpened
		t.open += uint64(b.ActiveSessions())
		for _, boot := range b.Machine().Boots() {
			t.boots++
			if boot.Valid && boot.Device == bmc.BootPXE {
				t.pxeBoots++
			}
		}
	}
	return t
}
