package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/reprov/reprov/agent"
	"github.com/reprov/reprov/agent/fleet"
	labfleet "github.com/reprov/reprov/lab/fleet"
)

// demoOptions are the options of `reprov demo`.
type demoOptions struct {
	// Keep keeps the demo's temporary directory (lab files, state dir).
	Keep bool
	// Quiet prints no step events, only the results.
	Quiet bool
	// NoServe runs the reinstall alone, without reprov serve next to it.
	NoServe bool
}

// demoMix is the demo's rack: 24 nodes, the DL360 G7s half on the default
// playbook (caught ignoring the override, escalated in-band) and half on
// hp-dl360-g7 (in-band first), one dead BMC, one wrong identity.
func demoMix() []labfleet.ModelCount {
	return []labfleet.ModelCount{
		{Model: labfleet.ModelIPMI, Count: 11}, {Model: labfleet.ModelDL360G7, Count: 6},
		{Model: labfleet.ModelRedfish, Count: 3}, {Model: labfleet.ModelUEFI, Count: 2},
		{Model: labfleet.ModelDeadBMC, Count: 1}, {Model: labfleet.ModelWrongIdentity, Count: 1},
	}
}

// demoTimeouts are the demo playbooks' timeouts: the built-ins' paths and
// policies, lab timings.
const demoTimeouts = "timeouts: {precheck: 5s, oob_boot: 10s, power: 10s, wait_landing: 20s, inband: 30s, reboot: 10s}\n"

