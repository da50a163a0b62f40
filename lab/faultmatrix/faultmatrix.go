// Package faultmatrix runs reprov's fault matrix (docs/reliability.md): a
// simulated rack (lab/fleet) in which every fault is injected on a known
// set of nodes, `reprov reinstall --all --yes -o json` run against it as a
// separate process — SIGKILLed at given fractions of the nodes started and
// resumed with --resume —, the landing endpoint's address taken away and
// given back mid-run, and then every node's terminal state and reason
// compared with the expected table, and the invariants checked over the
// whole run from the job store, the audit log and the simulated BMCs.
package faultmatrix

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/reprov/reprov/agent/audit"
	"github.com/reprov/reprov/agent/inband"
	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/lab/fleet"
)

// Healthy is the pseudo-fault of the nodes without one.
const Healthy = "none"

// Spec is one matrix: the lab's nodes, the faults and the controller
// faults.
type Spec struct {
	// Name names the matrix in the report ("small", "full").
	Name string
	// Healthy are the nodes without a fault, per model.
	Healthy []fleet.ModelCount
	// Faults are the nodes with a fault.
	Faults []fleet.FaultCount
	// Kills are the fractions of the nodes started (their job left the
	// queue) at which the running controller is SIGKILLed and another is
	// started with --resume, in increasing order.
	Kills []float64
	// LandingOutageAt is the fraction of the nodes started at which the
	// landing endpoint's address stops answering for LandingOutage (0:
	// never).
	LandingOutageAt float64
	LandingOutage   time.Duration
	// Lab timings.
	BootDelay, OSBootTime time.Duration
	// Precheck is the playbooks' precheck timeout (0: 2 min, the
	// built-ins'): how long a BMC that stops answering gets new sessions
	// before it is called unreachable (a dead BMC's node ends then).
	Precheck time.Duration
	// MaxParallel and PerRack are reinstall's limits (0: its defaults).
	MaxParallel, PerRack int
	// Timeout bounds the whole run.
	Timeout time.Duration
	// Stall: a controller under which no job changed state or step for
	// this long is reported stuck and killed (0: only Timeout).
	Stall time.Duration
}

// Small is the matrix of `make test`: a few nodes per fault.
func Small() Spec {
	return Spec{
		Name: "small",
		Healthy: []fleet.ModelCount{{Model: fleet.ModelIPMI, Count: 2}, {Model: fleet.ModelDL360G7, Count: 2},
			{Model: fleet.ModelRedfish, Count: 1}, {Model: fleet.ModelUEFI, Count: 1}},
		Faults:          faultsEach(1, map[fleet.Fault]int{fleet.FaultLoss30: 2}),
		Kills:           []float64{0.5},
		LandingOutageAt: 0.3,
		LandingOutage:   2 * time.Second,
		MaxParallel:     6,
		Stall:           150 * time.Second,
		Precheck:        time.Minute,
		BootDelay:       200 * time.Millisecond,
		OSBootTime:      300 * time.Millisecond,
		Timeout:         4 * time.Minute,
	}
}

// Full is the matrix of `make fault-matrix`: 1,000 nodes.
func Full() Spec {
	return Spec{
		Name: "full",
		Healthy: []fleet.ModelCount{{Model: fleet.ModelIPMI, Count: 420}, {Model: fleet.ModelDL360G7, Count: 150},
			{Model: fleet.ModelRedfish, Count: 100}, {Model: fleet.ModelUEFI, Count: 60}},
		Faults: faultsEach(10, map[fleet.Fault]int{fleet.FaultLoss1: 30, fleet.FaultLoss10: 30, fleet.FaultLoss30: 30,
			fleet.FaultIgnoresOverride: 20, fleet.FaultOverrideSecondCycle: 20, fleet.FaultSlowOS: 20}),
		Kills:           []float64{0.1, 0.5, 0.9},
		LandingOutageAt: 0.3,
		LandingOutage:   3 * time.Second,
		BootDelay:       time.Second,
		OSBootTime:      time.Second,
		MaxParallel:     250,
		PerRack:         32,
		Timeout:         8 * time.Minute,
		Stall:           150 * time.Second,
	}
}

func faultsEach(n int, except map[fleet.Fault]int) []fleet.FaultCount {
	var out []fleet.FaultCount
	for _, f := range fleet.Faults() {
		c := n
		if k, ok := except[f]; ok {
			c = k
		}
		out = append(out, fleet.FaultCount{Fault: f, Count: c})
	}
	return out
}

