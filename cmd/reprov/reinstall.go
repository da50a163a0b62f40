package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/reprov/reprov/agent"
	"github.com/reprov/reprov/agent/audit"
	"github.com/reprov/reprov/agent/fleet"
	"github.com/reprov/reprov/agent/landing"
	"github.com/reprov/reprov/agent/metrics"
	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/inventory"
	"github.com/reprov/reprov/playbooks"
)

// reinstallOptions are the options of `reprov reinstall`.
type reinstallOptions struct {
	Selection selection
	Fleet     fleetFlags
	// Yes skips the confirmation.
	Yes bool
	// DryRun prints the plan (as `reprov plan`) and changes nothing.
	DryRun bool
	// Resume continues the selected nodes' unfinished jobs (their
	// controller died, or Ctrl-C interrupted them) and starts no new one.
	Resume bool
	// Timeout bounds one node's whole reinstall (0: the playbooks' step
	// timeouts only).
	Timeout time.Duration

	// events, when set, receives every step transition (the demo).
	events func(agent.Event)
	// noProgress turns the fleet runner's progress off (the demo prints
	// step events instead).
	noProgress bool
	// tweak adjusts the engine configuration (the demo's lab timings).
	tweak func(*agent.Config)
}

func newReinstallCmd(a *app) *cobra.Command {
	var o reinstallOptions
	cmd := &cobra.Command{
		Use:   "reinstall [NODE-GLOB...]",
		Short: "Make the selected nodes boot from the network and land on the netboot server",
		Long: `Reinstall the selected nodes: per node, read-only prechecks (BMC, SSH and the
identity of the running OS), the playbook's pre-hooks, then its paths — a one-time
PXE boot override through the BMC and a power cycle, or in-band over SSH (save and
zero the boot sector, force PXE, reboot) — until the node lands on the landing
endpoint, which reinstall keeps on landing.listen (when another reprov on the same
store holds the address, its endpoint answers, and this one takes the address over
if that reprov exits first).

Every step is recorded in the job store; a killed or interrupted reinstall is
resumed by running it again. Without --yes it asks once, on a terminal, showing
what would be done. Exit 0 when every node landed, 1 when some did not, 2 on a
usage or configuration error, 3 when interrupted (every node's state is recorded).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Selection.Names = args
			return runReinstall(cmd.Context(), a, o)
		},
	}
	addSelectionFlags(cmd, &o.Selection)
	addFleetFlags(cmd, &o.Fleet)
	f := cmd.Flags()
	f.BoolVarP(&o.Yes, "yes", "y", false, "do not ask for confirmation")
	f.BoolVar(&o.DryRun, "dry-run", false, "print what would be done (as reprov plan) and change nothing")
	f.BoolVar(&o.Resume, "resume", false, "continue the unfinished jobs of the selected nodes (killed controller, Ctrl-C); start no new one")
	f.DurationVar(&o.Timeout, "timeout", 0, "longest a node's reinstall may take from start to landed (0: the playbooks' step timeouts only)")
	return cmd
}

func runReinstall(ctx context.Context, a *app, o reinstallOptions) error {
	c, err := a.serverClient()
	if err != nil {
		return err
	}
	if o.DryRun {
		if c == nil {
			if _, err := a.loadInventory(); err != nil {
				return err
			}
		}
		return runPlan(ctx, a, planOptions{Selection: o.Selection, dryRunOf: "reinstall"})
	}
	if c != nil {
		// server.url (or --server): the controller does the work.
		return reinstallViaServer(ctx, a, c, o)
	}
	rep, err := reinstall(ctx, a, o)
	if err != nil {
		return err
	}
	return reportReinstall(ctx, a, rep)
}

// reinstall runs a reinstall and returns its report, unrendered.
func reinstall(ctx context.Context, a *app, o reinstallOptions) (*agent.Report, error) {
	if o.Fleet.MaxFailures < 0 {
		return nil, usagef("--max-failures %d is negative", o.Fleet.MaxFailures)
	}
	if o.Timeout < 0 {
		return nil, usagef("--timeout %s is negative", o.Timeout)
	}
	inv, err := a.loadInventory()
	if err != nil {
		return nil, err
	}
	nodes, err := inv.Select(inventory.Selector{Names: o.Selection.Names, Racks: o.Selection.Racks, Labels: o.Selection.Selector, All: o.Selection.All})
	if err != nil {
		return nil, usageError(err)
	}
	// The progress display: a bar for the run and a line per node in
	// flight with its step on a terminal, plain lines otherwise; log
	// lines go above the bars while it is shown.
	var display *fleet.Display
	if !o.noProgress {
		display = fleet.NewDisplay(a.stderr, "reinstall")
		defer a.logOut.set(a.logOut.set(display))
		defer display.Close()
	}
	env, err := a.newEngineEnv(ctx, inv, true, func(c *agent.Config) {
		c.NodeTimeout = o.Timeout
		c.Events = o.events
		if display != nil {
			c.Events = func(ev agent.Event) {
				if ev.Phase == "intent" {
					display.Step(ev.Node, ev.Step)
				}
				if o.events != nil {
					o.events(ev)
				}
			}
		}
		if o.tweak != nil {
			o.tweak(c)
		}
	})
	if err != nil {
		return nil, err
	}
	defer env.close()
	if err := env.checkProfiles(nodes); err != nil {
		return nil, err
	}
	if !o.Yes {
		if err := env.confirm(ctx, nodes, o.Resume); err != nil {
			return nil, err
		}
	}
	stopLanding, err := env.startLanding(ctx)
	if err != nil {
		return nil, err
	}
	defer stopLanding()
	var progress io.Writer
	if display != nil {
		progress = display
	}

	rep, err := env.engine.Reinstall(ctx, nodes, agent.RunOptions{
		Selection: selectionText(o.Selection),
		CreatedBy: createdBy(),
		Options: map[string]any{"max_parallel": a.cfg.MaxParallel, "per_rack": a.cfg.PerRack,
			"max_failures": o.Fleet.MaxFailures, "timeout": o.Timeout.String(), "resume": o.Resume},
		MaxParallel: a.cfg.MaxParallel,
		PerRack:     a.cfg.PerRack,
		MaxFailures: o.Fleet.MaxFailures,
		Progress:    progress,
		ResumeOnly:  o.Resume,
	})
	if display != nil {
		display.Close() // the bars are done before the table is printed
	}
	if err != nil {
		return nil, failedError(err)
	}
	return rep, nil
}

// reportReinstall renders a run's results and summary and returns the
// command's error.
func reportReinstall(ctx context.Context, a *app, rep *agent.Report) error {
	sum := agent.Summarize(rep.Results)
	if a.jsonOutput() {
		if err := a.writeJSON(struct {
			Run     store.Run      `json:"run"`
			Results []fleet.Result `json:"results"`
			Summary agent.Summary  `json:"summary"`
		}{rep.Run, rep.Results, sum}); err != nil {
			return err
		}
	} else {
		rows := make([][]string, 0, len(rep.Results))
		for _, r := range rep.Results {
			nr, _ := r.Detail.(*agent.NodeReport)
			if nr == nil {
				nr = &agent.NodeReport{}
			}
			job := ""
			if nr.JobID != 0 {
				job = fmt.Sprint(nr.JobID)
			}
			status := string(r.Status)
			if r.Status == fleet.StatusOK {
				status = "landed"
			}
			rows = append(rows, []string{r.Node, r.Rack, status, nr.Path, string(nr.Landing), job, a.reasonCell(r)})
		}
		if err := a.table([]string{"NODE", "RACK", "RESULT", "PATH", "LANDING", "JOB", "REASON"}, rows); err != nil {
			return err
		}
		fmt.Fprintln(a.stdout)
		sum.Text(a.stdout, rep.Run)
		for _, r := range rep.Results {
			if r.Status != fleet.StatusFailed || r.Error == "" {
				continue
			}
			fmt.Fprintf(a.stderr, "node %s: %s\n", r.Node, dedupeChain(r.Error))
		}
	}
	c := fleet.Count(rep.Results)
	switch {
	case ctx.Err() != nil || c.Interrupted > 0:
		return fmt.Errorf("interrupted: %d of %d nodes not done; every node's state is recorded (reprov jobs list): %w",
			c.Interrupted+c.Skipped, len(rep.Results), context.Canceled)
	case c.Failed > 0 || c.Skipped > 0:
		return errSomeFailed
	}
	return nil
}

// reasonCell is the REASON column: the reason with its cause ("precheck:
// identify failed: no reprov-agent for linux/arm64 (…)"), shortened in the
// table, whole under -o wide.
func (a *app) reasonCell(r fleet.Result) string {
	text := r.Reason
	if r.Error != "" {
		text = dedupeChain(r.Error)
	}
	if a.wideOutput() {
		return text
	}
	return shorten(text, 100)
}

func selectionText(s selection) string {
	var parts []string
	parts = append(parts, s.Names...)
	for _, r := range s.Racks {
		parts = append(parts, "--rack "+r)
	}
	if s.Selector != "" {
		parts = append(parts, "--selector "+s.Selector)
	}
	if s.All {
		parts = append(parts, "--all")
	}
	return strings.Join(parts, " ")
}

func createdBy() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	h, _ := os.Hostname()
	return name + "@" + h
}

// engineEnv is what the reinstall family of commands shares: the store,
// the playbooks, the audit log and the engine.
type engineEnv struct {
	a         *app
	inv       *inventory.Inventory
	st        *store.Store
	pbs       *playbooks.Set
	audit     *audit.Log
	auditPath string
	engine    *agent.Engine
	// obs, when set (serve), gets the landing endpoint's answers.
	obs *metrics.Observer
}

// storeURL is the configured job store, or SQLite in the state dir.
func (a *app) storeURL() string {
	if a.cfg.Store.URL != "" {
		return a.cfg.Store.URL
	}
	return "sqlite://" + filepath.Join(a.cfg.StateDir, "reprov.db")
}

// openStore opens the job store (creating the state dir for SQLite).
func (a *app) openStore(ctx context.Context) (*store.Store, error) {
	url := a.storeURL()
	if strings.HasPrefix(url, "sqlite:") {
		if _, err := a.ensureStateDir(); err != nil {
			return nil, err
		}
	}
	st, err := store.Open(ctx, url, a.storeLog())
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, usageError(err)
	}
	return st, nil
}

// storeLog is the job store's (and River's) logger: warnings and errors
// only, unless log_level is debug.
func (a *app) storeLog() *slog.Logger {
	if a.cfg.LogLevel == "debug" {
		return a.log
	}
	return slog.New(minLevel{h: a.log.Handler(), min: slog.LevelWarn})
}

// minLevel drops records below min.
type minLevel struct {
	h   slog.Handler
	min slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.h.Enabled(ctx, l)
}
func (m minLevel) Handle(ctx context.Context, r slog.Record) error { return m.h.Handle(ctx, r) }
func (m minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h: m.h.WithAttrs(as), min: m.min}
}
func (m minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h: m.h.WithGroup(name), min: m.min}
}

// loadPlaybooks loads the built-ins and playbooks.dir; problems are
// configuration errors.
func (a *app) loadPlaybooks() (*playbooks.Set, error) {
	set, err := playbooks.Load(a.cfg.Playbooks.Dir)
	if err != nil {
		return nil, usagef("playbooks: %w", err)
	}
	return set, nil
}

// agentBinary is inband.agent_binary; "" lets the in-band session find
// the build for each node's architecture (inband.FindAgentBinary:
// reprov-agent-linux-GOARCH or reprov-agent next to reprov,
// /usr/local/lib/reprov, /usr/lib/reprov).
func (a *app) agentBinary() string { return a.cfg.Inband.AgentBinary }

// newEngineEnv opens the store and the playbooks and makes the engine;
// withAudit opens the audit log too (for commands that change nodes).
func (a *app) newEngineEnv(ctx context.Context, inv *inventory.Inventory, withAudit bool, tweak func(*agent.Config)) (*engineEnv, error) {
	pbs, err := a.loadPlaybooks()
	if err != nil {
		return nil, err
	}
	if inv != nil {
		for _, n := range inv.Nodes {
			if _, err := pbs.Get(n.Playbook); err != nil {
				return nil, usagef("node %s (%s:%d): %w", n.Name, n.Pos.File, n.Pos.Line, err)
			}
		}
	}
	st, err := a.openStore(ctx)
	if err != nil {
		return nil, err
	}
	env := &engineEnv{a: a, inv: inv, st: st, pbs: pbs}
	if withAudit {
		dir, err := a.ensureStateDir()
		if err != nil {
			env.close()
			return nil, err
		}
		env.auditPath = filepath.Join(dir, "audit.jsonl")
		if env.audit, err = a.openAudit(env.auditPath, st); err != nil {
			env.close()
			return nil, failedError(err)
		}
	}
	cfg := agent.Config{
		Store:         st,
		Playbooks:     pbs,
		StateDir:      a.cfg.StateDir,
		Audit:         env.audit,
		AuditPath:     env.auditPath,
		Log:           a.log,
		Getenv:        a.getenv,
		LeaseTTL:      a.cfg.Store.Lease,
		ProbeInterval: a.cfg.Landing.ProbeInterval,
		AgentBinary:   a.agentBinary(),
	}
	if inv != nil {
		cfg.Inventory = inv.Nodes
	}
	if tweak != nil {
		tweak(&cfg)
	}
	if cfg.Events == nil {
		log := a.log
		cfg.Events = func(e agent.Event) {
			log.Debug("step", "node", e.Node, "job", e.JobID, "step", e.Step, "phase", e.Phase, "result", e.Result, "note", e.Note)
		}
	}
	if env.engine, err = agent.New(cfg); err != nil {
		env.close()
		return nil, err
	}
	return env, nil
}

func (env *engineEnv) close() {
	if env.audit != nil {
		if err := env.audit.Close(); err != nil {
			env.a.log.Error("close audit log", "err", err)
		}
	}
	if env.st != nil {
		env.st.Close()
	}
}

// profileFor is the install profile of a node: its playbook's, else the
// configured default.
func (env *engineEnv) profileFor(name string) (playbooks.InstallProfile, error) {
	l := env.a.cfg.Landing
	def := playbooks.InstallProfile{Kernel: l.Kernel, Initrds: l.Initrd, Cmdline: l.Cmdline}
	if env.inv == nil {
		return def, nil
	}
	for _, n := range env.inv.Nodes {
		if n.Name != name {
			continue
		}
		pb, err := env.pbs.Get(n.Playbook)
		if err != nil {
			return playbooks.InstallProfile{}, err
		}
		if !pb.Install.IsZero() {
			return pb.Install, nil
		}
		return def, nil
	}
	return def, nil
}

// checkProfiles refuses nodes that would land with nothing to boot.
func (env *engineEnv) checkProfiles(nodes []inventory.Node) error {
	var missing []string
	for _, n := range nodes {
		p, err := env.profileFor(n.Name)
		if err != nil {
			return usageError(err)
		}
		if p.Kernel == "" {
			missing = append(missing, n.Name)
		}
	}
	if len(missing) > 0 {
		return usagef("no install profile for %s: a node that lands would have nothing to boot; set landing.kernel (and landing.initrd, landing.cmdline) or the playbook's install",
			shortList(missing, 8))
	}
	return nil
}

func shortList(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return strings.Join(names[:n], ", ") + fmt.Sprintf(" and %d more", len(names)-n)
}

// confirm shows what a reinstall would do and asks once on the terminal
// (confirm.go). Without a terminal it refuses (pass --yes).
func (env *engineEnv) confirm(ctx context.Context, nodes []inventory.Node, resume bool) error {
	summary := env.describe(ctx, nodes)
	if resume {
		summary = "Resuming the unfinished jobs among these nodes (nodes whose latest job ended are only reported):\n" + summary
	}
	return env.a.confirm(confirmation{Verb: "reinstall", Nodes: nodes, Detail: summary})
}

// describe is the confirmation text: count, racks, paths, and which nodes
// may have their boot sector zeroed.
func (env *engineEnv) describe(ctx context.Context, nodes []inventory.Node) string {
	var b strings.Builder
	racks := map[string]int{}
	for _, n := range nodes {
		racks[n.Rack]++
	}
	rackNames := make([]string, 0, len(racks))
	for r := range racks {
		if r == "" {
			r = "(no rack)"
		}
		rackNames = append(rackNames, r)
	}
	sort.Strings(rackNames)
	fmt.Fprintf(&b, "  in %d rack(s): %s\n", len(racks), shortList(rackNames, 10))
	var oobFirst, inbandFirst, mayEscalate []string
	for _, n := range nodes {
		pb, err := env.pbs.Get(n.Playbook)
		if err != nil {
			continue
		}
		first := pb.Paths[0]
		if q, err := env.st.Quirks(ctx, n.Name); err == nil && pb.Uses(playbooks.PathInband) {
			for _, x := range q {
				if x.Quirk == store.QuirkIgnoresOOBPXE {
					first = playbooks.PathInband
				}
			}
		}
		switch {
		case first == playbooks.PathInband && n.SSH.Address != "":
			inbandFirst = append(inbandFirst, n.Name)
		default:
			oobFirst = append(oobFirst, n.Name)
			if pb.Uses(playbooks.PathInband) && n.SSH.Address != "" {
				mayEscalate = append(mayEscalate, n.Name)
			}
		}
	}
	fmt.Fprintf(&b, "  out-of-band first (one-time PXE override + power %s): %d\n", "action per playbook", len(oobFirst))
	if len(inbandFirst) > 0 {
		fmt.Fprintf(&b, "  DESTRUCTIVE in-band first (zero the boot sector of the boot disk, saved first; reprov restore undoes it): %d: %s\n",
			len(inbandFirst), shortList(inbandFirst, 10))
	}
	if len(mayEscalate) > 0 {
		fmt.Fprintf(&b, "  may go in-band (zero the boot sector) if the board ignores the override: %d\n", len(mayEscalate))
	}
	fmt.Fprintf(&b, "  every node lands on %s (landing.url); reprov plan shows each node's exact steps\n", env.a.cfg.Landing.URL)
	return b.String()
}

// startLanding keeps the landing endpoint on landing.listen while the run
// lasts (landing.Keeper, docs/netboot.md): an address in use is another
// reprov's endpoint on the same store (or a standing one); this process
// takes it over within about a second if that one goes away while nodes
// still wait for their landing.
func (env *engineEnv) startLanding(ctx context.Context) (stop func(), err error) {
	a := env.a
	allow, err := landing.ParseAllow(a.cfg.Landing.Allow)
	if err != nil {
		return nil, usageError(err)
	}
	window := a.cfg.Landing.RetryWindow
	if window == 0 {
		window = -1 // landing.retry_window: 0 turns the retry off
	}
	srv, err := landing.New(landing.Config{Jobs: env.st, Profile: env.profileFor, URL: a.cfg.Landing.URL, Allow: allow, Log: a.log,
		NodeByMAC: nodeByMAC(env.inv), NodeAddr: nodeAddr(env.inv), MatchSource: a.cfg.Landing.MatchSource, RetryWindow: window,
		Observer: env.obs})
	if err != nil {
		return nil, usageError(err)
	}
	host, _ := os.Hostname()
	// The endpoint outlives Ctrl-C until the run has recorded every node.
	k, err := landing.Keep(context.WithoutCancel(ctx), landing.KeeperConfig{Server: srv, Listen: a.cfg.Landing.Listen,
		Controller: fmt.Sprintf("%s/%d", host, os.Getpid()), Sessions: env.st, Log: a.log})
	if err != nil {
		return nil, usagef("landing endpoint: %w", err)
	}
	return k.Stop, nil
}

// nodeAddr is each node's provisioning address for landing.match_source:
// its ssh.address when that is an IP address (a host name is not
// resolved: such a node cannot land under match_source).
func nodeAddr(inv *inventory.Inventory) func(string) (netip.Addr, bool) {
	m := map[string]netip.Addr{}
	if inv != nil {
		for _, n := range inv.Nodes {
			if ip, err := netip.ParseAddr(n.SSH.Address); err == nil {
				m[n.Name] = ip.Unmap()
			}
		}
	}
	return func(node string) (netip.Addr, bool) {
		ip, ok := m[node]
		return ip, ok
	}
}

// nodeByMAC maps the inventory's MACs to their nodes.
func nodeByMAC(inv *inventory.Inventory) func(string) (string, bool) {
	m := map[string]string{}
	if inv != nil {
		for _, n := range inv.Nodes {
			for _, mac := range n.MACs {
				if norm, err := store.NormalizeMAC(mac); err == nil {
					m[norm] = n.Name
				}
			}
		}
	}
	return func(mac string) (string, bool) {
		norm, err := store.NormalizeMAC(mac)
		if err != nil {
			return "", false
		}
		n, ok := m[norm]
		return n, ok
	}
}

// activeJobsIn returns the selected nodes' active reinstall jobs in st,
// for power and bootdev to refuse them unless --force: one query for the
// whole selection, not one per node.
func activeJobsIn(ctx context.Context, st *store.Store, nodes []inventory.Node) (map[string]store.NodeJob, error) {
	jobs, err := st.NodeJobs(ctx, store.JobFilter{States: []store.JobState{store.JobQueued, store.JobRunning}})
	if err != nil {
		return nil, failedError(fmt.Errorf("active jobs: %w", err))
	}
	selected := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		selected[n.Name] = true
	}
	out := map[string]store.NodeJob{}
	for _, j := range jobs {
		if _, seen := out[j.Node]; selected[j.Node] && !seen {
			out[j.Node] = j
		}
	}
	return out, nil
}

// refuseBusy is the error of power and bootdev for nodes under reinstall.
func refuseBusy(what string, busy map[string]store.NodeJob) error {
	if len(busy) == 0 {
		return nil
	}
	names := make([]string, 0, len(busy))
	for n := range busy {
		names = append(names, n)
	}
	slices.Sort(names)
	var lines []string
	for _, n := range names {
		j := busy[n]
		l := fmt.Sprintf("  %s: job %d of run %d is %s", n, j.ID, j.RunID, j.State)
		if j.Owner != "" {
			l += " (controller " + j.Owner + ")"
		}
		lines = append(lines, l)
	}
	return usagef("refusing to %s nodes with an active reinstall job (--force overrides; reprov jobs cancel NODE stops the job):\n%s",
		what, strings.Join(lines, "\n"))
}
