package agent

import (
	"context"
	"time"

	"github.com/reprov/reprov/agent/fleet"
	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/inventory"
)

// openBMC is the default Config.OpenBMC: fleet.OpenBMC with the engine's
// limiter. With an observer (SetObserver), opening the session counts as a
// request to the BMC, and so does every call of the client it returns.
func (e *Engine) openBMC(ctx context.Context, n inventory.Node) (bmc.Client, error) {
	start := time.Now()
	c, det, err := fleet.OpenBMC(ctx, n, e.cfg.Limiter, nil, e.log)
	if e.obs == nil {
		return c, err
	}
	e.obs.BMCResult(det.Protocol, err, time.Since(start))
	if err != nil {
		return nil, err
	}
	return bmc.WithObserver(c, e.obs), nil
}
