package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/reprov/reprov/agent/audit"
	"github.com/reprov/reprov/agent/audit/auditstore"
	"github.com/reprov/reprov/agent/fleet"
	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/bmc/connect"
	"github.com/reprov/reprov/inventory"
)

// fleetFlags are the fan-out flags of every command that acts on nodes
// through the BMC. --max-parallel and --per-rack are configuration keys
// (max_parallel, per_rack) that loadConfig reads from the flags.
type fleetFlags struct {
	// MaxFailures stops starting new nodes after this many failed (0: never).
	MaxFailures int
}

// addFleetFlags registers --max-parallel, --per-rack and --max-failures.
func addFleetFlags(cmd *cobra.Command, f *fleetFlags) {
	fs := cmd.Flags()
	fs.Int("max-parallel", 64, "nodes worked on at once (config max_parallel)")
	fs.Int("per-rack", 0, "nodes of one rack worked on at once, 0: no limit (config per_rack)")
	fs.IntVar(&f.MaxFailures, "max-failures", 0, "stop starting new nodes after this many failed (0: never)")
}

// bmcRun is what one fleet command over BMCs needs: the runner, the
// run's per-BMC limiter and, for writes, the job store and the audit log
// that mirrors its records into it.
type bmcRun struct {
	a      *app
	runner *fleet.Runner
	lim    *bmc.Limiter
	// secrets resolves each credential reference once for the run.
	secrets *inventory.SecretCache
	st      *store.Store
	audit   *audit.Log
	dryRun  bool
}

// newBMCRun sets up a run. With withAudit the job store and the audit log
// in the state dir are opened, the store being the log's sink (the shared
// trail of `reprov audit`); the caller must call close.
func (a *app) newBMCRun(ctx context.Context, f fleetFlags, withAudit, dryRun bool) (*bmcRun, error) {
	if f.MaxFailures < 0 {
		return nil, usagef("--max-failures %d is negative", f.MaxFailures)
	}
	r := &bmcRun{
		a: a,
		runner: &fleet.Runner{
			MaxParallel: a.cfg.MaxParallel,
			PerRack:     a.cfg.PerRack,
			MaxFailures: f.MaxFailures,
			Progress:    a.stderr,
			Log:         a.log,
		},
		lim:     bmc.NewLimiter(nil),
		secrets: &inventory.SecretCache{},
		dryRun:  dryRun,
	}
	if withAudit {
		dir, err := a.ensureStateDir()
		if err != nil {
			return nil, err
		}
		if r.st, err = a.openStore(ctx); err != nil {
			return nil, err
		}
		r.audit, err = a.openAudit(filepath.Join(dir, "audit.jsonl"), r.st)
		if err != nil {
			r.close()
			return nil, failedError(err)
		}
	}
	return r, nil
}

// openAudit opens the audit log at path with st (when not nil) as its
// sink, tagged with this controller ("host/pid").
func (a *app) openAudit(path string, st *store.Store) (*audit.Log, error) {
	o := audit.Options{Log: a.log}
	if st != nil {
		o.Sink = auditstore.Sink(st)
	}
	return audit.Open(path, "", o)
}

func (r *bmcRun) close() {
	if r.audit != nil {
		if err := r.audit.Close(); err != nil {
			r.a.log.Error("close audit log", "err", err)
		}
	}
	if r.st != nil {
		r.st.Close()
	}
}

// withBMC opens n's BMC (dry-run wrapped when asked), runs fn with it and
// closes it with a fresh context, whatever happened to ctx.
func (r *bmcRun) withBMC(ctx context.Context, n inventory.Node, fn func(c bmc.Client, det connect.Detected) (any, error)) (any, error) {
	c, det, err := fleet.OpenBMC(ctx, n, r.lim, r.secrets, r.a.log)
	if err != nil {
		return nil, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := c.Close(cctx); err != nil {
			r.a.log.Warn("close BMC session", "node", n.Name, "err", err)
		}
	}()
	if r.dryRun {
		c = bmc.DryRun(c, func(what string) { r.a.log.Debug("dry run: would "+what, "node", n.Name) })
	}
	return fn(c, det)
}

