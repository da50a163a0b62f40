// Command benchpeers times "one-time PXE boot + power cycle" on every BMC of
// one farm of simulated BMCs (lab/ipmibmc/cmd/bmcfarm, a separate process)
// with reprov and with the independent IPMI clients, each used the way its
// users use it, and prints medians, ratios and what the farm counted. It is
// what scripts/bench-peers.sh (make bench-peers) runs; docs/performance.md
// explains the table.
//
// Clients (each at fan-out -fanout, -rounds rounds, the order rotated each
// round so that none always runs first or last):
//
//	raw-go-ipmi   go-ipmi's client in this process: Connect (cipher suite 17),
//	              SetBootDevice (parameter 5, PXE, once), Chassis Control
//	              cycle, Close; no verification
//	raw-go-ipmi-10  the same client making goal 3's exchanges (parameter 3,
//	              parameter 5, read-back, cycle): the floor of a verifying client
//	reprov-lib    reprov's bmc/ipmi in this process: Open, SetBootOverride
//	              (parameter 3, parameter 5, read-back), SetPower cycle (power
//	              on if refused as off), Close
//	reprov-cli    the reprov binary: reprov power cycle --pxe --legacy --all,
//	              state dir (audit log) on disk (-disk-dir)
//	reprov-cli-tmpfs  the same with the state dir on tmpfs (-tmpfs-dir)
//	reprov-cli-2cmd   reprov bootdev pxe --all, then reprov power cycle --all
//	              (state dir on disk): two processes, two sessions per node
//	freeipmi      ipmi-chassis-config --commit Boot_Device=PXE, then
//	              ipmipower --cycle, each over the whole hostrange with -F
//	ipmitool      xargs -P: ipmitool chassis bootdev pxe, then chassis power
//	              cycle, per node (two processes, two sessions per node)
//
// Every run is checked on the farm's side: each BMC must have booted once
// more, from a valid PXE override, with no session left open.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/command/chassis"
	"github.com/bougou/go-ipmi/pkg/types"

	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/bmc/ipmi"
)

const user = "admin"

type target struct {
	host string
	port int
}

// farm is the bmcfarm process and its control pipe.
type farm struct {
	cmd     *exec.Cmd
	in      io.WriteCloser
	out     *bufio.Scanner
	targets []target
}

// stats are the farm's totals ("stats" command).
type stats struct {
	received, sessions, boots, pxeBoots, open uint64
}

func startFarm(bin string, n int, pwFile string) (*farm, error) {
	cmd := exec.Command(bin, "-n", strconv.Itoa(n), "-port", "623", "-user", user,
		"-password-file", pwFile, "-control", "-stats=false")
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	f := &farm{cmd: cmd, in: in, out: bufio.NewScanner(outPipe)}
	for len(f.targets) < n && f.out.Scan() {
		fs := strings.Fields(f.out.Text())
		if len(fs) != 2 {
			return f, fmt.Errorf("bmcfarm: unexpected line %q", f.out.Text())
		}
		port, err := strconv.Atoi(fs[1])
		if err != nil {
			return f, fmt.Errorf("bmcfarm: unexpected line %q", f.out.Text())
		}
		f.targets = append(f.targets, target{fs[0], port})
	}
	if len(f.targets) != n {
		return f, fmt.Errorf("bmcfarm listed %d BMCs, want %d", len(f.targets), n)
	}
	return f, nil
}

func (f *farm) stats() (stats, error) {
	var s stats
	if _, err := io.WriteString(f.in, "stats\n"); err != nil {
		return s, err
	}
	if !f.out.Scan() {
		return s, fmt.Errorf("bmcfarm: no answer to stats: %v", f.out.Err())
	}
	_, err := fmt.Sscanf(f.out.Text(), "stats received=%d sessions=%d boots=%d pxe_boots=%d open=%d",
		&s.received, &s.sessions, &s.boots, &s.pxeBoots, &s.open)
	return s, err
}

func (f *farm) stop() {
	_ = f.in.Close()
	done := make(chan struct{})
	go func() { _ = f.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = f.cmd.Process.Kill()
		<-done
	}
}

// peer is one row of the table.
type peer struct {
	name string
	// what says what one run measures, printed next to the figures.
	what string
	run  func(ctx context.Context) error
	// slow: run only in the first -slow-rounds rounds, without warm-up
	// (ipmitool: tens of seconds a round, bound by process start-up).
	slow bool
}

