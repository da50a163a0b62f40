package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/reprov/reprov/agent/fleet"
	"github.com/reprov/reprov/agent/inband"
	"github.com/reprov/reprov/agent/inband/sshx"
	"github.com/reprov/reprov/agent/inband/steps"
	"github.com/reprov/reprov/agent/landing"
	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/inventory"
	"github.com/reprov/reprov/playbooks"
)

// Step names of the node step record (store.Step.Name).
const (
	StepPrecheck    = "precheck"
	StepPreHooks    = "pre_hooks"
	StepOOBBoot     = "oob_boot"
	StepPower       = "power"
	StepInband      = "inband"
	StepWaitLanding = "wait_landing"
	StepPostHooks   = "post_hooks"
	// StepInterrupted marks where Ctrl-C stopped the job.
	StepInterrupted = "interrupted"
	// StepHandedOver marks where a stopping controller handed the job
	// back to the shared queue.
	StepHandedOver = "handed_over"
)

// Verdicts of a wait for landing.
const (
	VerdictLanded   = "landed"
	VerdictTimeout  = "timeout"
	VerdictOldOS    = "old-os"
	VerdictNoReboot = "no-reboot"
	// VerdictPowerNotDone: a power action whose answer was lost did not
	// happen (the old OS still runs under the same boot id).
	VerdictPowerNotDone = "power-not-done"
)

// maxPowerResends bounds how often a power action seen not to have
// happened is sent again in one job.
const maxPowerResends = 2

// ModelLabel is the inventory label that names a node's model; learned
// quirks are proposed for every node with the same value.
const ModelLabel = "model"

// kick is a path carried out: the node was made to boot (power action, or
// in-band reboot) at a time, and a landing is awaited.
type kick struct {
	path playbooks.Path
	at   time.Time
	// bootID is the running OS's boot id before the kick ("" unknown).
	bootID  string
	verdict *verdict
	// unwatched: the wait for this kick was cut by Ctrl-C (the job was
	// not active, so the landing endpoint sent the node to its disk): what
	// the node did meanwhile was not seen.
	unwatched bool
	// cut: the wait's controller died; whether a landing endpoint answered
	// the node meanwhile decides whether it was watched.
	cut bool
	// watched says how a cut wait was judged (recorded in its evidence).
	watched string
	// unknown: the power action's answer was lost (bmc.ErrPowerOutcomeUnknown).
	unknown bool
}

// verdict is how a wait for landing ended.
type verdict struct {
	kind     string
	evidence waitEvidence
}

// nodeRun is one worker's pass over one node job.
type nodeRun struct {
	e *Engine
	w *Worker
	// leaseUntil is when the lease this worker last renewed runs out
	// (unix ns; the renewal loop and fence update it).
	leaseUntil atomic.Int64
	n          inventory.Node
	pb         *playbooks.Playbook
	job        store.NodeJob
	owner      string
	log        *slog.Logger
	rep        *NodeReport

	// what precheck found
	bmcOK     bool
	sshWhy    string // why SSH could not be used at precheck ("" if it could)
	baseline  string // the running OS's boot id at precheck
	inbandQ   bool   // a learned quirk puts in-band first
	preRan    bool
	preOK     bool
	ran       map[playbooks.Path]bool
	cannot    map[playbooks.Path]string
	lastPath  playbooks.Path
	lastStep  string
	escalated bool
	kicked    bool // a path was carried out: the node was made to boot
	// resends counts power actions sent again after one whose answer was
	// lost was seen not to have happened; resend says why (audited).
	resends int
	resend  string
}

// HoldUntilKey is the evidence key of an interrupted job whose node was
// already made to boot: until then the landing endpoint keeps the node in
// its network boot rather than sending it to its disk (the resumed job
// then sees it land).
const HoldUntilKey = landing.HoldUntilKey

// work runs the node job's state machine and records its end — or, when
// the worker stops, hands the job back to the shared queue.
func (e *Engine) work(w *Worker, job store.NodeJob, owner string, n inventory.Node) {
	rep := &NodeReport{Node: n.Name, JobID: job.ID, RunID: job.RunID, Resumed: job.Generation > 0}
	r := &nodeRun{e: e, w: w, n: n, job: job, owner: owner, rep: rep,
		log: e.log.With("node", n.Name, "job", job.ID), ran: map[playbooks.Path]bool{}, cannot: map[playbooks.Path]string{}}
	r.leaseUntil.Store(job.LeaseUntil.UnixNano())
	ctx := w.ctx
	pb, err := e.cfg.Playbooks.Get(n.Playbook)
	if err != nil {
		r.finish(ctx, ctx, fail(ReasonInternal, "", fmt.Errorf("this controller (%s) does not know the node's playbook: %w", w.id, err), nil), func() {})
		return
	}
	r.pb = pb
	rep.Playbook = pb.Name

	// The node's context ends when the worker stops (handover), on the
	// node timeout, and when the lease is lost.
	nctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if e.cfg.NodeTimeout > 0 {
		var c2 context.CancelFunc
		nctx, c2 = context.WithTimeoutCause(nctx, e.cfg.NodeTimeout, errNodeTimeout)
		defer c2()
	}
	// The lease is renewed until the job's end is recorded (post-hooks
	// run before it, and a slow store is waited for while it holds).
	stopRenew := sync.OnceFunc(r.renewLease(nctx, cancel))
	defer stopRenew()
	runErr := r.run(nctx)
	r.finish(ctx, nctx, runErr, stopRenew)
}

