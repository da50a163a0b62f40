package agent

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/reprov/reprov/agent/audit"
	"github.com/reprov/reprov/agent/inband"
	"github.com/reprov/reprov/agent/inband/steps"
	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/bmc"
)

// settle settles every intent of the node without an outcome — left by a
// controller that died, whatever job it belonged to — by looking at the
// node, never by repeating the act (docs/architecture.md, "Settling by
// looking"). Each step's way of looking is in the step table.
func (r *nodeRun) settle(ctx context.Context) error {
	var open []store.Step
	err := r.untilLease(ctx, "read the unsettled steps", func(ctx context.Context) error {
		var err error
		open, err = r.e.cfg.Store.UnsettledSteps(ctx, r.n.Name)
		return err
	})
	if err != nil {
		return fail(ReasonStore, "", err, nil)
	}
	for _, s := range open {
		if err := r.boundary(ctx); err != nil {
			return err
		}
		spec, ok := specOf(s.Name)
		if !ok {
			return fail(ReasonCorruptRecord, s.Name, errors.New("an unsettled intent names a step this reprov does not know"), nil)
		}
		result, out := store.ResultSkipped, outcome(&markOutcome{})
		seenDefault := "interrupted " + s.Name + ": nothing on the node to look at (it is run again if needed)"
		if spec.settle != nil {
			result, out = spec.settle(ctx, r, s)
			seenDefault = ""
		}
		b := out.base()
		b.V = recordVersion
		if b.Settled == nil {
			b.Settled = &settlement{Seen: seenDefault}
		}
		b.Settled.ByJob = r.job.ID
		err := r.untilLease(ctx, "record a settled outcome", func(ctx context.Context) error {
			_, err := r.e.cfg.Store.RecordStep(ctx, store.Step{Phase: store.PhaseOutcome, IntentID: s.ID, Result: result, Detail: mustJSON(out), Owner: r.owner})
			return err
		})
		if err != nil && !errors.Is(err, store.ErrAlreadySettled) {
			return fail(ReasonStore, s.Name, err, nil)
		}
		r.log.Info("settled an intent left without an outcome", "step", s.Name, "intent", s.ID, "result", result, "seen", b.Settled.Seen)
		r.e.emit(Event{Node: r.n.Name, JobID: r.job.ID, RunID: r.job.RunID, Step: s.Name, Phase: "settled", Result: result, Note: b.Settled.Seen})
	}
	return nil
}

func seen(what string) *settlement { return &settlement{Seen: what} }

func assumed(what string) *settlement { return &settlement{Seen: what, Assumed: true} }

// settleOOBBoot: is the PXE override set on the BMC?
func settleOOBBoot(ctx context.Context, r *nodeRun, _ store.Step) (string, outcome) {
	out := &oobBootOutcome{}
	o, err := r.readOverride(ctx)
	switch {
	case err != nil:
		out.Settled = seen("the BMC could not be read: " + err.Error() + "; the override is set again before any power action")
		return store.ResultFailed, out
	case o.Device == bmc.BootPXE:
		out.Override = &o
		out.Settled = seen("the BMC holds the PXE override")
		return store.ResultOK, out
	}
	out.Override = &o
	out.Settled = seen("the BMC holds no PXE override")
	return store.ResultFailed, out
}

// settlePower: did the node boot (landed, or the override consumed)?
func settlePower(ctx context.Context, r *nodeRun, s store.Step) (string, outcome) {
	out := &powerOutcome{}
	if r.landedSince(ctx, s.JobID) {
		out.Settled = seen("the node landed since: the power action happened")
		return store.ResultOK, out
	}
	o, err := r.readOverride(ctx)
	switch {
	case err != nil:
		out.Settled = assumed("the BMC could not be read (" + err.Error() + "); assumed done: never repeated blindly")
		return store.ResultOK, out
	case o.Device == bmc.BootPXE:
		out.Override = &o
		out.Settled = seen("the PXE override is still pending: the node did not boot, the power action did not happen")
		return store.ResultFailed, out
	}
	out.Override = &o
	out.Settled = seen("the one-time override was consumed: the node booted")
	return store.ResultOK, out
}

