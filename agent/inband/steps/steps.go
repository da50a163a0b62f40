// Package steps is the one Go implementation of each in-band step —
// identify, resolve-disk, wipe-boot-sector, restore-boot-sector, next-boot
// and reboot. Each step takes a host.Host, through which every side effect
// goes, and returns a typed result that is also the step's JSON protocol
// (docs/inband.md): the same function serves the agent on the node, the
// controller's POSIX-commands path, plan mode, the lab and the tests.
//
// Destructive steps take a BeforeWrite hook that runs after every check
// passed and right before the first write, so callers record their audit
// intent there; they record the outcome from the returned error.
package steps

import (
	"errors"
	"fmt"
)

// ProtocolVersion is the version of every result's JSON ("version" field).
// It changes when a field changes meaning or goes away; new fields do not
// change it.
const ProtocolVersion = 1

// Sentinel errors callers branch on. Every one has a protocol code
// (ErrorCode) so that an error crosses the SSH link as itself.
var (
	// ErrIdentityMismatch: a fact the inventory and the node both have differs.
	ErrIdentityMismatch = errors.New("identity mismatch")
	// ErrNothingToCompare: no identity fact could be compared.
	ErrNothingToCompare = errors.New("nothing to compare: no identity fact both sides know")
	// ErrDiskRefused: the target is not a whole, writable, fixed disk.
	ErrDiskRefused = errors.New("disk refused")
	// ErrChangedSinceSaved: the bytes to zero differ from the saved copy.
	ErrChangedSinceSaved = errors.New("boot sector changed since it was saved")
	// ErrVerifyFailed: a read-back did not show what was written.
	ErrVerifyFailed = errors.New("read-back verification failed")
	// ErrRestoreRefused: the disk no longer holds what the wipe left.
	ErrRestoreRefused = errors.New("restore refused")
	// ErrNotSaved: a wipe was asked for without a saved copy.
	ErrNotSaved = errors.New("refusing to wipe without saving the sectors first")
	// ErrNoNetworkEntry: no UEFI boot entry boots from the network.
	ErrNoNetworkEntry = errors.New("no UEFI network boot entry")
	// ErrNoIPMI: the in-band IPMI device is not available.
	ErrNoIPMI = errors.New("in-band IPMI unavailable")
)

// Protocol error codes, in the "code" field of an ErrorResult.
const (
	CodeIdentityMismatch   = "identity_mismatch"
	CodeNothingToCompare   = "nothing_to_compare"
	CodeDiskRefused        = "disk_refused"
	CodeChangedSinceSaved  = "changed_since_saved"
	CodeVerifyFailed       = "verify_failed"
	CodeRestoreRefused     = "restore_refused"
	CodeNotSaved           = "not_saved"
	CodeNoNetworkEntry     = "no_network_entry"
	CodeNoIPMI             = "no_ipmi"
	CodeUsage              = "usage"
	CodeInterrupted        = "interrupted"
	CodeFailed             = "failed"
	codeFallbackForUnknown = CodeFailed
)

var codes = []struct {
	code string
	err  error
}{
	{CodeIdentityMismatch, ErrIdentityMismatch},
	{CodeNothingToCompare, ErrNothingToCompare},
	{CodeDiskRefused, ErrDiskRefused},
	{CodeChangedSinceSaved, ErrChangedSinceSaved},
	{CodeVerifyFailed, ErrVerifyFailed},
	{CodeRestoreRefused, ErrRestoreRefused},
	{CodeNotSaved, ErrNotSaved},
	{CodeNoNetworkEntry, ErrNoNetworkEntry},
	{CodeNoIPMI, ErrNoIPMI},
}

// ErrorCode returns the protocol code of err.
func ErrorCode(err error) string {
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return codeFallbackForUnknown
}

// ErrorResult is what a step prints instead of its result when it fails.
type ErrorResult struct {
	Version int    `json:"version"`
	Step    string `json:"step"`
	Code    string `json:"code"`
	Error   string `json:"error"`
	// Detail is the step's partial result where it helps (the identity
	// check that failed, the disk that was refused).
	Detail any `json:"detail,omitempty"`
}

// RemoteError is a step error that came back over the protocol. It
// matches (errors.Is) the sentinel of its code.
type RemoteError struct {
	Step    string
	Code    string
	Message string
}

// Error implements error.
func (e *RemoteError) Error() string { return e.Message }

// Unwrap returns the sentinel of the code, if any.
func (e *RemoteError) Unwrap() error {
	for _, c := range codes {
		if c.code == e.Code {
			return c.err
		}
	}
	return nil
}

// NewErrorResult returns the ErrorResult for err from step.
func NewErrorResult(step string, err error, detail any) ErrorResult {
	return ErrorResult{Version: ProtocolVersion, Step: step, Code: ErrorCode(err), Error: err.Error(), Detail: detail}
}

// Check is one check a step made, for the operator reading a result.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

func checkf(name string, ok bool, format string, args ...any) Check {
	return Check{Name: name, OK: ok, Detail: fmt.Sprintf(format, args...)}
}