// renewLease renews the job's lease every third of its TTL until stopped;
// a lost lease cancels the node's context at once.
func (r *nodeRun) renewLease(ctx context.Context, cancel context.CancelCauseFunc) (stop func()) {
	done := make(chan struct{})
	stopped := make(chan struct{})
	ttl := r.e.cfg.LeaseTTL
	go func() {
		defer close(stopped)
		t := time.NewTicker(ttl / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			// A loaded store is waited for while the lease still holds
			// (at least a third of it): giving up sooner only lets the
			// lease run out.
			asked := time.Now()
			rctx, c := context.WithTimeout(context.WithoutCancel(ctx), max(ttl/3, time.Until(r.leaseEnd())))
			err := r.e.cfg.Store.RenewLease(rctx, r.job.ID, r.owner, ttl)
			c()
			if err == nil {
				r.leaseUntil.Store(asked.Add(ttl).UnixNano())
			}
			if errors.Is(err, store.ErrLeaseLost) || errors.Is(err, store.ErrNotActive) {
				r.log.Warn("lease lost: stopping work on the node", "err", err)
				cancel(errLeaseLost)
				return
			}
			if err != nil {
				r.log.Warn("lease renewal failed; retrying", "err", err)
			}
		}
	}()
	return func() { close(done); <-stopped }
}

// run is the state machine. It returns nil when the node landed.
func (r *nodeRun) run(ctx context.Context) error {
	if err := r.settle(ctx); err != nil {
		return err
	}
	j, err := r.readJournal(ctx)
	if err != nil {
		return err
	}
	if job, err := r.e.cfg.Store.NodeJob(ctx, r.job.ID); err == nil && job.LandingSource.Proof() {
		r.rep.Landing = job.LandingSource
		if k := j.lastKick(); k != nil {
			// The path of a kick settled by looking is the job's path.
			r.lastPath = k.path
			r.recordPath(ctx, k.path)
		}
		return nil
	}
	var (
		k *kick
		v *verdict
	)
	last := j.lastKick()
	if last != nil && last.verdict == nil && last.cut {
		// The controller waiting for this kick died. If a landing endpoint
		// answered on the shared store all the while, the node's network
		// boot was answered as it should have been: the wait goes on (and
		// an old OS answering means the board ignored the override).
		// Otherwise nobody answered it: treat it as unwatched.
		last.watched, last.unwatched = r.coverage(ctx, last.at)
	}
	if last != nil && last.verdict == nil && last.unwatched && r.staleKick(ctx, last) {
		// The wait for this node was cut (Ctrl-C, or its controller died),
		// and the node has booted its OS since, with nobody answering its
		// network boot as it should have been. What that kick would have
		// shown is lost: start a fresh attempt, learning nothing from it.
		r.log.Info("resumed: the node booted its OS while nobody watched it; starting a fresh attempt")
		r.ran, r.cannot, r.escalated, r.rep.Escalated = map[playbooks.Path]bool{}, map[playbooks.Path]string{}, false, false
		last = nil
	}
	if last != nil {
		// Resume after a kick: its wait (or its verdict) decides.
		r.kicked = true
		k = last
		r.lastPath = k.path
		r.recordPath(ctx, k.path)
		if k.verdict != nil {
			v = k.verdict
		} else {
			if v, err = r.wait(ctx, k); err != nil {
				return err
			}
		}
	} else {
		if err := r.precheck(ctx); err != nil {
			return err
		}
		if !r.preOK {
			if err := r.preHooks(ctx); err != nil {
				return err
			}
		}
	}

	var forced playbooks.Path
	for {
		if v == nil {
			path := r.nextPath(forced)
			forced = ""
			if path == "" {
				return r.noPath()
			}
			r.lastPath = path
			k, err = r.doPath(ctx, path)
			var np *notPossible
			if errors.As(err, &np) {
				r.cannot[path] = np.Error()
				r.log.Info("path could not be carried out; trying the next", "path", path, "why", np.Error())
				continue
			}
			if err != nil {
				return err
			}
			r.ran[path] = true
			r.kicked = true
			r.recordPath(ctx, path)
			if v, err = r.wait(ctx, k); err != nil {
				return err
			}
		}
		switch v.kind {
		case VerdictLanded:
			return nil
		case VerdictTimeout:
			return fail(ReasonDidNotLand, StepWaitLanding,
				fmt.Errorf("no landing within %s of the %s path", r.pb.Timeouts.WaitLanding, k.path), evidenceOf(&v.evidence))
		case VerdictPowerNotDone:
			if r.resends >= maxPowerResends {
				return fail(ReasonDidNotLand, StepWaitLanding,
					fmt.Errorf("the power action's answer was lost %d times and the node never rebooted", r.resends+1), evidenceOf(&v.evidence))
			}
			r.resends++
			r.resend = fmt.Sprintf("the answer to the power action was lost, and the node's OS still ran with boot id %s %s later: it did not happen", k.bootID, r.pb.Timeouts.Reboot)
			r.log.Info("a power action whose answer was lost did not happen: sending it again", "resend", r.resends)
			delete(r.ran, playbooks.PathOOB)
			forced, v = playbooks.PathOOB, nil
			continue
		case VerdictNoReboot:
			return fail(ReasonNoReboot, StepWaitLanding,
				fmt.Errorf("the running OS still answers with boot id %s %s after the in-band reboot", k.bootID, r.pb.Timeouts.Reboot), evidenceOf(&v.evidence))
		case VerdictOldOS:
			if k.path == playbooks.PathInband {
				return fail(ReasonOldOSAfterInband, StepWaitLanding,
					errors.New("the node booted its old OS again after the in-band step"), evidenceOf(&v.evidence))
			}
			r.learnQuirk(ctx, v)
			if v.evidence.BootIDNow != "" {
				// The old OS is up again under a new boot id: the baseline of
				// whatever comes next (the in-band unit's intent and its wait).
				r.baseline = v.evidence.BootIDNow
			}
			if r.pb.Escalate && r.pb.Uses(playbooks.PathInband) && !r.ran[playbooks.PathInband] {
				r.log.Info("the board ignored the boot override: escalating to the in-band path")
				r.escalated, r.rep.Escalated = true, true
				forced, v = playbooks.PathInband, nil
				continue
			}
			why := "the playbook does not escalate"
			if r.ran[playbooks.PathInband] {
				why = "the in-band path already ran"
			} else if !r.pb.Uses(playbooks.PathInband) {
				why = "the playbook has no in-band path"
			}
			return fail(ReasonIgnoredOverride, StepWaitLanding,
				fmt.Errorf("the old OS answered SSH again with a new boot id after the out-of-band attempt (%s)", why), evidenceOf(&v.evidence))
		}
		return fail(ReasonInternal, StepWaitLanding, fmt.Errorf("unknown verdict %q", v.kind), nil)
	}
}

