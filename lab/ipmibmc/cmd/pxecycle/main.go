// Command pxecycle is reprov's out-of-band step as a stand-alone driver for
// benchmarks against external BMCs: for every
// "host port" line on standard input it opens an RMCP+ session with
// reprov's bmc/ipmi, sets a one-time PXE boot (verified by reading it
// back), power cycles (powers on a machine the BMC says is off) and
// closes, at a bounded fan-out. It prints the
// elapsed time and the failures; the exit status is 1 if any node failed.
//
//	bmcfarm -n 256 | pxecycle -fanout 64 -user admin -password-file FILE
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/bmc/ipmi"
)

type target struct {
	host string
	port int
}

func main() {
	fanout := flag.Int("fanout", 64, "nodes in flight at once")
	user := flag.String("user", "admin", "BMC user name")
	pwFile := flag.String("password-file", "", "file holding the BMC password")
	suite := flag.Int("cipher-suite", 17, "RMCP+ cipher suite (17 or 3)")
	timeout := flag.Duration("timeout", 5*time.Second, "per-exchange timeout")
	flag.Parse()

	var pass string
	if *pwFile != "" {
		b, err := os.ReadFile(*pwFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "pxecycle:", err)
			os.Exit(2)
		}
		pass = strings.TrimRight(string(b), "\r\n")
	}
	var targets []target
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		port, err := strconv.Atoi(f[1])
		if err != nil {
			fmt.Fprintf(os.Stderr, "pxecycle: bad line %q\n", sc.Text())
			os.Exit(2)
		}
		targets = append(targets, target{f[0], port})
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx := context.Background()
	var failed atomic.Int64
	jobs := make(chan target)
	var wg sync.WaitGroup
	start := time.Now()
	for range *fanout {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for tg := range jobs {
				if err := step(ctx, tg, *user, pass, *suite, *timeout, log); err != nil {
					failed.Add(1)
					fmt.Fprintln(os.Stderr, "pxecycle:", err)
				}
			}
		}()
	}
	for _, tg := range targets {
		jobs <- tg
	}
	close(jobs)
	wg.Wait()
	fmt.Printf("pxecycle: %d nodes, %d failed, %v\n", len(targets), failed.Load(), time.Since(start).Round(time.Millisecond))
	if failed.Load() > 0 {
		os.Exit(1)
	}
}

func step(ctx context.Context, tg target, user, pass string, suite int, timeout time.Duration, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, 10*timeout)
	defer cancel()
	ep := bmc.Endpoint{Protocol: "ipmi", Host: tg.host, Port: tg.port, Username: user, Password: pass,
		Options: bmc.Options{CipherSuites: []int{suite}, Timeout: timeout}}
	c, err := ipmi.Open(ctx, ep, log)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	if _, err := c.SetBootOverride(ctx, bmc.BootOverride{Device: bmc.BootPXE, Mode: bmc.BootModeLegacy}); err != nil {
		return err
	}
	err = c.SetPower(ctx, bmc.ActionCycle)
	if errors.Is(err, bmc.ErrPoweredOff) {
		err = c.SetPower(ctx, bmc.ActionOn)
	}
	if err != nil {
		return err
	}
	return c.Close(ctx)
}
