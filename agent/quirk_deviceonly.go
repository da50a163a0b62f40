package agent

import (
	"context"

	"github.com/reprov/reprov/agent/store"
)

// learnDeviceOnly records that the node's IPMI BMC kept the written boot
// device but cleared the valid bit (bmc.ErrDeviceOnly: OpenIPMI's
// simulator and some old BMCs do this), so that `reprov plan` and `reprov
// quirks list` name the option to set: bmc.options.verify: device-only.
// The reason of the failed path says so already; a store that cannot
// record it only loses the advice.
func (r *nodeRun) learnDeviceOnly(ctx context.Context, cause error) {
	q := store.Quirk{Node: r.n.Name, Model: r.n.Labels[ModelLabel], Quirk: store.QuirkDeviceOnlyBMC,
		Evidence: mustJSON(map[string]any{"step": StepOOBBoot, "bmc": r.n.BMC.Address, "error": cause.Error()}), RunID: r.job.RunID}
	if err := r.untilLease(context.WithoutCancel(ctx), "record a learned quirk", func(ctx context.Context) error {
		return r.e.cfg.Store.LearnQuirk(ctx, q)
	}); err != nil {
		r.log.Warn("quirk not recorded", "quirk", q.Quirk, "err", err)
		return
	}
	r.rep.Learned = append(r.rep.Learned, store.QuirkDeviceOnlyBMC)
	r.log.Warn("learned: the BMC keeps the boot device but clears the valid bit; set bmc.options.verify: device-only for the node")
}