// recordPath records on the job the path the node is now on.
func (r *nodeRun) recordPath(ctx context.Context, p playbooks.Path) {
	if err := r.untilLease(context.WithoutCancel(ctx), "record the path", func(ctx context.Context) error {
		return r.e.cfg.Store.SetPath(ctx, r.job.ID, string(p))
	}); err != nil {
		r.log.Warn("path not recorded on the job", "path", p, "err", err)
	}
}

// staleKick reports whether the node's OS answers with another boot id
// than before the kick.
func (r *nodeRun) staleKick(ctx context.Context, k *kick) bool {
	if r.n.SSH.Address == "" || k.bootID == "" {
		return false
	}
	id, err := r.probeBootID(ctx)
	return err == nil && id != "" && id != k.bootID
}

// order is the playbook's path order, in-band first when a learned quirk
// says the board ignores the out-of-band override.
func (r *nodeRun) order() []playbooks.Path {
	paths := slices.Clone(r.pb.Paths)
	if r.inbandQ && r.pb.Uses(playbooks.PathInband) {
		paths = slices.DeleteFunc(paths, func(p playbooks.Path) bool { return p == playbooks.PathInband })
		paths = append([]playbooks.Path{playbooks.PathInband}, paths...)
	}
	return paths
}

// nextPath is the next path to carry out: the forced one (escalation),
// else the first in order that neither ran nor could not be carried out.
func (r *nodeRun) nextPath(forced playbooks.Path) playbooks.Path {
	if forced != "" && !r.ran[forced] {
		return forced
	}
	for _, p := range r.order() {
		if !r.ran[p] && r.cannot[p] == "" {
			return p
		}
	}
	return ""
}

func (r *nodeRun) noPath() error {
	ev := map[string]any{}
	var parts []string
	for _, p := range r.order() {
		switch {
		case r.cannot[p] != "":
			ev[string(p)] = r.cannot[p]
			parts = append(parts, string(p)+": "+r.cannot[p])
		case r.ran[p]:
			ev[string(p)] = "already carried out"
		}
	}
	return fail(ReasonNoPath, r.lastStep, errors.New(strings.Join(parts, "; ")), ev)
}

func (r *nodeRun) doPath(ctx context.Context, p playbooks.Path) (*kick, error) {
	switch p {
	case playbooks.PathOOB:
		return r.oob(ctx)
	case playbooks.PathInband:
		return r.inband(ctx)
	}
	return nil, cannot("unknown path %q", p)
}

// stopErr says why the node's context ended.
func (r *nodeRun) stopErr(ctx context.Context) error {
	switch c := context.Cause(ctx); {
	case errors.Is(c, errNodeTimeout), errors.Is(c, errLeaseLost), errors.Is(c, errHandover):
		return c
	}
	return errInterrupted
}

// boundary is checked before every step: the run's Ctrl-C, the node
// timeout, a lost lease, an operator's cancel.
func (r *nodeRun) boundary(ctx context.Context) error {
	if ctx.Err() != nil {
		return r.stopErr(ctx)
	}
	var stop store.StopRequest
	err := r.untilLease(ctx, "is a stop requested", func(ctx context.Context) error {
		var err error
		stop, err = r.e.cfg.Store.StopRequested(ctx, r.job.ID)
		return err
	})
	if err != nil {
		if ctx.Err() != nil {
			return r.stopErr(ctx)
		}
		return fail(ReasonStore, r.lastStep, err, nil)
	}
	return stopError(stop)
}