// writeFunc runs an audited act on a node: bmcRun.write, or a chain's
// write.
type writeFunc func(ctx context.Context, node, action string, detail map[string]any, act func() (map[string]any, error)) error

// write runs act under the audit log (audit.Log.Do: the act does not run
// when its intent cannot be recorded; a lost outcome record never changes
// its result). A dry run's outcome, and a cycle or reset the BMC refused
// because the machine is off, are recorded as skipped.
func (r *bmcRun) write(ctx context.Context, node, action string, detail map[string]any, act func() (map[string]any, error)) error {
	return r.audit.Do(ctx, audit.Entry{Node: node, Action: action, Detail: detail},
		func(context.Context) (map[string]any, error) {
			outcome, err := act()
			return outcome, skipped(err)
		})
}

// skipped turns an act's error that means it deliberately did not act (a
// dry run, a cycle the BMC refused because the machine is off) into an
// *audit.SkipError wrapping it.
func skipped(err error) error {
	switch {
	case errors.Is(err, bmc.ErrDryRun):
		return &audit.SkipError{Reason: "dry run", Err: err}
	case errors.Is(err, bmc.ErrPoweredOff):
		return &audit.SkipError{Reason: "the BMC refused it: the machine is off", Err: err}
	}
	return err
}

// chain audits a sequence of acts on one node as bmcRun.write does, each
// act's outcome written together with the next act's intent
// (audit.Pending.Then): one wait for the log between two acts instead of
// two, and none after the last. The intent of every act is still on disk
// before it runs; end queues the last outcome and must be called.
type chain struct {
	r       *bmcRun
	pending audit.Pending
	open    bool // pending awaits its outcome: err and out
	err     error
	out     map[string]any
}

func (r *bmcRun) chain() *chain { return &chain{r: r} }

func (ch *chain) write(ctx context.Context, node, action string, detail map[string]any, act func() (map[string]any, error)) error {
	e := audit.Entry{Node: node, Action: action, Detail: detail}
	var p audit.Pending
	var err error
	if ch.open {
		ch.open = false
		p, err = ch.pending.Then(ctx, ch.err, ch.out, e)
	} else {
		p, err = ch.r.audit.Begin(ctx, e)
	}
	if err != nil {
		return err
	}
	out, actErr := act()
	actErr = skipped(actErr)
	ch.pending, ch.open, ch.err, ch.out = p, true, actErr, out
	return actErr
}

// end queues the outcome of the last act without waiting for it (the
// node is done; closing the log waits for it). One that cannot be recorded
// is logged and poisons the log, as audit.Log.Do's does.
func (ch *chain) end(ctx context.Context) {
	if ch.open {
		ch.open = false
		ch.pending.FinishLater(ctx, ch.err, ch.out)
	}
}

// report renders results as a table (header, plus per-op columns from
// cols) or JSON, prints each failure's full error on stderr, and returns
// the command's error: errSomeFailed when a node failed, the
// interruption when ctx was cancelled.
func (r *bmcRun) report(ctx context.Context, results []fleet.Result, header []string, cols func(fleet.Result) []string) error {
	a := r.a
	if a.jsonOutput() {
		if results == nil {
			results = []fleet.Result{}
		}
		if err := a.writeJSON(results); err != nil {
			return err
		}
	} else {
		rows := make([][]string, 0, len(results))
		for _, res := range results {
			row := []string{res.Node, res.Rack, string(res.Status)}
			row = append(row, cols(res)...)
			rows = append(rows, append(row, res.Reason))
		}
		h := append([]string{"NODE", "RACK", "STATUS"}, header...)
		if err := a.table(append(h, "REASON"), rows); err != nil {
			return err
		}
		for _, res := range results {
			if res.Status != fleet.StatusFailed || res.Error == "" {
				continue
			}
			if strings.HasPrefix(res.Error, "node "+res.Node+":") {
				fmt.Fprintln(a.stderr, res.Error)
			} else {
				fmt.Fprintf(a.stderr, "node %s: %s\n", res.Node, res.Error)
			}
		}
	}
	c := fleet.Count(results)
	switch {
	case c.Failed > 0:
		return errSomeFailed
	case c.Interrupted > 0 || ctx.Err() != nil:
		return fmt.Errorf("interrupted: %d of %d nodes not done: %w", c.Interrupted, len(results), context.Cause(ctx))
	}
	return nil
}

