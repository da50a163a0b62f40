package window

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/reprov/reprov/agent/store"
)

// Defaults of Config.
const (
	DefaultLease     = 30 * time.Second
	DefaultLateAfter = time.Minute
	DefaultGateEvery = time.Minute
	DefaultLookback  = 50
)

// SubmitRequest is one batch of an occurrence to submit as a run.
type SubmitRequest struct {
	Spec       Spec
	Occurrence store.Occurrence
	Batch      int
	// Nodes are the batch's node names, in order.
	Nodes []string
	// Limits are the batch run's limits (the failure budget left).
	Limits store.RunLimits
}

// Submitter submits a batch as a run (the engine's Submit in reprov
// serve): one result per node, in order.
type Submitter func(ctx context.Context, req SubmitRequest) (store.Run, []store.SubmitResult, error)

// Resolver resolves a window's selection against the controller's
// inventory, and checks the nodes may be reinstalled as the spec says.
type Resolver func(ctx context.Context, s Spec) ([]Node, error)

// Config configures a Scheduler.
type Config struct {
	// Store is the job store shared by every controller.
	Store *store.Store
	// Owner names this controller (its leases on occurrences).
	Owner string
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Resolve resolves a window's selection (required).
	Resolve Resolver
	// Submit submits a batch (required).
	Submit Submitter
	// Gate checks a window's gate (default Checker(nil)).
	Gate Gate
	// Observe is told each occurrence's result when it ends: ok, failed,
	// budget_spent or skipped (missed) (nil: none).
	Observe func(result string)
	// Log receives the scheduler's records (nil: discarded).
	Log *slog.Logger
	// Lease is how long an occurrence stays with this controller without
	// a tick (default DefaultLease).
	Lease time.Duration
	// LateAfter: an occurrence started more than this after its start time
	// is reported late (default DefaultLateAfter).
	LateAfter time.Duration
	// GateEvery is how often a gate is checked while an occurrence is
	// open, and rechecked after it failed (default DefaultGateEvery).
	GateEvery time.Duration
	// Lookback is how many past starts of a window are considered at
	// most when a controller comes back (default DefaultLookback).
	Lookback int
}

// Scheduler opens windows' occurrences and works them batch by batch. One
// runs in every controller; the store makes each occurrence one
// controller's.
type Scheduler struct {
	cfg Config
	log *slog.Logger
}

