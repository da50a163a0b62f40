package main

import (
	"context"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/reprov/reprov/agent/fleet"
	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/bmc/connect"
	"github.com/reprov/reprov/inventory"
)

// bmcInfoOptions are the options of `reprov bmc info`.
type bmcInfoOptions struct {
	Selection selection
	Fleet     fleetFlags
}

// bmcInfoDetail is a node's BMC identity row.
type bmcInfoDetail struct {
	bmc.Identity
	// Detected says how the protocol was chosen (configured or detected).
	Detected connect.Detected `json:"detected"`
	Power    bmc.PowerState   `json:"power,omitempty"`
	// BootOverride is the pending boot override, when it could be read.
	BootOverride *bmc.BootOverride `json:"boot_override,omitempty"`
}

func newBMCCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bmc",
		Short: "Inspect the selected nodes' BMCs",
	}
	cmd.AddCommand(newBMCInfoCmd(a))
	return cmd
}

func newBMCInfoCmd(a *app) *cobra.Command {
	var o bmcInfoOptions
	cmd := &cobra.Command{
		Use:   "info [NODE-GLOB...]",
		Short: "Show each selected node's BMC: protocol (and how it was detected), vendor, model, serial, firmware, address, power, boot override",
		Long: `Show each selected node's BMC, read-only: the protocol (configured, or detected
for a bare address: Redfish when a service root answers over HTTPS, else IPMI),
vendor, model, serial, firmware, the BMC's own MAC and IP, the IPMI cipher suite
in use, the power state and the pending boot override. Exit 1 when any node's
BMC could not be read; each failure is listed with its reason.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Selection.Names = args
			return runBMCInfo(cmd.Context(), a, o)
		},
	}
	addSelectionFlags(cmd, &o.Selection)
	addFleetFlags(cmd, &o.Fleet)
	return cmd
}

func runBMCInfo(ctx context.Context, a *app, o bmcInfoOptions) error {
	nodes, err := a.selectNodes(o.Selection)
	if err != nil {
		return err
	}
	r, err := a.newBMCRun(ctx, o.Fleet, false, false)
	if err != nil {
		return err
	}
	defer r.close()

	results := r.runner.Run(ctx, nodes, "bmc info", func(ctx context.Context, n inventory.Node) (any, error) {
		return r.withBMC(ctx, n, func(c bmc.Client, det connect.Detected) (any, error) {
			id, err := c.Identity(ctx)
			if err != nil {
				return nil, err
			}
			d := bmcInfoDetail{Identity: id, Detected: det}
			if s, err := c.PowerState(ctx); err == nil {
				d.Power = s
			} else {
				a.log.Warn("bmc info: power state not readable", "node", n.Name, "err", err)
			}
			if bo, err := c.BootOverride(ctx); err == nil {
				d.BootOverride = &bo
			} else {
				a.log.Debug("bmc info: boot override not readable", "node", n.Name, "err", err)
			}
			return d, nil
		})
	})
	return r.report(ctx, results,
		[]string{"PROTOCOL", "VENDOR", "MODEL", "SERIAL", "FIRMWARE", "BMC MAC", "BMC IP", "POWER", "BOOT OVERRIDE"},
		func(res fleet.Result) []string {
			d, ok := res.Detail.(bmcInfoDetail)
			if !ok {
				return make([]string, 9)
			}
			proto := d.Protocol
			if d.Detected.Auto {
				proto += " (detected)"
			}
			if d.CipherSuite != 0 {
				proto += " cs" + strconv.Itoa(d.CipherSuite)
			}
			bo := ""
			if d.BootOverride != nil {
				bo = string(d.BootOverride.Device)
				if d.BootOverride.Device != bmc.BootNone && d.BootOverride.Device != "" {
					bo = describeOverride(*d.BootOverride)
				}
			}
			return []string{proto, d.Vendor, d.Model, d.Serial, d.Firmware, d.BMCMAC, d.BMCIP, string(d.Power), bo}
		})
}
