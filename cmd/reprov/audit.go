package main

import (
	"context"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/reprov/reprov/agent"
	"github.com/reprov/reprov/agent/store"
)

// auditOptions are the options of `reprov audit [SELECTION]`.
type auditOptions struct {
	// Selection limits the trail to these nodes (through the inventory);
	// none given: every node.
	Selection selection
	// Run is the run tag of the records ("" : every run).
	Run string
	// Job is the store's node job (0: every job and ad-hoc commands).
	Job int64
	// Limit keeps the newest Limit records (0: all).
	Limit int
}

func (o auditOptions) selects() bool {
	s := o.Selection
	return len(s.Names) > 0 || len(s.Racks) > 0 || s.Selector != "" || s.All
}

func newAuditCmd(a *app) *cobra.Command {
	var o auditOptions
	cmd := &cobra.Command{
		Use:   "audit [NODE-GLOB...]",
		Short: "Show the audit trail from the job store: every intent and outcome, of every controller",
		Long: `Show the audit trail kept in the job store: each power change, boot override and
in-band write, as its intent (recorded before the act) and its outcome (after),
with the controller (host/pid) that did it. Every controller sharing the store
writes there, so this is the whole trail of a node; each controller's local
audit.jsonl holds only its own records.

An intent without an outcome is an act that may or may not have happened
(the controller died or could not record the outcome): check the node.

Nodes are selected by name (shell globs), --rack, --selector or --all (through
the inventory); with no selection, every node's records are shown. Oldest
first; --limit keeps the newest records.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Selection.Names = args
			return runAudit(cmd.Context(), a, o)
		},
	}
	addSelectionFlags(cmd, &o.Selection)
	cmd.Flags().StringVar(&o.Run, "run", "", "only the records of this run (its ID, or run-ID)")
	cmd.Flags().Int64Var(&o.Job, "job", 0, "only the records of this node job (reprov jobs list)")
	cmd.Flags().IntVar(&o.Limit, "limit", 1000, "at most the newest this many records (0: all)")
	return cmd
}

func runAudit(ctx context.Context, a *app, o auditOptions) error {
	if o.Limit < 0 {
		return usagef("--limit %d is negative", o.Limit)
	}
	if o.Job < 0 {
		return usagef("--job %d is negative", o.Job)
	}
	if id, err := strconv.ParseInt(o.Run, 10, 64); err == nil {
		o.Run = agent.RunTag(id) // --run 12 is run-12
	}
	var recs []store.AuditRecord
	if c, err := a.serverClient(); err != nil {
		return err
	} else if c != nil {
		if recs, err = auditViaServer(ctx, c, o); err != nil {
			return err
		}
	} else if recs, err = auditFromStore(ctx, a, o); err != nil {
		return err
	}
	if a.jsonOutput() {
		if recs == nil {
			recs = []store.AuditRecord{}
		}
		return a.writeJSON(recs)
	}
	rows := make([][]string, 0, len(recs))
	for _, r := range recs {
		job := ""
		if r.JobID != 0 {
			job = fmt.Sprint(r.JobID)
		}
		rows = append(rows, []string{r.At.Local().Format("2006-01-02 15:04:05.000"), r.Node, r.Action, r.Phase,
			r.Result, r.Controller, job, oneLineText(r.Error, 100)})
	}
	return a.table([]string{"TIME", "NODE", "ACTION", "PHASE", "RESULT", "CONTROLLER", "JOB", "ERROR"}, rows)
}

// auditFromStore reads the audit trail from the job store.
func auditFromStore(ctx context.Context, a *app, o auditOptions) ([]store.AuditRecord, error) {
	f := store.AuditFilter{Run: o.Run, JobID: o.Job, Limit: o.Limit}
	if o.selects() {
		nodes, err := a.selectNodes(o.Selection)
		if err != nil {
			return nil, err
		}
		for _, n := range nodes {
			f.Nodes = append(f.Nodes, n.Name)
		}
	}
	st, err := a.openStore(ctx)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	recs, err := st.Audit(ctx, f)
	if err != nil {
		return nil, failedError(err)
	}
	return recs, nil
}
