package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"strings"
	"time"

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

// audited records the intent of a BMC write in the audit log, runs it and
// records the outcome. The act does not run when the intent cannot be
// recorded.
func (r *nodeRun) audited(action string, detail map[string]any, act func() (map[string]any, error)) error {
	p, err := r.e.cfg.Audit.Intent(r.n.Name, action, detail)
	if err != nil {
		return fmt.Errorf("node %s: %s not attempted: %w", r.n.Name, action, err)
	}
	out, actErr := act()
	if aerr := p.Done(actErr, out); aerr != nil {
		r.log.Error("audit outcome not recorded", "action", action, "err", aerr)
	}
	return actErr
}

// bmcMode maps a playbook boot mode to the BMC's.
func bmcMode(m playbooks.BootMode) bmc.BootMode {
	if m == playbooks.BootUEFI {
		return bmc.BootModeUEFI
	}
	return bmc.BootModeLegacy
}

// oob is the out-of-band path: a one-time PXE override, read back, then
// the power action.
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
	err := r.step(ctx, StepOOBBoot, map[string]any{"override": want}, func() (map[string]any, string, error) {
		actx, cancel := actCtx(ctx, r.pb.Timeouts.OOBBoot)
		defer cancel()
		var err error
		c, err = r.e.cfg.OpenBMC(actx, r.n)
		if err != nil {
			return nil, "", cannot("the BMC cannot be reached: %v", err)
		}
		d := map[string]any{"protocol": c.Protocol()}
		err = r.audited(ActionSetBootOverride, map[string]any{"bmc": r.n.BMC.Address, "protocol": c.Protocol(),
			"device": want.Device, "persistent": want.Persistent, "mode": want.Mode, "job": r.job.ID},
			func() (map[string]any, error) {
				res, err := c.SetBootOverride(actx, want)
				d["verified"], d["read_back"] = res.Verified, res.ReadBack
				if len(res.Warnings) > 0 {
					d["warnings"] = res.Warnings
				}
				return map[string]any{"verified": res.Verified, "read_back": res.ReadBack, "warnings": res.Warnings}, err
			})
		if err != nil {
			return d, "", cannot("the BMC did not take the boot override: %v", err)
		}
		return d, "", nil
	})
	if err != nil {
		return nil, err
	}
	var at time.Time
	err = r.step(ctx, StepPower, map[string]any{"power_action": r.pb.PowerAction}, func() (map[string]any, string, error) {
		actx, cancel := actCtx(ctx, r.pb.Timeouts.Power)
		defer cancel()
		ps, err := c.PowerState(actx)
		if err != nil {
			return nil, "", cannot("power state: %v", err)
		}
		d := map[string]any{"power_before": ps}
		action := string(r.pb.PowerAction)
		if ps == bmc.PowerOff {
			action = string(bmc.ActionOn)
		}
		d["action"] = action
		err = r.audited(ActionPowerPrefix+action, map[string]any{"bmc": r.n.BMC.Address, "protocol": c.Protocol(), "job": r.job.ID},
			func() (map[string]any, error) { return nil, r.power(actx, c, action) })
		switch {
		case errors.Is(err, bmc.ErrPowerOutcomeUnknown):
			// It may have happened: never repeat it; the landing decides.
			d["outcome"] = "unknown: " + err.Error()
		case err != nil:
			return d, "", cannot("the BMC did not carry out the power action: %v", err)
		}
		at = time.Now()
		return d, "", nil
	})
	if err != nil {
		return nil, err
	}
	return &kick{path: playbooks.PathOOB, at: at, bootID: r.baseline}, nil
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
	if err != nil {
		return nil, cannot("SSH does not answer: %v", err)
	}
	defer conn.Close()
	sess, err := r.session(conn)
	if err != nil {
		return nil, fail(ReasonInternal, StepInband, err, nil)
	}
	defer r.closeSession(ctx, sess)
	saved := inband.SavedPath(r.e.cfg.StateDir, r.n.Name, runTag(r.job.RunID))
	keepEarlierSave(saved)

	var res *inband.Result
	var at time.Time
	intent := map[string]any{"saved_file": saved, "boot_id": r.baseline, "escalated": r.escalated,
		"unit":        "identify, resolve-disk, save, wipe-boot-sector, next-boot, reboot",
		"wipe_policy": r.pb.Wipe}
	err = r.step(ctx, StepInband, intent, func() (map[string]any, string, error) {
		actx, cancel := actCtx(ctx, r.pb.Timeouts.Inband+r.pb.Timeouts.Reboot)
		defer cancel()
		var err error
		res, err = sess.Reinstall(actx)
		d := inbandDetail(res)
		if err == nil {
			at = time.Now()
			return d, "", nil
		}
		var ir *inband.IdentifyReport
		if res != nil {
			ir = res.Identity
		}
		if f := identityFailure(err, ir); f != nil {
			f.Step = StepInband
			return d, "", f
		}
		switch {
		case errors.Is(err, steps.ErrDiskRefused):
			return d, "", fail(ReasonDiskRefused, StepInband, err, d)
		case res == nil || (res.Identity == nil && errors.Is(err, sshx.ErrConnectionLost)):
			return d, "", cannot("SSH dropped before anything was done: %v", err)
		}
		return d, "", fail(ReasonInbandFailed, StepInband, err, d)
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

// keepEarlierSave moves a saved boot sector of the same node and run out
// of the way before a new attempt writes its own, so an undo copy is never
// overwritten.
func keepEarlierSave(path string) {
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
		_ = os.Rename(path, strings.TrimSuffix(path, ".json")+fmt.Sprintf(".%d.json", fi.ModTime().UnixNano()))
	}
}

func inbandDetail(res *inband.Result) map[string]any {
	d := map[string]any{}
	if res == nil {
		return d
	}
	d["mode"] = res.Mode
	if res.Identity != nil && res.Identity.Check != nil {
		d["identity"] = identitySummary(res.Identity.Check)
	}
	if res.Disk != nil {
		d["disk"] = res.Disk.Path
	}
	if res.Wipe != nil {
		d["partition_table"] = res.Wipe.Table
		d["bytes_zeroed"] = res.Wipe.BytesZeroed
		d["wipe_verified"] = res.Wipe.Verified
	}
	if res.NextBoot != nil {
		d["next_boot_mode"] = res.NextBoot.Mode
		if res.NextBoot.EFI != nil {
			d["boot_next"] = res.NextBoot.EFI.BootNext
		}
	}
	if res.SavedFile != "" {
		d["saved_file"] = res.SavedFile
	}
	d["boot_id_before"] = res.BootIDBefore
	d["link_dropped"] = res.LinkDropped
	if res.Restored != nil {
		d["restored"] = res.Restored.Before
	}
	if res.Interrupted {
		d["interrupted_during_unit"] = true
	}
	return d
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
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := r.e.cfg.Store.SaveSectorRecord(sctx, store.SectorRecord{Node: r.n.Name, RunID: r.job.RunID, JobID: r.job.ID,
		Device: saved.Disk, Path: res.SavedFile, SHA256: saved.SHA256, Size: size}); err != nil {
		r.log.Warn("saved boot sector not recorded in the store", "err", err)
	}
}

// wait waits for the node to land after a kick and records the verdict.
func (r *nodeRun) wait(ctx context.Context, k *kick) (*verdict, error) {
	deadline := k.at.Add(r.pb.Timeouts.WaitLanding)
	var v *verdict
	intent := map[string]any{"path": k.path, "since": k.at.UTC(), "deadline": deadline.UTC(), "boot_id_before": k.bootID}
	err := r.step(ctx, StepWaitLanding, intent, func() (map[string]any, string, error) {
		var err error
		v, err = r.waitLoop(ctx, k, deadline)
		if err != nil {
			return nil, store.ResultFailed, err
		}
		d := maps.Clone(v.evidence)
		d["verdict"] = v.kind
		if v.kind == VerdictLanded {
			return d, store.ResultOK, nil
		}
		return d, store.ResultFailed, nil
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
	ev := map[string]any{"path": string(k.path), "boot_id_before": k.bootID}
	poll := time.NewTicker(r.e.cfg.PollInterval)
	defer poll.Stop()
	nextProbe := time.Now().Add(min(r.e.cfg.ProbeInterval, 2*time.Second))
	rebootBy := k.at.Add(r.pb.Timeouts.Reboot)
	consumed := false
	for {
		job, err := r.e.cfg.Store.NodeJob(ctx, r.job.ID)
		if err == nil {
			if job.LandingSource.Proof() {
				ev["landing"] = job.LandingSource
				ev["landed_at"] = job.LandedAt
				r.rep.Landing = job.LandingSource
				return &verdict{kind: VerdictLanded, evidence: ev}, nil
			}
			if !job.State.Active() || job.Owner != r.owner {
				return nil, errLeaseLost
			}
			if !job.CancelRequested.IsZero() {
				return nil, errCancelled
			}
		}
		if stop, err := r.e.cfg.Store.StopRequested(ctx, r.job.ID); err == nil && stop != store.StopNone {
			return nil, stopError(stop)
		}
		now := time.Now()
		if !now.Before(nextProbe) {
			nextProbe = now.Add(r.e.cfg.ProbeInterval)
			if k.path == playbooks.PathOOB && r.n.BMC.Address != "" && !consumed {
				consumed = r.probeOverride(ctx, ev)
			}
			if r.n.SSH.Address != "" {
				id, err := r.probeBootID(ctx)
				switch {
				case err != nil:
					ev["ssh"] = "no answer"
				case id == "":
					ev["ssh"] = "answered without a boot id"
				case id != k.bootID && k.path == playbooks.PathOOB:
					ev["ssh"] = "answered"
					ev["boot_id_now"] = id
					if k.bootID == "" {
						ev["baseline"] = "none: SSH did not answer at precheck"
					}
					ev["override_consumed"] = consumed
					return &verdict{kind: VerdictOldOS, evidence: ev}, nil
				case id != k.bootID:
					ev["ssh"] = "answered"
					ev["boot_id_now"] = id
					return &verdict{kind: VerdictOldOS, evidence: ev}, nil
				case k.path == playbooks.PathInband && now.After(rebootBy):
					ev["ssh"] = "answered with the same boot id"
					return &verdict{kind: VerdictNoReboot, evidence: ev}, nil
				default:
					ev["ssh"] = "answered with the same boot id"
				}
			}
		}
		if now.After(deadline) {
			ev["override_consumed"] = consumed
			return &verdict{kind: VerdictTimeout, evidence: ev}, nil
		}
		select {
		case <-ctx.Done():
			return nil, r.stopErr(ctx)
		case <-poll.C:
		}
	}
}

// probeOverride reads the BMC's boot override; a consumed one (no longer
// PXE) is recorded as BMC evidence of a network boot — evidence, not
// proof: boards that ignore the override consume it too.
func (r *nodeRun) probeOverride(ctx context.Context, ev map[string]any) bool {
	pctx, cancel := context.WithTimeout(ctx, r.e.cfg.ProbeTimeout)
	defer cancel()
	c, err := r.e.cfg.OpenBMC(pctx, r.n)
	if err != nil {
		ev["bmc"] = "no answer: " + err.Error()
		return false
	}
	defer r.closeBMC(ctx, c)
	o, err := c.BootOverride(pctx)
	if err != nil {
		ev["bmc"] = "override unreadable: " + err.Error()
		return false
	}
	ev["bmc_override"] = o
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
