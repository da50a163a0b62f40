package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/reprov/reprov/agent/audit"
	"github.com/reprov/reprov/agent/inband"
	"github.com/reprov/reprov/agent/inband/sshx"
	"github.com/reprov/reprov/agent/inband/steps"
	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/playbooks"
)

// Audit actions the engine records itself (the in-band session records
// its own, inband.Action…).
const (
	ActionSetBootOverride = "set boot override"
	ActionPowerPrefix     = "power "
)

// audited runs an act on the node through the audit log's one wrapper
// (audit.Log.Do): the lease is checked right before the intent (fencing:
// a controller that lost its lease stops at once), the intent is synced
// (and mirrored into the store) before the act, the outcome recorded
// after. The act does not run when the lease is lost or the intent cannot
// be recorded; a lost outcome record never changes the act's result.
func (r *nodeRun) audited(ctx context.Context, action string, detail map[string]any, act func(context.Context) (map[string]any, error)) error {
	err := r.e.cfg.Audit.Do(ctx, audit.Entry{Node: r.n.Name, Action: action, Detail: detail, Job: r.job.ID, Fence: r.fence}, act)
	if errors.Is(err, errLeaseLost) {
		return errLeaseLost
	}
	return err
}

// fence checks, right before a destructive intent, that this worker still
// holds the job's lease (and extends it): a controller that lost it stops
// at once, whatever it was about to do. A store that does not answer the
// check in time cannot take the lease away before it expires: while the
// lease this worker last renewed has more than a third of its length left,
// the act goes on; otherwise the node stops with a store failure.
func (r *nodeRun) fence(ctx context.Context) error {
	ttl := r.e.cfg.LeaseTTL
	for {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ttl/3)
		asked := time.Now()
		err := r.e.cfg.Store.RenewLease(fctx, r.job.ID, r.owner, ttl)
		cancel()
		left := time.Until(time.Unix(0, r.leaseUntil.Load()))
		switch {
		case err == nil:
			r.leaseUntil.Store(asked.Add(ttl).UnixNano())
			return nil
		case errors.Is(err, store.ErrLeaseLost), errors.Is(err, store.ErrNotActive):
			r.log.Warn("fencing: the lease is lost; nothing more is done to the node", "err", err)
			return errLeaseLost
		case left > ttl/3:
			r.log.Warn("fencing: the lease check did not answer; the lease renewed earlier still holds", "err", err)
			return nil
		case left > 0 && ctx.Err() == nil:
			// The lease still holds, for less than a third of it: ask
			// again (a loaded store), until it would really expire.
			r.log.Warn("fencing: the lease check did not answer; asking again while the lease holds", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		return fail(ReasonStore, r.lastStep, fmt.Errorf("fencing: the lease could not be checked: %w", err), nil)
	}
}

// bmcMode maps a playbook boot mode to the BMC's.
func bmcMode(m playbooks.BootMode) bmc.BootMode {
	if m == playbooks.BootUEFI {
		return bmc.BootModeUEFI
	}
	return bmc.BootModeLegacy
}

// oob is the out-of-band path: a one-time PXE override, read back, then
// the power action, in one BMC session.
func (r *nodeRun) oob(ctx context.Context) (*kick, error) {
	if r.n.BMC.Address == "" {
		return nil, cannot("no BMC address in the inventory")
	}
	var c bmc.Client
	defer func() {
		if c != nil {
			r.closeBMC(ctx, c)
		}
	}()
	want := bmc.BootOverride{Device: bmc.BootPXE, Mode: bmcMode(r.pb.BootModeFor(r.n.Boot.Mode))}
	err := r.step(ctx, StepOOBBoot, &oobBootIntent{V: recordVersion, Override: want}, func() (outcome, string, error) {
		actx, cancel := actCtx(ctx, r.pb.Timeouts.OOBBoot)
		defer cancel()
		out := &oobBootOutcome{}
		// The BMC answered at precheck: one that stops answering now (a
		// reboot, a lossy link) gets new sessions within the step's
		// timeout before the path is called impossible.
		if err := r.withBMC(actx, &c, func(context.Context, bmc.Client) error { return nil }); err != nil {
			return out, "", cannot("the BMC cannot be reached: %v", err)
		}
		out.Protocol = c.Protocol()
		err := r.audited(actx, ActionSetBootOverride, map[string]any{"bmc": r.n.BMC.Address, "protocol": c.Protocol(),
			"device": want.Device, "persistent": want.Persistent, "mode": want.Mode, "job": r.job.ID},
			func(actx context.Context) (map[string]any, error) {
				// Writing the same override again is the same as once.
				var res bmc.BootResult
				err := r.withBMC(actx, &c, func(actx context.Context, c bmc.Client) error {
					var err error
					res, err = c.SetBootOverride(actx, want)
					return err
				})
				out.Verified, out.ReadBack, out.Warnings = res.Verified, &res.ReadBack, res.Warnings
				return map[string]any{"verified": res.Verified, "read_back": res.ReadBack, "warnings": res.Warnings}, err
			})
		var f *Failure
		switch {
		case errors.Is(err, errLeaseLost), errors.Is(err, audit.ErrIntentNotRecorded):
			return out, "", err
		case errors.As(err, &f):
			return out, "", f
		case errors.Is(err, bmc.ErrDeviceOnly):
			r.learnDeviceOnly(actx, err)
			return out, "", cannot("the BMC did not take the boot override: %v", err)
		case err != nil:
			return out, "", cannot("the BMC did not take the boot override: %v", err)
		}
		return out, "", nil
	})
	if err != nil {
		return nil, err
	}
	var at time.Time
	unknown := false
	err = r.step(ctx, StepPower, &powerIntent{V: recordVersion, PowerAction: r.pb.PowerAction}, func() (outcome, string, error) {
		out := &powerOutcome{}
		// Armed before the power action's own time starts: a slow store
		// delays the act, it does not eat the BMC's time.
		if err := r.armLanding(ctx); err != nil {
			return out, "", err
		}
		actx, cancel := actCtx(ctx, r.pb.Timeouts.Power)
		defer cancel()
		if err := r.withBMC(actx, &c, func(context.Context, bmc.Client) error { return nil }); err != nil {
			return out, "", cannot("the BMC cannot be reached: %v", err)
		}
		action, err := r.powerKick(actx, c, string(r.pb.PowerAction), r.resend)
		out.Action = action
		switch {
		case errors.Is(err, bmc.ErrPowerOutcomeUnknown):
			// It may have happened: never repeat it blindly; the wait
			// settles it by looking (the landing, the old OS's boot id).
			out.Unknown = err.Error()
			unknown = true
		case errors.Is(err, errLeaseLost), errors.Is(err, audit.ErrIntentNotRecorded):
			return out, "", err
		case errors.As(err, new(*Failure)):
			return out, "", err
		case err != nil:
			return out, "", cannot("the BMC did not carry out the power action: %v", err)
		}
		at = time.Now()
		return out, "", nil
	})
	if err != nil {
		return nil, err
	}
	return &kick{path: playbooks.PathOOB, at: at, bootID: r.baseline, unknown: unknown}, nil
}

// armLanding opens the job's landing right before the act that makes the
// node boot: a landing seen before it is not this job's (docs/security.md).
// It is not cut by a stop of the node's context: an act that goes ahead
// must find its landing armed, or the node's network boot would be turned
// away. A failure stops the act.
func (r *nodeRun) armLanding(ctx context.Context) error {
	if r.e.cfg.ArmLanding == nil {
		return nil
	}
	// A store that does not answer in time (a loaded one) is waited for
	// while the lease holds: arming checks the lease, so a late success
	// still proves this worker holds the job.
	err := r.untilLease(context.WithoutCancel(ctx), "arm the landing", func(ctx context.Context) error {
		return r.e.cfg.ArmLanding(ctx, r.job.ID, r.owner)
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrLeaseLost) || errors.Is(err, store.ErrNotActive):
		return errLeaseLost
	}
	return fail(ReasonStore, r.lastStep, fmt.Errorf("the landing could not be armed, so the node is not made to boot: %w", err), nil)
}

// powerKick carries out a power action that makes the node boot: the
// playbook's action (cycle, reset, off-on), audited and fenced; a BMC that
// refuses a cycle or reset because the node is off (bmc.ErrPoweredOff,
// nothing changed) gets a power on instead. The power state is read only
// then, so the common case costs one exchange. It returns the action
// carried out.
func (r *nodeRun) powerKick(ctx context.Context, c bmc.Client, want string, why string) (string, error) {
	detail := map[string]any{"bmc": r.n.BMC.Address, "protocol": c.Protocol(), "job": r.job.ID}
	if why != "" {
		detail["why"] = why
	}
	if r.resend != "" && why == r.resend {
		// Not a second power action: the first was seen not to happen.
		delete(detail, "why")
		detail["resend"] = r.resend
	}
	err := r.audited(ctx, ActionPowerPrefix+want, detail,
		func(ctx context.Context) (map[string]any, error) { return nil, r.power(ctx, c, want) })
	if !errors.Is(err, bmc.ErrPoweredOff) {
		return want, err
	}
	on := string(bmc.ActionOn)
	detail["after"] = want + " refused: the node is off"
	err = r.audited(ctx, ActionPowerPrefix+on, detail,
		func(ctx context.Context) (map[string]any, error) { return nil, c.SetPower(ctx, bmc.ActionOn) })
	return on, err
}

// power carries out a power action: on, cycle, reset, or off-on (off,
// wait until the BMC reports off, on).
func (r *nodeRun) power(ctx context.Context, c bmc.Client, action string) error {
	switch playbooks.PowerAction(action) {
	case playbooks.PowerReset:
		return c.SetPower(ctx, bmc.ActionReset)
	case playbooks.PowerCycle:
		return c.SetPower(ctx, bmc.ActionCycle)
	case playbooks.PowerOffOn:
		if err := c.SetPower(ctx, bmc.ActionOff); err != nil {
			return err
		}
		for {
			ps, err := c.PowerState(ctx)
			if err == nil && ps == bmc.PowerOff {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("waiting for power off: %w", ctx.Err())
			case <-time.After(time.Second):
			}
		}
		return c.SetPower(ctx, bmc.ActionOn)
	}
	return c.SetPower(ctx, bmc.ActionOn)
}

// inband is the in-band path over SSH: identify, resolve the disk, save
// and zero its boot sector, set the next boot to the network, reboot —
// the wipe, next-boot and reboot being one unit.
func (r *nodeRun) inband(ctx context.Context) (*kick, error) {
	if r.n.SSH.Address == "" {
		return nil, cannot("no SSH address in the inventory")
	}
	if err := r.boundary(ctx); err != nil {
		return nil, err
	}
	dctx, cancel := actCtx(ctx, r.pb.Timeouts.Precheck)
	conn, err := r.e.cfg.DialSSH(dctx, r.n)
	cancel()
	if err != nil && !sshx.Unreachable(err) {
		f := sshFailure(err)
		f.Step = StepInband
		return nil, f
	}
	if err != nil {
		return nil, cannot("SSH does not answer: %v", err)
	}
	defer conn.Close()
	sess, err := r.session(conn)
	if err != nil {
		return nil, fail(ReasonInternal, StepInband, err, nil)
	}
	defer r.closeSession(ctx, sess)
	// One saved file per attempt: a second pass can never overwrite the
	// undo copy of the first.
	saved := inband.SavedAttemptPath(r.e.cfg.StateDir, r.n.Name, runTag(r.job.RunID), r.attempt())

	var res *inband.Result
	var at time.Time
	intent := &inbandIntent{V: recordVersion, SavedFile: saved, BootID: r.baseline, Escalated: r.escalated,
		Unit: "identify, resolve-disk, save, wipe-boot-sector, next-boot, reboot", WipePolicy: r.pb.Wipe}
	err = r.step(ctx, StepInband, intent, func() (outcome, string, error) {
		// Identify, resolve and save run under the node's context: Ctrl-C,
		// an operator's cancel, a lost lease or a handover stop them, and
		// are checked once more right before the wipe's intent. Only the
		// unit wipe → next-boot → reboot runs to its end regardless.
		actx, cancel := context.WithTimeout(ctx, r.pb.Timeouts.Inband+r.pb.Timeouts.Reboot)
		defer cancel()
		var err error
		res, err = sess.Reinstall(actx)
		out := inbandOutcomeOf(res)
		if err == nil {
			at = time.Now()
			return out, "", nil
		}
		if stop := stopCause(err); stop != nil {
			return out, "", stop
		}
		if f := (*Failure)(nil); errors.As(err, &f) && f.Category == ReasonStore {
			// BeforeUnit could not arm the landing: nothing was written.
			return out, "", f
		}
		if ctx.Err() != nil {
			return out, "", r.stopErr(ctx)
		}
		var ir *inband.IdentifyReport
		if res != nil {
			ir = res.Identity
		}
		if f := identityFailure(err, ir); f != nil {
			f.Step = StepInband
			return out, "", f
		}
		switch {
		case errors.Is(err, steps.ErrDiskRefused):
			return out, "", fail(ReasonDiskRefused, StepInband, err, evidenceOf(out))
		case res == nil || (res.Identity == nil && errors.Is(err, sshx.ErrConnectionLost)):
			return out, "", cannot("SSH dropped before anything was done: %v", err)
		}
		return out, "", fail(ReasonInbandFailed, StepInband, err, evidenceOf(out))
	})
	if err != nil {
		return nil, err
	}
	r.recordSectors(ctx, res)
	bootID := res.BootIDBefore
	if bootID == "" {
		bootID = r.baseline
	}
	r.baseline = bootID
	return &kick{path: playbooks.PathInband, at: at, bootID: bootID}, nil
}

// stopCause is the stop error (interrupted, cancelled, lease lost,
// handover, node timeout) that err carries, or nil.
func stopCause(err error) error {
	for _, stop := range []error{errInterrupted, errCancelled, errLeaseLost, errHandover, errNodeTimeout} {
		if errors.Is(err, stop) {
			return stop
		}
	}
	return nil
}

func inbandOutcomeOf(res *inband.Result) *inbandOutcome {
	out := &inbandOutcome{}
	if res == nil {
		return out
	}
	out.Mode = res.Mode
	if res.Identity != nil && res.Identity.Check != nil {
		out.Identity = identitySummary(res.Identity.Check)
	}
	if res.Disk != nil {
		out.Disk = res.Disk.Path
	}
	if res.Wipe != nil {
		out.PartitionTable = res.Wipe.Table
		out.BytesZeroed = res.Wipe.BytesZeroed
		out.WipeVerified = res.Wipe.Verified
	}
	if res.NextBoot != nil {
		out.NextBootMode = res.NextBoot.Mode
		if res.NextBoot.EFI != nil {
			out.BootNext = res.NextBoot.EFI.BootNext
		}
	}
	out.SavedFile = res.SavedFile
	out.BootIDBefore = res.BootIDBefore
	out.LinkDropped = res.LinkDropped
	if res.Restored != nil {
		out.Restored = res.Restored.Before
	}
	out.CutInUnit = res.Interrupted
	return out
}

// evidenceOf is a typed record as the map a failure's evidence is.
func evidenceOf(v any) map[string]any {
	var m map[string]any
	_ = json.Unmarshal(mustJSON(v), &m)
	delete(m, "v")
	return m
}

// recordSectors records the saved boot sector in the store (for reprov
// restore).
func (r *nodeRun) recordSectors(ctx context.Context, res *inband.Result) {
	if res == nil || res.SavedFile == "" {
		return
	}
	saved, err := steps.ReadSavedFile(res.SavedFile)
	if err != nil {
		r.log.Warn("saved boot sector unreadable", "file", res.SavedFile, "err", err)
		return
	}
	var size int64
	for _, rg := range saved.Ranges {
		size += rg.Length
	}
	if err := r.untilLease(context.WithoutCancel(ctx), "record the saved boot sector", func(ctx context.Context) error {
		_, err := r.e.cfg.Store.SaveSectorRecord(ctx, store.SectorRecord{Node: r.n.Name, RunID: r.job.RunID, JobID: r.job.ID,
			Device: saved.Disk, Path: res.SavedFile, SHA256: saved.SHA256, Size: size})
		return err
	}); err != nil {
		r.log.Warn("saved boot sector not recorded in the store", "err", err)
	}
}

// wait waits for the node to land after a kick and records the verdict.
func (r *nodeRun) wait(ctx context.Context, k *kick) (*verdict, error) {
	deadline := k.at.Add(r.pb.Timeouts.WaitLanding)
	var v *verdict
	intent := &waitIntent{V: recordVersion, Path: k.path, Since: k.at.UTC(), Deadline: deadline.UTC(), BootIDBefore: k.bootID}
	err := r.step(ctx, StepWaitLanding, intent, func() (outcome, string, error) {
		var err error
		v, err = r.waitLoop(ctx, k, deadline)
		if err != nil {
			return &waitOutcome{}, store.ResultFailed, err
		}
		out := &waitOutcome{Verdict: v.kind, waitEvidence: v.evidence}
		if v.kind == VerdictLanded {
			return out, store.ResultOK, nil
		}
		return out, store.ResultFailed, nil
	})
	if err != nil {
		return nil, err
	}
	k.verdict = v
	return v, nil
}

// waitLoop watches the store for a landing (the proof), the BMC for the
// override being consumed (evidence only) and SSH for the old OS coming
// back with a new boot id (the board ignored the override), until the
// deadline.
func (r *nodeRun) waitLoop(ctx context.Context, k *kick, deadline time.Time) (*verdict, error) {
	ev := waitEvidence{Path: string(k.path), BootIDBefore: k.bootID, Watched: k.watched}
	poll := time.NewTicker(r.e.cfg.PollInterval)
	defer poll.Stop()
	first := time.Now().Add(min(r.e.cfg.ProbeInterval, 2*time.Second))
	if !first.Before(deadline) {
		// A resumed wait whose deadline has passed looks once before it
		// times out: the node may have booted its old OS meanwhile.
		first = time.Now()
	}
	nextBMC, nextSSH := first, first
	probed := false
	rebootBy := k.at.Add(r.pb.Timeouts.Reboot)
	consumed := false
	// The job is read by the engine's poller, with every other waiting
	// node's, once per poll interval.
	jobs, unsubscribe := r.e.jobs.subscribe(r.job.ID)
	defer unsubscribe()
	// seen judges a reading of the job: landed (the proof), or a reason to
	// stop; nil goes on waiting.
	seen := func(w store.WatchedJob) (*verdict, error) {
		job := w.Job
		if job.LandingSource.Proof() {
			ev.Landing = string(job.LandingSource)
			at := job.LandedAt
			ev.LandedAt = &at
			r.rep.Landing = job.LandingSource
			return &verdict{kind: VerdictLanded, evidence: ev}, nil
		}
		if !job.State.Active() || job.Owner != r.owner {
			return nil, errLeaseLost
		}
		if !job.CancelRequested.IsZero() {
			return nil, errCancelled
		}
		if w.Stop != store.StopNone {
			return nil, stopError(w.Stop)
		}
		return nil, nil
	}
	for {
		// A reading that came in while probing is judged before the next
		// probe: a landing wins over what a probe would say.
		select {
		case w := <-jobs:
			if v, err := seen(w); v != nil || err != nil {
				return v, err
			}
		default:
		}
		now := time.Now()
		if !now.Before(nextBMC) {
			nextBMC = now.Add(r.e.cfg.ProbeInterval)
			if k.path == playbooks.PathOOB && r.n.BMC.Address != "" && !consumed {
				consumed = r.probeOverride(ctx, &ev)
			}
		}
		if !now.Before(nextSSH) {
			// SSH is probed every FastProbeInterval while the old OS may
			// come back (an ignored override is caught within seconds of
			// its sshd answering), then every ProbeInterval.
			every, timeout := r.e.cfg.ProbeInterval, r.e.cfg.ProbeTimeout
			if now.Before(k.at.Add(r.e.cfg.FastProbeWindow)) {
				every, timeout = r.e.cfg.FastProbeInterval, min(timeout, 2*time.Second)
			}
			if r.n.SSH.Address != "" {
				pctx, cancel := context.WithTimeout(ctx, timeout)
				id, err := r.probeBootID(pctx)
				cancel()
				nextSSH = time.Now().Add(every)
				probed = true
				switch {
				case err != nil:
					ev.SSH = "no answer"
				case id == "":
					ev.SSH = "answered without a boot id"
				case id != k.bootID:
					ev.SSH = "answered"
					ev.BootIDNow = id
					if k.path == playbooks.PathOOB {
						if k.bootID == "" {
							ev.Baseline = "none: SSH did not answer at precheck"
						}
						ev.OverrideConsumed = consumed
					}
					return &verdict{kind: VerdictOldOS, evidence: ev}, nil
				case k.path == playbooks.PathInband && now.After(rebootBy):
					ev.SSH = "answered with the same boot id"
					return &verdict{kind: VerdictNoReboot, evidence: ev}, nil
				case k.unknown && k.path == playbooks.PathOOB && k.bootID != "" && now.After(rebootBy) && !consumed:
					// The power action's answer was lost; the OS it would
					// have stopped still runs, under the same boot id, the
					// reboot timeout later: it did not happen.
					ev.SSH = "answered with the same boot id"
					return &verdict{kind: VerdictPowerNotDone, evidence: ev}, nil
				default:
					ev.SSH = "answered with the same boot id"
				}
			}
		}
		if now.After(deadline) && (probed || r.n.SSH.Address == "") {
			// A last look of its own: a landing recorded since the
			// poller's last reading counts.
			var ws []store.WatchedJob
			err := r.untilLease(ctx, "read the job's landing", func(ctx context.Context) error {
				var err error
				ws, err = r.e.cfg.Store.WatchJobs(ctx, []int64{r.job.ID})
				return err
			})
			if err != nil {
				if ctx.Err() != nil {
					return nil, r.stopErr(ctx)
				}
				return nil, fail(ReasonStore, StepWaitLanding, fmt.Errorf("the wait's time is up, but whether the node landed could not be read: %w", err), nil)
			}
			if len(ws) == 1 {
				if v, err := seen(ws[0]); v != nil || err != nil {
					return v, err
				}
			}
			ev.OverrideConsumed = consumed
			return &verdict{kind: VerdictTimeout, evidence: ev}, nil
		}
		select {
		case <-ctx.Done():
			return nil, r.stopErr(ctx)
		case w := <-jobs:
			if v, err := seen(w); v != nil || err != nil {
				return v, err
			}
		case <-poll.C:
		}
	}
}

// probeOverride reads the BMC's boot override; a consumed one (no longer
// PXE) is recorded as BMC evidence of a network boot — evidence, not
// proof: boards that ignore the override consume it too.
func (r *nodeRun) probeOverride(ctx context.Context, ev *waitEvidence) bool {
	pctx, cancel := context.WithTimeout(ctx, r.e.cfg.ProbeTimeout)
	defer cancel()
	c, err := r.e.cfg.OpenBMC(pctx, r.n)
	if err != nil {
		ev.BMC = "no answer: " + err.Error()
		return false
	}
	defer r.closeBMC(ctx, c)
	o, err := c.BootOverride(pctx)
	if err != nil {
		ev.BMC = "override unreadable: " + err.Error()
		return false
	}
	ev.BMCOverride = &o
	if o.Device == bmc.BootPXE {
		return false
	}
	if _, err := r.e.cfg.Store.MarkLanded(pctx, r.job.ID, store.LandingBMCEvidence,
		mustJSON(map[string]any{"override_now": o, "note": "the one-time PXE override was consumed"})); err != nil {
		r.log.Warn("BMC evidence not recorded", "err", err)
	}
	return true
}

// probeBootID reads the running OS's boot id over SSH.
func (r *nodeRun) probeBootID(ctx context.Context) (string, error) {
	return probeBootID(ctx, r.e, r.n)
}
