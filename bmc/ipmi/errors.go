package ipmi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"

	"github.com/bougou/go-ipmi/pkg/types"

	"github.com/reprov/reprov/bmc"
)

// completionCode returns the IPMI completion code an error carries.
func completionCode(err error) (types.CompletionCode, bool) {
	var re *types.ResponseError
	if errors.As(err, &re) && re.CompletionCode() != types.CodeOK {
		return re.CompletionCode(), true
	}
	return 0, false
}

// rmcpStatus returns the RMCP+ status code of a session setup error.
func rmcpStatus(err error) (types.RmcpStatusCode, bool) {
	var se *types.RmcpStatusError
	if errors.As(err, &se) {
		return se.StatusCode(), true
	}
	return 0, false
}

// isNoAnswer reports whether err means the BMC did not answer: a read
// timeout, no matching datagram before the deadline, or nothing listening
// (ICMP port unreachable).
func isNoAnswer(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return true
	}
	// go-ipmi's unexported errNoDatagramMatched.
	return strings.Contains(err.Error(), "no datagram matched")
}

// noAnswer describes an exchange the BMC did not answer, err being
// go-ipmi's error for it: which request, sent how many times (go-ipmi's own
// text counts one attempt: the resends are wireConn's).
func noAnswer(err error, sends int) error {
	what := err.Error()
	if cmd, _, ok := strings.Cut(what, " failed, err: "); ok {
		what = strings.TrimPrefix(cmd, "cmd: ")
	}
	return bmc.Temporary(fmt.Errorf("%w: %s (sent %d times, not answered)", bmc.ErrNoAnswer, what, max(sends, 1)))
}

// busyCodes are the completion codes that mean "try again later" (IPMI
// v2.0 Table 5-2): node busy, timeout while processing, out of space
// (resources), response could not be provided, SDR repository in update
// mode, device firmware in update mode, BMC initialization in progress.
func isBusyCode(cc types.CompletionCode) bool {
	switch cc {
	case types.CodeNodeBusy, // C0h
		types.CodeProcessTimeout,                      // C3h
		types.CodeOutOfSpace,                          // C4h
		types.CodeCannotProvideResponse,               // CEh
		types.CodeCannotProvideResponseSDRRInUpdate,   // D0h
		types.CodeCannotProvideResponseFirmwareUpdate, // D1h
		types.CodeCannotProvideResponseBMCInitialize:  // D2h
		return true
	}
	return false
}

// isUnsupportedCode: the BMC does not implement the command, parameter or
// value (or not in the present state).
func isUnsupportedCode(cc types.CompletionCode) bool {
	switch cc {
	case types.CodeParameterNotSupported, // 80h for parameter commands
		types.CodeInvalidCommand,          // C1h
		types.CodeInvalidCommandForLUN,    // C2h
		types.CodeParameterOutOfRange,     // C9h
		types.CodeRequestDataFieldInvalid, // CCh
		types.CodeIllegalCommand,          // CDh
		types.CodeNotSupported,            // D5h
		types.CodeSubFnDisabled:           // D6h
		return true
	}
	return false
}

// classify maps a go-ipmi error from an in-session command to reprov's
// sentinels: context errors stay as they are, busy codes and timeouts
// become temporary, the rest is named.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var opErr *bmc.OpError
	switch {
	case errors.As(err, &opErr) || errors.Is(err, bmc.ErrNoAnswer) || errors.Is(err, bmc.ErrReverted) || errors.Is(err, bmc.ErrUnsupported):
		// Already classified.
		return err
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return err
	case isNoAnswer(err):
		return bmc.Temporary(fmt.Errorf("%w: %v", bmc.ErrNoAnswer, err))
	}
	if cc, ok := completionCode(err); ok {
		switch {
		case isBusyCode(cc):
			return bmc.Temporary(fmt.Errorf("%w: completion code %#02x (%s)", bmc.ErrBusy, uint8(cc), cc))
		case cc == types.CodeInsufficientPrivilege:
			return fmt.Errorf("%w: insufficient privilege (completion code d4h)", bmc.ErrAuthentication)
		case isUnsupportedCode(cc):
			return fmt.Errorf("%w: completion code %#02x (%s)", bmc.ErrUnsupported, uint8(cc), cc)
		}
	}
	return err
}

// setupFailure is how one cipher suite's session setup failed.
type setupFailure int

const (
	setupOther setupFailure = iota
	setupSuiteRefused
	setupAuth
	setupBusy
	setupNoAnswer
	setupCanceled
)

