package redfish

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/reprov/reprov/bmc"
	"github.com/stmcginnis/gofish"
	"github.com/stmcginnis/gofish/schemas"
)

// Redfish boot values.
const (
	targetNone = "None"
	targetPxe  = "Pxe"
	targetHdd  = "Hdd"
	targetBIOS = "BiosSetup"

	enabledDisabled   = "Disabled"
	enabledOnce       = "Once"
	enabledContinuous = "Continuous"

	modeLegacy = "Legacy"
	modeUEFI   = "UEFI"
)

// BootModeOverride policies (Options.BootModeOverride).
const (
	ModeOverrideAuto   = "auto"
	ModeOverrideAlways = "always"
	ModeOverrideNever  = "never"
)

// bootPatch is the PATCH body: a fresh Boot object with only what is set.
type bootPatch struct {
	Boot bootFields
}

type bootFields struct {
	BootSourceOverrideTarget  string
	BootSourceOverrideEnabled string
	BootSourceOverrideMode    string `json:",omitempty"`
}

func (f bootFields) String() string {
	s := fmt.Sprintf("Target=%s Enabled=%s", f.BootSourceOverrideTarget, f.BootSourceOverrideEnabled)
	if f.BootSourceOverrideMode != "" {
		s += " Mode=" + f.BootSourceOverrideMode
	}
	return s
}

func targetFor(d bmc.BootDevice) (string, error) {
	switch d {
	case bmc.BootPXE:
		return targetPxe, nil
	case bmc.BootDisk:
		return targetHdd, nil
	case bmc.BootBIOS:
		return targetBIOS, nil
	case bmc.BootNone, "":
		return targetNone, nil
	default:
		return "", fmt.Errorf("%w: boot device %q", bmc.ErrUnsupported, d)
	}
}

func modeFor(m bmc.BootMode) (string, error) {
	switch m {
	case bmc.BootModeUnset:
		return "", nil
	case bmc.BootModeLegacy:
		return modeLegacy, nil
	case bmc.BootModeUEFI:
		return modeUEFI, nil
	default:
		return "", fmt.Errorf("%w: boot mode %q", bmc.ErrUnsupported, m)
	}
}

func deviceOf(target, enabled string) bmc.BootDevice {
	if enabled == enabledDisabled || enabled == "" {
		return bmc.BootNone
	}
	switch target {
	case targetNone, "":
		return bmc.BootNone
	case targetPxe:
		return bmc.BootPXE
	case targetHdd:
		return bmc.BootDisk
	case targetBIOS:
		return bmc.BootBIOS
	default:
		return bmc.BootDevice(strings.ToLower(target))
	}
}

func overrideOf(b schemas.Boot) bmc.BootOverride {
	o := bmc.BootOverride{
		Device:     deviceOf(string(b.BootSourceOverrideTarget), string(b.BootSourceOverrideEnabled)),
		Persistent: b.BootSourceOverrideEnabled == enabledContinuous,
	}
	switch b.BootSourceOverrideMode {
	case modeLegacy:
		o.Mode = bmc.BootModeLegacy
	case modeUEFI:
		o.Mode = bmc.BootModeUEFI
	}
	return o
}

func readBackString(b schemas.Boot) string {
	s := fmt.Sprintf("Target=%s Enabled=%s", b.BootSourceOverrideTarget, b.BootSourceOverrideEnabled)
	if b.BootSourceOverrideMode != "" {
		s += " Mode=" + string(b.BootSourceOverrideMode)
	}
	return s
}

// BootOverride implements bmc.BootOverrideGetter.
func (c *client) BootOverride(ctx context.Context) (bmc.BootOverride, error) {
	const op = "read boot override"
	api, err := c.begin(ctx, op)
	if err != nil {
		return bmc.BootOverride{}, err
	}
	s, err := c.readSystem(ctx, api, op)
	if err != nil {
		return bmc.BootOverride{}, err
	}
	return overrideOf(s.sys.Boot), nil
}