// New returns a scheduler for cfg.
func New(cfg Config) (*Scheduler, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("window scheduler: no job store")
	case cfg.Owner == "":
		return nil, errors.New("window scheduler: no owner")
	case cfg.Resolve == nil || cfg.Submit == nil:
		return nil, errors.New("window scheduler: need Resolve and Submit")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Gate == nil {
		cfg.Gate = Checker(nil)
	}
	if cfg.Lease <= 0 {
		cfg.Lease = DefaultLease
	}
	if cfg.LateAfter <= 0 {
		cfg.LateAfter = DefaultLateAfter
	}
	if cfg.GateEvery <= 0 {
		cfg.GateEvery = DefaultGateEvery
	}
	if cfg.Lookback <= 0 {
		cfg.Lookback = DefaultLookback
	}
	s := &Scheduler{cfg: cfg, log: cfg.Log}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// Run ticks every interval until ctx ends.
func (s *Scheduler) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := s.Tick(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("reimaging windows", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ParseSpec reads a stored window's spec.
func ParseSpec(w store.WindowRecord) (Spec, error) {
	var sp Spec
	if err := json.Unmarshal(w.Spec, &sp); err != nil {
		return Spec{}, fmt.Errorf("window %s: spec: %w", w.Name, err)
	}
	sp.Name = w.Name
	return sp, nil
}

type known struct {
	rec  store.WindowRecord
	spec Spec
}

// Tick does, at the clock's now, everything due: it opens (or records as
// missed) every window start that has come, and moves every open
// occurrence this controller holds (or can take) one step on.
func (s *Scheduler) Tick(ctx context.Context) error {
	now := s.cfg.Now()
	recs, err := s.cfg.Store.Windows(ctx)
	if err != nil {
		return err
	}
	wins := map[string]known{}
	var errs []error
	for _, r := range recs {
		sp, err := ParseSpec(r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		wins[r.Name] = known{rec: r, spec: sp}
		if err := s.startDue(ctx, r, sp, now); err != nil {
			errs = append(errs, err)
		}
	}
	occs, err := s.cfg.Store.OpenOccurrences(ctx)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, o := range occs {
		ok, err := s.cfg.Store.LeaseOccurrence(ctx, o.ID, s.cfg.Owner, now, now.Add(s.cfg.Lease))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !ok {
			continue
		}
		if o.Owner != s.cfg.Owner && o.Owner != "" {
			s.log.Info("took over a window occurrence whose controller stopped", "window", o.Window, "occurrence", o.ID, "from", o.Owner)
		}
		o.Owner = s.cfg.Owner
		var w *known
		if k, ok := wins[o.Window]; ok {
			w = &k
		}
		if err := s.advance(ctx, o, w, now); err != nil {
			errs = append(errs, fmt.Errorf("window %s occurrence %d: %w", o.Window, o.ID, err))
		}
	}
	return errors.Join(errs...)
}

// startDue records every start of the window that has come since its last
// occurrence (or its creation): opened when its cutoff has not passed,
// else missed.
func (s *Scheduler) startDue(ctx context.Context, r store.WindowRecord, sp Spec, now time.Time) error {
	last, err := s.cfg.Store.Occurrences(ctx, r.Name, 1)
	if err != nil {
		return err
	}
	from := r.Created
	if !sp.At.IsZero() {
		// A one-off window: its single start, even if it was given in the
		// recent past.
		if len(last) > 0 {
			return nil
		}
		from = sp.At.Add(-time.Nanosecond)
	} else if len(last) > 0 && last[0].Start.After(from) {
		from = last[0].Start
	}
	for _, start := range sp.Starts(from, now, s.cfg.Lookback) {
		if err := s.open(ctx, sp, start, now); err != nil {
			return err
		}
	}
	return nil
}

func (s *Scheduler) open(ctx context.Context, sp Spec, start, now time.Time) error {
	end, cut := sp.Bounds(start)
	o := store.Occurrence{Window: sp.Name, Start: start, End: end, Cutoff: cut}
	var planned []store.WindowNode
	if !now.Before(cut) {
		o.State, o.Finished = store.OccurrenceMissed, now
		o.Reason = fmt.Sprintf("missed: no controller started it between %s and its cutoff %s",
			start.UTC().Format(time.RFC3339), cut.UTC().Format(time.RFC3339))
	} else {
		o.State, o.Started, o.Owner, o.LeaseUntil = store.OccurrenceRunning, now, s.cfg.Owner, now.Add(s.cfg.Lease)
		nodes, err := s.cfg.Resolve(ctx, sp)
		if err != nil {
			o.State, o.Finished = store.OccurrenceStopped, now
			o.Reason = "not started: selection: " + err.Error()
		} else {
			planned = Plan(nodes, sp.Batch)
			if len(planned) > 0 {
				o.Batches = planned[len(planned)-1].Batch
			}
		}
		if late := now.Sub(start); late > s.cfg.LateAfter {
			o.Reason = joinReason(fmt.Sprintf("started late by %s: no controller was running at %s",
				late.Round(time.Second), start.UTC().Format(time.RFC3339)), o.Reason)
		}
	}
	got, created, err := s.cfg.Store.InsertOccurrence(ctx, o, planned)
	if err != nil || !created {
		return err
	}
	switch got.State {
	case store.OccurrenceMissed:
		s.log.Warn("window occurrence missed", "window", sp.Name, "start", start, "cutoff", cut)
		s.observe("skipped")
	case store.OccurrenceStopped:
		s.log.Error("window occurrence not started", "window", sp.Name, "start", start, "reason", got.Reason)
		s.observe("failed")
	default:
		s.log.Info("window occurrence started", "window", sp.Name, "occurrence", got.ID, "start", start, "end", end,
			"cutoff", cut, "nodes", len(planned), "batches", got.Batches, "late", now.Sub(start) > s.cfg.LateAfter)
	}
	return nil
}

func joinReason(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}

func (s *Scheduler) observe(result string) {
	if s.cfg.Observe != nil {
		s.cfg.Observe(result)
	}
}

// advance moves an occurrence this controller holds one step on: it
// follows its nodes' jobs, applies the failure budget, the cutoff, the
// pause and the gate, admits the next batch when the previous one is
// terminal, and ends it when nothing is left.
func (s *Scheduler) advance(ctx context.Context, o store.Occurrence, w *known, now time.Time) error {
	st := s.cfg.Store
	nodes, err := st.OccurrenceNodes(ctx, o.ID)
	if err != nil {
		return err
	}
	dirty := map[string]bool{}
	var ids []int64
	for _, n := range nodes {
		if n.JobID != 0 && !n.Terminal() {
			ids = append(ids, n.JobID)
		}
	}
	jobs, err := st.JobsByID(ctx, ids)
	if err != nil {
		return err
	}
	byID := make(map[int64]store.NodeJob, len(jobs))
	for _, j := range jobs {
		byID[j.ID] = j
	}
	for i := range nodes {
		n := &nodes[i]
		j, ok := byID[n.JobID]
		if !ok {
			continue
		}
		if j.State == store.JobRunning && !now.Before(o.End) && !n.Overran {
			n.Overran = true
			dirty[n.Node] = true
			s.log.Warn("window ended with a node still being worked: it finishes (never cut inside its wipe unit) and is reported overrunning",
				"window", o.Window, "occurrence", o.ID, "node", n.Node, "job", j.ID, "step", j.Step)
		}
		ns := store.WindowNodeState(j.State)
		if j.State == store.JobCancelled && j.Started.IsZero() {
			ns = store.WindowNodeNotStarted
		}
		if ns != n.State {
			n.State = ns
			if !j.State.Active() {
				n.Reason = j.Reason
			}
			dirty[n.Node] = true
		}
	}

	var sp Spec
	if w != nil {
		sp = w.spec
	}
	failed := 0
	for _, n := range nodes {
		if n.State == store.WindowNodeState(store.JobFailed) {
			failed++
		}
	}
	budget := sp.MaxFailures.Of(len(nodes))
	stop := ""
	switch {
	case w == nil:
		stop = "not started: the window was deleted"
	case budget > 0 && failed >= budget:
		stop = fmt.Sprintf("not started: window stopped after %d failures", failed)
	}
	closing := stop
	if closing == "" && !now.Before(o.Cutoff) {
		closing = store.WindowCutoffReason(o.Cutoff)
	}
	if closing != "" {
		if err := s.close(ctx, o, nodes, closing, dirty); err != nil {
			return err
		}
	}

	// Pause and gate: why no further node may start now.
	hold := ""
	work := false
	for _, n := range nodes {
		if n.State == store.WindowNodePending || n.State == store.WindowNodeState(store.JobQueued) {
			work = true
		}
	}
	batchDone := true
	for _, n := range nodes {
		if n.Batch <= o.Batch && !n.Terminal() {
			batchDone = false
		}
	}
	gateFailing := false
	if closing == "" && work {
		if w.rec.Paused.IsZero() {
			if sp.HasGate() {
				wantNext := batchDone && o.GateOK
				if o.GateChecked.IsZero() || now.Sub(o.GateChecked) >= s.cfg.GateEvery || wantNext && o.GateChecked.Before(now) {
					// The check runs inside this tick, which renews the
					// lease only when it ends: half the lease at most.
					gctx, cancel := context.WithTimeout(ctx, s.cfg.Lease/2)
					r := s.cfg.Gate(gctx, sp)
					cancel()
					if r.OK != o.GateOK || o.GateChecked.IsZero() {
						lvl := slog.LevelInfo
						if !r.OK {
							lvl = slog.LevelWarn
						}
						s.log.Log(ctx, lvl, "window gate checked", "window", o.Window, "occurrence", o.ID, "ok", r.OK, "output", r.Output)
					}
					o.GateOK, o.Gate, o.GateChecked = r.OK, r.Output, now
				}
				if !o.GateOK {
					gateFailing = true
					hold = "gate failed (rechecked every " + s.cfg.GateEvery.String() + "): " + o.Gate
				}
			}
		} else {
			hold = fmt.Sprintf("window paused by %s at %s", w.rec.PausedBy, w.rec.Paused.UTC().Format(time.RFC3339))
			if w.rec.PauseReason != "" {
				hold += ": " + w.rec.PauseReason
			}
		}
		if o.RunID != 0 {
			if err := st.SetRunHold(ctx, o.RunID, hold); err != nil {
				return err
			}
		}
	}

	// The next batch, when the previous one is terminal.
	if closing == "" && hold == "" && batchDone {
		next := 0
		for _, n := range nodes {
			if n.State == store.WindowNodePending && (next == 0 || n.Batch < next) {
				next = n.Batch
			}
		}
		if next > 0 {
			if err := s.admit(ctx, &o, sp, nodes, next, budget, failed, dirty); err != nil {
				o.Reason = joinReason(fmt.Sprintf("batch %d: %v", next, err), "")
				s.log.Error("window batch not submitted; retried at the next tick", "window", o.Window, "occurrence", o.ID, "batch", next, "err", err)
			}
		}
	}

	// Save what changed, then the occurrence's state.
	var changed []store.WindowNode
	for _, n := range nodes {
		if dirty[n.Node] {
			changed = append(changed, n)
		}
	}
	if err := st.SaveOccurrenceNodes(ctx, o.ID, changed); err != nil {
		return err
	}
	inFlight, pending, landed, notLanded := 0, 0, 0, 0
	for _, n := range nodes {
		switch {
		case n.State == store.WindowNodePending:
			pending++
		case !n.Terminal():
			inFlight++
		case n.State == store.WindowNodeState(store.JobLanded):
			landed++
		default:
			notLanded++
		}
	}
	prev := o.State
	switch {
	case inFlight == 0 && pending == 0:
		o.State, o.Finished = store.OccurrenceDone, now
		result := "ok"
		if notLanded > 0 {
			result = "failed"
		}
		if stop != "" {
			o.State, result = store.OccurrenceStopped, "budget_spent"
			if w == nil {
				result = "failed"
			}
		}
		s.observe(result)
		s.log.Info("window occurrence ended", "window", o.Window, "occurrence", o.ID, "state", o.State, "landed", landed, "not_landed", notLanded)
	case stop != "":
		o.State = store.OccurrenceStopping
	case !now.Before(o.End) && inFlight > 0:
		o.State = store.OccurrenceOverrunning
	case hold != "" && gateFailing:
		o.State = store.OccurrenceGated
	case hold != "":
		o.State = store.OccurrencePaused
	default:
		o.State = store.OccurrenceRunning
	}
	switch {
	case stop != "":
		o.Reason = stop
	case closing != "":
		o.Reason = closing
	case hold != "":
		o.Reason = hold
	case prev == store.OccurrencePaused || prev == store.OccurrenceGated:
		o.Reason = ""
	}
	if o.State != prev {
		s.log.Info("window occurrence", "window", o.Window, "occurrence", o.ID, "state", o.State, "was", prev, "reason", o.Reason)
	}
	return st.SaveOccurrence(ctx, o)
}

// close stops admitting: pending nodes are not started, the queued jobs
// of the occurrence's runs are cancelled unstarted, with reason; nodes in
// flight finish.
func (s *Scheduler) close(ctx context.Context, o store.Occurrence, nodes []store.WindowNode, reason string, dirty map[string]bool) error {
	// Only the current batch's run can have queued jobs of this
	// occurrence (a batch is admitted when the previous one is terminal);
	// a node attached to another run's job is that run's to stop.
	var queued []int64
	for i := range nodes {
		n := &nodes[i]
		switch {
		case n.State == store.WindowNodePending,
			// Refused by the batch run's failure budget where it was claimed.
			n.State == store.WindowNodeNotStarted && strings.HasPrefix(n.Reason, "not started: the run stopped after") && n.Reason != reason:
			n.State, n.Reason = store.WindowNodeNotStarted, reason
			dirty[n.Node] = true
		case n.State == store.WindowNodeState(store.JobQueued) && n.RunID == o.RunID:
			queued = append(queued, n.JobID)
		}
	}
	if len(queued) == 0 {
		return nil
	}
	if _, err := s.cfg.Store.CancelQueuedJobs(ctx, o.RunID, reason); err != nil {
		return err
	}
	jobs, err := s.cfg.Store.JobsByID(ctx, queued)
	if err != nil {
		return err
	}
	byID := map[int64]store.NodeJob{}
	for _, j := range jobs {
		byID[j.ID] = j
	}
	for i := range nodes {
		n := &nodes[i]
		j, ok := byID[n.JobID]
		if !ok || n.State != store.WindowNodeState(store.JobQueued) {
			continue
		}
		switch {
		case j.State == store.JobCancelled && j.Started.IsZero():
			n.State, n.Reason = store.WindowNodeNotStarted, j.Reason
		default:
			n.State = store.WindowNodeState(j.State)
		}
		dirty[n.Node] = true
	}
	return nil
}

// admit submits batch b: its nodes already landed since the occurrence
// started (by another window, or before this controller took over) are
// not redone.
func (s *Scheduler) admit(ctx context.Context, o *store.Occurrence, sp Spec, nodes []store.WindowNode, b, budget, failed int, dirty map[string]bool) error {
	var names []string
	for _, n := range nodes {
		if n.Batch == b && n.State == store.WindowNodePending {
			names = append(names, n.Node)
		}
	}
	latest, err := s.cfg.Store.LatestJobsOf(ctx, names)
	if err != nil {
		return err
	}
	var submit []string
	idx := map[string]int{}
	for i := range nodes {
		idx[nodes[i].Node] = i
	}
	for _, name := range names {
		n := &nodes[idx[name]]
		if j, ok := latest[name]; ok && j.State == store.JobLanded && !j.Finished.Before(o.Started) {
			n.State, n.JobID, n.RunID = store.WindowNodeState(store.JobLanded), j.ID, j.RunID
			n.Reason = fmt.Sprintf("already landed at %s in this occurrence (job %d, run %d): not redone",
				j.Finished.UTC().Format(time.RFC3339), j.ID, j.RunID)
			dirty[name] = true
			continue
		}
		submit = append(submit, name)
	}
	o.Batch = b
	if len(submit) == 0 {
		return nil
	}
	lim := store.RunLimits{MaxParallel: sp.MaxParallel, PerRack: sp.PerRack}
	if budget > 0 {
		lim.MaxFailures = max(budget-failed, 1)
	}
	run, res, err := s.cfg.Submit(ctx, SubmitRequest{Spec: sp, Occurrence: *o, Batch: b, Nodes: submit, Limits: lim})
	if err != nil {
		return err
	}
	o.RunID = run.ID
	for i, r := range res {
		if i >= len(submit) {
			break
		}
		n := &nodes[idx[submit[i]]]
		n.JobID, n.RunID = r.Job.ID, r.Job.RunID
		switch {
		case r.Job.ID == 0:
			n.State, n.Reason = store.WindowNodeNotStarted, "not started: nothing was submitted for the node"
		default:
			n.State = store.WindowNodeState(r.Job.State)
			if r.Attached && !r.Resumed {
				n.Reason = fmt.Sprintf("worked once: attached to job %d of run %d already under way", r.Job.ID, r.Job.RunID)
			}
			if !r.Job.State.Active() {
				n.Reason = r.Job.Reason
			}
		}
		dirty[n.Node] = true
	}
	s.log.Info("window batch admitted", "window", o.Window, "occurrence", o.ID, "batch", b, "of", o.Batches,
		"nodes", len(submit), "run", run.ID)
	return nil
}