// stopError is the stop cause of a stop request (nil: go on).
func stopError(stop store.StopRequest) error {
	switch stop {
	case store.StopCancelled:
		return errCancelled
	case store.StopRun:
		return errInterrupted
	case store.StopInactive:
		return errLeaseLost
	}
	return nil
}

// actCtx is the context of an act: it does not end with Ctrl-C (an act
// in flight finishes; the next boundary stops), only with its timeout.
func actCtx(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), timeout)
}

// step records the typed intent, runs act, and records its typed outcome
// (the step table in steptable.go declares both). act returns the outcome
// and its result ("" derives it from the error: ok or failed).
func (r *nodeRun) step(ctx context.Context, name string, intent any, act func() (outcome, string, error)) error {
	if err := r.boundary(ctx); err != nil {
		return err
	}
	if spec, _ := specOf(name); spec.destructive {
		// Fencing: no destructive intent from a controller that lost its
		// lease (the store also refuses intents past the lease's expiry).
		if err := r.fence(ctx); err != nil {
			return err
		}
	}
	var in store.Step
	err := r.untilLease(ctx, "record the intent of "+name, func(ctx context.Context) error {
		var err error
		in, err = r.e.cfg.Store.RecordStep(ctx, store.Step{JobID: r.job.ID, Name: name, Phase: store.PhaseIntent,
			Detail: mustJSON(intent), Owner: r.owner})
		return err
	})
	switch {
	case errors.Is(err, store.ErrLeaseLost), errors.Is(err, store.ErrNotActive):
		return errLeaseLost
	case err != nil:
		if ctx.Err() != nil {
			return r.stopErr(ctx)
		}
		return fail(ReasonStore, name, err, nil)
	}
	r.lastStep = name
	r.rep.Step = name
	r.e.emit(Event{Node: r.n.Name, JobID: r.job.ID, RunID: r.job.RunID, Step: name, Phase: string(store.PhaseIntent)})
	if r.crash(name, "intent") {
		return errCrashed
	}

	out, result, actErr := act()
	if r.crash(name, "act") {
		return errCrashed
	}
	b := out.base()
	b.V = recordVersion
	if result == "" {
		result = store.ResultOK
		if actErr != nil {
			result = store.ResultFailed
		}
	}
	note := ""
	if actErr != nil {
		b.Error = actErr.Error()
		note = actErr.Error()
		var np *notPossible
		if errors.As(actErr, &np) {
			b.NotPossible = true
		}
		if errors.Is(actErr, errInterrupted) || errors.Is(actErr, errCancelled) || errors.Is(actErr, errLeaseLost) ||
			errors.Is(actErr, errNodeTimeout) || errors.Is(actErr, errHandover) {
			b.Stopped = actErr.Error()
		}
	}
	if w, ok := out.(*waitOutcome); ok && w.Verdict != "" {
		note = w.Verdict
	}
	// The act is done: its outcome is recorded whatever the state of
	// ctx, waiting for a slow store while the lease holds.
	err = r.untilLease(context.WithoutCancel(ctx), "record the outcome of "+name, func(ctx context.Context) error {
		_, err := r.e.cfg.Store.RecordStep(ctx, store.Step{Phase: store.PhaseOutcome, IntentID: in.ID, Result: result,
			Detail: mustJSON(out), Owner: r.owner})
		return err
	})
	if err != nil {
		// The act's result stands (it is never repeated); the intent stays
		// unsettled for the next job to settle by looking. The node stops
		// here: a controller that cannot record does not go on acting.
		r.log.Error("outcome not recorded", "step", name, "err", err)
		if actErr == nil {
			actErr = fail(ReasonStore, name, fmt.Errorf("%s done, but its outcome was not recorded: %w", name, err), nil)
		}
	}
	r.e.emit(Event{Node: r.n.Name, JobID: r.job.ID, RunID: r.job.RunID, Step: name, Phase: string(store.PhaseOutcome), Result: result, Note: note})
	r.e.obs.Step(name, result, time.Since(in.Time))
	return actErr
}

// errCrashed: a test's crash point was reached (see Config.crashAt).
var errCrashed = errors.New("crashed (test crash point)")

// crash reports whether a test asked the worker to stop dead here.
func (r *nodeRun) crash(step, phase string) bool {
	return r.e.cfg.crashAt != nil && r.e.cfg.crashAt(step, phase)
}

// mark records a step that is a fact rather than an act (intent and
// outcome at once), whatever the state of ctx.
func (r *nodeRun) mark(ctx context.Context, name string, rec markRecord) {
	mctx := context.WithoutCancel(ctx)
	rec.V = recordVersion
	var in store.Step
	err := r.untilLease(mctx, "record "+name, func(ctx context.Context) error {
		var err error
		in, err = r.e.cfg.Store.RecordStep(ctx, store.Step{JobID: r.job.ID, Name: name, Phase: store.PhaseIntent, Owner: r.owner, Detail: mustJSON(rec)})
		return err
	})
	if err == nil {
		err = r.untilLease(mctx, "record "+name, func(ctx context.Context) error {
			_, err := r.e.cfg.Store.RecordStep(ctx, store.Step{Phase: store.PhaseOutcome, IntentID: in.ID, Result: store.ResultOK,
				Detail: mustJSON(&markOutcome{outcomeBase{V: recordVersion}}), Owner: r.owner})
			return err
		})
	}
	if err != nil {
		r.log.Warn("step not recorded", "step", name, "err", err)
	}
}