func (r *nodeRun) readOverride(ctx context.Context) (bmc.BootOverride, error) {
	if r.n.BMC.Address == "" {
		return bmc.BootOverride{}, errors.New("no BMC address")
	}
	pctx, cancel := context.WithTimeout(ctx, r.pb.Timeouts.Precheck)
	defer cancel()
	c, err := r.e.cfg.OpenBMC(pctx, r.n)
	if err != nil {
		return bmc.BootOverride{}, err
	}
	defer r.closeBMC(ctx, c)
	return c.BootOverride(pctx)
}

func (r *nodeRun) landedSince(ctx context.Context, jobID int64) bool {
	j, err := r.e.cfg.Store.NodeJob(ctx, jobID)
	return err == nil && j.LandingSource.Proof()
}

// settleInband settles the in-band unit: did the wipe happen, did the node
// reboot? A node that went down, or came back with a new boot id, went
// through the whole unit (the reboot is its last act). A node still up
// with the same boot id did not reboot: then its disk's LBA 0, read over
// SSH and compared with the copy saved before the wipe, tells whether the
// wipe happened. Intact: nothing was written. Zero: the unit was cut
// between the wipe and the reboot, and is finished (a PXE override and a
// power cycle through the BMC) or, without a BMC, undone (the saved sector
// put back). Anything else was written by someone else: the in-band path
// is not tried again.
func settleInband(ctx context.Context, r *nodeRun, s store.Step) (string, outcome) {
	out := &inbandOutcome{}
	var in inbandIntent
	if err := decodeStrict(s.Detail, &in); err != nil {
		out.NotPossible, out.Error = true, "unreadable intent: "+err.Error()
		out.Settled = assumed("the in-band intent could not be read (" + err.Error() + "): the in-band path is not tried again")
		return store.ResultFailed, out
	}
	if r.landedSince(ctx, s.JobID) {
		out.Settled = seen("the node landed since: the unit completed")
		return store.ResultOK, out
	}
	id, err := r.probeBootID(ctx)
	if err == nil && id == in.BootID && in.BootID != "" {
		// A detached reboot may still be pending: give it its delay.
		wait := r.e.cfg.RebootDelay
		if wait <= 0 {
			wait = 2 * time.Second
		}
		deadline := time.Now().Add(wait + 3*time.Second)
		for time.Now().Before(deadline) && err == nil && id == in.BootID {
			select {
			case <-ctx.Done():
				out.Settled = assumed("interrupted while looking; assumed done")
				return store.ResultOK, out
			case <-time.After(500 * time.Millisecond):
			}
			id, err = r.probeBootID(ctx)
		}
	}
	out.BootIDNow = id
	switch {
	case err != nil:
		out.Settled = seen("SSH no longer answers: the node went down for the unit's reboot (" + err.Error() + ")")
		return store.ResultOK, out
	case in.BootID == "" || id != in.BootID:
		out.Settled = seen("the node rebooted (new boot id): the unit completed")
		return store.ResultOK, out
	}
	// Still up, same boot: the unit's reboot did not happen. Did its wipe?
	if in.SavedFile == "" {
		out.Settled = assumed("the node did not reboot, and no saved-file path was recorded; assumed done: never repeated blindly")
		return store.ResultOK, out
	}
	saved, err := steps.ReadSavedFile(in.SavedFile)
	if errors.Is(err, os.ErrNotExist) {
		out.Settled = seen("the node did not reboot and nothing was saved, so nothing was written to its disk (a wipe saves first)")
		return store.ResultFailed, out
	}
	if err != nil {
		out.NotPossible, out.Error = true, "saved boot sector unreadable: "+err.Error()
		out.Settled = assumed("the node did not reboot and its saved boot sector is unreadable (" + err.Error() + "): the in-band path is not tried again")
		return store.ResultFailed, out
	}
	state, err := r.lookAtSector(ctx, saved)
	if err != nil {
		out.Settled = assumed("the node did not reboot, and its boot sector could not be read (" + err.Error() + "); assumed wiped: never repeated blindly")
		return store.ResultOK, out
	}
	zero := state == inband.SectorZero
	out.SectorZero = &zero
	switch state {
	case inband.SectorIntact:
		out.Settled = seen("the node did not reboot and LBA 0 of " + saved.Disk + " still holds the saved bytes: nothing was written")
		return store.ResultFailed, out
	case inband.SectorOther:
		out.NotPossible, out.Error = true, "LBA 0 of "+saved.Disk+" holds neither the saved bytes nor zeroes"
		out.Settled = seen("the node did not reboot and LBA 0 of " + saved.Disk + " was changed by something other than the wipe: the in-band path is not tried again")
		return store.ResultFailed, out
	}
	// Cut between the wipe and the reboot. Finish the unit: the boot
	// sector is zero (and the next boot set, where that ran), only the
	// reboot is missing — a power cycle through the BMC does it.
	by, ferr := r.finishUnitByBMC(ctx)
	if ferr == nil {
		out.FinishedBy = by
		out.Settled = seen("the unit was cut between the wipe and the reboot (LBA 0 is zero): finished with " + by + " through the BMC (not wiped again)")
		return store.ResultOK, out
	}
	r.log.Warn("cannot finish the cut in-band unit through the BMC; restoring the boot sector instead", "err", ferr)
	res, rerr := r.restoreSaved(ctx, in.SavedFile)
	if rerr != nil {
		out.Settled = assumed("the node did not reboot after the wipe, and restoring the saved boot sector failed: " + rerr.Error())
		return store.ResultOK, out
	}
	out.Restored = res
	out.Settled = seen("the unit was cut between the wipe and the reboot: the saved boot sector was put back (it was " + res + ")")
	return store.ResultFailed, out
}

