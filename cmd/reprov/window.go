package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/reprov/reprov/agent"
	"github.com/reprov/reprov/agent/api"
	"github.com/reprov/reprov/agent/metrics"
	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/agent/window"
	"github.com/reprov/reprov/inventory"
)

// windowCreateOptions are the flags of `reprov window create`.
type windowCreateOptions struct {
	Selection      selection
	Cron, At, TZ   string
	Duration       time.Duration
	Cutoff         time.Duration
	Batch          string
	MaxParallel    int
	PerRack        int
	MaxFailures    string
	Playbook       string
	GateHook       string
	GatePrometheus string
	GateQuery      string
}

func newWindowCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "window",
		Short: "Scheduled reimaging windows: create, list, show, pause, resume, delete, runs",
		Long: `Reimaging windows (docs/windows.md) reinstall a selection of nodes on a schedule,
in rack-aware batches, never starting a node after the window's cutoff, behind an
optional gate, stopped by a failure budget. A running "reprov serve" on the store
opens and works them; these commands define and watch them (through the API when
server.url is set).`,
	}
	var o windowCreateOptions
	create := &cobra.Command{
		Use:   "create NAME [NODE...]",
		Short: "Create a window over the selected nodes",
		Example: `  reprov window create sat-r01 --rack r01 --cron "0 2 * * SAT" --tz Europe/Berlin --duration 4h --cutoff 30m --batch 25% --max-failures 2
  reprov window create now-r02 --rack r02 --at 2026-12-05T22:00:00Z --duration 2h --batch 8`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Selection.Names = args[1:]
			return runWindowCreate(cmd.Context(), a, args[0], o)
		},
	}
	addSelectionFlags(create, &o.Selection)
	f := create.Flags()
	f.StringVar(&o.Cron, "cron", "", `when it opens: a cron expression read in --tz, e.g. "0 2 * * SAT"`)
	f.StringVar(&o.At, "at", "", "when it opens, once: an RFC 3339 time, e.g. 2026-12-05T22:00:00Z")
	f.StringVar(&o.TZ, "tz", "", "time zone of --cron (tz database name, default UTC)")
	f.DurationVar(&o.Duration, "duration", 0, "how long each occurrence is open, e.g. 4h")
	f.DurationVar(&o.Cutoff, "cutoff", 0, "no node starts later than this before the end, e.g. 30m")
	f.StringVar(&o.Batch, "batch", "", "nodes admitted at a time: N or P% (default all)")
	f.IntVar(&o.MaxParallel, "max-parallel", 0, "nodes worked at once within a batch (0: the default)")
	f.IntVar(&o.PerRack, "per-rack", 0, "nodes of one rack worked at once (0: no limit)")
	f.StringVar(&o.MaxFailures, "max-failures", "", "failure budget of an occurrence: N or P% (default none)")
	f.StringVar(&o.Playbook, "playbook", "", "the playbook every selected node must have")
	f.StringVar(&o.GateHook, "gate-hook", "", "executable run before each batch and every minute; exit 0 lets the window go on")
	f.StringVar(&o.GatePrometheus, "gate-prometheus", "", "Prometheus URL whose --gate-query must return nothing for the window to go on")
	f.StringVar(&o.GateQuery, "gate-query", "", `PromQL that must return nothing, e.g. 'ALERTS{alertstate="firing",severity="page"}'`)

	list := &cobra.Command{
		Use:   "list",
		Short: "List windows with their next start and last occurrence",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return runWindowList(cmd.Context(), a) },
	}
	show := &cobra.Command{
		Use:   "show NAME",
		Short: "Show a window: its spec, next start, last occurrence",
		Args:  cobra.ExactArgs(1),
		RunE:  func(cmd *cobra.Command, args []string) error { return runWindowShow(cmd.Context(), a, args[0]) },
	}
	var reason string
	pause := &cobra.Command{
		Use:   "pause NAME",
		Short: "Pause a window: no further node starts (nodes in flight finish); its occurrences wait",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runWindowPause(cmd.Context(), a, args[0], true, reason)
		},
	}
	pause.Flags().StringVar(&reason, "reason", "", "why (shown with the window)")
	resume := &cobra.Command{
		Use:   "resume NAME",
		Short: "Resume a paused window, within its open occurrence if any",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runWindowPause(cmd.Context(), a, args[0], false, "")
		},
	}
	del := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a window (its open occurrence admits no further node; its history stays)",
		Args:  cobra.ExactArgs(1),
		RunE:  func(cmd *cobra.Command, args []string) error { return runWindowDelete(cmd.Context(), a, args[0]) },
	}
	var ro struct {
		Limit int
		Nodes bool
	}
	runs := &cobra.Command{
		Use:   "runs NAME",
		Short: "List a window's occurrences: started, late, missed, stopped, with their outcome",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runWindowRuns(cmd.Context(), a, args[0], ro.Limit, ro.Nodes)
		},
	}
	runs.Flags().IntVar(&ro.Limit, "limit", 20, "at most this many occurrences (0: all)")
	runs.Flags().BoolVar(&ro.Nodes, "nodes", false, "list every node of each occurrence with its outcome or why it was not started")
	cmd.AddCommand(create, list, show, pause, resume, del, runs)
	return cmd
}