type sample struct {
	d                  time.Duration
	exchanges, session float64
	err                error
}

func main() {
	n := flag.Int("n", 256, "BMCs in the farm")
	fanout := flag.Int("fanout", 64, "nodes in flight at once, for every client")
	rounds := flag.Int("rounds", 5, "rounds; each round runs every client once, in a rotated order")
	farmBin := flag.String("bmcfarm", "bmcfarm", "the bmcfarm binary")
	reprovBin := flag.String("reprov", "reprov", "the reprov binary")
	work := flag.String("work", "", "working directory (inventory, password, logs); required")
	diskDir := flag.String("disk-dir", "", "a directory on disk for reprov's state dir (default: under -work)")
	tmpfsDir := flag.String("tmpfs-dir", "/dev/shm", "a directory on tmpfs for reprov's state dir (empty: skip that row)")
	only := flag.String("clients", "", "comma-separated client names to run (default: all)")
	slowRounds := flag.Int("slow-rounds", 2, "rounds of the slow clients (ipmitool)")
	baseBin := flag.String("reprov-base", "", "another reprov binary (e.g. built from main) run as one more row, state on disk, to compare two builds in one run")
	flag.Parse()
	if *work == "" {
		fmt.Fprintln(os.Stderr, "benchpeers: -work is required")
		os.Exit(2)
	}
	if err := run(*n, *fanout, *rounds, *slowRounds, *farmBin, *reprovBin, *baseBin, *work, *diskDir, *tmpfsDir, *only); err != nil {
		fmt.Fprintln(os.Stderr, "benchpeers:", err)
		os.Exit(1)
	}
}

func run(n, fanout, rounds, slowRounds int, farmBin, reprovBin, baseBin, work, diskDir, tmpfsDir, only string) error {
	pwFile := filepath.Join(work, "password")
	pw, err := os.ReadFile(pwFile)
	if err != nil {
		return err
	}
	pass := strings.TrimSpace(string(pw))
	if diskDir == "" {
		diskDir = work
	}
	f, err := startFarm(farmBin, n, pwFile)
	if f != nil {
		defer f.stop()
	}
	if err != nil {
		return err
	}
	inv := filepath.Join(work, "fleet.yaml")
	if err := writeInventory(inv, pwFile, f.targets); err != nil {
		return err
	}
	hosts := make([]string, len(f.targets))
	for i, t := range f.targets {
		hosts[i] = t.host
	}
	cli := reprovCLI{bin: reprovBin, inv: inv, work: work, fanout: fanout}
	clients := []peer{
		{"raw go-ipmi library", "in-process fan-out: session, param 5, cycle, close; no read-back",
			func(ctx context.Context) error { return forEach(ctx, f.targets, fanout, rawGoIPMI(pass)) }, false},
		{"raw go-ipmi, goal 3's exchanges", "in-process fan-out: session, param 3+5, read-back, cycle, close; nothing checked",
			func(ctx context.Context) error { return forEach(ctx, f.targets, fanout, rawGoIPMIVerified(pass)) }, false},
		{"reprov bmc library", "in-process fan-out of bmc/ipmi: session, param 3+5, read-back, cycle, close",
			func(ctx context.Context) error { return forEach(ctx, f.targets, fanout, reprovLib(pass)) }, false},
		{"reprov CLI, state on disk", "process: reprov power cycle --pxe --all (audit log fsync'd on " + fsName(diskDir) + ")",
			func(ctx context.Context) error {
				return cli.run(ctx, filepath.Join(diskDir, "state-disk"), "power", "cycle", "--pxe", "--legacy")
			}, false},
	}
	if baseBin != "" {
		base := cli
		base.bin = baseBin
		clients = append(clients, peer{"reprov CLI, state on disk, base build", "process: the same with " + baseBin,
			func(ctx context.Context) error {
				return base.run(ctx, filepath.Join(diskDir, "state-disk-base"), "power", "cycle", "--pxe", "--legacy")
			}, false})
	}
	if tmpfsDir != "" {
		clients = append(clients, peer{"reprov CLI, state on tmpfs", "process: the same, state dir on " + fsName(tmpfsDir),
			func(ctx context.Context) error {
				return cli.run(ctx, filepath.Join(tmpfsDir, "reprov-bench-state-"+strconv.Itoa(os.Getpid())), "power", "cycle", "--pxe", "--legacy")
			}, false})
	}
	clients = append(clients,
		peer{"reprov CLI, two commands", "2 processes: reprov bootdev pxe --all; reprov power cycle --all (state on disk)",
			func(ctx context.Context) error {
				dir := filepath.Join(diskDir, "state-disk-2cmd")
				if err := cli.run(ctx, dir, "bootdev", "pxe", "--legacy"); err != nil {
					return err
				}
				return cli.run(ctx, dir, "power", "cycle")
			}, false},
		peer{"FreeIPMI, -F " + strconv.Itoa(fanout), "2 processes: ipmi-chassis-config --commit Boot_Device=PXE; ipmipower --cycle (hostrange)",
			func(ctx context.Context) error { return freeIPMI(ctx, hosts, pass, fanout) }, false},
		peer{"ipmitool, xargs -P " + strconv.Itoa(fanout), "2 processes per node: chassis bootdev pxe; chassis power cycle",
			func(ctx context.Context) error { return ipmitool(ctx, hosts, pass, fanout) }, true},
	)
	if only != "" {
		want := strings.Split(only, ",")
		clients = slices.DeleteFunc(clients, func(c peer) bool {
			return !slices.ContainsFunc(want, func(w string) bool { return strings.Contains(strings.ToLower(c.name), strings.ToLower(w)) })
		})
	}
	if tmpfsDir != "" {
		defer os.RemoveAll(filepath.Join(tmpfsDir, "reprov-bench-state-"+strconv.Itoa(os.Getpid())))
	}

	// A warm-up round, not counted: first-run effects (page cache, SQLite
	// file creation, ARP-free loopback warm-up) hit every client alike.
	samples := make([][]sample, len(clients))
	for r := -1; r < rounds; r++ {
		for k := range clients {
			i := (k + max(r, 0)) % len(clients)
			c := clients[i]
			if c.slow && (r < 0 || r >= slowRounds) {
				continue
			}
			s := measure(f, n, c)
			if r >= 0 {
				samples[i] = append(samples[i], s)
			}
			label := "warm-up"
			if r >= 0 {
				label = fmt.Sprintf("round %d", r+1)
			}
			if s.err != nil {
				fmt.Fprintf(os.Stderr, "benchpeers: %s, %s: %v\n", label, c.name, s.err)
			} else {
				fmt.Fprintf(os.Stderr, "benchpeers: %s, %-28s %7.1f ms\n", label, c.name, ms(s.d))
			}
		}
	}
	report(os.Stdout, n, fanout, rounds, clients, samples)
	return nil
}

