package main

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/spf13/cobra"

	"github.com/reprov/reprov/agent/fleet"
	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/bmc/connect"
	"github.com/reprov/reprov/inventory"
)

// bootdevOptions are the options of `reprov bootdev DEVICE`.
type bootdevOptions struct {
	// Device is pxe, disk or bios.
	Device     string
	Persistent bool
	UEFI       bool
	Legacy     bool
	Selection  selection
	Fleet      fleetFlags
	DryRun     bool
	// Force acts on nodes with an active reinstall job too.
	Force bool
	// Yes skips the confirmation asked when several nodes are selected.
	Yes bool
}

// bootdevDetail is a node's boot override row.
type bootdevDetail struct {
	Requested bmc.BootOverride `json:"requested"`
	Protocol  string           `json:"protocol"`
	DryRun    bool             `json:"dry_run,omitempty"`
	// Result is what the BMC read back (absent when the write failed
	// before anything was read).
	Result *bmc.BootResult `json:"result,omitempty"`
}

func newBootdevCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bootdev",
		Short: "Set the next-boot device of the selected nodes through their BMCs",
		Long: `Set the next-boot device of the selected nodes through their BMCs: one-time
unless --persistent, in the boot mode of --uefi/--legacy or else the node's
inventory boot.mode. The override is read back and checked (per-node option
bmc.options.verify); a BMC that accepts it and reads back something else fails
with "override reverted by the BMC".

Every override is written to the audit log (audit.jsonl in the state dir)
before it is sent, and its outcome after. Exit 1 when any node failed.`,
	}
	for _, dev := range []struct{ name, short string }{
		{"pxe", "Boot from the network (PXE)"},
		{"disk", "Boot from the local disk"},
		{"bios", "Boot into the firmware setup"},
	} {
		o := bootdevOptions{Device: dev.name}
		sub := &cobra.Command{
			Use:   dev.name + " [NODE-GLOB...]",
			Short: dev.short + " at the next boot of the selected nodes",
			RunE: func(cmd *cobra.Command, args []string) error {
				o.Selection.Names = args
				return runBootdev(cmd.Context(), a, o)
			},
		}
		f := sub.Flags()
		f.BoolVar(&o.Persistent, "persistent", false, "keep the override for every boot, not only the next")
		f.BoolVar(&o.UEFI, "uefi", false, "ask for a UEFI boot")
		f.BoolVar(&o.Legacy, "legacy", false, "ask for a legacy (BIOS) boot (excludes --uefi)")
		f.BoolVar(&o.DryRun, "dry-run", false, "connect and describe the change, but do not send it")
		f.BoolVar(&o.Force, "force", false, "act on nodes with an active reinstall job too")
		f.BoolVar(&o.Yes, "yes", false, "do not ask for confirmation (asked when more than one node is selected)")
		addSelectionFlags(sub, &o.Selection)
		addFleetFlags(sub, &o.Fleet)
		cmd.AddCommand(sub)
	}
	return cmd
}

// bootModeFor is the boot mode for n: the flag's, else the inventory's.
func (o bootdevOptions) bootModeFor(n inventory.Node) (bmc.BootMode, error) {
	switch {
	case o.UEFI:
		return bmc.BootModeUEFI, nil
	case o.Legacy:
		return bmc.BootModeLegacy, nil
	}
	switch m := strings.ToLower(n.Boot.Mode); m {
	case "":
		return bmc.BootModeUnset, nil
	case "uefi", "legacy":
		return bmc.BootMode(m), nil
	default:
		return "", usagef("node %s: boot.mode %q is not legacy or uefi", n.Name, n.Boot.Mode)
	}
}

