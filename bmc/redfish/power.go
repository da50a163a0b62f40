package redfish

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/reprov/reprov/bmc"
	"github.com/stmcginnis/gofish"
	"github.com/stmcginnis/gofish/schemas"
)

// Reset types in order of preference for each action.
var (
	onTypes      = []string{"On", "ForceOn", "PushPowerButton"}
	offTypes     = []string{"ForceOff", "GracefulShutdown", "PushPowerButton"}
	restartTypes = []string{"ForceRestart", "PowerCycle"}
	resetTypes   = []string{"ForceRestart", "PowerCycle", "GracefulRestart"}
)

// pick is the first of prefs the system allows (all are assumed allowed
// when it lists none).
func pick(allowed, prefs []string) string {
	if len(allowed) == 0 {
		return prefs[0]
	}
	for _, p := range prefs {
		if contains(allowed, p) {
			return p
		}
	}
	return ""
}

// SetPower implements bmc.PowerSetter with the system's allowable reset
// types: on → On; off → ForceOff (else GracefulShutdown); reset →
// ForceRestart (else PowerCycle, GracefulRestart); cycle → On when off,
// else ForceRestart, else PowerCycle, else ForceOff/GracefulShutdown,
// wait until off, On. On when on and off when off do nothing. A 202 task
// monitor is followed to completion.
//
// A machine in transition (PoweringOn, PoweringOff) is first waited for,
// up to transitionWait: "on" while it powers off waits for Off and then
// sends On. A Reset refused with 409 Conflict (a BMC busy with a
// transition) is decided and sent again after the transition, at most
// conflictRetries times; the error then matches bmc.ErrBusy.
func (c *client) SetPower(ctx context.Context, action bmc.PowerAction) error {
	op := "power " + string(action)
	api, err := c.begin(ctx, op)
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		err = c.setPower(ctx, api, op, action)
		if statusOf(err) != http.StatusConflict || attempt >= conflictRetries || ctx.Err() != nil {
			return err
		}
		c.log.Debug("reset refused with 409 Conflict: waiting for the transition", "err", err, "attempt", attempt+1)
		if err := sleep(ctx, conflictWait); err != nil {
			return &bmc.OpError{Op: op, BMC: c.base, Err: fmt.Errorf("waiting after 409 Conflict: %w", err)}
		}
	}
}

// setPower reads the system, waits out a transition, and sends what
// action needs.
func (c *client) setPower(ctx context.Context, api *gofish.APIClient, op string, action bmc.PowerAction) error {
	s, err := c.readSystem(ctx, api, op)
	if err != nil {
		return err
	}
	if powerState(s.sys.PowerState).Transitional() {
		if s, err = c.waitSettled(ctx, api, op, s); err != nil {
			return err
		}
	}
	state := powerState(s.sys.PowerState)
	need := func(prefs []string) (string, error) {
		if t := pick(s.resetAllowed, prefs); t != "" {
			return t, nil
		}
		return "", &bmc.OpError{Op: op, BMC: c.base, Err: fmt.Errorf(
			"%w: none of the reset types %v; the system allows %v", bmc.ErrUnsupported, prefs, s.resetAllowed)}
	}
	reset := func(t string) error { return c.reset(ctx, api, s.sys, op, t) }

	switch action {
	case bmc.ActionOn:
		if state == bmc.PowerOn {
			c.log.Debug("already on")
			return nil
		}
		t, err := need(onTypes)
		if err != nil {
			return err
		}
		return reset(t)
	case bmc.ActionOff:
		if state == bmc.PowerOff {
			c.log.Debug("already off")
			return nil
		}
		t, err := need(offTypes)
		if err != nil {
			return err
		}
		return reset(t)
	case bmc.ActionReset:
		t, err := need(resetTypes)
		if err != nil {
			return err
		}
		return reset(t)
	case bmc.ActionCycle:
		if state == bmc.PowerOff {
			t, err := need(onTypes)
			if err != nil {
				return err
			}
			return reset(t)
		}
		if t := pick(s.resetAllowed, restartTypes); t != "" {
			return reset(t)
		}
		off, err := need(offTypes[:2])
		if err != nil {
			return err
		}
		on, err := need(onTypes[:2])
		if err != nil {
			return err
		}
		if err := reset(off); err != nil {
			return err
		}
		if err := c.waitPower(ctx, api, op, bmc.PowerOff); err != nil {
			return err
		}
		return reset(on)
	default:
		return &bmc.OpError{Op: op, BMC: c.base, Err: fmt.Errorf("%w: power action %q", bmc.ErrUnsupported, action)}
	}
}