// Mix is the lab's mix for the spec: the healthy nodes plus one node of
// its base model per faulty node.
func (s Spec) Mix() []fleet.ModelCount {
	counts := map[fleet.Model]int{}
	for _, mc := range s.Healthy {
		counts[mc.Model] += mc.Count
	}
	for _, fc := range s.Faults {
		counts[fc.Fault.BaseModel()] += fc.Count
	}
	var mix []fleet.ModelCount
	for _, m := range fleet.Models() {
		if counts[m] > 0 {
			mix = append(mix, fleet.ModelCount{Model: m, Count: counts[m]})
		}
	}
	return mix
}

// Expectation is a node's expected terminal state (docs/reliability.md).
type Expectation struct {
	// State is landed or failed.
	State store.JobState `json:"state"`
	// Path is the path it lands by ("": any).
	Path string `json:"path,omitempty"`
	// Reasons: the job's reason starts with one of them (failed only).
	Reasons []string `json:"reasons,omitempty"`
	// Untouched: no boot, the boot sector unchanged.
	Untouched bool `json:"untouched,omitempty"`
	// SectorIntact: the boot sector unchanged (boots allowed).
	SectorIntact bool `json:"sector_intact,omitempty"`
}

// String is the expectation as the report shows it.
func (e Expectation) String() string {
	s := string(e.State)
	if e.Path != "" {
		s += " " + e.Path
	}
	if len(e.Reasons) > 0 {
		s += " \"" + strings.Join(e.Reasons, "\" or \"") + "\""
	}
	if e.Untouched {
		s += ", untouched"
	} else if e.SectorIntact {
		s += ", boot sector intact"
	}
	return s
}

// Expect is the expectation of a node with fault f ("" for none) of
// model m with playbook pb.
func Expect(f fleet.Fault, m fleet.Model, pb string) Expectation {
	landed := func(path string) Expectation { return Expectation{State: store.JobLanded, Path: path} }
	failed := func(untouched bool, reasons ...string) Expectation {
		return Expectation{State: store.JobFailed, Reasons: reasons, Untouched: untouched}
	}
	switch f {
	case "":
		if m == fleet.ModelDL360G7 {
			return landed("inband")
		}
		return landed("oob")
	case fleet.FaultLoss1, fleet.FaultLoss10, fleet.FaultLoss30, fleet.FaultLatency, fleet.FaultBMCReboot,
		fleet.FaultRedfish503, fleet.FaultRedfish409, fleet.FaultRedfishSessionLimit:
		return landed("oob")
	case fleet.FaultSSHRefusesAuth:
		// Something answered SSH and refused the controller: never taken
		// for "the node is down" (docs/security.md).
		return failed(true, "precheck: SSH refused the credentials")
	case fleet.FaultIgnoresOverride, fleet.FaultOverrideSecondCycle, fleet.FaultSlowOS:
		return landed("inband")
	case fleet.FaultBadCredentials:
		return failed(true, "precheck: BMC refused the credentials")
	case fleet.FaultSSHHostKeyChanged:
		return failed(true, "precheck: SSH host key changed")
	case fleet.FaultDiskRefusesWrite:
		e := failed(false, "boot disk refused", "in-band step failed")
		e.SectorIntact = true
		return e
	case fleet.FaultWrongIdentity:
		return failed(true, "identity mismatch")
	case fleet.FaultWrongBMC:
		return failed(true, "precheck: the BMC reports another machine")
	case fleet.FaultDeadBMC:
		return failed(true, "precheck: BMC unreachable")
	}
	return Expectation{State: "unknown fault"}
}

// Options are how a matrix runs.
type Options struct {
	// Dir receives the lab, the state dir, the controllers' output and
	// the report.
	Dir string
	// Reprov returns a command running reprov with args (a child
	// process: the matrix SIGKILLs it).
	Reprov func(ctx context.Context, args ...string) *exec.Cmd
	// Progress receives one line per event (nil: discard).
	Progress io.Writer
	// Commit names the code measured, for the report.
	Commit string
}