func runBootdev(ctx context.Context, a *app, o bootdevOptions) error {
	var dev bmc.BootDevice
	switch o.Device {
	case "pxe", "disk", "bios":
		dev = bmc.BootDevice(o.Device)
	default:
		return usagef("bootdev: unknown device %q (want pxe, disk or bios)", o.Device)
	}
	if o.UEFI && o.Legacy {
		return usagef("bootdev: --uefi and --legacy exclude each other")
	}
	nodes, err := a.selectNodes(o.Selection)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		if _, err := o.bootModeFor(n); err != nil {
			return err
		}
	}
	if len(nodes) > 1 && !o.Yes && !o.DryRun {
		if err := a.confirm(confirmation{Verb: "set the next boot device to " + o.Device + " on", Nodes: nodes}); err != nil {
			return err
		}
	}
	r, err := a.newBMCRun(ctx, o.Fleet, true, o.DryRun)
	if err != nil {
		return err
	}
	defer r.close()
	if !o.Force && !o.DryRun {
		busy, err := activeJobsIn(ctx, r.st, nodes)
		if err != nil {
			return err
		}
		if err := refuseBusy("set the boot device of", busy); err != nil {
			return err
		}
	}

	op := "bootdev " + o.Device
	results := r.runner.Run(ctx, nodes, op, func(ctx context.Context, n inventory.Node) (any, error) {
		mode, _ := o.bootModeFor(n)
		want := bmc.BootOverride{Device: dev, Persistent: o.Persistent, Mode: mode}
		return r.withBMC(ctx, n, func(c bmc.Client, det connect.Detected) (any, error) {
			return r.setBoot(ctx, c, n, want, o.DryRun, r.write)
		})
	})
	if !o.DryRun {
		a.learnDeviceOnly(ctx, nodes, results)
	}
	return r.report(ctx, results, []string{"DEVICE", "VERIFIED", "READ BACK", "WARNINGS"}, func(res fleet.Result) []string {
		d, ok := res.Detail.(bootdevDetail)
		if !ok {
			return []string{"", "", "", ""}
		}
		dev := describeOverride(d.Requested)
		if d.Result == nil {
			return []string{dev, "", "", ""}
		}
		rb := ""
		if d.Result.Verified != bmc.VerifyOff && d.Result.ReadBack.Device != "" {
			rb = describeOverride(d.Result.ReadBack)
		}
		return []string{dev, string(d.Result.Verified), rb, strings.Join(d.Result.Warnings, "; ")}
	})
}

// setBoot sets want on n's open BMC client, audited through write (intent
// first: bmcRun.write, or a chain's write when more acts follow), and
// returns the row detail: what was asked and what the BMC read back.
func (r *bmcRun) setBoot(ctx context.Context, c bmc.Client, n inventory.Node, want bmc.BootOverride, dryRun bool, write writeFunc) (bootdevDetail, error) {
	detail := bootdevDetail{Requested: want, Protocol: c.Protocol(), DryRun: dryRun}
	audit := map[string]any{"bmc": n.BMC.Address, "protocol": c.Protocol(),
		"device": want.Device, "persistent": want.Persistent, "mode": want.Mode}
	err := write(ctx, n.Name, "set boot override", audit, func() (map[string]any, error) {
		res, err := c.SetBootOverride(ctx, want)
		if res.Verified != "" || res.ReadBack.Device != "" || len(res.Warnings) > 0 {
			detail.Result = &res
		}
		if err != nil {
			return nil, err
		}
		return map[string]any{"verified": res.Verified, "read_back": res.ReadBack, "warnings": res.Warnings}, nil
	})
	return detail, err
}

// learnDeviceOnly records, for every node whose BMC kept the boot device
// and cleared the valid bit, the quirk that `reprov plan` reports with the
// option to set. A store that cannot be opened only loses the advice.
func (a *app) learnDeviceOnly(ctx context.Context, nodes []inventory.Node, results []fleet.Result) {
	var hits []fleet.Result
	for _, r := range results {
		if r.Status == fleet.StatusFailed && r.Reason == verifyDeviceOnlyReason {
			hits = append(hits, r)
		}
	}
	if len(hits) == 0 {
		return
	}
	st, err := a.openStore(ctx)
	if err != nil {
		a.log.Warn("device-only BMC not recorded", "err", err)
		return
	}
	defer st.Close()
	model := map[string]string{}
	for _, n := range nodes {
		model[n.Name] = n.Labels["model"]
	}
	for _, r := range hits {
		q := store.Quirk{Node: r.Node, Model: model[r.Node], Quirk: store.QuirkDeviceOnlyBMC,
			Evidence: mustJSONRaw(map[string]any{"command": "bootdev", "error": r.Error})}
		if err := st.LearnQuirk(ctx, q); err != nil {
			a.log.Warn("device-only BMC not recorded", "node", r.Node, "err", err)
		}
	}
}

func mustJSONRaw(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

// describeOverride is "pxe once uefi" style text for tables.
func describeOverride(o bmc.BootOverride) string {
	s := string(o.Device)
	if o.Persistent {
		s += " persistent"
	} else {
		s += " once"
	}
	if o.Mode != bmc.BootModeUnset {
		s += " " + string(o.Mode)
	}
	return s
}