func (o windowCreateOptions) spec(name string) (window.Spec, error) {
	sp := window.Spec{Name: name, Cron: o.Cron, TZ: o.TZ, Duration: window.Duration(o.Duration), Cutoff: window.Duration(o.Cutoff),
		MaxParallel: o.MaxParallel, PerRack: o.PerRack, Playbook: o.Playbook,
		GateHook: o.GateHook, GatePrometheus: o.GatePrometheus, GateQuery: o.GateQuery,
		Selection: window.Selection{Names: o.Selection.Names, Racks: o.Selection.Racks, Selector: o.Selection.Selector, All: o.Selection.All}}
	var err error
	if o.At != "" {
		if sp.At, err = time.Parse(time.RFC3339, o.At); err != nil {
			return sp, fmt.Errorf("--at %q: want an RFC 3339 time, e.g. 2026-12-05T22:00:00Z", o.At)
		}
	}
	if sp.Batch, err = window.ParseAmount("--batch", o.Batch); err != nil {
		return sp, err
	}
	if sp.MaxFailures, err = window.ParseAmount("--max-failures", o.MaxFailures); err != nil {
		return sp, err
	}
	if err := sp.Validate(); err != nil {
		return sp, err
	}
	return sp, sp.CheckAt(time.Now())
}

func runWindowCreate(ctx context.Context, a *app, name string, o windowCreateOptions) error {
	sp, err := o.spec(name)
	if err != nil {
		return usageError(err)
	}
	if c, err := a.serverClient(); err != nil || c != nil {
		if err != nil {
			return err
		}
		var st window.Status
		if err := c.do(ctx, http.MethodPost, api.Prefix+"/windows", api.CreateWindow{Spec: sp, CreatedBy: createdBy()}, &st); err != nil {
			return clientError(err)
		}
		return a.printWindow(st)
	}
	nodes, err := a.selectWindowNodes(sp)
	if err != nil {
		return err
	}
	st, err := a.openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	rec, err := window.Create(ctx, st, sp, createdBy())
	if errors.Is(err, store.ErrWindowExists) {
		return usagef("%w: delete it first, or choose another name", err)
	}
	if err != nil {
		return failedError(err)
	}
	a.log.Info("window created", "window", rec.Name, "nodes", len(nodes))
	s, err := window.Describe(ctx, st, rec, time.Now(), 0)
	if err != nil {
		return failedError(err)
	}
	return a.printWindow(s)
}

// selectWindowNodes checks a window's selection against the inventory.
func (a *app) selectWindowNodes(sp window.Spec) ([]inventory.Node, error) {
	inv, err := a.loadInventory()
	if err != nil {
		return nil, err
	}
	nodes, err := window.SelectNodes(inv, sp)
	if err != nil {
		return nil, usageError(err)
	}
	return nodes, nil
}