// coverage judges a wait whose controller died: watched when a landing
// endpoint answered on the shared store from the kick until now.
func (r *nodeRun) coverage(ctx context.Context, kickAt time.Time) (watched string, unwatched bool) {
	if r.e.cfg.EndpointCoverage == nil {
		return "unknown: no endpoint record; treated as unwatched", true
	}
	ok, err := r.e.cfg.EndpointCoverage(ctx, kickAt, time.Now())
	switch {
	case err != nil:
		return "unknown: " + err.Error() + "; treated as unwatched", true
	case ok:
		return "a landing endpoint answered all the while", false
	}
	return "no landing endpoint answered for part of the time", true
}

// precheck checks, read-only, everything the node's paths need: the BMC
// answers with the credentials and a known power state; SSH answers and
// the running OS is the inventory's node (boot id recorded). It changes
// nothing.
func (r *nodeRun) precheck(ctx context.Context) error {
	// What was learned about the node and its model does not change during
	// the job: read once, before the precheck's own time starts, waiting
	// for a slow store while the lease holds. A store that cannot say
	// stops the node (its path order depends on it): never a guess.
	var quirks, modelQuirks []store.Quirk
	err := r.untilLease(ctx, "read the node's quirks", func(ctx context.Context) error {
		var err error
		quirks, modelQuirks, err = r.e.cfg.Store.QuirksOf(ctx, r.n.Name, r.n.Labels[ModelLabel])
		return err
	})
	if err != nil {
		if ctx.Err() != nil {
			return r.stopErr(ctx)
		}
		return fail(ReasonStore, StepPrecheck, err, nil)
	}
	intent := &precheckIntent{V: recordVersion, Playbook: r.pb.Name, Paths: r.pb.Paths}
	return r.step(ctx, StepPrecheck, intent, func() (outcome, string, error) {
		actx, cancel := context.WithTimeout(ctx, r.pb.Timeouts.Precheck)
		defer cancel()
		d := &precheckOutcome{}
		r.cannot = map[playbooks.Path]string{}
		if r.n.BMC.Address == "" {
			d.BMC = "none in the inventory"
			r.cannot[playbooks.PathOOB] = "no BMC address in the inventory"
		}
		var c bmc.Client
		defer func() {
			if c != nil {
				r.closeBMC(ctx, c)
			}
		}()
		if r.n.BMC.Address != "" {
			// Reads are safe to repeat: a BMC that stops answering (a
			// lossy link, a reboot) gets new sessions within the
			// precheck's timeout before it is called unreachable.
			var ps bmc.PowerState
			err := r.withBMC(actx, &c, func(ctx context.Context, c bmc.Client) error {
				var err error
				ps, err = c.PowerState(ctx)
				return err
			})
			if err != nil {
				return d, "", bmcFailure(err)
			}
			if ps != bmc.PowerOn && ps != bmc.PowerOff && !ps.Transitional() {
				return d, "", fail(ReasonPowerUnknown, StepPrecheck, fmt.Errorf("the BMC reports power %q", ps), nil)
			}
			d.BMC = c.Protocol()
			d.Power = ps
			r.bmcOK = true
		}

		if r.n.SSH.Address == "" {
			d.SSH = "none in the inventory"
			r.sshWhy = "no SSH address in the inventory"
			r.cannot[playbooks.PathInband] = r.sshWhy
			if !r.pb.Uses(playbooks.PathOOB) {
				return d, "", fail(ReasonNoSSH, StepPrecheck, errors.New("the playbook's only path is in-band and the node has no ssh.address"), nil)
			}
		} else if err := r.precheckSSH(actx, d); err != nil {
			return d, "", err
		}
		if r.bmcOK {
			if err := r.precheckBMCIdentity(actx, &c, d); err != nil {
				return d, "", err
			}
		}

		for _, q := range quirks {
			if q.Quirk == store.QuirkIgnoresOOBPXE {
				r.inbandQ = true
				d.Quirk = q.Quirk + " (learned in run " + strconv.FormatInt(q.RunID, 10) + "): in-band first"
			}
		}
		if model := r.n.Labels[ModelLabel]; model != "" && !r.inbandQ {
			for _, q := range modelQuirks {
				if q.Quirk == store.QuirkIgnoresOOBPXE {
					r.rep.Proposal = fmt.Sprintf("model %s ignores the out-of-band PXE override (learned on %s): consider playbook hp-dl360-g7 for it", model, q.Node)
					d.Proposal = r.rep.Proposal
					break
				}
			}
		}
		d.Order = r.order()
		if r.nextPath("") == "" {
			return d, "", r.noPath()
		}
		return d, "", nil
	})
}

