package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/inventory"
)

// addCompletions wires shell completion of names into the command tree
// (cobra's `reprov completion bash|zsh|fish|powershell`): node names for
// every command that takes NODE arguments, racks for --rack, labels for
// --selector, playbook names, and run and job IDs from the job store.
// Completion reads the configuration like the command would; when it
// cannot (no inventory, no store), it offers nothing rather than files.
func addCompletions(root *cobra.Command, a *app) {
	var walk func(*cobra.Command)
	walk = func(cmd *cobra.Command) {
		switch {
		case strings.Contains(cmd.Use, "NODE"):
			cmd.ValidArgsFunction = a.completeNodes
		case cmd.Parent() != nil && cmd.Parent().Name() == "playbooks" && cmd.Name() == "show":
			cmd.ValidArgsFunction = a.completePlaybooks
		}
		flags := map[string]cobra.CompletionFunc{
			"rack":     a.completeRacks,
			"selector": a.completeLabels,
			"node":     a.completeNodeFlag,
			"run":      a.completeRuns,
			"job":      a.completeJobs,
			"model":    a.completeModels,
			"playbook": a.completePlaybooks,
		}
		for name, fn := range flags {
			if cmd.Flags().Lookup(name) != nil {
				_ = cmd.RegisterFlagCompletionFunc(name, fn)
			}
		}
		for _, sub := range cmd.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

const noFiles = cobra.ShellCompDirectiveNoFileComp

// completionInventory loads the configuration and the inventory, quietly.
func (a *app) completionInventory(cmd *cobra.Command) *inventory.Inventory {
	if err := a.setup(cmd); err != nil || a.cfg.Inventory == "" {
		return nil
	}
	inv, _, err := inventory.Load(a.cfg.Inventory)
	if err != nil {
		return nil
	}
	return inv
}

func matching(values []string, prefix string) []string {
	var out []string
	for _, v := range values {
		if strings.HasPrefix(v, prefix) && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// completeNodes offers the inventory's node names not already given.
func (a *app) completeNodes(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	inv := a.completionInventory(cmd)
	if inv == nil {
		return nil, noFiles
	}
	var names []string
	for _, n := range inv.Nodes {
		if !slices.Contains(args, n.Name) {
			names = append(names, n.Name)
		}
	}
	return matching(names, toComplete), noFiles
}

func (a *app) completeNodeFlag(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	return a.completeNodes(cmd, nil, toComplete)
}

// completeRacks offers the racks; --rack takes a comma-separated list, so
// the racks before the last comma are kept.
func (a *app) completeRacks(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	inv := a.completionInventory(cmd)
	if inv == nil {
		return nil, noFiles
	}
	done, last := "", toComplete
	if i := strings.LastIndexByte(toComplete, ','); i >= 0 {
		done, last = toComplete[:i+1], toComplete[i+1:]
	}
	var out []string
	for _, r := range matching(inv.Racks(), last) {
		out = append(out, done+r)
	}
	return out, noFiles
}

// completeLabels offers key=value pairs of the inventory's labels.
func (a *app) completeLabels(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	inv := a.completionInventory(cmd)
	if inv == nil {
		return nil, noFiles
	}
	done, last := "", toComplete
	if i := strings.LastIndexByte(toComplete, ','); i >= 0 {
		done, last = toComplete[:i+1], toComplete[i+1:]
	}
	var pairs []string
	for _, n := range inv.Nodes {
		for k, v := range n.Labels {
			pairs = append(pairs, k+"="+v)
		}
	}
	slices.Sort(pairs)
	var out []string
	for _, p := range matching(pairs, last) {
		out = append(out, done+p)
	}
	return out, noFiles
}

// completeModels offers the inventory's model labels.
func (a *app) completeModels(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	inv := a.completionInventory(cmd)
	if inv == nil {
		return nil, noFiles
	}
	var models []string
	for _, n := range inv.Nodes {
		if m := n.Labels["model"]; m != "" {
			models = append(models, m)
		}
	}
	slices.Sort(models)
	return matching(models, toComplete), noFiles
}

// completePlaybooks offers the built-in and configured playbooks.
func (a *app) completePlaybooks(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 && cmd.Flags().Lookup("playbook") == nil {
		return nil, noFiles
	}
	if err := a.setup(cmd); err != nil {
		return nil, noFiles
	}
	set, err := a.loadPlaybooks()
	if err != nil {
		return nil, noFiles
	}
	return matching(set.Names(), toComplete), noFiles
}

// withStore runs fn with the job store, for completions.
func (a *app) completionStore(cmd *cobra.Command, fn func(context.Context, *store.Store) []string) []string {
	if err := a.setup(cmd); err != nil {
		return nil
	}
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	st, err := a.openStore(ctx)
	if err != nil {
		return nil
	}
	defer st.Close()
	return fn(ctx, st)
}

// completeRuns offers run IDs, newest first, with their selection.
func (a *app) completeRuns(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	out := a.completionStore(cmd, func(ctx context.Context, st *store.Store) []string {
		runs, err := st.Runs(ctx, 50)
		if err != nil {
			return nil
		}
		var out []string
		for _, r := range runs {
			id := fmt.Sprint(r.ID)
			if strings.HasPrefix(id, toComplete) {
				out = append(out, cobra.CompletionWithDesc(id, fmt.Sprintf("%s %s", r.State, r.Selection)))
			}
		}
		return out
	})
	return out, noFiles | cobra.ShellCompDirectiveKeepOrder
}

// completeJobs offers the job IDs of the node given (jobs show NODE --job).
func (a *app) completeJobs(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	out := a.completionStore(cmd, func(ctx context.Context, st *store.Store) []string {
		f := store.JobFilter{Limit: 50}
		if len(args) > 0 {
			f.Node = args[0]
		}
		jobs, err := st.NodeJobs(ctx, f)
		if err != nil {
			return nil
		}
		var out []string
		for _, j := range jobs {
			id := fmt.Sprint(j.ID)
			if strings.HasPrefix(id, toComplete) {
				out = append(out, cobra.CompletionWithDesc(id, fmt.Sprintf("%s %s run %d", j.Node, j.State, j.RunID)))
			}
		}
		return out
	})
	return out, noFiles | cobra.ShellCompDirectiveKeepOrder
}