// SetBootOverride implements bmc.BootOverrideSetter. Device none clears
// the override (Target None, Enabled Disabled).
func (c *client) SetBootOverride(ctx context.Context, o bmc.BootOverride) (bmc.BootResult, error) {
	const op = "set boot override"
	var res bmc.BootResult
	api, err := c.begin(ctx, op)
	if err != nil {
		return res, err
	}
	fail := func(err error) (bmc.BootResult, error) {
		return res, &bmc.OpError{Op: op, BMC: c.base, Err: err}
	}
	target, err := targetFor(o.Device)
	if err != nil {
		return fail(err)
	}
	mode, err := modeFor(o.Mode)
	if err != nil {
		return fail(err)
	}
	enabled := enabledOnce
	switch {
	case target == targetNone:
		enabled = enabledDisabled
	case o.Persistent:
		enabled = enabledContinuous
	}
	policy := strings.ToLower(c.opts.BootModeOverride)
	switch policy {
	case "":
		policy = ModeOverrideAuto
	case ModeOverrideAuto, ModeOverrideAlways, ModeOverrideNever:
	default:
		return fail(fmt.Errorf("unknown boot_mode_override %q (want auto, always or never)", c.opts.BootModeOverride))
	}
	level := c.opts.Verify
	switch level {
	case "":
		level = bmc.VerifyFull
	case bmc.VerifyFull, bmc.VerifyDeviceOnly, bmc.VerifyOff:
	default:
		return fail(fmt.Errorf("unknown verify level %q (want full, device-only or off)", c.opts.Verify))
	}

	s, err := c.readSystem(ctx, api, op)
	if err != nil {
		return res, err
	}
	if allowed := s.sys.Boot.AllowableBootSourceOverrideTargetValues; target != targetNone && len(allowed) > 0 &&
		!containsTarget(allowed, target) {
		return fail(fmt.Errorf("%w: BootSourceOverrideTarget %s; the BMC allows %v", bmc.ErrUnsupported, target, allowed))
	}
	if allowed := s.enabledAllowed; len(allowed) > 0 && !contains(allowed, enabled) {
		what := "BootSourceOverrideEnabled " + enabled
		if enabled == enabledContinuous {
			what = "a persistent override (BootSourceOverrideEnabled Continuous)"
		}
		return fail(fmt.Errorf("%w: %s; the BMC allows %v", bmc.ErrUnsupported, what, allowed))
	}
	want := bootFields{BootSourceOverrideTarget: target, BootSourceOverrideEnabled: enabled}
	want.BootSourceOverrideMode, err = chooseMode(policy, mode, s, &res.Warnings)
	if err != nil {
		return fail(err)
	}

	err = c.patchBoot(ctx, api, s, want)
	if st := statusOf(err); st == http.StatusPreconditionFailed {
		// Someone changed the system between our read and our PATCH:
		// read again for a fresh ETag and try once more.
		c.log.Debug("boot PATCH: stale ETag, re-reading", "err", err)
		if s, err = c.readSystem(ctx, api, op); err != nil {
			return res, err
		}
		err = c.patchBoot(ctx, api, s, want)
	} else if st == http.StatusBadRequest && policy == ModeOverrideAuto {
		// Vendors disagree on BootSourceOverrideMode (iLO 5 refuses it,
		// Supermicro requires it): try once the other way.
		alt := want
		if want.BootSourceOverrideMode != "" {
			alt.BootSourceOverrideMode = ""
		} else if s.hasMode {
			alt.BootSourceOverrideMode = firstNonEmpty(mode, string(s.sys.Boot.BootSourceOverrideMode))
		}
		if alt != want {
			c.log.Debug("boot PATCH refused, retrying with/without BootSourceOverrideMode", "sent", want.String(), "err", err)
			refused := err // the BMC's answer to the first PATCH, kept for the error
			if s, err = c.readSystem(ctx, api, op); err != nil {
				return res, err
			}
			err = refused
			err2 := c.patchBoot(ctx, api, s, alt)
			if err2 == nil {
				if want.BootSourceOverrideMode != "" {
					res.Warnings = append(res.Warnings, fmt.Sprintf(
						"the BMC refused BootSourceOverrideMode=%s; override set without a mode (the BMC boots in its own mode, now %s)",
						want.BootSourceOverrideMode, firstNonEmpty(string(s.sys.Boot.BootSourceOverrideMode), "unknown")))
				} else {
					res.Warnings = append(res.Warnings, fmt.Sprintf(
						"the BMC requires BootSourceOverrideMode; sent %s", alt.BootSourceOverrideMode))
				}
				want = alt
				err = nil
			} else {
				err = fmt.Errorf("%w (sent again as %s: %v)", err, alt, err2)
			}
		}
	}
	if err != nil {
		if ctx.Err() == nil && statusOf(err) == http.StatusPreconditionRequired {
			err = fmt.Errorf("the BMC requires If-Match but gave no ETag: %w", err)
		}
		return res, classify(ctx, c.base, op, fmt.Errorf("sending %s: %w", want, err))
	}
	for _, w := range res.Warnings {
		c.log.Warn("boot override", "warning", w)
	}

	if level == bmc.VerifyOff {
		res.Verified = bmc.VerifyOff
		return res, nil
	}
	after, err := c.readSystem(ctx, api, op)
	if err != nil {
		return res, err
	}
	res.ReadBack = overrideOf(after.sys.Boot)
	got := after.sys.Boot
	mismatch := res.ReadBack.Device != o.Device && !(o.Device == "" && res.ReadBack.Device == bmc.BootNone)
	if level == bmc.VerifyFull && !mismatch && target != targetNone {
		mismatch = string(got.BootSourceOverrideEnabled) != enabled ||
			(want.BootSourceOverrideMode != "" && string(got.BootSourceOverrideMode) != want.BootSourceOverrideMode)
	}
	if mismatch {
		return res, &bmc.OpError{Op: op, BMC: c.base, Err: fmt.Errorf(
			"%w: wrote %s, read back %s", bmc.ErrReverted, want, readBackString(got))}
	}
	res.Verified = level
	c.log.Debug("boot override set", "wrote", want.String(), "verified", level)
	return res, nil
}