// precheckBMCIdentity compares the machine behind the BMC with the
// inventory before any power action: the system GUID whenever the
// inventory has one, and the serial when the running OS did not prove
// the node's identity over SSH (then the BMC is the only witness). A fact
// the BMC cannot tell is skipped; a mismatch stops the node untouched.
func (r *nodeRun) precheckBMCIdentity(ctx context.Context, c *bmc.Client, d *precheckOutcome) error {
	want := bmc.SystemID{GUID: r.n.GUID}
	if d.Identity == "" {
		want.Serial = r.n.Serial
	}
	if want.GUID == "" && want.Serial == "" {
		return nil
	}
	var got bmc.SystemID
	err := r.withBMC(ctx, c, func(ctx context.Context, c bmc.Client) error {
		var err error
		got, err = c.SystemIdentity(ctx)
		return err
	})
	if err != nil {
		if errors.Is(err, bmc.ErrUnsupported) {
			d.BMCIdentity = "not readable: " + err.Error()
			return nil
		}
		return bmcFailure(err)
	}
	matched, err := bmc.MatchIdentity(want, got)
	if err != nil {
		return fail(ReasonBMCIdentity, StepPrecheck, err, map[string]any{"bmc_guid": got.GUID, "bmc_serial": got.Serial})
	}
	if len(matched) == 0 {
		d.BMCIdentity = "nothing comparable"
	} else {
		d.BMCIdentity = "matched " + strings.Join(matched, ", ")
	}
	return nil
}

// precheckSSH connects and identifies the running OS: a mismatch stops the
// node before any BMC write.
func (r *nodeRun) precheckSSH(ctx context.Context, d *precheckOutcome) error {
	conn, err := r.e.cfg.DialSSH(ctx, r.n)
	if err != nil && !sshx.Unreachable(err) {
		// Something answered, or the configuration is wrong: a changed
		// host key, refused credentials, a dropped handshake. That is
		// never "the node is down": stop here, touching nothing.
		d.SSH = "refused: " + err.Error()
		return sshFailure(err)
	}
	if err != nil {
		d.SSH = "unreachable: " + err.Error()
		r.sshWhy = "SSH unreachable at precheck: " + err.Error()
		r.cannot[playbooks.PathInband] = r.sshWhy
		if !r.pb.Uses(playbooks.PathOOB) || !r.bmcOK {
			return fail(ReasonSSHUnreachable, StepPrecheck, err, nil)
		}
		return nil
	}
	defer conn.Close()
	sess, err := r.session(conn)
	if err != nil {
		return fail(ReasonInternal, StepPrecheck, err, nil)
	}
	defer r.closeSession(ctx, sess)
	rep, err := sess.Identify(ctx)
	if err != nil {
		if f := identityFailure(err, rep); f != nil {
			return f
		}
		return fail(ReasonIdentifyFailed, StepPrecheck, err, nil)
	}
	d.SSH = "ok"
	d.BootID = rep.Identity.BootID
	d.Firmware = rep.Identity.Firmware
	d.Identity = identitySummary(rep.Check)
	r.baseline = rep.Identity.BootID
	return nil
}

func identitySummary(c *steps.IdentityCheck) string {
	if c == nil {
		return ""
	}
	if c.OptedOut {
		return "opted out (skip_identity_check)"
	}
	var parts []string
	for _, f := range c.Facts {
		parts = append(parts, f.Fact+" "+f.Result)
	}
	return strings.Join(parts, ", ")
}

// identityFailure turns an identity interlock error into the node's
// failure; nil when err is something else.
func identityFailure(err error, rep *inband.IdentifyReport) *Failure {
	ev := map[string]any{}
	if rep != nil && rep.Check != nil {
		ev["check"] = rep.Check
	}
	switch {
	case errors.Is(err, steps.ErrIdentityMismatch):
		return fail(ReasonIdentityMismatch, StepPrecheck, err, ev)
	case errors.Is(err, steps.ErrNothingToCompare):
		return fail(ReasonNothingToCompare, StepPrecheck, err, ev)
	}
	return nil
}

// sshFailure is the precheck failure of an SSH error that is not "nothing
// answers" (sshx.Unreachable).
func sshFailure(err error) *Failure {
	switch {
	case errors.Is(err, sshx.ErrHostKeyChanged):
		return fail(ReasonSSHHostKeyChanged, StepPrecheck, err, nil)
	case errors.Is(err, sshx.ErrHostKey):
		return fail(ReasonSSHHostKey, StepPrecheck, err, nil)
	case errors.Is(err, sshx.ErrAuth), errors.Is(err, sshx.ErrNoCredentials):
		return fail(ReasonSSHAuth, StepPrecheck, err, nil)
	}
	return fail(ReasonSSHError, StepPrecheck, err, nil)
}

// bmcFailure is the precheck failure of a BMC error.
func bmcFailure(err error) *Failure {
	switch {
	case errors.Is(err, fleet.ErrBMCConfig):
		return fail(ReasonBMCConfig, StepPrecheck, err, nil)
	case errors.Is(err, inventory.ErrSecret):
		return fail(ReasonCredential, StepPrecheck, err, nil)
	case errors.Is(err, bmc.ErrAuthentication):
		return fail(ReasonBMCAuth, StepPrecheck, err, nil)
	}
	return fail(ReasonBMCUnreachable, StepPrecheck, err, nil)
}

func (r *nodeRun) closeBMC(ctx context.Context, c bmc.Client) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := c.Close(cctx); err != nil {
		r.log.Debug("close BMC session", "err", err)
	}
}