// NodeResult is one node's end.
type NodeResult struct {
	Node     string         `json:"node"`
	Model    fleet.Model    `json:"model"`
	Playbook string         `json:"playbook"`
	Fault    string         `json:"fault"`
	Expected Expectation    `json:"expected"`
	State    store.JobState `json:"state"`
	Path     string         `json:"path,omitempty"`
	Reason   string         `json:"reason,omitempty"`
	Jobs     int            `json:"jobs"`
	Boots    int            `json:"boots"`
	// SectorChanged: the boot sector differs from the one it started with.
	SectorChanged bool `json:"sector_changed"`
	PowerActions  int  `json:"power_actions"`
	Wipes         int  `json:"wipes"`
	Generations   int  `json:"generations"`
	OpenSessions  int  `json:"open_bmc_sessions"`
	// Duration is from the first job's start to the last job's end.
	Duration time.Duration `json:"duration_ns"`
	OK       bool          `json:"ok"`
	// Why says what differs from the expectation.
	Why string `json:"why,omitempty"`
	// Steps is the step record of a node not as expected (what
	// `reprov jobs show NODE -o json` shows), oldest first.
	Steps []store.Step `json:"steps,omitempty"`
}

// Row is one fault's line of the report.
type Row struct {
	Fault    string   `json:"fault"`
	Nodes    []string `json:"nodes"`
	Expected string   `json:"expected"`
	Observed string   `json:"observed"`
	OK       int      `json:"ok"`
	Verdict  string   `json:"verdict"`
}

// Invariant is one invariant checked over the run.
type Invariant struct {
	Name       string   `json:"name"`
	Held       bool     `json:"held"`
	Violations []string `json:"violations,omitempty"`
}

// Controller is one reprov process of the run.
type Controller struct {
	Args     []string      `json:"args"`
	Killed   bool          `json:"killed"`
	KilledAt float64       `json:"killed_at_fraction,omitempty"`
	Exit     int           `json:"exit"`
	Duration time.Duration `json:"duration_ns"`
	Output   string        `json:"output_file"`
	// TimedOut: stopped by the matrix (killed): Stopped says why.
	TimedOut bool   `json:"timed_out,omitempty"`
	Stopped  string `json:"stopped,omitempty"`
}

// Report is a matrix's result.
type Report struct {
	Matrix      string        `json:"matrix"`
	Nodes       int           `json:"nodes"`
	Commit      string        `json:"commit,omitempty"`
	Machine     string        `json:"machine"`
	LoadBefore  string        `json:"load_before"`
	LoadAfter   string        `json:"load_after"`
	Started     time.Time     `json:"started"`
	Duration    time.Duration `json:"duration_ns"`
	Rows        []Row         `json:"rows"`
	Invariants  []Invariant   `json:"invariants"`
	Controllers []Controller  `json:"controllers"`
	// LandingOutage says when the landing endpoint's address went away.
	LandingOutage string       `json:"landing_outage,omitempty"`
	Results       []NodeResult `json:"results"`
	// Notes are counted and reported, not invariants.
	Notes []Invariant `json:"notes,omitempty"`
}

// OK reports whether every node ended as expected and every invariant
// held.
func (r *Report) OK() bool {
	for _, n := range r.Results {
		if !n.OK {
			return false
		}
	}
	for _, inv := range r.Invariants {
		if !inv.Held {
			return false
		}
	}
	return true
}