// windowStatuses reads the windows through the server or the store.
func (a *app) windowStatuses(ctx context.Context, name string) ([]window.Status, error) {
	if c, err := a.serverClient(); err != nil || c != nil {
		if err != nil {
			return nil, err
		}
		if name != "" {
			var s window.Status
			if err := c.do(ctx, http.MethodGet, api.Prefix+"/windows/"+url.PathEscape(name), nil, &s); err != nil {
				return nil, clientError(err)
			}
			return []window.Status{s}, nil
		}
		var out []window.Status
		if err := c.do(ctx, http.MethodGet, api.Prefix+"/windows", nil, &out); err != nil {
			return nil, clientError(err)
		}
		return out, nil
	}
	st, err := a.openStore(ctx)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	var recs []store.WindowRecord
	if name != "" {
		rec, err := st.Window(ctx, name)
		if errors.Is(err, store.ErrNotFound) {
			return nil, usageError(err)
		}
		if err != nil {
			return nil, failedError(err)
		}
		recs = append(recs, rec)
	} else if recs, err = st.Windows(ctx); err != nil {
		return nil, failedError(err)
	}
	out := make([]window.Status, 0, len(recs))
	for _, r := range recs {
		s, err := window.Describe(ctx, st, r, time.Now(), 0)
		if err != nil {
			return nil, failedError(err)
		}
		out = append(out, s)
	}
	return out, nil
}