func containsTarget(list []schemas.BootSource, t string) bool {
	for _, v := range list {
		if string(v) == t {
			return true
		}
	}
	return false
}

// chooseMode decides the BootSourceOverrideMode to send ("" for none).
//   - never: none.
//   - always: the requested mode, else the system's current one.
//   - auto: none when the system has no mode property; where it lists the
//     mode's allowable values (the mark of a writable mode, and what
//     Supermicro needs) the requested mode, which must be allowed, else the
//     current one; where it shows a mode without allowable values, the
//     requested mode only (a refusal is then retried without it).
func chooseMode(policy, mode string, s *system, warnings *[]string) (string, error) {
	cur := string(s.sys.Boot.BootSourceOverrideMode)
	switch policy {
	case ModeOverrideNever:
		if mode != "" && mode != cur {
			*warnings = append(*warnings, fmt.Sprintf("boot mode %s not sent (boot_mode_override: never); the BMC reports %q", mode, cur))
		}
		return "", nil
	case ModeOverrideAlways:
		return firstNonEmpty(mode, cur), nil
	}
	if !s.hasMode {
		if mode != "" {
			*warnings = append(*warnings, fmt.Sprintf("the BMC has no BootSourceOverrideMode; boot mode %s not set", mode))
		}
		return "", nil
	}
	if len(s.modeAllowed) > 0 {
		if mode == "" {
			return cur, nil
		}
		if !contains(s.modeAllowed, mode) {
			return "", fmt.Errorf("%w: BootSourceOverrideMode %s; the BMC allows %v", bmc.ErrUnsupported, mode, s.modeAllowed)
		}
		return mode, nil
	}
	return mode, nil
}

// patchBoot sends want to the system with If-Match from s, and follows a
// 202 task monitor.
func (c *client) patchBoot(ctx context.Context, api *gofish.APIClient, s *system, want bootFields) error {
	headers := map[string]string{}
	if s.etag != "" {
		headers["If-Match"] = s.etag
	}
	resp, err := api.PatchWithHeaders(c.system, bootPatch{Boot: want}, headers)
	if err != nil {
		return asHTTPError(err, http.MethodPatch, c.system)
	}
	defer schemas.DeferredCleanupHTTPResponse(resp)
	if resp.StatusCode == http.StatusAccepted {
		info := schemas.ParseTaskMonitorInfo(api, resp)
		return c.waitTask(ctx, api, info)
	}
	return nil
}

// errTaskFailed marks a task that ended in an error state.
var errTaskFailed = errors.New("task failed")