// Run runs the matrix.
func Run(ctx context.Context, spec Spec, o Options) (*Report, error) {
	if o.Reprov == nil || o.Dir == "" {
		return nil, errors.New("faultmatrix: Options.Reprov and Options.Dir are required")
	}
	// runCtx bounds the controllers; ctx the whole matrix, so that a
	// run cut by the timeout is still reported.
	runCtx := ctx
	if spec.Timeout > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, spec.Timeout)
		defer cancel()
	}
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	say := func(format string, args ...any) {
		fmt.Fprintf(progress, "fault-matrix: "+format+"\n", args...)
	}
	rep := &Report{Matrix: spec.Name, Commit: o.Commit, Machine: machine(), LoadBefore: loadAvg(), Started: time.Now()}
	mix := spec.Mix()
	faults, err := fleet.AssignFaults(mix, spec.Faults)
	if err != nil {
		return nil, err
	}
	labDir := filepath.Join(o.Dir, "lab")
	lab, err := fleet.Start(ctx, fleet.Config{Mix: mix, Dir: labDir, BootDelay: spec.BootDelay, OSBootTime: spec.OSBootTime,
		NetbootRetry: 100 * time.Millisecond, NetbootRetryMax: time.Second, PowerPoll: 50 * time.Millisecond, Faults: faults})
	if err != nil {
		return nil, err
	}
	defer lab.Close()
	files, err := lab.WriteFiles(filepath.Join(labDir, "inventory.yaml"))
	if err != nil {
		return nil, err
	}
	nodes := lab.Nodes()
	rep.Nodes = len(nodes)
	sectors := map[string][]byte{}
	for _, n := range nodes {
		sectors[n.Name()] = n.BootSector()
	}

	// The landing endpoint the controllers serve listens on its own
	// port; the nodes reach it through a relay on the lab's landing
	// address, which the outage closes and rebinds.
	relay, err := startRelay(ctx, lab.LandingListen(), "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer relay.close()
	stateDir := filepath.Join(o.Dir, "state")
	cfgPath, secrets, err := writeConfig(o.Dir, files, stateDir, relay.target, lab.LandingURL(), spec.Precheck)
	if err != nil {
		return nil, err
	}
	say("%d nodes (%s), %d with a fault; state %s", len(nodes), fleet.FormatMix(mix), len(faults), stateDir)

	// The controllers: the first, then one per kill.
	args := []string{"--config", cfgPath, "-o", "json", "reinstall", "--all", "--yes"}
	if spec.MaxParallel > 0 {
		args = append(args, "--max-parallel", strconv.Itoa(spec.MaxParallel))
	}
	if spec.PerRack > 0 {
		args = append(args, "--per-rack", strconv.Itoa(spec.PerRack))
	}
	var outputs []string
	var st *store.Store
	defer func() {
		if st != nil {
			st.Close()
		}
	}()
	outageDone := spec.LandingOutageAt <= 0
	killedSessions := map[string]int{}
	for i := 0; i <= len(spec.Kills); i++ {
		a := slices.Clone(args)
		if i > 0 {
			a = append(a, "--resume")
		}
		outFile := filepath.Join(o.Dir, fmt.Sprintf("controller-%d.out", i+1))
		f, err := os.Create(outFile)
		if err != nil {
			return nil, err
		}
		cmd := o.Reprov(ctx, a...)
		cmd.WaitDelay = 5 * time.Second
		cmd.Stdout, cmd.Stderr = f, f
		start := time.Now()
		if err := cmd.Start(); err != nil {
			f.Close()
			return nil, fmt.Errorf("faultmatrix: start controller: %w", err)
		}
		say("controller %d started: reprov %s", i+1, strings.Join(a[2:], " "))
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		c := Controller{Args: a, Output: outFile}
		killAt := 2.0
		if i < len(spec.Kills) {
			killAt = spec.Kills[i]
		}
		tick := time.NewTicker(500 * time.Millisecond)
		lastSig, lastChange := "", time.Now()
	wait:
		for {
			select {
			case <-done:
				break wait
			case <-runCtx.Done():
				if ctx.Err() != nil {
					_ = cmd.Process.Kill()
					<-done
					tick.Stop()
					f.Close()
					return nil, fmt.Errorf("faultmatrix: controller %d: %w", i+1, ctx.Err())
				}
				// The matrix's time is up: stop the controller
				// (SIGKILL, as a stuck one would be) and report.
				_ = cmd.Process.Kill()
				<-done
				c.TimedOut, c.Stopped = true, fmt.Sprintf("still running when the matrix's %s were up", spec.Timeout)
				say("controller %d still running after the matrix's %s: killed, reporting what the store holds", i+1, spec.Timeout)
				break wait
			case <-tick.C:
			}
			if st == nil {
				st = openStore(ctx, stateDir)
				if st == nil {
					continue
				}
			}
			frac, sig := startedFraction(ctx, st, len(nodes))
			if sig != lastSig {
				lastSig, lastChange = sig, time.Now()
			} else if spec.Stall > 0 && time.Since(lastChange) > spec.Stall {
				_ = cmd.Process.Kill()
				<-done
				c.TimedOut, c.Stopped = true, fmt.Sprintf("stuck: no job changed state or step for %s", spec.Stall)
				say("controller %d: no job changed for %s: stuck, killed; reporting what the store holds", i+1, spec.Stall)
				break wait
			}
			if !outageDone && frac >= spec.LandingOutageAt {
				outageDone = true
				rep.LandingOutage = fmt.Sprintf("%.0f %% of the nodes started: the landing address refused connections for %s", 100*frac, spec.LandingOutage)
				say("landing endpoint's address down for %s at %.0f %% started", spec.LandingOutage, 100*frac)
				relay.outage(spec.LandingOutage)
			}
			if frac >= killAt {
				_ = cmd.Process.Signal(syscall.SIGKILL)
				<-done
				c.Killed, c.KilledAt = true, frac
				// The killed controller could not close its BMC
				// sessions: they stay until the BMC's inactivity
				// timeout. Count them, to tell them from leaks.
				for _, n := range nodes {
					killedSessions[n.Name()] += n.OpenBMCSessions()
				}
				say("controller %d SIGKILLed at %.0f %% of the nodes started", i+1, 100*frac)
				break wait
			}
		}
		tick.Stop()
		f.Close()
		c.Duration = time.Since(start)
		c.Exit = cmd.ProcessState.ExitCode()
		rep.Controllers = append(rep.Controllers, c)
		b, _ := os.ReadFile(outFile)
		outputs = append(outputs, string(b))
		if c.TimedOut {
			say("controller %d stopped as stuck after %s", i+1, c.Duration.Round(time.Millisecond))
			break
		}
		if !c.Killed {
			say("controller %d exited %d after %s", i+1, c.Exit, c.Duration.Round(time.Millisecond))
			if i < len(spec.Kills) {
				say("the run ended before the kill at %.0f %%", 100*killAt)
			}
			break
		}
	}
	if st == nil {
		if st = openStore(ctx, stateDir); st == nil {
			return nil, errors.New("faultmatrix: the controllers created no job store")
		}
	}
	// Sessions: a Close Session still in flight when the controller
	// exited gets a moment.
	waitSessionsClosed(ctx, nodes, 3*time.Second)
	rep.Duration = time.Since(rep.Started)
	rep.LoadAfter = loadAvg()
	if err := rep.collect(ctx, st, nodes, sectors, killedSessions, stateDir, outputs, secrets); err != nil {
		return nil, err
	}
	return rep, nil
}