func fsName(dir string) string {
	out, err := exec.Command("stat", "-f", "-c", "%T", dir).Output()
	if err != nil {
		return dir
	}
	return dir + ", " + strings.TrimSpace(string(out))
}

// measure runs c once and checks the farm's view of it.
func measure(f *farm, n int, c peer) sample {
	before, err := f.stats()
	if err != nil {
		return sample{err: err}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	err = c.run(ctx)
	d := time.Since(start)
	after, serr := f.stats()
	if serr != nil {
		return sample{err: serr}
	}
	s := sample{d: d, err: err,
		exchanges: float64(after.received-before.received) / float64(n),
		session:   float64(after.sessions-before.sessions) / float64(n)}
	if s.err == nil {
		switch {
		case after.boots-before.boots != uint64(n):
			s.err = fmt.Errorf("%d boots, want %d (one per BMC)", after.boots-before.boots, n)
		case after.pxeBoots-before.pxeBoots != uint64(n):
			s.err = fmt.Errorf("%d of %d boots used a valid PXE override", after.pxeBoots-before.pxeBoots, n)
		}
	}
	// Sessions must all be closed; give a closing client's last datagram a
	// moment to arrive.
	for deadline := time.Now().Add(2 * time.Second); after.open != 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		if after, serr = f.stats(); serr != nil {
			break
		}
	}
	if s.err == nil && after.open != 0 {
		s.err = fmt.Errorf("%d sessions left open on the BMCs", after.open)
	}
	return s
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func report(w io.Writer, n, fanout, rounds int, clients []peer, samples [][]sample) {
	type row struct {
		c                  peer
		med, lo, hi        time.Duration
		exchanges, session float64
		failed             int
		ok                 bool
	}
	rows := make([]row, len(clients))
	for i, c := range clients {
		r := row{c: c}
		var ds []time.Duration
		for _, s := range samples[i] {
			if s.err != nil {
				r.failed++
				continue
			}
			ds = append(ds, s.d)
			r.exchanges, r.session = s.exchanges, s.session
		}
		if len(ds) > 0 {
			slices.Sort(ds)
			r.med, r.lo, r.hi, r.ok = median(ds), ds[0], ds[len(ds)-1], true
		}
		rows[i] = r
	}
	base := rows[0]
	fmt.Fprintf(w, "\n%d go-ipmi BMCs on loopback (bmcfarm, one process), fan-out %d, %d rounds alternating, medians of wall time\n", n, fanout, rounds)
	fmt.Fprintf(w, "of one-time PXE + power cycle on every BMC; exchanges and sessions counted by the BMCs (datagrams received, Open Session Requests)\n\n")
	fmt.Fprintln(w, "| client | median | min–max | rounds | vs raw go-ipmi (time) | exchanges/node | sessions/node | what one run is |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	for i, r := range rows {
		if !r.ok {
			fmt.Fprintf(w, "| %s | failed (%d rounds) | | | | | | %s |\n", r.c.name, r.failed, r.c.what)
			continue
		}
		ratio := "–"
		if base.ok && base.med > 0 {
			ratio = fmt.Sprintf("%.2f×", float64(r.med)/float64(base.med))
		}
		note := ""
		if r.failed > 0 {
			note = fmt.Sprintf(" (%d rounds failed)", r.failed)
		}
		fmt.Fprintf(w, "| %s | %.0f ms%s | %.0f–%.0f ms | %d | %s | %.2f | %.2f | %s |\n",
			r.c.name, ms(r.med), note, ms(r.lo), ms(r.hi), len(samples[i])-r.failed, ratio, r.exchanges, r.session, r.c.what)
	}
	for _, r := range rows {
		if strings.HasPrefix(r.c.name, "reprov CLI") && r.ok && base.ok {
			fmt.Fprintf(w, "\n%s: %.2f× the raw library's throughput (goal ≥ 0.80)", r.c.name, float64(base.med)/float64(r.med))
		}
	}
	fmt.Fprintln(w)
}

func median(ds []time.Duration) time.Duration {
	m := len(ds) / 2
	if len(ds)%2 == 1 {
		return ds[m]
	}
	return (ds[m-1] + ds[m]) / 2
}

// forEach runs fn on every target, fanout at a time; the first error wins.
func forEach(ctx context.Context, targets []target, fanout int, fn func(ctx context.Context, t target) error) error {
	jobs := make(chan target)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for range fanout {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := range jobs {
				if err := fn(ctx, t); err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("%s:%d: %w", t.host, t.port, err)
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, t := range targets {
		jobs <- t
	}
	close(jobs)
	wg.Wait()
	return first
}

func rawGoIPMI(pass string) func(ctx context.Context, t target) error {
	return func(ctx context.Context, t target) error {
		c, err := client.NewClient(t.host, t.port, user, pass)
		if err != nil {
			return err
		}
		c.WithCipherSuiteID(types.CipherSuiteID17).WithTimeout(2 * time.Second).WithRetry(1)
		if err := c.Connect(ctx); err != nil {
			return err
		}
		defer c.Close(ctx)
		if err := c.SetBootDevice(ctx, types.BootDeviceSelectorForcePXE, types.BIOSBootTypeLegacy, false); err != nil {
			return err
		}
		_, err = c.ChassisControl(ctx, chassis.ChassisControlPowerCycle)
		return err
	}
}

// rawGoIPMIVerified makes the exchanges reprov's library makes (goal 3:
// parameter 3, parameter 5, the read-back, the cycle) with go-ipmi alone,
// and checks nothing: the floor of any go-ipmi client that verifies the
// override, against which the library's own cost shows.
func rawGoIPMIVerified(pass string) func(ctx context.Context, t target) error {
	return func(ctx context.Context, t target) error {
		c, err := client.NewClient(t.host, t.port, user, pass)
		if err != nil {
			return err
		}
		c.WithCipherSuiteID(types.CipherSuiteID17).WithTimeout(2 * time.Second).WithRetry(1)
		if err := c.Connect(ctx); err != nil {
			return err
		}
		defer c.Close(ctx)
		if err := c.SetSystemBootOptionsParamFor(ctx, &types.BootOptionParam_BMCBootFlagValidBitClear{DontClearOnCommandReceivedTimeout: true}); err != nil {
			return err
		}
		if err := c.SetBootDevice(ctx, types.BootDeviceSelectorForcePXE, types.BIOSBootTypeLegacy, false); err != nil {
			return err
		}
		if err := c.GetSystemBootOptionsParamFor(ctx, &types.BootOptionParam_BootFlags{}); err != nil {
			return err
		}
		_, err = c.ChassisControl(ctx, chassis.ChassisControlPowerCycle)
		return err
	}
}

func reprovLib(pass string) func(ctx context.Context, t target) error {
	log := slog.New(slog.DiscardHandler)
	return func(ctx context.Context, t target) error {
		ep := bmc.Endpoint{Protocol: "ipmi", Host: t.host, Port: t.port, Username: user, Password: pass,
			Options: bmc.Options{CipherSuites: []int{17}}}
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
}

func writeInventory(path, pwFile string, targets []target) error {
	var b strings.Builder
	fmt.Fprintf(&b, "defaults:\n  bmc: {username: %s, password: \"file:%s\", options: {cipher_suites: [17]}}\nnodes:\n", user, pwFile)
	for i, t := range targets {
		fmt.Fprintf(&b, "  - name: n%04d\n    rack: r%02d\n    bmc: {address: \"ipmi://%s:%d\"}\n", i, i/40, t.host, t.port)
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

// reprovCLI runs the reprov binary as an operator would, with a clean
// environment: no config file, the state dir given.
type reprovCLI struct {
	bin, inv, work string
	fanout         int
}

func (r reprovCLI) run(ctx context.Context, stateDir string, args ...string) error {
	args = append([]string{"--inventory", r.inv}, args...)
	args = append(args, "--all", "--yes", "--max-parallel", strconv.Itoa(r.fanout))
	cmd := exec.CommandContext(ctx, r.bin, args...)
	cmd.Dir = r.work
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + r.work, "XDG_CONFIG_HOME=" + r.work,
		"REPROV_STATE_DIR=" + stateDir}
	return runQuiet(cmd)
}

// runQuiet runs cmd with its output discarded, except on failure.
func runQuiet(cmd *exec.Cmd) error {
	var out tail
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", filepath.Base(cmd.Path), err, out.String())
	}
	return nil
}

// tail keeps the last 2 KiB written to it.
type tail struct {
	mu sync.Mutex
	b  []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > 2048 {
		t.b = t.b[len(t.b)-2048:]
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// freeIPMI is FreeIPMI as its users drive a fleet: one process per command
// over the whole hostrange, with its own fan-out. The password is a
// throwaway generated per run; FreeIPMI takes it on the command line.
func freeIPMI(ctx context.Context, hosts []string, pass string, fanout int) error {
	h := strings.Join(hosts, ",")
	common := []string{"-D", "LAN_2_0", "-h", h, "-u", user, "-p", pass, "-F", strconv.Itoa(fanout)}
	cfg := exec.CommandContext(ctx, "ipmi-chassis-config", append(common, "--commit", "-e", "Chassis_Boot_Flags:Boot_Device=PXE")...)
	if err := runQuiet(cfg); err != nil {
		return err
	}
	pw := exec.CommandContext(ctx, "ipmipower", append(common, "--cycle")...)
	var out tail
	pw.Stdout, pw.Stderr = &out, &out
	if err := pw.Run(); err != nil {
		return fmt.Errorf("ipmipower: %w: %s", err, out.String())
	}
	// ipmipower exits 0 whatever happened to each host: count the "ok"s.
	// (Only the last 2 KiB are kept; the farm's boot count is the check.)
	return nil
}

// ipmitool is ipmitool as its users drive a fleet: xargs -P, two commands
// per node, the password from the environment (-E).
func ipmitool(ctx context.Context, hosts []string, pass string, fanout int) error {
	script := `ipmitool -I lanplus -C 17 -H "$1" -U admin -E chassis bootdev pxe >/dev/null &&
ipmitool -I lanplus -C 17 -H "$1" -U admin -E chassis power cycle >/dev/null ||
{ echo "ipmitool failed on $1" >&2; exit 255; }`
	cmd := exec.CommandContext(ctx, "xargs", "-P", strconv.Itoa(fanout), "-n", "1", "sh", "-c", script, "sh")
	cmd.Env = append(os.Environ(), "IPMI_PASSWORD="+pass)
	cmd.Stdin = strings.NewReader(strings.Join(hosts, "\n") + "\n")
	return runQuiet(cmd)
}