// session makes the in-band session of the node over conn.
func (r *nodeRun) session(conn SSHConn) (*inband.Session, error) {
	return inband.NewSession(r.n, conn, inband.Config{
		StateDir:    r.e.cfg.StateDir,
		Run:         runTag(r.job.RunID),
		Audit:       r.e.cfg.Audit,
		Logger:      r.e.log,
		AgentBinary: r.e.cfg.AgentBinary,
		AgentFiles:  r.e.agentFiles,
		Layout:      r.e.layout(r.n),
		RebootDelay: r.e.cfg.RebootDelay,
		UnitTimeout: r.pb.Timeouts.Inband,
		Wipe:        wipePolicy(r.pb),
		Job:         r.job.ID,
		Attempt:     r.attempt(),
		// No Fence inside the session: BeforeUnit fences right before the
		// wipe, and the unit wipe → next-boot → reboot then runs whole.
		BeforeUnit: func(ctx context.Context) error {
			if err := r.boundary(ctx); err != nil {
				return err
			}
			if err := r.fence(ctx); err != nil {
				return err
			}
			return r.armLanding(ctx)
		},
	})
}

// wipePolicy is the playbook's wipe for the in-band session.
func wipePolicy(pb *playbooks.Playbook) inband.WipePolicy {
	return inband.WipePolicy{BootSector: string(pb.Wipe.BootSector), UEFI: string(pb.Wipe.UEFI)}
}

func (r *nodeRun) closeSession(ctx context.Context, s *inband.Session) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	if err := s.Close(cctx); err != nil {
		r.log.Debug("close in-band session", "err", err)
	}
}

// attempt names this pass over the node job (job and generation): its
// saved boot sectors go to a file of their own.
func (r *nodeRun) attempt() string {
	return fmt.Sprintf("job%d-gen%d", r.job.ID, r.job.Generation)
}

// runTag is the in-band run name of a store run: saved boot sectors live
// at inband.SavedPath(stateDir, node, runTag(run)).
func runTag(runID int64) string { return "run-" + strconv.FormatInt(runID, 10) }

// RunTag is the name under which a run's saved boot sectors are kept
// (inband.SavedPath(stateDir, node, RunTag(runID))).
func RunTag(runID int64) string { return runTag(runID) }

// preHooks runs the playbook's pre-hooks, in order, after the prechecks
// and before the first change; the first that fails stops the node.
func (r *nodeRun) preHooks(ctx context.Context) error {
	if len(r.pb.PreHooks) == 0 {
		r.preOK = true
		return nil
	}
	r.preRan = true
	return r.step(ctx, StepPreHooks, &hooksIntent{V: recordVersion, Hooks: hookNames(r.pb.PreHooks)}, func() (outcome, string, error) {
		env := r.hookEnv()
		out := &hooksOutcome{}
		for _, h := range r.pb.PreHooks {
			res, err := playbooks.RunHook(context.WithoutCancel(ctx), h, env, r.log)
			out.Hooks = append(out.Hooks, res)
			if err != nil {
				return out, "", fail(ReasonPreHook, StepPreHooks, err, nil)
			}
		}
		r.preOK = true
		return out, "", nil
	})
}

// postHooks runs the post-hooks of a node whose pre-hooks ran; a failing
// post-hook is recorded, not fatal.
func (r *nodeRun) postHooks(ctx context.Context, result, reason string) {
	if !r.preRan || len(r.pb.PostHooks) == 0 {
		return
	}
	env := r.hookEnv()
	env.Result, env.Reason = result, reason
	// Post-hooks run even after Ctrl-C of the run: they undo pre-hooks.
	pctx := context.WithoutCancel(ctx)
	_ = r.step(pctx, StepPostHooks, &hooksIntent{V: recordVersion, Hooks: hookNames(r.pb.PostHooks), Result: result}, func() (outcome, string, error) {
		out := &hooksOutcome{}
		for _, h := range r.pb.PostHooks {
			res, err := playbooks.RunHook(pctx, h, env, r.log)
			out.Hooks = append(out.Hooks, res)
			if err != nil {
				out.Warnings = append(out.Warnings, err.Error())
			}
		}
		if len(out.Warnings) > 0 {
			return out, store.ResultFailed, nil
		}
		return out, "", nil
	})
}

func (r *nodeRun) hookEnv() playbooks.HookEnv {
	env := playbooks.NodeEnv(&r.n, runTag(r.job.RunID))
	env.Withhold = append(env.Withhold, playbooks.SecretEnvNames(r.e.cfg.Inventory...)...)
	return env
}

func hookNames(hs []playbooks.Hook) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.Name
	}
	return out
}

// learnQuirk records that the board ignored the out-of-band override, for
// the node (the next run goes in-band first) and its model (proposed).
func (r *nodeRun) learnQuirk(ctx context.Context, v *verdict) {
	if v.evidence.BootIDBefore == "" {
		// Without a baseline boot id the evidence is too weak to learn from.
		return
	}
	q := store.Quirk{Node: r.n.Name, Model: r.n.Labels[ModelLabel], Quirk: store.QuirkIgnoresOOBPXE,
		Evidence: mustJSON(&v.evidence), RunID: r.job.RunID}
	if err := r.untilLease(context.WithoutCancel(ctx), "record a learned quirk", func(ctx context.Context) error {
		return r.e.cfg.Store.LearnQuirk(ctx, q)
	}); err != nil {
		r.log.Warn("quirk not recorded", "quirk", q.Quirk, "err", err)
		return
	}
	r.rep.Learned = append(r.rep.Learned, store.QuirkIgnoresOOBPXE)
	r.log.Info("learned: the board ignores the out-of-band PXE override; next time in-band first", "model", q.Model)
}