// openStore opens the state dir's SQLite store once the controller made
// it (nil before).
func openStore(ctx context.Context, stateDir string) *store.Store {
	p := filepath.Join(stateDir, "reprov.db")
	if _, err := os.Stat(p); err != nil {
		return nil
	}
	st, err := store.Open(ctx, "sqlite://"+p, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil
	}
	return st
}

// startedFraction is the fraction of total whose job left the queue,
// counted once every node has a job: a controller killed while it still
// submits the run leaves nodes without a job, which `reinstall --resume`
// does not pick up (docs/reliability.md, "Not yet 100 %"), so the kills
// wait for the whole run to be submitted.
// It also returns a signature of every job's state and step, which
// changes whenever any job moves.
func startedFraction(ctx context.Context, st *store.Store, total int) (float64, string) {
	jobs, err := st.NodeJobs(ctx, store.JobFilter{})
	if err != nil || total == 0 {
		return 0, ""
	}
	var sig strings.Builder
	started, submitted := map[string]bool{}, map[string]bool{}
	for _, j := range jobs {
		fmt.Fprintf(&sig, "%d:%s:%s:%d;", j.ID, j.State, j.Step, j.Generation)
		submitted[j.Node] = true
		if j.State != store.JobQueued {
			started[j.Node] = true
		}
	}
	if len(submitted) < total {
		return 0, sig.String()
	}
	return float64(len(started)) / float64(total), sig.String()
}

