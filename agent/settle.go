package agent

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"time"

	"github.com/reprov/reprov/agent/audit"
	"github.com/reprov/reprov/agent/inband"
	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/bmc"
)

// settle settles every intent of the node without an outcome — left by a
// controller that died, whatever job it belonged to — by looking at the
// node, never by repeating the act (DESIGN.md §6).
func (r *nodeRun) settle(ctx context.Context) error {
	open, err := r.e.cfg.Store.UnsettledSteps(ctx, r.n.Name)
	if err != nil {
		return fail(ReasonStore, "", err, nil)
	}
	for _, s := range open {
		if err := r.boundary(ctx); err != nil {
			return err
		}
		result, detail := r.look(ctx, s)
		detail["settled_by"] = "looking"
		detail["settled_by_job"] = r.job.ID
		_, err := r.e.cfg.Store.RecordStep(ctx, store.Step{Phase: store.PhaseOutcome, IntentID: s.ID, Result: result, Detail: mustJSON(detail)})
		if err != nil && !errors.Is(err, store.ErrAlreadySettled) {
			return fail(ReasonStore, s.Name, err, nil)
		}
		r.log.Info("settled an intent left without an outcome", "step", s.Name, "intent", s.ID, "result", result, "seen", detail["seen"])
		r.e.emit(Event{Node: r.n.Name, JobID: r.job.ID, Step: s.Name, Phase: "settled", Result: result, Note: str(detail["seen"])})
	}
	return nil
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// look finds out whether the act of an unsettled intent happened.
func (r *nodeRun) look(ctx context.Context, s store.Step) (string, map[string]any) {
	var det map[string]any
	_ = json.Unmarshal(s.Detail, &det)
	switch s.Name {
	case StepOOBBoot:
		o, err := r.readOverride(ctx)
		switch {
		case err != nil:
			return store.ResultFailed, map[string]any{"seen": "the BMC could not be read: " + err.Error() + "; the override is set again before any power action"}
		case o.Device == bmc.BootPXE:
			return store.ResultOK, map[string]any{"seen": "the BMC holds the PXE override", "override": o}
		}
		return store.ResultFailed, map[string]any{"seen": "the BMC holds no PXE override", "override": o}

	case StepPower:
		if r.landedSince(ctx, s.JobID) {
			return store.ResultOK, map[string]any{"seen": "the node landed since: the power action happened"}
		}
		o, err := r.readOverride(ctx)
		switch {
		case err != nil:
			return store.ResultOK, map[string]any{"seen": "the BMC could not be read (" + err.Error() + "); assumed done: never repeated blindly", "assumed": true}
		case o.Device == bmc.BootPXE:
			return store.ResultFailed, map[string]any{"seen": "the PXE override is still pending: the node did not boot, the power action did not happen", "override": o}
		}
		return store.ResultOK, map[string]any{"seen": "the one-time override was consumed: the node booted", "override": o}

	case StepInband:
		return r.lookInband(ctx, s, det)
	}
	return store.ResultSkipped, map[string]any{"seen": "interrupted " + s.Name + ": nothing on the node to look at (it is run again if needed)"}
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

// lookInband settles the in-band unit: did the wipe happen, did the node
// reboot? A node that went down, or came back with a new boot id, went
// through the whole unit (the reboot is its last act). A node still up
// with the same boot id did not reboot: if the audit log shows no wipe,
// nothing was written; if it shows one, the unit was cut between the wipe
// and the reboot, and the saved boot sector is put back (DESIGN.md §3:
// the unit finishes, or the saved sectors are restored).
func (r *nodeRun) lookInband(ctx context.Context, s store.Step, det map[string]any) (string, map[string]any) {
	saved, _ := det["saved_file"].(string)
	before, _ := det["boot_id"].(string)
	if r.landedSince(ctx, s.JobID) {
		return store.ResultOK, map[string]any{"seen": "the node landed since: the unit completed"}
	}
	id, err := r.probeBootID(ctx)
	if err == nil && id == before && before != "" {
		// A detached reboot may still be pending: give it its delay.
		wait := r.e.cfg.RebootDelay
		if wait <= 0 {
			wait = 2 * time.Second
		}
		deadline := time.Now().Add(wait + 3*time.Second)
		for time.Now().Before(deadline) && err == nil && id == before {
			select {
			case <-ctx.Done():
				return store.ResultOK, map[string]any{"seen": "interrupted while looking; assumed done", "assumed": true}
			case <-time.After(500 * time.Millisecond):
			}
			id, err = r.probeBootID(ctx)
		}
	}
	switch {
	case err != nil:
		return store.ResultOK, map[string]any{"seen": "SSH no longer answers: the node went down for the unit's reboot", "ssh": err.Error()}
	case before == "" || id != before:
		return store.ResultOK, map[string]any{"seen": "the node rebooted (new boot id): the unit completed", "boot_id_now": id}
	}
	// Still up, same boot: the unit's reboot did not happen.
	if saved == "" {
		return store.ResultOK, map[string]any{"seen": "the node did not reboot, and no saved-file path was recorded; assumed done: never repeated blindly", "assumed": true}
	}
	if _, err := os.Stat(saved); errors.Is(err, os.ErrNotExist) {
		return store.ResultFailed, map[string]any{"seen": "the node did not reboot and nothing was saved, so nothing was written to its disk (a wipe saves first)"}
	}
	if !r.wipeAudited(saved) {
		return store.ResultFailed, map[string]any{"seen": "the node did not reboot and the audit log shows no wipe: nothing was written"}
	}
	// Cut between the wipe and the reboot. Finish the unit: the boot
	// sector is zero (and the next boot set, where that ran), only the
	// reboot is missing — a power cycle through the BMC does it.
	if d, err := r.finishUnitByBMC(ctx); err == nil {
		return store.ResultOK, d
	} else {
		r.log.Warn("cannot finish the cut in-band unit through the BMC; restoring the boot sector instead", "err", err)
	}
	// No BMC to finish it with: undo.
	conn, err := r.e.cfg.DialSSH(ctx, r.n)
	if err != nil {
		return store.ResultOK, map[string]any{"seen": "the node did not reboot after the wipe and SSH dropped while looking: " + err.Error(), "assumed": true}
	}
	defer conn.Close()
	sess, err := r.session(conn)
	if err != nil {
		return store.ResultOK, map[string]any{"seen": "cannot restore: " + err.Error(), "assumed": true}
	}
	defer r.closeSession(ctx, sess)
	rctx, cancel := actCtx(ctx, r.pb.Timeouts.Inband)
	defer cancel()
	res, err := sess.Restore(rctx, saved, false)
	if err != nil {
		return store.ResultOK, map[string]any{"seen": "the node did not reboot after the wipe, and restoring the saved boot sector failed: " + err.Error(), "assumed": true}
	}
	return store.ResultFailed, map[string]any{"seen": "the unit was cut between the wipe and the reboot: the saved boot sector was put back (it was " + res.Before + ")", "restored": true}
}

// finishUnitByBMC completes an in-band unit cut after its wipe: a one-time
// PXE override (in case next-boot did not run) and a power cycle, both
// through the BMC and audited.
func (r *nodeRun) finishUnitByBMC(ctx context.Context) (map[string]any, error) {
	if r.n.BMC.Address == "" {
		return nil, errors.New("no BMC address")
	}
	actx, cancel := actCtx(ctx, r.pb.Timeouts.Power)
	defer cancel()
	c, err := r.e.cfg.OpenBMC(actx, r.n)
	if err != nil {
		return nil, err
	}
	defer r.closeBMC(ctx, c)
	want := bmc.BootOverride{Device: bmc.BootPXE, Mode: bmcMode(r.pb.BootModeFor(r.n.Boot.Mode))}
	why := "finish an in-band unit cut between the wipe and the reboot"
	ovErr := r.audited(ActionSetBootOverride, map[string]any{"bmc": r.n.BMC.Address, "device": want.Device, "mode": want.Mode, "why": why, "job": r.job.ID},
		func() (map[string]any, error) {
			res, err := c.SetBootOverride(actx, want)
			return map[string]any{"verified": res.Verified, "read_back": res.ReadBack}, err
		})
	ps, err := c.PowerState(actx)
	if err != nil {
		return nil, err
	}
	action := bmc.ActionCycle
	if ps == bmc.PowerOff {
		action = bmc.ActionOn
	}
	err = r.audited(ActionPowerPrefix+string(action), map[string]any{"bmc": r.n.BMC.Address, "why": why, "job": r.job.ID},
		func() (map[string]any, error) { return nil, c.SetPower(actx, action) })
	if err != nil && !errors.Is(err, bmc.ErrPowerOutcomeUnknown) {
		return nil, err
	}
	d := map[string]any{"seen": "the unit was cut between the wipe and the reboot: finished with a power " + string(action) + " through the BMC (the boot sector stays zero, it is not wiped again)",
		"finished_by": "bmc power " + string(action)}
	if ovErr != nil {
		d["override"] = "not set: " + ovErr.Error()
	}
	return d, nil
}

// wipeAudited reports whether the audit log holds a wipe intent for the
// saved file (the in-band session records it before the write).
func (r *nodeRun) wipeAudited(saved string) bool {
	if r.e.cfg.AuditPath == "" {
		return true // cannot tell: assume the worst
	}
	recs, err := audit.Read(r.e.cfg.AuditPath)
	if err != nil {
		return true
	}
	for _, rec := range recs {
		if rec.Phase == audit.PhaseIntent && rec.Node == r.n.Name && rec.Action == inband.ActionWipe {
			if f, _ := rec.Detail["saved_file"].(string); f == saved {
				return true
			}
		}
	}
	return false
}
