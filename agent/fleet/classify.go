package fleet

import (
	"context"
	"errors"
	"fmt"

	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/inventory"
)

// sentinelReason is the short category of the bmc/inventory sentinel err
// wraps, most specific first: an error wrapping several (outcome unknown
// wrapping no answer) gets the first that matches.
func sentinelReason(err error) string {
	switch {
	case errors.Is(err, ErrBMCConfig):
		return "bad BMC configuration"
	case errors.Is(err, inventory.ErrSecret):
		return "credential not available"
	case errors.Is(err, bmc.ErrPowerOutcomeUnknown):
		return "power action outcome unknown"
	case errors.Is(err, bmc.ErrAuthentication):
		return "BMC refused the credentials"
	case errors.Is(err, bmc.ErrInsecureRefused):
		return "insecure IPMI refused"
	case errors.Is(err, bmc.ErrCipherSuite):
		return "cipher suite not offered"
	case errors.Is(err, bmc.ErrTLS):
		return "TLS verification failed"
	case errors.Is(err, bmc.ErrDeviceOnly):
		return "device-only BMC: set bmc.options.verify: device-only"
	case errors.Is(err, bmc.ErrReverted):
		return "override reverted by the BMC"
	case errors.Is(err, bmc.ErrUnsupported):
		return "not supported by the BMC"
	case errors.Is(err, bmc.ErrBusy):
		return "BMC busy"
	case errors.Is(err, bmc.ErrNoAnswer):
		return "no answer"
	case errors.Is(err, context.DeadlineExceeded):
		return "timed out"
	}
	return "error"
}

// Classify maps an operation's error to its Status and Reason: nil is ok;
// a SkipError or bmc.ErrDryRun is skipped; cancellation is interrupted;
// anything else failed, with the reason an error states itself (Reasoner)
// or the category of the bmc/inventory sentinel it wraps ("authentication
// failed", "no answer after 4 tries", ...), else "error".
func Classify(err error) (Status, string) {
	if err == nil {
		return StatusOK, ""
	}
	var skip *SkipError
	if errors.As(err, &skip) {
		return StatusSkipped, skip.Reason
	}
	if errors.Is(err, bmc.ErrDryRun) {
		return StatusSkipped, "dry run"
	}
	if errors.Is(err, context.Canceled) {
		return StatusInterrupted, "interrupted"
	}
	var rs Reasoner
	if errors.As(err, &rs) && rs.Reason() != "" {
		return StatusFailed, rs.Reason()
	}
	reason := sentinelReason(err)
	var re *bmc.RetryError
	if errors.As(err, &re) && re.Tries > 1 {
		reason = fmt.Sprintf("%s after %d tries", reason, re.Tries)
	}
	return StatusFailed, reason
}