// statusFailure maps an RMCP+ status code of a session setup message.
func statusFailure(msg string, st types.RmcpStatusCode) (setupFailure, error) {
	switch st {
	case types.RmcpStatusCodeInvalidAuthAlg, // 04h
		types.RmcpStatusCodeInvalidIntegrityAlg,        // 05h
		types.RmcpStatusCodeNoMatchingAuthPayload,      // 06h
		types.RmcpStatusCodeNoMatchingIntegrityPayload, // 07h
		types.RmcpStatusCodeInvalidConfidentAlg,        // 10h
		types.RmcpStatusCodeNoCipherSuiteMatch:         // 11h
		return setupSuiteRefused, fmt.Errorf("%s: RMCP+ status %#02x (%s)", msg, uint8(st), st)
	case types.RmcpStatusCodeNoResToCreateSess, // 01h
		types.RmcpStatusCodeNoResToCreateSessAtRole: // 0Bh
		return setupBusy, bmc.Temporary(fmt.Errorf("%w: no session slot free (%s: RMCP+ status %#02x)", bmc.ErrBusy, msg, uint8(st)))
	case types.RmcpStatusCodeUnauthorizedName, // 0Dh
		types.RmcpStatusCodeInvalidNameLength,          // 0Ch
		types.RmcpStatusCodeInvalidIntegrityCheckValue, // 0Fh
		types.RmcpStatusCodeUnauthorizedGUID:           // 0Eh
		return setupAuth, fmt.Errorf("%w: %s: RMCP+ status %#02x (%s)", bmc.ErrAuthentication, msg, uint8(st), st)
	case types.RmcpStatusCodeInvalidRole, // 09h
		types.RmcpStatusCodeUnauthorizedRoleOfPriLevel: // 0Ah
		return setupAuth, fmt.Errorf("%w: privilege level refused for this user (%s: RMCP+ status %#02x)", bmc.ErrAuthentication, msg, uint8(st))
	}
	return setupOther, fmt.Errorf("%s: RMCP+ status %#02x (%s)", msg, uint8(st), st)
}

// rakp3Refused: the status a BMC answers a RAKP message 3 whose
// authentication code does not match with (IPMI v2.0 §13.31 leaves the
// choice among these to the BMC).
func rakp3Refused(st types.RmcpStatusCode) bool {
	switch st {
	case types.RmcpStatusCodeUnauthorizedName, // 0Dh
		types.RmcpStatusCodeInvalidIntegrityCheckValue: // 0Fh
		return true
	}
	return false
}

// classifySetup maps a failed Connect to what it means for the next suite.
// go-ipmi formats the handshake's errors with %v, losing their types, so
// the handshake is read from what the wire showed (hs) instead.
func classifySetup(ctx context.Context, err error, hs handshake, suite int) (setupFailure, error) {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return setupCanceled, fmt.Errorf("%w (during session setup)", ctxErr)
	}
	if st, ok := rmcpStatus(err); ok {
		return statusFailure("session setup", st)
	}
	if cc, ok := completionCode(err); ok {
		switch {
		case isBusyCode(cc):
			return setupBusy, bmc.Temporary(fmt.Errorf("%w: completion code %#02x (%s)", bmc.ErrBusy, uint8(cc), cc))
		case cc == types.CodeSetSessionPrivilegeLevelLevelNotAvailable,
			cc == types.CodeSetSessionPrivilegeLevelExceedsLimit,
			cc == types.CodeInsufficientPrivilege:
			return setupAuth, fmt.Errorf("%w: privilege level refused for this user (completion code %#02x)", bmc.ErrAuthentication, uint8(cc))
		}
		return setupOther, err
	}
	switch {
	case hs.openStatus > 0:
		return statusFailure("open session", types.RmcpStatusCode(hs.openStatus))
	case hs.rakp2Status > 0:
		return statusFailure("RAKP message 2", types.RmcpStatusCode(hs.rakp2Status))
	case hs.rakp4Status > 0 && hs.rakp1Sends > 1 && rakp3Refused(types.RmcpStatusCode(hs.rakp4Status)):
		// The RAKP message 2 taken verified with this password, so the BMC
		// knows these credentials: it checked RAKP message 3 against the
		// random number of another RAKP message 1 than the one answered.
		st := types.RmcpStatusCode(hs.rakp4Status)
		return setupBusy, bmc.Temporary(fmt.Errorf("RAKP message 4: RMCP+ status %#02x (%s) after RAKP message 1 was sent %d times: "+
			"the BMC kept the random number of another send than the one answered (RAKP message 2 verified with this password)",
			uint8(st), st, hs.rakp1Sends))
	case hs.rakp4Status > 0:
		return statusFailure("RAKP message 4", types.RmcpStatusCode(hs.rakp4Status))
	case hs.awaiting || isNoAnswer(err):
		return setupNoAnswer, noAnswer(err, hs.sends)
	case hs.rakp2Status == 0 && hs.lastSent == payloadRAKP1:
		if suite == 0 {
			return setupOther, fmt.Errorf("%w: go-ipmi cannot verify RAKP message 2 without an authentication algorithm (cipher suite 0)", bmc.ErrUnsupported)
		}
		return setupAuth, fmt.Errorf("%w: the BMC's RAKP message 2 does not verify with this password", bmc.ErrAuthentication)
	case hs.rakp4Status == 0 && hs.lastSent == payloadRAKP3:
		return setupAuth, fmt.Errorf("%w: the BMC's RAKP message 4 does not verify (session keys differ: BMC key Kg required?)", bmc.ErrAuthentication)
	}
	return setupOther, err
}
