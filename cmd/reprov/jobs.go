package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/reprov/reprov/agent/api"
	"github.com/reprov/reprov/agent/store"
)

// jobsListOptions are the options of `reprov jobs list`.
type jobsListOptions struct {
	Node   string
	Run    int64
	States []string
	Limit  int
}

// jobsShowOptions are the options of `reprov jobs show NODE`.
type jobsShowOptions struct {
	Node string
	// Job shows that job of the node instead of its latest.
	Job int64
}

// jobsCancelOptions are the options of `reprov jobs cancel NODE`.
type jobsCancelOptions struct {
	Node   string
	Reason string
}

func newJobsCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "jobs",
		Short: "List, show and cancel reinstall jobs in the job store",
	}
	var lo jobsListOptions
	list := &cobra.Command{
		Use:   "list",
		Short: "List node jobs, newest first",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return runJobsList(cmd.Context(), a, lo) },
	}
	list.Flags().StringVar(&lo.Node, "node", "", "only this node's jobs")
	list.Flags().Int64Var(&lo.Run, "run", 0, "only this run's jobs")
	list.Flags().StringSliceVar(&lo.States, "state", nil, "only jobs in these states (queued, running, landed, failed, cancelled, interrupted)")
	list.Flags().IntVar(&lo.Limit, "limit", 100, "at most this many jobs (0: all)")

	var so jobsShowOptions
	show := &cobra.Command{
		Use:   "show NODE",
		Short: "Show a node's latest job: state, reason, evidence, every step, landings",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			so.Node = args[0]
			return runJobsShow(cmd.Context(), a, so)
		},
	}
	show.Flags().Int64Var(&so.Job, "job", 0, "show this job of the node instead of its latest")

	var co jobsCancelOptions
	cancel := &cobra.Command{
		Use:   "cancel NODE",
		Short: "Cancel a node's active job (a running one stops at its next step boundary)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			co.Node = args[0]
			return runJobsCancel(cmd.Context(), a, co)
		},
	}
	cancel.Flags().StringVar(&co.Reason, "reason", "", "why (recorded on the job)")
	cmd.AddCommand(list, show, cancel)
	return cmd
}

func runJobsList(ctx context.Context, a *app, o jobsListOptions) error {
	f := store.JobFilter{Node: o.Node, RunID: o.Run, Limit: o.Limit}
	for _, s := range o.States {
		st := store.JobState(strings.TrimSpace(s))
		switch st {
		case store.JobQueued, store.JobRunning, store.JobLanded, store.JobFailed, store.JobCancelled, store.JobInterrupted:
		default:
			return usagef("--state %q: want queued, running, landed, failed, cancelled or interrupted", s)
		}
		f.States = append(f.States, st)
	}
	jobs, err := a.listJobs(ctx, f)
	if err != nil {
		return err
	}
	if a.jsonOutput() {
		if jobs == nil {
			jobs = []store.NodeJob{}
		}
		return a.writeJSON(jobs)
	}
	rows := make([][]string, 0, len(jobs))
	for _, j := range jobs {
		rows = append(rows, []string{fmt.Sprint(j.ID), fmt.Sprint(j.RunID), j.Node, string(j.State), j.Path, j.Step,
			string(j.LandingSource), ago(j.Updated), oneLineText(j.Reason, 100)})
	}
	return a.table([]string{"JOB", "RUN", "NODE", "STATE", "PATH", "STEP", "LANDING", "UPDATED", "REASON"}, rows)
}

func ago(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}