func waitSessionsClosed(ctx context.Context, nodes []*fleet.Node, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		open := 0
		for _, n := range nodes {
			open += n.OpenBMCSessions()
		}
		if open == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// faultOf is the node's fault as the report names it.
func faultOf(n *fleet.Node) fleet.Fault {
	if fs := n.Faults(); len(fs) > 0 {
		return fs[0]
	}
	return ""
}

func (r *Report) collect(ctx context.Context, st *store.Store, nodes []*fleet.Node, sectors map[string][]byte, killedSessions map[string]int,
	stateDir string, outputs []string, secrets []string) error {
	auditPath := filepath.Join(stateDir, "audit.jsonl")
	recs, err := audit.Read(auditPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("faultmatrix: audit log: %w", err)
	}
	power, wipes, destructive := map[string]int{}, map[string]int{}, map[string]int{}
	// resends: power actions sent again after one whose answer was lost
	// was seen not to have happened (the old OS still ran): noted.
	resends := map[string]int{}
	wipeIntents, outcomes := map[string]string{}, map[string]string{}
	seen := map[string]bool{}
	var orphans []string
	for _, rec := range recs {
		switch rec.Phase {
		case audit.PhaseIntent:
			seen[rec.ID] = true
			switch {
			case strings.HasPrefix(rec.Action, "power "):
				after, _ := rec.Detail["after"].(string)
				resend, _ := rec.Detail["resend"].(string)
				switch {
				case resend != "":
					resends[rec.Node]++
				case after == "":
					power[rec.Node]++
				}
				destructive[rec.Node]++
			case rec.Action == inband.ActionWipe:
				wipes[rec.Node]++
				wipeIntents[rec.ID] = rec.Node
				destructive[rec.Node]++
			case rec.Action == inband.ActionNextBoot, rec.Action == inband.ActionReboot, rec.Action == "set boot override":
				destructive[rec.Node]++
			}
		case audit.PhaseOutcome:
			outcomes[rec.ID] = rec.Result
			if !seen[rec.ID] {
				orphans = append(orphans, fmt.Sprintf("%s: %s outcome %s without its intent before it", rec.Node, rec.Action, rec.ID))
			}
		}
	}
	// A wipe intent that failed, or that a controller died on and the next
	// one settled by looking at the disk as never written (LBA 0 still
	// holding the saved bytes), was not a wipe.
	unwritten := map[string]int{}
	for id, node := range wipeIntents {
		if res, ok := outcomes[id]; ok && res != audit.ResultOK {
			wipes[node]--
		} else if !ok {
			unwritten[node]++
		}
	}
	for node, n := range unwritten {
		jobs, _ := st.NodeJobs(ctx, store.JobFilter{Node: node})
		settled := 0
		for _, j := range jobs {
			steps, _ := st.Steps(ctx, j.ID)
			for _, s := range steps {
				if s.Phase == store.PhaseOutcome && s.Name == "inband" && s.Result == store.ResultFailed &&
					strings.Contains(string(s.Detail), "still holds the saved bytes") {
					settled++
				}
			}
		}
		wipes[node] -= min(n, settled)
	}
	invWipes := Invariant{Name: "each node's wipes ≤ 1 (a wipe intent settled by looking as never written is not a wipe)"}
	invPower := Invariant{Name: "power actions ≤ 1 per job generation (the playbooks' one oob attempt)"}
	invIntent := Invariant{Name: "no destructive act without an intent before it", Violations: orphans}
	invSettled := Invariant{Name: "no intent left unsettled"}
	invSessions := Invariant{Name: "0 BMC sessions left open (beyond those of SIGKILLed controllers; BMCs without datagram loss)"}
	lossy := Invariant{Name: "BMC sessions left open on lossy links (Close Session lost; they expire on the BMC)", Held: true}
	killed := Invariant{Name: "BMC sessions of SIGKILLed controllers still open (they expire on the BMC)", Held: true}
	invSecrets := Invariant{Name: "0 secrets in any output"}
	byFault := map[string]*Row{}
	var order []string
	for _, n := range nodes {
		f := faultOf(n)
		res := NodeResult{Node: n.Name(), Model: n.Model(), Playbook: n.Playbook(), Fault: string(f), Expected: Expect(f, n.Model(), n.Playbook())}
		if f == "" {
			res.Fault = Healthy
		}
		jobs, err := st.NodeJobs(ctx, store.JobFilter{Node: n.Name()})
		if err != nil {
			return fmt.Errorf("faultmatrix: jobs of %s: %w", n.Name(), err)
		}
		res.Jobs = len(jobs)
		gens := 0
		for _, j := range jobs {
			gens += int(j.Generation) + 1
		}
		res.Generations = gens
		if len(jobs) > 0 {
			j := jobs[0]
			res.State, res.Path, res.Reason = j.State, j.Path, j.Reason
			if first := jobs[len(jobs)-1].Started; !first.IsZero() && !j.Finished.IsZero() {
				res.Duration = j.Finished.Sub(first)
			}
		}
		s := n.Status()
		res.Boots = s.BootCount
		res.SectorChanged = !bytes.Equal(n.BootSector(), sectors[n.Name()])
		res.PowerActions, res.Wipes = power[n.Name()], wipes[n.Name()]
		res.OpenSessions = n.OpenBMCSessions()
		res.Why = judge(res)
		res.OK = res.Why == ""
		if !res.OK {
			for i := len(jobs) - 1; i >= 0; i-- {
				steps, err := st.Steps(ctx, jobs[i].ID)
				if err == nil {
					res.Steps = append(res.Steps, steps...)
				}
			}
		}
		if res.Wipes > 1 {
			invWipes.Violations = append(invWipes.Violations, fmt.Sprintf("%s: %d wipes", n.Name(), res.Wipes))
		}
		if res.PowerActions > max(1, gens) {
			invPower.Violations = append(invPower.Violations, fmt.Sprintf("%s: %d power actions over %d job generation(s)", n.Name(), res.PowerActions, gens))
		}
		if res.Boots > 0 && destructive[n.Name()] == 0 {
			invIntent.Violations = append(invIntent.Violations, fmt.Sprintf("%s: booted %d time(s) with no power or in-band intent in the audit log", n.Name(), res.Boots))
		}
		if open, err := st.UnsettledSteps(ctx, n.Name()); err != nil {
			invSettled.Violations = append(invSettled.Violations, fmt.Sprintf("%s: %v", n.Name(), err))
		} else if len(open) > 0 {
			invSettled.Violations = append(invSettled.Violations, fmt.Sprintf("%s: %d unsettled intent(s), the first %s (job %d)", n.Name(), len(open), open[0].Name, open[0].JobID))
		}
		if k := min(res.OpenSessions, killedSessions[n.Name()]); k > 0 {
			killed.Violations = append(killed.Violations, fmt.Sprintf("%s (%s): %d session(s)", n.Name(), res.Fault, k))
			res.OpenSessions -= k
		}
		if res.OpenSessions > 0 && slices.Contains([]fleet.Fault{fleet.FaultLoss1, fleet.FaultLoss10, fleet.FaultLoss30}, f) {
			lossy.Violations = append(lossy.Violations, fmt.Sprintf("%s (%s): %d session(s) open", n.Name(), res.Fault, res.OpenSessions))
		} else if res.OpenSessions > 0 {
			invSessions.Violations = append(invSessions.Violations, fmt.Sprintf("%s (%s): %d session(s) open", n.Name(), res.Fault, res.OpenSessions))
		}
		r.Results = append(r.Results, res)
		key := res.Fault
		if f == "" {
			key = Healthy + " (" + string(n.Model()) + ", " + n.Playbook() + ")"
		}
		row := byFault[key]
		if row == nil {
			row = &Row{Fault: key, Expected: res.Expected.String()}
			byFault[key] = row
			order = append(order, key)
		}
		row.Nodes = append(row.Nodes, n.Name())
		if res.OK {
			row.OK++
		}
	}
	// Observed: the distinct ends per row.
	obs := map[string]map[string]int{}
	for _, res := range r.Results {
		key := res.Fault
		if key == Healthy {
			key = Healthy + " (" + string(res.Model) + ", " + res.Playbook + ")"
		}
		if obs[key] == nil {
			obs[key] = map[string]int{}
		}
		obs[key][observed(res)]++
	}
	sort.SliceStable(order, func(i, j int) bool { return faultRank(order[i]) < faultRank(order[j]) })
	for _, key := range order {
		row := byFault[key]
		var parts []string
		for o, c := range obs[key] {
			parts = append(parts, fmt.Sprintf("%s ×%d", o, c))
		}
		sort.Strings(parts)
		row.Observed = strings.Join(parts, "; ")
		row.Verdict = "ok"
		if row.OK < len(row.Nodes) {
			row.Verdict = fmt.Sprintf("NOT OK (%d/%d)", row.OK, len(row.Nodes))
		}
		r.Rows = append(r.Rows, *row)
	}
	// Secrets: every controller's output, the audit log, the store.
	texts := slices.Clone(outputs)
	for _, p := range []string{auditPath, filepath.Join(stateDir, "reprov.db"), filepath.Join(stateDir, "reprov.db-wal")} {
		if b, err := os.ReadFile(p); err == nil {
			texts = append(texts, string(b))
		}
	}
	for i, t := range texts {
		for _, s := range secrets {
			if len(s) >= 12 && strings.Contains(t, s) {
				invSecrets.Violations = append(invSecrets.Violations, fmt.Sprintf("output %d holds a secret of the lab (%d bytes)", i, len(s)))
			}
		}
	}
	for _, inv := range []*Invariant{&invWipes, &invPower, &invIntent, &invSettled, &invSessions, &invSecrets} {
		inv.Held = len(inv.Violations) == 0
		r.Invariants = append(r.Invariants, *inv)
	}
	resent := Invariant{Name: "power actions sent again after one whose answer was lost was seen not to have happened", Held: true}
	for _, n := range nodes {
		if k := resends[n.Name()]; k > 0 {
			resent.Violations = append(resent.Violations, fmt.Sprintf("%s: %d", n.Name(), k))
		}
	}
	r.Notes = append(r.Notes, lossy, killed, resent)
	return nil
}

func faultRank(key string) int {
	if strings.HasPrefix(key, Healthy) {
		return -1
	}
	for i, f := range fleet.Faults() {
		if string(f) == key {
			return i
		}
	}
	return len(fleet.Faults())
}

// observed is a node's end as the report shows it.
func observed(res NodeResult) string {
	s := string(res.State)
	if res.State == "" {
		s = "no job"
	}
	if res.State == store.JobLanded && res.Path != "" {
		s += " " + res.Path
	}
	if res.State != store.JobLanded && res.Reason != "" {
		s += " \"" + reasonCategory(res.Reason) + "\""
	}
	if res.Boots == 0 && !res.SectorChanged {
		s += ", untouched"
	} else if !res.SectorChanged && res.State != store.JobLanded {
		s += ", boot sector intact"
	}
	return s
}

// reasonCategory cuts a job's reason to its category (agent/reasons.go:
// the category, then ": " and the cause).
func reasonCategory(reason string) string {
	// Categories may contain ": " themselves ("precheck: BMC unreachable").
	if strings.HasPrefix(reason, "precheck: ") {
		rest := strings.TrimPrefix(reason, "precheck: ")
		cat, _, _ := strings.Cut(rest, ": ")
		return "precheck: " + cat
	}
	cat, _, _ := strings.Cut(reason, ": ")
	return cat
}

// judge says what differs from the expectation ("" when nothing).
func judge(res NodeResult) string {
	e := res.Expected
	var why []string
	if res.State != e.State {
		why = append(why, fmt.Sprintf("ended %s, want %s", orNone(string(res.State)), e.State))
	}
	if e.State == store.JobLanded && e.Path != "" && res.State == store.JobLanded && res.Path != e.Path {
		why = append(why, fmt.Sprintf("landed by path %s, want %s", res.Path, e.Path))
	}
	if len(e.Reasons) > 0 && res.State == e.State {
		ok := false
		for _, p := range e.Reasons {
			if strings.HasPrefix(res.Reason, p) {
				ok = true
			}
		}
		if !ok {
			why = append(why, fmt.Sprintf("reason %q, want %q", res.Reason, strings.Join(e.Reasons, "\" or \"")))
		}
	}
	if e.Untouched && (res.Boots > 0 || res.SectorChanged) {
		why = append(why, fmt.Sprintf("touched: %d boot(s), boot sector changed %v", res.Boots, res.SectorChanged))
	}
	if e.SectorIntact && res.SectorChanged {
		why = append(why, "boot sector changed")
	}
	return strings.Join(why, "; ")
}

func orNone(s string) string {
	if s == "" {
		return "with no job"
	}
	return s
}

// writeConfig writes reprov.yaml for the matrix's controllers: the lab's
// inventory, the state dir, the landing endpoint listening on listen and
// announced at url, playbooks with timeouts fit for the lab, and a
// stand-in agent binary (the lab's nodes run the agent steps themselves).
// It returns the config's path and the lab's secrets.
func writeConfig(dir string, files fleet.Files, stateDir, listen, url string, precheck time.Duration) (string, []string, error) {
	pbDir := filepath.Join(dir, "playbooks")
	if err := os.MkdirAll(pbDir, 0o755); err != nil {
		return "", nil, err
	}
	if precheck <= 0 {
		precheck = 2 * time.Minute
	}
	timeouts := "timeouts: {precheck: " + precheck.String() + ", oob_boot: 60s, power: 60s, wait_landing: 60s, inband: 60s, reboot: 30s}\n"
	for _, name := range []string{"default", "hp-dl360-g7", "uefi-generic"} {
		body := "name: " + name + "\nextends: " + name + "\n" + timeouts
		if err := os.WriteFile(filepath.Join(pbDir, name+".yaml"), []byte(body), 0o644); err != nil {
			return "", nil, err
		}
	}
	stub := filepath.Join(dir, "reprov-agent")
	if err := fleet.WriteAgentStub(stub); err != nil {
		return "", nil, err
	}
	cfg := fmt.Sprintf(`inventory: %q
state_dir: %q
landing:
  listen: %q
  url: %q
  kernel: http://netboot.test/vmlinuz
  initrd: [http://netboot.test/initrd.img]
  cmdline: boot=live toram
  probe_interval: 500ms
store:
  lease: 3s
playbooks:
  dir: %q
inband:
  agent_binary: %q
`, files.Inventory, stateDir, listen, url, pbDir, stub)
	p := filepath.Join(dir, "reprov.yaml")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		return "", nil, err
	}
	var secrets []string
	for _, f := range []string{files.BMCPassword, files.Identity} {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", nil, err
		}
		for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
			if len(line) >= 12 && !strings.HasPrefix(line, "-----") {
				secrets = append(secrets, line)
			}
		}
	}
	return p, secrets, nil
}

func machine() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s, %s/%s, %d CPUs, %s", host, runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