func schedule(sp window.Spec) string {
	if sp.Cron != "" {
		tz := sp.TZ
		if tz == "" {
			tz = "UTC"
		}
		return fmt.Sprintf("cron %q %s", sp.Cron, tz)
	}
	return "at " + sp.At.UTC().Format(time.RFC3339)
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func windowState(s window.Status) string {
	switch {
	case !s.Paused.IsZero():
		return "paused"
	case s.Last != nil && s.Last.State.Open():
		return string(s.Last.State)
	}
	return "waiting"
}

func runWindowList(ctx context.Context, a *app) error {
	ws, err := a.windowStatuses(ctx, "")
	if err != nil {
		return err
	}
	if a.jsonOutput() {
		return a.writeJSON(ws)
	}
	rows := make([][]string, 0, len(ws))
	for _, w := range ws {
		last := ""
		if w.Last != nil {
			last = fmt.Sprintf("%s %s: %s", stamp(w.Last.Start), w.Last.State, w.Last.Summary())
		}
		rows = append(rows, []string{w.Name, schedule(w.Spec), time.Duration(w.Spec.Duration).String(), stamp(w.Next), windowState(w),
			oneLineText(w.Spec.Selection.Text(), 40), last})
	}
	return a.table([]string{"NAME", "SCHEDULE", "DURATION", "NEXT", "STATE", "SELECTION", "LAST"}, rows)
}

func runWindowShow(ctx context.Context, a *app, name string) error {
	ws, err := a.windowStatuses(ctx, name)
	if err != nil {
		return err
	}
	return a.printWindow(ws[0])
}

func (a *app) printWindow(w window.Status) error {
	if a.jsonOutput() {
		return a.writeJSON(w)
	}
	sp := w.Spec
	p := func(k, v string) {
		if v != "" {
			fmt.Fprintf(a.stdout, "%-14s %s\n", k+":", v)
		}
	}
	p("window", w.Name)
	p("selection", sp.Selection.Text())
	p("schedule", schedule(sp))
	p("duration", time.Duration(sp.Duration).String())
	p("cutoff", time.Duration(sp.Cutoff).String())
	p("batch", sp.Batch.String())
	if sp.MaxParallel > 0 {
		p("max parallel", fmt.Sprint(sp.MaxParallel))
	}
	if sp.PerRack > 0 {
		p("per rack", fmt.Sprint(sp.PerRack))
	}
	p("max failures", sp.MaxFailures.String())
	p("playbook", sp.Playbook)
	p("gate hook", sp.GateHook)
	if sp.GatePrometheus != "" {
		p("gate query", sp.GateQuery+" on "+sp.GatePrometheus)
	}
	p("created", stamp(w.Created)+" by "+w.CreatedBy)
	if !w.Paused.IsZero() {
		p("paused", strings.TrimSpace(stamp(w.Paused)+" by "+w.PausedBy+" "+w.PauseReason))
	}
	p("next", stamp(w.Next))
	if l := w.Last; l != nil {
		p("last", fmt.Sprintf("occurrence %d at %s: %s, batch %d/%d", l.ID, stamp(l.Start), l.State, l.Batch, l.Batches))
		p("outcome", l.Summary())
		p("reason", l.Reason)
		if l.Gate != "" {
			p("gate", oneLineText(l.Gate, 200))
		}
	}
	return nil
}

func runWindowPause(ctx context.Context, a *app, name string, pause bool, reason string) error {
	var s window.Status
	if c, err := a.serverClient(); err != nil || c != nil {
		if err != nil {
			return err
		}
		path := api.Prefix + "/windows/" + url.PathEscape(name) + "/resume"
		var body any
		if pause {
			path = api.Prefix + "/windows/" + url.PathEscape(name) + "/pause"
			body = api.PauseWindow{Reason: reason, By: createdBy()}
		}
		if err := c.do(ctx, http.MethodPost, path, body, &s); err != nil {
			return clientError(err)
		}
		return a.printWindow(s)
	}
	st, err := a.openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	rec, err := st.PauseWindow(ctx, name, pause, createdBy(), reason)
	if errors.Is(err, store.ErrNotFound) {
		return usageError(err)
	}
	if err != nil {
		return failedError(err)
	}
	if s, err = window.Describe(ctx, st, rec, time.Now(), 0); err != nil {
		return failedError(err)
	}
	return a.printWindow(s)
}

func runWindowDelete(ctx context.Context, a *app, name string) error {
	if c, err := a.serverClient(); err != nil || c != nil {
		if err != nil {
			return err
		}
		if err := c.do(ctx, http.MethodDelete, api.Prefix+"/windows/"+url.PathEscape(name), nil, nil); err != nil {
			return clientError(err)
		}
	} else {
		st, err := a.openStore(ctx)
		if err != nil {
			return err
		}
		defer st.Close()
		if err := st.DeleteWindow(ctx, name); errors.Is(err, store.ErrNotFound) {
			return usageError(err)
		} else if err != nil {
			return failedError(err)
		}
	}
	if !a.jsonOutput() {
		fmt.Fprintf(a.stdout, "window %s deleted\n", name)
	}
	return nil
}

func runWindowRuns(ctx context.Context, a *app, name string, limit int, withNodes bool) error {
	withNodes = withNodes || a.jsonOutput()
	var reps []window.OccurrenceReport
	if c, err := a.serverClient(); err != nil || c != nil {
		if err != nil {
			return err
		}
		q := url.Values{"limit": {fmt.Sprint(limit)}}
		if withNodes {
			q.Set("nodes", "true")
		}
		if err := c.do(ctx, http.MethodGet, api.Prefix+"/windows/"+url.PathEscape(name)+"/runs?"+q.Encode(), nil, &reps); err != nil {
			return clientError(err)
		}
	} else {
		st, err := a.openStore(ctx)
		if err != nil {
			return err
		}
		defer st.Close()
		occs, err := st.Occurrences(ctx, name, limit)
		if err != nil {
			return failedError(err)
		}
		if len(occs) == 0 {
			if _, err := st.Window(ctx, name); errors.Is(err, store.ErrNotFound) {
				return usageError(err)
			}
		}
		for _, o := range occs {
			r, err := window.Report(ctx, st, o, withNodes, 0)
			if err != nil {
				return failedError(err)
			}
			reps = append(reps, r)
		}
	}
	if a.jsonOutput() {
		if reps == nil {
			reps = []window.OccurrenceReport{}
		}
		return a.writeJSON(reps)
	}
	rows := make([][]string, 0, len(reps))
	for _, r := range reps {
		rows = append(rows, []string{fmt.Sprint(r.ID), stamp(r.Start), stamp(r.Started), r.Late, string(r.State),
			fmt.Sprintf("%d/%d", r.Batch, r.Batches), r.Summary(), oneLineText(r.Reason, 100)})
	}
	if err := a.table([]string{"OCCURRENCE", "SCHEDULED", "STARTED", "LATE", "STATE", "BATCH", "OUTCOME", "REASON"}, rows); err != nil {
		return err
	}
	if withNodes {
		for _, r := range reps {
			fmt.Fprintf(a.stdout, "\noccurrence %d:\n", r.ID)
			nrows := make([][]string, 0, len(r.Nodes))
			for _, n := range r.Nodes {
				over := ""
				if n.Overran {
					over = "overran"
				}
				job := ""
				if n.JobID != 0 {
					job = fmt.Sprint(n.JobID)
				}
				nrows = append(nrows, []string{n.Node, n.Rack, fmt.Sprint(n.Batch), job, string(n.State), over, oneLineText(n.Reason, 100)})
			}
			if err := a.table([]string{"NODE", "RACK", "BATCH", "JOB", "STATE", "OVERRAN", "REASON"}, nrows); err != nil {
				return err
			}
		}
	}
	return nil
}

// windowTick is how often serve's window scheduler looks at the windows.
const windowTick = time.Second

// startWindows starts serve's window scheduler: it opens the windows'
// occurrences and submits their batches through the engine, on this
// controller's inventory. stop waits for it.
func (env *engineEnv) startWindows(ctx context.Context, inv *inventory.Inventory, obs *metrics.Observer, owner string) (stop func(), err error) {
	byName := make(map[string]inventory.Node, len(inv.Nodes))
	for _, n := range inv.Nodes {
		byName[n.Name] = n
	}
	a := env.a
	s, err := window.New(window.Config{
		Store: env.st,
		Owner: owner,
		Log:   a.log,
		Resolve: func(_ context.Context, sp window.Spec) ([]window.Node, error) {
			nodes, err := window.SelectNodes(inv, sp)
			if err != nil {
				return nil, err
			}
			if err := env.checkProfiles(nodes); err != nil {
				return nil, err
			}
			out := make([]window.Node, len(nodes))
			for i, n := range nodes {
				out[i] = window.Node{Name: n.Name, Rack: n.Rack}
			}
			return out, nil
		},
		Submit: func(ctx context.Context, req window.SubmitRequest) (store.Run, []store.SubmitResult, error) {
			nodes := make([]inventory.Node, 0, len(req.Nodes))
			for _, name := range req.Nodes {
				n, ok := byName[name]
				if !ok {
					return store.Run{}, nil, fmt.Errorf("node %s is not in this controller's inventory", name)
				}
				nodes = append(nodes, n)
			}
			o := req.Occurrence
			sub, err := env.engine.Submit(ctx, nodes, agent.RunOptions{
				Selection: fmt.Sprintf("window %s: %s (batch %d/%d)", req.Spec.Name, req.Spec.Selection.Text(), req.Batch, o.Batches),
				CreatedBy: fmt.Sprintf("window %s occurrence %d", req.Spec.Name, o.ID),
				Options: map[string]any{"window": req.Spec.Name, "occurrence": o.ID, "batch": req.Batch,
					"max_parallel": req.Limits.MaxParallel, "per_rack": req.Limits.PerRack, "max_failures": req.Limits.MaxFailures},
				MaxParallel: req.Limits.MaxParallel, PerRack: req.Limits.PerRack, MaxFailures: req.Limits.MaxFailures,
				WindowEnd: o.End, Cutoff: o.Cutoff,
			})
			if err != nil {
				return store.Run{}, nil, err
			}
			return sub.Run, sub.Results, nil
		},
		Observe: obs.WindowOccurrence,
	})
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.Run(wctx, windowTick)
	}()
	return func() { cancel(); wg.Wait() }, nil
}
