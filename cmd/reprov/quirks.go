package main

import (
	"context"
	"errors"
	"fmt"
	"path"
	"time"

	"github.com/spf13/cobra"

	"github.com/reprov/reprov/agent/store"
)

// quirksOptions are the options of `reprov quirks list|clear`.
type quirksOptions struct {
	// Nodes are node names or shell globs ("" matches every node).
	Nodes []string
	Model string
	Quirk string
}

func newQuirksCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "quirks",
		Short: "List and clear the board quirks reprov learned (e.g. a node that ignores the PXE override goes in-band first)",
		Long: `reprov learns quirks from what it sees: a node that accepted the one-time PXE override and
booted its disk anyway gets "ignores-oob-pxe", and later runs take it in-band directly. After a
firmware update or a board swap, clear the quirk so that reprov tries the BMC again.`,
	}
	var lo quirksOptions
	list := &cobra.Command{
		Use:   "list [NODE-GLOB...]",
		Short: "List learned quirks: node, model, quirk, when and in which run, the evidence",
		RunE: func(cmd *cobra.Command, args []string) error {
			lo.Nodes = args
			return runQuirksList(cmd.Context(), a, lo)
		},
	}
	list.Flags().StringVar(&lo.Model, "model", "", "only the quirks learned on nodes of this model")
	list.Flags().StringVar(&lo.Quirk, "quirk", "", "only this quirk, e.g. ignores-oob-pxe")
	var co quirksOptions
	clear := &cobra.Command{
		Use:   "clear NODE-GLOB... | --model MODEL",
		Short: "Forget learned quirks of the given nodes, or of every node of a model",
		Example: `  reprov quirks clear web-014
  reprov quirks clear --model dl360g7 --quirk ignores-oob-pxe`,
		RunE: func(cmd *cobra.Command, args []string) error {
			co.Nodes = args
			return runQuirksClear(cmd.Context(), a, co)
		},
	}
	clear.Flags().StringVar(&co.Model, "model", "", "the quirks learned on nodes of this model")
	clear.Flags().StringVar(&co.Quirk, "quirk", "", "only this quirk")
	cmd.AddCommand(list, clear)
	return cmd
}

// selectQuirks lists the quirks o selects (node globs matched here).
func selectQuirks(ctx context.Context, st *store.Store, o quirksOptions) ([]store.Quirk, error) {
	if err := checkGlobs(o.Nodes); err != nil {
		return nil, err
	}
	all, err := st.ListQuirks(ctx, store.QuirkFilter{Model: o.Model, Quirk: o.Quirk})
	if err != nil {
		return nil, err
	}
	return matchQuirks(all, o.Nodes), nil
}

func checkGlobs(globs []string) error {
	for _, g := range globs {
		if _, err := path.Match(g, ""); err != nil {
			return usagef("node pattern %q: %w", g, err)
		}
	}
	return nil
}

// matchQuirks keeps the quirks of the nodes the globs match (none: all).
func matchQuirks(all []store.Quirk, globs []string) []store.Quirk {
	if len(globs) == 0 {
		return all
	}
	var out []store.Quirk
	for _, q := range all {
		for _, g := range globs {
			if ok, _ := path.Match(g, q.Node); ok {
				out = append(out, q)
				break
			}
		}
	}
	return out
}

// listQuirks lists the quirks o selects, through the server (server.url)
// or from the store.
func (a *app) listQuirks(ctx context.Context, o quirksOptions) ([]store.Quirk, error) {
	if c, err := a.serverClient(); err != nil {
		return nil, err
	} else if c != nil {
		return quirksViaServer(ctx, c, o)
	}
	st, err := a.openStore(ctx)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	qs, err := selectQuirks(ctx, st, o)
	if err != nil {
		return nil, failedErrorUnlessExit(err)
	}
	return qs, nil
}

func runQuirksList(ctx context.Context, a *app, o quirksOptions) error {
	qs, err := a.listQuirks(ctx, o)
	if err != nil {
		return err
	}
	if a.jsonOutput() {
		if qs == nil {
			qs = []store.Quirk{}
		}
		return a.writeJSON(qs)
	}
	width := 60
	if a.wideOutput() {
		width = 1 << 20
	}
	rows := make([][]string, 0, len(qs))
	for _, q := range qs {
		run := ""
		if q.RunID != 0 {
			run = fmt.Sprint(q.RunID)
		}
		rows = append(rows, []string{q.Node, q.Model, q.Quirk, q.Learned.Local().Format(time.RFC3339), run, compactJSON(q.Evidence, width)})
	}
	return a.table([]string{"NODE", "MODEL", "QUIRK", "LEARNED", "RUN", "EVIDENCE"}, rows)
}

func runQuirksClear(ctx context.Context, a *app, o quirksOptions) error {
	if len(o.Nodes) == 0 && o.Model == "" {
		return usagef("quirks clear: name the nodes (globs) or give --model MODEL")
	}
	var gone []store.Quirk
	if c, err := a.serverClient(); err != nil {
		return err
	} else if c != nil {
		if gone, err = clearQuirksViaServer(ctx, c, o); err != nil {
			return err
		}
	} else {
		st, err := a.openStore(ctx)
		if err != nil {
			return err
		}
		defer st.Close()
		qs, err := selectQuirks(ctx, st, o)
		if err != nil {
			return failedErrorUnlessExit(err)
		}
		for _, q := range qs {
			g, err := st.ForgetQuirks(ctx, store.QuirkFilter{Node: q.Node, Quirk: q.Quirk})
			if err != nil {
				return failedError(err)
			}
			gone = append(gone, g...)
		}
	}
	if a.jsonOutput() {
		if gone == nil {
			gone = []store.Quirk{}
		}
		return a.writeJSON(gone)
	}
	if len(gone) == 0 {
		fmt.Fprintln(a.stderr, "no learned quirk matched: nothing cleared")
		return nil
	}
	for _, q := range gone {
		then := ""
		if q.Quirk == store.QuirkIgnoresOOBPXE {
			then = "; the next run tries the BMC path first again"
		}
		fmt.Fprintf(a.stdout, "node %s: forgot %s (learned in run %d at %s)%s\n",
			q.Node, q.Quirk, q.RunID, q.Learned.Local().Format(time.RFC3339), then)
	}
	return nil
}

// failedErrorUnlessExit marks err as a failure (exit 1) unless it already
// carries its exit code.
func failedErrorUnlessExit(err error) error {
	var ee *exitError
	if errors.As(err, &ee) {
		return err
	}
	return failedError(err)
}