func newDemoCmd(a *app) *cobra.Command {
	var o demoOptions
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Reinstall a simulated rack of 24 nodes in-process (nothing real is touched)",
		Long: `Start a simulated rack in this process — 24 virtual nodes with IPMI and Redfish
BMCs on loopback, HP DL360 G7-like boards that ignore the boot override, UEFI
boards, one dead BMC and one node whose OS is not the one the inventory means —
in a fresh temporary state dir, reinstall all of it with progress, and print the
summary. While it runs, reprov serve runs in the same process on the same store:
its status page (printed URL) shows the rack live, its landing endpoint answers
the nodes, its worker stands by on the shared queue (--no-serve: the reinstall
alone). Exit 0 when every node ended as it should.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), a, o)
		},
	}
	cmd.Flags().BoolVar(&o.Keep, "keep", false, "keep the demo's temporary directory (inventory, state dir, audit log)")
	cmd.Flags().BoolVarP(&o.Quiet, "quiet", "q", false, "print no step events, only the results")
	cmd.Flags().BoolVar(&o.NoServe, "no-serve", false, "do not run reprov serve (status page, API, a second worker) next to the reinstall")
	return cmd
}

func runDemo(ctx context.Context, a *app, o demoOptions) error {
	start := time.Now()
	dir, err := os.MkdirTemp("", "reprov-demo-")
	if err != nil {
		return failedError(err)
	}
	if o.Keep {
		defer fmt.Fprintf(a.stderr, "demo: kept %s (reprov --config %s jobs list)\n", dir, filepath.Join(dir, "reprov.yaml"))
	} else {
		defer os.RemoveAll(dir)
	}
	lab, err := labfleet.Start(ctx, labfleet.Config{Mix: demoMix(), Dir: filepath.Join(dir, "lab"),
		BootDelay: 300 * time.Millisecond, OSBootTime: 400 * time.Millisecond,
		NetbootRetry: 100 * time.Millisecond, NetbootRetryMax: time.Second,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return failedError(fmt.Errorf("demo: start the simulated rack: %w", err))
	}
	defer lab.Close()
	files, err := lab.WriteFiles(filepath.Join(dir, "inventory.yaml"))
	if err != nil {
		return failedError(err)
	}
	pbDir := filepath.Join(dir, "playbooks")
	if err := os.MkdirAll(pbDir, 0o755); err != nil {
		return failedError(err)
	}
	for _, name := range []string{"default", "hp-dl360-g7", "uefi-generic"} {
		body := "# The built-in " + name + " with the demo's lab timings.\nname: " + name + "\nextends: " + name + "\n" + demoTimeouts
		if err := os.WriteFile(filepath.Join(pbDir, name+".yaml"), []byte(body), 0o644); err != nil {
			return failedError(err)
		}
	}
	stub := filepath.Join(dir, "reprov-agent")
	if err := labfleet.WriteAgentStub(stub); err != nil {
		return failedError(err)
	}
	c := a.cfg
	c.Inventory = files.Inventory
	c.StateDir = filepath.Join(dir, "state")
	c.Store.URL = ""
	c.Store.Lease = 10 * time.Second
	c.Playbooks.Dir = pbDir
	c.Landing.Listen, c.Landing.URL = lab.LandingListen(), lab.LandingURL()
	c.Landing.Allow = nil
	c.Landing.Kernel = "http://netboot.demo.invalid/live/vmlinuz"
	c.Landing.Initrd = []string{"http://netboot.demo.invalid/live/initrd.img"}
	c.Landing.Cmdline = "boot=live fetch=http://netboot.demo.invalid/live/root.squashfs toram"
	c.Landing.ProbeInterval = 400 * time.Millisecond
	c.Inband.AgentBinary = stub
	c.MaxParallel, c.PerRack = 64, 0
	if c.LogLevel != "debug" {
		// The step events tell the story; keep the logs to problems.
		a.log = slog.New(minLevel{h: a.log.Handler(), min: slog.LevelWarn})
	}

	fmt.Fprintf(a.stderr, "demo: a simulated rack of %d nodes (%s) on 127.%d.0.0/16, state dir %s\n",
		len(lab.Nodes()), labfleet.FormatMix(lab.Mix()), lab.Subnet(), c.StateDir)
	ev := &demoEvents{w: a.stderr, start: time.Now(), quiet: o.Quiet}
	labTimings := func(cfg *agent.Config) {
		cfg.PollInterval = 100 * time.Millisecond
		cfg.ProbeTimeout = 3 * time.Second
		cfg.RebootDelay = 200 * time.Millisecond
	}
	var page string
	stopServe := func() error { return nil }
	if !o.NoServe {
		page, stopServe, err = demoServe(ctx, a, filepath.Join(dir, "serve.log"), func(cfg *agent.Config) {
			labTimings(cfg)
			logged := cfg.Events
			cfg.Events = func(e agent.Event) { logged(e); ev.print(e) }
		})
		if err != nil {
			return err
		}
		defer func() { _ = stopServe() }()
		fmt.Fprintf(a.stderr, "demo: reprov serve runs alongside: status page %s (racks, runs and nodes, live; the API under /api/v1)\n", page)
	}
	fmt.Fprintf(a.stderr, "demo: reprov reinstall --all --yes (landing endpoint %s)\n", c.Landing.URL)
	rep, err := reinstall(ctx, a, reinstallOptions{Selection: selection{All: true}, Yes: true, noProgress: !o.Quiet,
		events: ev.print, tweak: labTimings})
	if err != nil {
		return err
	}
	fmt.Fprintln(a.stderr)
	rerr := reportReinstall(ctx, a, rep)
	if ctx.Err() != nil {
		return rerr
	}
	problems := demoCheck(lab, rep)
	if page != "" {
		if err := demoPageShows(ctx, page, rep); err != nil {
			problems = append(problems, err.Error())
		}
		if err := stopServe(); err != nil {
			problems = append(problems, "reprov serve did not stop cleanly: "+err.Error())
		}
	}
	fmt.Fprintf(a.stdout, "\ndemo: %d nodes in %s\n", len(rep.Results), time.Since(start).Round(100*time.Millisecond))
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintf(a.stdout, "demo: UNEXPECTED: %s\n", p)
		}
		return errSomeFailed
	}
	fmt.Fprintln(a.stdout, "demo: every node ended as expected: landed out-of-band or in-band (the DL360 G7s on the default playbook caught ignoring the override and escalated), the dead BMC and the wrong identity stopped at precheck, untouched")
	return nil
}

// demoServe runs `reprov serve` in this process for the demo, on its
// configuration and store: the status page (public) and the API on a
// free loopback port, the landing endpoint, a worker. Its log goes to
// logPath. It returns the page's URL and the function that stops it as
// SIGTERM does.
func demoServe(ctx context.Context, a *app, logPath string, tweak func(*agent.Config)) (string, func() error, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return "", nil, failedError(err)
	}
	cfg := *a.cfg
	cfg.Server.Listen, cfg.Server.URL, cfg.Server.PublicPage = "127.0.0.1:0", "", true
	cfg.Server.TLSCert, cfg.Server.TLSKey, cfg.Server.MetricsToken = "", "", ""
	sa := *a
	sa.cfg, sa.stderr = &cfg, f
	sctx, cancel := context.WithCancel(ctx)
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- runServe(sctx, &sa, serveOptions{ready: func(addr string) { ready <- addr }, tweak: tweak})
	}()
	var once sync.Once
	var stopErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			stopErr = <-done
			f.Close()
		})
		return stopErr
	}
	select {
	case addr := <-ready:
		return "http://" + addr + "/", stop, nil
	case err := <-done:
		cancel()
		f.Close()
		return "", nil, failedError(fmt.Errorf("demo: reprov serve: %w", err))
	case <-ctx.Done():
		_ = stop()
		return "", nil, ctx.Err()
	}
}

// demoPageShows checks that serve's status page shows the run's nodes.
func demoPageShows(ctx context.Context, page string, rep *agent.Report) error {
	if len(rep.Results) == 0 {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, page, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("status page %s: %w", page, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if node := rep.Results[0].Node; resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte(node)) {
		return fmt.Errorf("status page %s: %s, without node %s", page, resp.Status, node)
	}
	return nil
}

// demoCheck compares the run with what the demo's rack should give.
func demoCheck(lab *labfleet.Lab, rep *agent.Report) []string {
	var problems []string
	for _, r := range rep.Results {
		n := lab.Node(r.Node)
		if n == nil {
			continue
		}
		nr, _ := r.Detail.(*agent.NodeReport)
		if nr == nil {
			nr = &agent.NodeReport{}
		}
		st := n.Status()
		switch n.Model() {
		case labfleet.ModelDeadBMC, labfleet.ModelWrongIdentity:
			want := agent.ReasonBMCUnreachable
			if n.Model() == labfleet.ModelWrongIdentity {
				want = agent.ReasonIdentityMismatch
			}
			if r.Status != fleet.StatusFailed || r.Reason != want {
				problems = append(problems, fmt.Sprintf("%s: %s (%s), want failed (%s)", r.Node, r.Status, r.Reason, want))
			}
			if st.BootCount != 0 || !n.Bootable() {
				problems = append(problems, fmt.Sprintf("%s was touched: %d boots, bootable %t", r.Node, st.BootCount, n.Bootable()))
			}
		default:
			if r.Status != fleet.StatusOK {
				problems = append(problems, fmt.Sprintf("%s: %s (%s), want landed", r.Node, r.Status, r.Reason))
				continue
			}
			wantPath := "oob"
			if n.Model() == labfleet.ModelDL360G7 {
				wantPath = "inband"
			}
			if nr.Path != wantPath {
				problems = append(problems, fmt.Sprintf("%s landed by the %s path, want %s", r.Node, nr.Path, wantPath))
			}
			if n.Model() == labfleet.ModelDL360G7 && n.Playbook() == "default" && !nr.Escalated {
				problems = append(problems, fmt.Sprintf("%s (playbook default) was not escalated", r.Node))
			}
		}
	}
	return problems
}

// demoEvents prints step transitions as the run goes.
type demoEvents struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
	quiet bool
}

func (d *demoEvents) print(e agent.Event) {
	if d.quiet || e.Phase == "intent" {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	t := e.Time.Sub(d.start).Seconds()
	note := e.Note
	switch {
	case e.Phase == "end" && e.Result == "landed":
		note = "LANDED"
	case e.Phase == "end":
		note = strings.ToUpper(e.Result) + ": " + note
	case e.Step == agent.StepWaitLanding && note == agent.VerdictOldOS:
		note = "old OS back with a new boot id: the board ignored the override"
	}
	step := e.Step
	if e.Phase == "end" {
		step = "→"
	}
	if len(note) > 110 {
		note = note[:110] + "…"
	}
	fmt.Fprintf(d.w, "%6.1fs  %-13s %-13s %-7s %s\n", t, e.Node, step, e.Result, note)
}