func oneLineText(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// jobDetail is `jobs show` in JSON (the same through serve's API).
type jobDetail = api.JobDetail

func runJobsShow(ctx context.Context, a *app, o jobsShowOptions) error {
	var d jobDetail
	if c, err := a.serverClient(); err != nil {
		return err
	} else if c != nil {
		if d, err = jobShowViaServer(ctx, c, o); err != nil {
			return err
		}
	} else if d, err = jobShowFromStore(ctx, a, o); err != nil {
		return err
	}
	return renderJobDetail(a, d)
}

// jobShowFromStore reads `jobs show` from the job store.
func jobShowFromStore(ctx context.Context, a *app, o jobsShowOptions) (jobDetail, error) {
	st, err := a.openStore(ctx)
	if err != nil {
		return jobDetail{}, err
	}
	defer st.Close()
	var job store.NodeJob
	if o.Job != 0 {
		job, err = st.NodeJob(ctx, o.Job)
		if err == nil && job.Node != o.Node {
			return jobDetail{}, usagef("job %d is node %s's, not %s's", o.Job, job.Node, o.Node)
		}
	} else {
		var jobs []store.NodeJob
		jobs, err = st.NodeJobs(ctx, store.JobFilter{Node: o.Node, Limit: 1})
		if err == nil && len(jobs) == 0 {
			err = fmt.Errorf("node %s has no job: %w", o.Node, store.ErrNotFound)
		}
		if err == nil {
			job = jobs[0]
		}
	}
	if err != nil {
		return jobDetail{}, failedError(err)
	}
	d := jobDetail{Job: job}
	if d.Steps, err = st.Steps(ctx, job.ID); err != nil {
		return jobDetail{}, failedError(err)
	}
	if d.Landings, err = st.Landings(ctx, job.ID); err != nil {
		return jobDetail{}, failedError(err)
	}
	if d.Quirks, err = st.Quirks(ctx, job.Node); err != nil {
		return jobDetail{}, failedError(err)
	}
	if d.Sectors, err = st.SectorRecords(ctx, job.Node, job.RunID); err != nil {
		return jobDetail{}, failedError(err)
	}
	return d, nil
}

// renderJobDetail prints `jobs show`.
func renderJobDetail(a *app, d jobDetail) error {
	job := d.Job
	d.Steps, d.Landings = nonNil(d.Steps), nonNil(d.Landings)
	d.Quirks, d.Sectors = nonNil(d.Quirks), nonNil(d.Sectors)
	if a.jsonOutput() {
		return a.writeJSON(d)
	}
	w := a.stdout
	fmt.Fprintf(w, "node %s: job %d of run %d, %s", job.Node, job.ID, job.RunID, job.State)
	if job.Path != "" {
		fmt.Fprintf(w, ", path %s", job.Path)
	}
	fmt.Fprintln(w)
	if job.Reason != "" {
		fmt.Fprintf(w, "  reason: %s\n", job.Reason)
	}
	switch {
	case job.Owner != "" && job.State.Active():
		fmt.Fprintf(w, "  controller: %s (lease until %s, generation %d)\n", job.Owner, job.LeaseUntil.Local().Format(time.RFC3339), job.Generation)
	case job.Owner != "":
		fmt.Fprintf(w, "  worked by: %s (generation %d)\n", job.Owner, job.Generation)
	}
	if !job.CancelRequested.IsZero() {
		fmt.Fprintf(w, "  cancel requested %s: %s\n", job.CancelRequested.Local().Format(time.RFC3339), job.CancelReason)
	}
	fmt.Fprintf(w, "  created %s", job.Created.Local().Format(time.RFC3339))
	if !job.Finished.IsZero() {
		fmt.Fprintf(w, ", finished %s (%s)", job.Finished.Local().Format(time.RFC3339), job.Finished.Sub(job.Created).Round(time.Millisecond))
	}
	fmt.Fprintln(w)
	if len(job.Evidence) > 0 {
		fmt.Fprintf(w, "  evidence: %s\n", job.Evidence)
	}
	fmt.Fprintln(w, "  steps:")
	outcomes := map[int64]store.Step{}
	for _, s := range d.Steps {
		if s.Phase == store.PhaseOutcome {
			outcomes[s.IntentID] = s
		}
	}
	for _, s := range d.Steps {
		if s.Phase != store.PhaseIntent {
			continue
		}
		out, ok := outcomes[s.ID]
		res := "NO OUTCOME (interrupted; settled by looking on the next run)"
		took := ""
		if ok {
			res = out.Result
			took = " (" + out.Time.Sub(s.Time).Round(time.Millisecond).String() + ")"
		}
		fmt.Fprintf(w, "    %s %-13s %s%s\n", s.Time.Local().Format("15:04:05.000"), s.Name, res, took)
		if ok && len(out.Detail) > 0 {
			fmt.Fprintf(w, "        %s\n", compactJSON(out.Detail, 400))
		}
	}
	for _, l := range d.Landings {
		fmt.Fprintf(w, "  landing: %s at %s %s\n", l.Source, l.Time.Local().Format(time.RFC3339), compactJSON(l.Evidence, 200))
	}
	for _, q := range d.Quirks {
		fmt.Fprintf(w, "  quirk: %s (model %q, learned in run %d at %s)\n", q.Quirk, q.Model, q.RunID, q.Learned.Local().Format(time.RFC3339))
	}
	for _, s := range d.Sectors {
		fmt.Fprintf(w, "  saved boot sector: %s of %s, %d bytes, sha256 %s (reprov restore %s --run %d)\n", s.Path, s.Device, s.Size, s.SHA256, s.Node, s.RunID)
	}
	return nil
}

func compactJSON(raw json.RawMessage, n int) string {
	if len(raw) == 0 {
		return ""
	}
	return oneLineText(string(raw), n)
}

func runJobsCancel(ctx context.Context, a *app, o jobsCancelOptions) error {
	reason := o.Reason
	if reason == "" {
		reason = "cancelled by " + createdBy() + " with reprov jobs cancel"
	}
	var job store.NodeJob
	if c, err := a.serverClient(); err != nil {
		return err
	} else if c != nil {
		if job, err = jobCancelViaServer(ctx, c, o.Node, reason); err != nil {
			return err
		}
	} else {
		st, err := a.openStore(ctx)
		if err != nil {
			return err
		}
		defer st.Close()
		if job, err = st.CancelNode(ctx, o.Node, reason); err != nil {
			return failedError(err)
		}
	}
	if a.jsonOutput() {
		return a.writeJSON(job)
	}
	switch job.State {
	case store.JobCancelled:
		fmt.Fprintf(a.stdout, "node %s: job %d of run %d cancelled\n", job.Node, job.ID, job.RunID)
	default:
		fmt.Fprintf(a.stdout, "node %s: job %d of run %d is %s at step %s; its controller stops it at the next step boundary (an in-band wipe unit always finishes)\n",
			job.Node, job.ID, job.RunID, job.State, job.Step)
	}
	return nil
}

// listJobs lists jobs through the server (server.url) or from the store.
func (a *app) listJobs(ctx context.Context, f store.JobFilter) ([]store.NodeJob, error) {
	if c, err := a.serverClient(); err != nil || c != nil {
		if err != nil {
			return nil, err
		}
		return jobsViaServer(ctx, c, f)
	}
	st, err := a.openStore(ctx)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	jobs, err := st.NodeJobs(ctx, f)
	if err != nil {
		return nil, failedError(err)
	}
	return jobs, nil
}

// nonNil is s, or an empty slice (JSON [] rather than null).
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
