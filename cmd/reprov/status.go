package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/agent/web"
	"github.com/reprov/reprov/inventory"
)

// statusOptions are the options of `reprov status`.
type statusOptions struct {
	// NoInventory counts only the nodes the store knows (no idle nodes).
	NoInventory bool
}

func newStatusCmd(a *app) *cobra.Command {
	var o statusOptions
	cmd := &cobra.Command{
		Use:   "status",
		Short: "The fleet at a glance: nodes per rack by state, and the active runs (as the status page)",
		Long: `status prints what the status page shows, in numbers: each rack's nodes by the state
of their latest job (running, queued, failed, interrupted, cancelled, landed, or idle
when they never ran), the totals, and the active runs with their progress. It reads
the job store and the inventory (when one is configured, so that nodes that never
ran are counted as idle). -o json gives the same as JSON.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runStatus(cmd.Context(), a, o) },
	}
	cmd.Flags().BoolVar(&o.NoInventory, "no-inventory", false, "count only the nodes the job store knows")
	return cmd
}

func runStatus(ctx context.Context, a *app, o statusOptions) error {
	var inv *inventory.Inventory
	if a.cfg.Inventory != "" && !o.NoInventory {
		var err error
		if inv, err = a.loadInventory(); err != nil {
			return err
		}
	}
	st, err := a.openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	src := &web.StoreSource{Store: st}
	if inv != nil {
		src.Inventory = func() *inventory.Inventory { return inv }
	}
	f, err := src.Fleet(ctx)
	if err != nil {
		return failedError(err)
	}
	sum := f.Summary()
	if a.jsonOutput() {
		return a.writeJSON(sum)
	}
	states := web.States()
	header := []string{"RACK", "NODES"}
	for _, s := range states {
		header = append(header, strings.ToUpper(string(s)))
	}
	row := func(name string, total int, c web.Counts) []string {
		r := []string{name, fmt.Sprint(total)}
		for _, s := range states {
			r = append(r, fmt.Sprint(c[s]))
		}
		return r
	}
	rows := make([][]string, 0, len(sum.Racks)+1)
	for _, r := range sum.Racks {
		name := r.Rack
		if name == "" {
			name = "(no rack)"
		}
		rows = append(rows, row(name, r.Total, r.States))
	}
	rows = append(rows, row("TOTAL", sum.Total, sum.States))
	if err := a.table(header, rows); err != nil {
		return err
	}
	for _, r := range f.Runs {
		fmt.Fprintf(a.stdout, "\nrun %d (%s, %s", r.ID, r.State, r.Selection)
		if r.CreatedBy != "" {
			fmt.Fprintf(a.stdout, ", by %s", r.CreatedBy)
		}
		fmt.Fprintf(a.stdout, "): %d/%d done", r.Done(), r.Total())
		for _, s := range states {
			if n := r.Jobs[store.JobState(s)]; n > 0 {
				fmt.Fprintf(a.stdout, ", %s %d", s, n)
			}
		}
		fmt.Fprintln(a.stdout)
	}
	return nil
}