// powerOptions are the options of `reprov power ACTION`.
type powerOptions struct {
	// Action is status, on, off, cycle or reset.
	Action    string
	Selection selection
	Fleet     fleetFlags
	DryRun    bool
	// Force acts on nodes with an active reinstall job too.
	Force bool
	// PXE sets a one-time PXE boot (verified by reading it back) before a
	// cycle or reset, in the same session; UEFI and Legacy choose its
	// boot mode (default: the node's inventory boot.mode).
	PXE, UEFI, Legacy bool
	// Yes skips the confirmation of off, cycle and reset on several nodes.
	Yes bool
}

// powerStatusDetail is a node's power status row.
type powerStatusDetail struct {
	Power    bmc.PowerState `json:"power"`
	Protocol string         `json:"protocol"`
}

// powerActionDetail is a node's power action row.
type powerActionDetail struct {
	Action   bmc.PowerAction `json:"action"`
	Protocol string          `json:"protocol"`
	DryRun   bool            `json:"dry_run,omitempty"`
	// PoweredOff: the BMC refused the cycle or reset because the machine
	// was off, and it was powered on instead (Action is then "on").
	PoweredOff bool `json:"powered_off,omitempty"`
	// Boot is the one-time override set first (--pxe).
	Boot *bootdevDetail `json:"boot,omitempty"`
}

func newPowerCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "power",
		Short: "Read or change the power of the selected nodes through their BMCs",
		Long: `Read or change the power of the selected nodes through their BMCs.

Nodes are selected by name (shell globs), --rack, --selector or --all. Every
change is written to the audit log (audit.jsonl in the state dir, mirrored
into the job store: reprov audit) before it is sent, and its outcome after; a
change whose intent cannot be recorded is not sent. Exit 1 when any node failed;
each failure is listed with its reason.

A cycle or reset that the BMC refuses because the machine is off is recorded
as skipped and followed by a power on. "power cycle --pxe" sets a one-time PXE
boot, verifies it by reading it back and cycles, in one BMC session per node.`,
	}
	for _, act := range []struct{ name, short string }{
		{"status", "Show the power state"},
		{"on", "Power on"},
		{"off", "Power off (hard)"},
		{"cycle", "Power cycle (powers on a node that is off)"},
		{"reset", "Hard reset"},
	} {
		o := powerOptions{Action: act.name}
		sub := &cobra.Command{
			Use:   act.name + " [NODE-GLOB...]",
			Short: act.short + " of the selected nodes",
			RunE: func(cmd *cobra.Command, args []string) error {
				o.Selection.Names = args
				return runPower(cmd.Context(), a, o)
			},
		}
		addSelectionFlags(sub, &o.Selection)
		addFleetFlags(sub, &o.Fleet)
		if act.name != "status" {
			sub.Flags().BoolVar(&o.DryRun, "dry-run", false, "connect and describe the change, but do not send it")
			sub.Flags().BoolVar(&o.Force, "force", false, "act on nodes with an active reinstall job too")
		}
		if act.name == "cycle" || act.name == "reset" {
			sub.Flags().BoolVar(&o.PXE, "pxe", false, "first set a one-time PXE boot and verify it, in the same BMC session")
			sub.Flags().BoolVar(&o.UEFI, "uefi", false, "with --pxe: ask for a UEFI boot")
			sub.Flags().BoolVar(&o.Legacy, "legacy", false, "with --pxe: ask for a legacy (BIOS) boot (excludes --uefi)")
		}
		if act.name == "off" || act.name == "cycle" || act.name == "reset" {
			sub.Flags().BoolVar(&o.Yes, "yes", false, "do not ask for confirmation (asked when more than one node is selected)")
		}
		cmd.AddCommand(sub)
	}
	return cmd
}

