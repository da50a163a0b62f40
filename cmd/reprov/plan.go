package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/reprov/reprov/agent"
	"github.com/reprov/reprov/agent/fleet"
	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/inventory"
)

// planOptions are the options of `reprov plan`.
type planOptions struct {
	Selection selection
	// Offline plans from the inventory alone (and the store's learned
	// quirks): no BMC and no node is contacted.
	Offline bool

	// dryRunOf names the command whose --dry-run this is ("" for plan).
	dryRunOf string
}

func newPlanCmd(a *app) *cobra.Command {
	var o planOptions
	cmd := &cobra.Command{
		Use:   "plan [NODE-GLOB...]",
		Short: "Show, per node, exactly what a reinstall would do and why; change nothing",
		Long: `Show, per selected node, what reprov reinstall would do: the path order and why
(playbook, learned quirks), each step with the exact commands (BMC and in-band),
the disk the in-band path would touch and the byte ranges it would zero, the
hooks (listed, not run), and anything that would stop the node at precheck.

The plan reads the BMCs (power, current override, identity) and the nodes over
SSH (identity, boot disk) read-only; --offline shows what the inventory alone
tells. Exit 1 when some node would be stopped at precheck.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Selection.Names = args
			return runPlan(cmd.Context(), a, o)
		},
	}
	addSelectionFlags(cmd, &o.Selection)
	cmd.Flags().BoolVar(&o.Offline, "offline", false, "plan from the inventory alone: contact no BMC and no node")
	return cmd
}

// verifyDeviceOnlyReason is the failure reason of a device-only IPMI BMC
// (fleet.Classify of bmc.ErrDeviceOnly).
const verifyDeviceOnlyReason = "device-only BMC: set bmc.options.verify: device-only"

// deviceOnlyAdvice says, for a node whose BMC was seen keeping the boot
// device and clearing the valid bit and whose inventory does not yet say
// verify: device-only, the exact option to set.
func deviceOnlyAdvice(ctx context.Context, st *store.Store, n inventory.Node) []string {
	if st == nil || n.BMC.Options.Verify == string(bmc.VerifyDeviceOnly) || n.BMC.Options.Verify == string(bmc.VerifyOff) {
		return nil
	}
	qs, err := st.Quirks(ctx, n.Name)
	if err != nil {
		return nil
	}
	for _, q := range qs {
		if q.Quirk == store.QuirkDeviceOnlyBMC {
			return []string{fmt.Sprintf("WARNING: the BMC keeps the boot device but clears the valid bit (seen %s): the out-of-band path fails \"override reverted by the BMC\" unless the inventory sets bmc.options.verify: device-only for %s (%s:%d)",
				q.Learned.Local().Format(time.RFC3339), n.Name, n.Pos.File, n.Pos.Line)}
		}
	}
	return nil
}

func runPlan(ctx context.Context, a *app, o planOptions) error {
	if c, err := a.serverClient(); err != nil {
		return err
	} else if c != nil {
		// server.url (or --server): the controller plans with its BMC and
		// SSH access.
		plans, err := planViaServer(ctx, c, o)
		if err != nil {
			return err
		}
		return renderPlans(ctx, a, plans, o)
	}
	inv, err := a.loadInventory()
	if err != nil {
		return err
	}
	nodes, err := inv.Select(inventory.Selector{Names: o.Selection.Names, Racks: o.Selection.Racks, Labels: o.Selection.Selector, All: o.Selection.All})
	if err != nil {
		return usageError(err)
	}
	env, err := a.newEngineEnv(ctx, inv, false, nil)
	if err != nil {
		return err
	}
	defer env.close()
	return renderPlans(ctx, a, env.plan(ctx, nodes, o.Offline, o.dryRunOf == "reinstall"), o)
}

// plan plans nodes (reprov plan; serve's GET /api/v1/plan): one plan per
// node, in order; a node that could not be planned has a plan whose
// problem says why.
func (env *engineEnv) plan(ctx context.Context, nodes []inventory.Node, offline, forReinstall bool) []*agent.NodePlan {
	a := env.a
	runner := &fleet.Runner{MaxParallel: a.cfg.MaxParallel, PerRack: a.cfg.PerRack, Log: a.log}
	results := runner.Run(ctx, nodes, "plan", func(ctx context.Context, n inventory.Node) (any, error) {
		return env.engine.Plan(ctx, n, agent.PlanOptions{Offline: offline, LandingURL: a.cfg.Landing.URL,
			NeedProfile: forReinstall, DefaultProfile: a.cfg.Landing.Kernel != ""})
	})
	plans := make([]*agent.NodePlan, 0, len(results))
	for _, r := range results {
		p, _ := r.Detail.(*agent.NodePlan)
		if p == nil {
			p = &agent.NodePlan{Node: r.Node, Rack: r.Rack, Problems: []string{fmt.Sprintf("%s: %s", r.Status, r.Error)}}
		}
		if env.inv != nil {
			if n, ok := env.inv.Node(r.Node); ok {
				p.Why = append(p.Why, deviceOnlyAdvice(ctx, env.st, n)...)
			}
		}
		plans = append(plans, p)
	}
	return plans
}

// renderPlans prints plans and returns plan's error: exit 1 when some
// node would be stopped at precheck.
func renderPlans(ctx context.Context, a *app, plans []*agent.NodePlan, o planOptions) error {
	problems := 0
	for _, p := range plans {
		if len(p.Problems) > 0 {
			problems++
		}
	}
	if a.jsonOutput() {
		if err := a.writeJSON(plans); err != nil {
			return err
		}
	} else {
		if o.dryRunOf != "" {
			fmt.Fprintf(a.stdout, "dry run of %s: nothing is changed; this is what would be done.\n\n", o.dryRunOf)
		}
		for i, p := range plans {
			if i > 0 {
				fmt.Fprintln(a.stdout)
			}
			p.Text(a.stdout)
		}
		if problems > 0 {
			fmt.Fprintf(a.stdout, "\n%d of %d node(s) would be stopped at precheck (PROBLEM lines above)\n", problems, len(plans))
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if problems > 0 {
		return errSomeFailed
	}
	return nil
}
