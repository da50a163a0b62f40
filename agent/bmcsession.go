package agent

import (
	"context"
	"errors"
	"time"

	"github.com/reprov/reprov/bmc"
)

// maxBMCSessions bounds how many sessions withBMC opens for one call.
const maxBMCSessions = 8

// lostBMC reports whether err says the BMC stopped answering (after the
// retries of one session): a BMC that reboots, or a lossy link. Worth a
// new session while time is left. An answer that refuses (credentials,
// unsupported, another machine) is not, and neither is a power action
// whose outcome is unknown: it is never repeated blindly.
func lostBMC(err error) bool {
	if err == nil || errors.Is(err, bmc.ErrPowerOutcomeUnknown) || errors.Is(err, bmc.ErrAuthentication) ||
		errors.Is(err, context.Canceled) {
		return false
	}
	return errors.Is(err, bmc.ErrNoAnswer) || bmc.IsTemporary(err)
}

// withBMC runs fn on a session with the node's BMC, opening one when *c is
// nil. When the BMC stops answering (lostBMC) the session is closed and fn
// runs again on a new one after a pause — the BMC may be rebooting, or its
// link losing datagrams — until ctx ends or maxBMCSessions were opened; the
// error returned is then the last one the BMC caused, not the deadline.
// fn must be safe to repeat: a read, or writing the same boot override.
// On return *c is the open session (nil when none could be opened).
func (r *nodeRun) withBMC(ctx context.Context, c *bmc.Client, fn func(context.Context, bmc.Client) error) error {
	var last error
	for attempt := 1; ; attempt++ {
		// One session gets at most half the time left: a BMC that
		// rebooted forgot it, and only a new one can answer.
		sctx, cancel := ctx, context.CancelFunc(func() {})
		if dl, ok := ctx.Deadline(); ok && attempt < maxBMCSessions {
			if left := time.Until(dl); left > 4*time.Second {
				sctx, cancel = context.WithTimeout(ctx, left/2)
			}
		}
		err := func() error {
			if *c == nil {
				nc, err := r.e.cfg.OpenBMC(sctx, r.n)
				if err != nil {
					return err
				}
				*c = nc
			}
			return fn(sctx, *c)
		}()
		cut := err != nil && sctx.Err() != nil && ctx.Err() == nil
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil && last != nil {
			return last
		}
		if !cut && (!lostBMC(err) || ctx.Err() != nil) {
			return err
		}
		last = err
		if old := *c; old != nil {
			// A BMC that rebooted forgot the session: closing it waits
			// for an answer that never comes, holding the BMC's slot in
			// the limiter; one second is enough for a BMC that answers.
			// A session whose exchange was cut is closed a little later,
			// aside: go-ipmi's exchange goroutine may still be sending on
			// it, and closing under it crashes the process.
			closeOld := func() {
				cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
				defer ccancel()
				if err := old.Close(cctx); err != nil {
					r.log.Debug("close a BMC session that stopped answering", "err", err)
				}
			}
			if cut {
				go func() {
					time.Sleep(2 * time.Second)
					closeOld()
				}()
			} else {
				closeOld()
			}
			*c = nil
		}
		if attempt >= maxBMCSessions {
			return err
		}
		pause := min(time.Duration(attempt)*time.Second, 4*time.Second)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < pause+time.Second {
			return err
		}
		r.log.Info("the BMC stopped answering; trying again with a new session", "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(pause):
		}
	}
}