// finish records the job's end: landed, failed, cancelled or interrupted
// with its reason and evidence (what the run's report is built from); a
// node stopped by its worker's stop is handed back to the shared queue
// instead, and a node whose lease was lost is left to its new owner.
// stopRenew stops the lease's renewal: right before the end is recorded.
func (r *nodeRun) finish(ctx, nctx context.Context, runErr error, stopRenew func()) {
	rep := r.rep
	rep.Path = string(r.lastPath)
	f := store.Finish{Owner: r.owner}
	var holdUntil time.Time
	var failure *Failure
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	switch {
	case runErr == nil:
		f.State = store.JobLanded
		r.postHooks(ctx, "landed", "")
	case errors.Is(runErr, errLeaseLost):
		stopRenew()
		r.log.Warn("lease lost: another controller continues the node's job")
		return
	case errors.Is(runErr, errCrashed):
		stopRenew()
		r.log.Warn("stopped dead at a test crash point: nothing more recorded")
		return
	case errors.Is(runErr, errHandover):
		// Hand over at this step boundary: a new generation on the shared
		// queue, continued by another controller from the step record.
		r.mark(sctx, StepHandedOver, markRecord{AtStep: r.lastStep, Controller: r.w.id})
		stopRenew()
		if j, err := r.w.q.Release(sctx, r.job.ID, r.owner); err != nil {
			r.log.Warn("the job could not be handed over; its lease expires and another controller takes it over", "err", err)
		} else {
			r.log.Info("handed the node's job over to the shared queue", "generation", j.Generation, "at_step", r.lastStep)
		}
		return
	case errors.Is(runErr, errCancelled):
		f.State, f.Reason = store.JobCancelled, ReasonCancelled
		r.postHooks(ctx, "failed", ReasonCancelled)
	case errors.Is(runErr, errNodeTimeout) || (errors.Is(runErr, errInterrupted) && errors.Is(context.Cause(nctx), errNodeTimeout)):
		failure = fail(ReasonNodeTimeout, r.lastStep, fmt.Errorf("the node did not finish within %s (at step %s)", r.e.cfg.NodeTimeout, r.lastStep), nil)
	case errors.Is(runErr, errInterrupted):
		// Recorded in the step record: while the job is not active the
		// landing endpoint sends the node to its disk, which a resumed
		// wait must not take for an ignored override.
		r.mark(ctx, StepInterrupted, markRecord{AtStep: r.lastStep})
		f.State = store.JobInterrupted
		if r.kicked {
			// The node was made to boot: the landing endpoint holds it in
			// its network boot (instead of sending it to its disk) until
			// the job is resumed, or this long.
			holdUntil = time.Now().Add(r.pb.Timeouts.WaitLanding)
		}
		f.Reason = fmt.Sprintf("%s at step %s; reprov reinstall --resume %s continues it", ReasonInterrupted, r.lastStep, r.n.Name)
	case errors.As(runErr, &failure):
	default:
		failure = fail(ReasonInternal, r.lastStep, runErr, nil)
	}
	if failure != nil {
		f.State = store.JobFailed
		f.Reason = failure.Error()
		r.postHooks(ctx, "failed", failure.Error())
	}
	ev := map[string]any{}
	if failure != nil {
		for k, v := range failure.Evidence {
			ev[k] = v
		}
	}
	je := jobEvidence{Path: rep.Path, Step: r.lastStep, Escalated: r.escalated, Learned: rep.Learned,
		Proposal: rep.Proposal, Resumed: rep.Resumed}
	if failure != nil {
		je.Category = failure.Category
	}
	var jm map[string]any
	_ = json.Unmarshal(mustJSON(je), &jm)
	for k, v := range jm {
		ev[k] = v
	}
	if !holdUntil.IsZero() {
		ev[HoldUntilKey] = holdUntil.UTC().Format(time.RFC3339Nano)
	}
	f.Evidence = mustJSON(ev)
	stopRenew()
	var job store.NodeJob
	err := r.untilLease(context.WithoutCancel(ctx), "record the job's end", func(ctx context.Context) error {
		var err error
		job, err = r.e.cfg.Store.FinishNode(ctx, r.job.ID, f)
		return err
	})
	if errors.Is(err, store.ErrLeaseLost) || errors.Is(err, store.ErrNotActive) {
		// Another controller holds the job now: it settles the node by
		// looking (a landing is recorded there) and ends it.
		r.log.Warn("lease lost before the end was recorded: another controller continues the node's job", "state", f.State, "err", err)
		return
	}
	if err != nil {
		r.log.Error("job end not recorded", "state", f.State, "err", err)
		// The run still ends: its watch reports this end (the store keeps
		// the job running; a later --resume settles it by looking).
		end := r.job
		end.State, end.Evidence, end.Finished = f.State, f.Evidence, time.Now()
		end.Reason = fmt.Sprintf("%s (this end could not be recorded: %v)", f.Reason, err)
		if f.State == store.JobLanded {
			end.State = store.JobFailed
			end.Reason = fmt.Sprintf("%s: the node landed, but its end could not be recorded: %v", ReasonStore, err)
		}
		r.e.unrecorded.Store(r.job.ID, end)
		return
	}
	r.e.emit(Event{Node: r.n.Name, JobID: r.job.ID, RunID: r.job.RunID, Step: "end", Phase: "end", Result: string(job.State), Note: f.Reason})
}