func runPower(ctx context.Context, a *app, o powerOptions) error {
	var action bmc.PowerAction
	switch o.Action {
	case "status":
	case "on", "off", "cycle", "reset":
		action = bmc.PowerAction(o.Action)
	default:
		return usagef("power: unknown action %q (want status, on, off, cycle or reset)", o.Action)
	}
	boot := bootdevOptions{Device: string(bmc.BootPXE), UEFI: o.UEFI, Legacy: o.Legacy}
	switch {
	case !o.PXE && (o.UEFI || o.Legacy):
		return usagef("power: --uefi and --legacy need --pxe")
	case o.UEFI && o.Legacy:
		return usagef("power: --uefi and --legacy exclude each other")
	}
	nodes, err := a.selectNodes(o.Selection)
	if err != nil {
		return err
	}
	if o.PXE {
		for _, n := range nodes {
			if _, err := boot.bootModeFor(n); err != nil {
				return err
			}
		}
	}
	if (o.Action == "off" || o.Action == "cycle" || o.Action == "reset") && len(nodes) > 1 && !o.Yes && !o.DryRun {
		if err := a.confirm(confirmation{Verb: "power " + o.Action, Nodes: nodes}); err != nil {
			return err
		}
	}
	r, err := a.newBMCRun(ctx, o.Fleet, action != "", o.DryRun)
	if err != nil {
		return err
	}
	defer r.close()
	if action != "" && !o.Force && !o.DryRun {
		busy, err := activeJobsIn(ctx, r.st, nodes)
		if err != nil {
			return err
		}
		if err := refuseBusy("power "+o.Action, busy); err != nil {
			return err
		}
	}

	op := "power " + o.Action
	results := r.runner.Run(ctx, nodes, op, func(ctx context.Context, n inventory.Node) (any, error) {
		return r.withBMC(ctx, n, func(c bmc.Client, det connect.Detected) (any, error) {
			if action == "" {
				s, err := c.PowerState(ctx)
				if err != nil {
					return nil, err
				}
				return powerStatusDetail{Power: s, Protocol: c.Protocol()}, nil
			}
			detail := powerActionDetail{Action: action, Protocol: c.Protocol(), DryRun: o.DryRun}
			acts := r.chain()
			defer acts.end(ctx)
			if o.PXE {
				mode, _ := boot.bootModeFor(n)
				bd, err := r.setBoot(ctx, c, n, bmc.BootOverride{Device: bmc.BootPXE, Mode: mode}, o.DryRun, acts.write)
				detail.Boot = &bd
				if err != nil {
					return detail, err
				}
			}
			power := func(action bmc.PowerAction) error {
				return acts.write(ctx, n.Name, "power "+string(action), map[string]any{"bmc": n.BMC.Address, "protocol": c.Protocol()},
					func() (map[string]any, error) { return nil, c.SetPower(ctx, action) })
			}
			err := power(action)
			if errors.Is(err, bmc.ErrPoweredOff) {
				detail.Action, detail.PoweredOff = bmc.ActionOn, true
				err = power(bmc.ActionOn)
			}
			return detail, err
		})
	})
	header := []string{"POWER", "PROTOCOL"}
	if action != "" {
		header[0] = "ACTION"
	}
	if o.PXE {
		header = append(header, "BOOT", "VERIFIED")
	}
	return r.report(ctx, results, header, func(res fleet.Result) []string {
		cols := make([]string, len(header))
		switch d := res.Detail.(type) {
		case powerStatusDetail:
			cols[0], cols[1] = string(d.Power), d.Protocol
		case powerActionDetail:
			cols[0], cols[1] = string(d.Action), d.Protocol
			if d.Boot != nil && len(cols) == 4 {
				cols[2] = describeOverride(d.Boot.Requested)
				if d.Boot.Result != nil {
					cols[3] = string(d.Boot.Result.Verified)
				}
			}
		}
		return cols
	})
}