// lookAtSector reads LBA 0 over SSH and compares it with saved.
func (r *nodeRun) lookAtSector(ctx context.Context, saved *steps.SavedSectors) (inband.SectorState, error) {
	dctx, cancel := context.WithTimeout(ctx, r.pb.Timeouts.Precheck)
	defer cancel()
	conn, err := r.e.cfg.DialSSH(dctx, r.n)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	sess, err := r.session(conn)
	if err != nil {
		return "", err
	}
	defer r.closeSession(ctx, sess)
	return sess.LookAtBootSector(dctx, saved)
}

// restoreSaved puts the saved boot sector back (audited by the session).
func (r *nodeRun) restoreSaved(ctx context.Context, file string) (string, error) {
	conn, err := r.e.cfg.DialSSH(ctx, r.n)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	sess, err := r.session(conn)
	if err != nil {
		return "", err
	}
	defer r.closeSession(ctx, sess)
	rctx, cancel := actCtx(ctx, r.pb.Timeouts.Inband)
	defer cancel()
	res, err := sess.Restore(rctx, file, false)
	if err != nil {
		return "", err
	}
	return res.Before, nil
}

// finishUnitByBMC completes an in-band unit cut after its wipe: a one-time
// PXE override (in case next-boot did not run) and a power cycle, both
// through the BMC, fenced and audited. It returns what it did.
func (r *nodeRun) finishUnitByBMC(ctx context.Context) (string, error) {
	if r.n.BMC.Address == "" {
		return "", errors.New("no BMC address")
	}
	actx, cancel := actCtx(ctx, r.pb.Timeouts.Power)
	defer cancel()
	c, err := r.e.cfg.OpenBMC(actx, r.n)
	if err != nil {
		return "", err
	}
	defer r.closeBMC(ctx, c)
	want := bmc.BootOverride{Device: bmc.BootPXE, Mode: bmcMode(r.pb.BootModeFor(r.n.Boot.Mode))}
	why := "finish an in-band unit cut between the wipe and the reboot"
	ovErr := r.audited(actx, ActionSetBootOverride, map[string]any{"bmc": r.n.BMC.Address, "device": want.Device, "mode": want.Mode, "why": why, "job": r.job.ID},
		func(actx context.Context) (map[string]any, error) {
			res, err := c.SetBootOverride(actx, want)
			return map[string]any{"verified": res.Verified, "read_back": res.ReadBack}, err
		})
	if errors.Is(ovErr, audit.ErrIntentNotRecorded) || errors.Is(ovErr, errLeaseLost) {
		return "", ovErr
	}
	action, err := r.powerKick(actx, c, string(bmc.ActionCycle), why)
	if err != nil && !errors.Is(err, bmc.ErrPowerOutcomeUnknown) {
		return "", err
	}
	by := "bmc power " + action
	if ovErr != nil {
		by += " (override not set: " + ovErr.Error() + ")"
	}
	return by, nil
}