// reset posts ComputerSystem.Reset and follows a task monitor.
func (c *client) reset(ctx context.Context, api *gofish.APIClient, sys *schemas.ComputerSystem, op, resetType string) error {
	c.log.Debug("reset", "type", resetType)
	// Actions carry no If-Match: the system's ETag changes with its power
	// state, and some services refuse If-Match on actions.
	sys.DisableEtagMatch(true)
	info, err := sys.Reset(schemas.ResetType(resetType))
	if err != nil {
		return classify(ctx, c.base, op, fmt.Errorf("ComputerSystem.Reset %s: %w", resetType, asHTTPError(err, http.MethodPost, "")))
	}
	if info != nil {
		if err := c.waitTask(ctx, api, info); err != nil {
			return classify(ctx, c.base, op, fmt.Errorf("ComputerSystem.Reset %s: %w", resetType, err))
		}
	}
	return nil
}

// waitSettled polls while the system is in transition (PoweringOn,
// PoweringOff), bounded by ctx and transitionWait, and returns the first
// read that is not.
func (c *client) waitSettled(ctx context.Context, api *gofish.APIClient, op string, s *system) (*system, error) {
	deadline := time.Now().Add(transitionWait)
	c.log.Debug("machine in transition: waiting", "state", s.sys.PowerState)
	for powerState(s.sys.PowerState).Transitional() {
		if time.Now().After(deadline) {
			return nil, &bmc.OpError{Op: op, BMC: c.base, Err: fmt.Errorf(
				"%w: system still %s after %v", bmc.ErrBusy, s.sys.PowerState, transitionWait)}
		}
		if err := sleep(ctx, powerPoll); err != nil {
			return nil, &bmc.OpError{Op: op, BMC: c.base, Err: fmt.Errorf("waiting for %s to end: %w", s.sys.PowerState, err)}
		}
		var err error
		if s, err = c.readSystem(ctx, api, op); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// waitPower polls until the system reports want, bounded by ctx and
// maxPowerWait.
func (c *client) waitPower(ctx context.Context, api *gofish.APIClient, op string, want bmc.PowerState) error {
	deadline := time.Now().Add(maxPowerWait)
	for {
		s, err := c.readSystem(ctx, api, op)
		if err != nil {
			return err
		}
		if powerState(s.sys.PowerState) == want {
			return nil
		}
		if time.Now().After(deadline) {
			return &bmc.OpError{Op: op, BMC: c.base, Err: fmt.Errorf(
				"%w: system still %s after %v", bmc.ErrNoAnswer, s.sys.PowerState, maxPowerWait)}
		}
		if err := sleep(ctx, powerPoll); err != nil {
			return &bmc.OpError{Op: op, BMC: c.base, Err: fmt.Errorf("waiting for power %s: %w", want, err)}
		}
	}
}

// waitTask polls a task monitor until it stops answering 202, honouring
// Retry-After (capped), bounded by ctx. A finished task whose TaskState
// is Exception, Killed, Cancelled or Interrupted is an error.
func (c *client) waitTask(ctx context.Context, api *gofish.APIClient, info *schemas.TaskMonitorInfo) error {
	if info == nil || info.TaskMonitor == "" {
		return nil // 202 without a monitor: nothing to follow
	}
	monitor := relativeURI(info.TaskMonitor)
	var taskURI string
	if info.Task != nil {
		taskURI = info.Task.ODataID
	}
	wait := taskPoll
	if !info.RetryAfter.IsZero() {
		wait = min(max(time.Until(info.RetryAfter), 0), maxTaskWait)
	}
	for {
		if err := sleep(ctx, wait); err != nil {
			return fmt.Errorf("waiting for task %s: %w", monitor, err)
		}
		resp, err := api.Get(monitor)
		if err != nil {
			if statusOf(err) == http.StatusNotFound && taskURI != "" {
				// Some services drop the monitor when the task ends: ask the task.
				return c.checkTask(api, taskURI)
			}
			return fmt.Errorf("task monitor %s: %w", monitor, err)
		}
		if resp.StatusCode == http.StatusAccepted {
			wait = taskPoll
			if d := parseRetryAfter(resp.Header.Get("Retry-After")); d > 0 {
				wait = min(d, maxTaskWait)
			}
			schemas.DeferredCleanupHTTPResponse(resp)
			continue
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		schemas.DeferredCleanupHTTPResponse(resp)
		return taskOutcome(monitor, body)
	}
}

func (c *client) checkTask(api *gofish.APIClient, uri string) error {
	resp, err := api.Get(uri)
	if err != nil {
		return fmt.Errorf("task %s: %w", uri, err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	schemas.DeferredCleanupHTTPResponse(resp)
	return taskOutcome(uri, body)
}

// taskOutcome reads a finished task's body (which may be empty or the
// operation's own response).
func taskOutcome(uri string, body []byte) error {
	var t struct {
		TaskState  string
		TaskStatus string
		Messages   []struct{ MessageID, Message string }
	}
	if json.Unmarshal(body, &t) != nil {
		return nil
	}
	switch t.TaskState {
	case "Exception", "Killed", "Cancelled", "Interrupted":
		msg := ""
		if len(t.Messages) > 0 {
			msg = ": " + t.Messages[0].Message
		}
		return fmt.Errorf("%w: task %s ended %s%s", errTaskFailed, uri, t.TaskState, msg)
	}
	return nil
}
