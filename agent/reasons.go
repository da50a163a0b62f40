package agent

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Failure reasons: the short category of why a node's reinstall did not
// end landed. They are the REASON column of `reprov reinstall`, the
// store's job reason prefix and the headings of
// docs/runbooks/when-a-node-does-not-land.md (which must list every one;
// a test checks it).
const (
	ReasonBMCUnreachable     = "precheck: BMC unreachable"
	ReasonBMCAuth            = "precheck: BMC refused the credentials"
	ReasonBMCConfig          = "precheck: bad BMC configuration"
	ReasonCredential         = "precheck: credential not available"
	ReasonPowerUnknown       = "precheck: power state unknown"
	ReasonSSHUnreachable     = "precheck: SSH unreachable"
	ReasonSSHHostKeyChanged  = "precheck: SSH host key changed"
	ReasonSSHHostKey         = "precheck: SSH host key not trusted"
	ReasonSSHAuth            = "precheck: SSH refused the credentials"
	ReasonSSHError           = "precheck: SSH failed"
	ReasonNoSSH              = "precheck: no SSH address"
	ReasonIdentifyFailed     = "precheck: identify failed"
	ReasonIdentityMismatch   = "identity mismatch"
	ReasonBMCIdentity        = "precheck: the BMC reports another machine"
	ReasonNothingToCompare   = "identity: nothing to compare"
	ReasonPreHook            = "pre-hook failed"
	ReasonNoPath             = "no path could be carried out"
	ReasonIgnoredOverride    = "board ignored the boot override"
	ReasonOldOSAfterInband   = "old OS booted again after the in-band step"
	ReasonNoReboot           = "node did not reboot after the in-band step"
	ReasonInbandFailed       = "in-band step failed"
	ReasonDiskRefused        = "boot disk refused"
	ReasonDidNotLand         = "did not land"
	ReasonNodeTimeout        = "node timeout"
	ReasonCancelled          = "cancelled by operator"
	ReasonInterrupted        = "interrupted"
	ReasonLeaseLost          = "lease lost"
	ReasonStore              = "job store error"
	ReasonInternal           = "internal error"
	ReasonBusy               = "busy"
	ReasonFailureBudget      = "not started: failure budget exhausted"
	ReasonInterruptedInStart = "interrupted before start"
	ReasonCorruptRecord      = "step record unreadable"
)

// Reasons lists every failure reason the engine can report, for the docs
// test.
func Reasons() []string {
	return []string{
		ReasonBMCUnreachable, ReasonBMCAuth, ReasonBMCConfig, ReasonCredential, ReasonPowerUnknown,
		ReasonSSHUnreachable, ReasonSSHHostKeyChanged, ReasonSSHHostKey, ReasonSSHAuth, ReasonSSHError, ReasonNoSSH, ReasonIdentifyFailed, ReasonIdentityMismatch, ReasonBMCIdentity, ReasonNothingToCompare,
		ReasonPreHook, ReasonNoPath, ReasonIgnoredOverride, ReasonOldOSAfterInband, ReasonNoReboot,
		ReasonInbandFailed, ReasonDiskRefused, ReasonDidNotLand, ReasonNodeTimeout, ReasonCancelled,
		ReasonInterrupted, ReasonLeaseLost, ReasonStore, ReasonInternal, ReasonBusy,
		ReasonFailureBudget, ReasonInterruptedInStart, ReasonCorruptRecord,
	}
}

// Failure is why a node's reinstall failed: a reason category, the step it
// happened in, the cause and the evidence seen. It implements
// fleet.Reasoner.
type Failure struct {
	// Category is one of the Reason constants.
	Category string
	// Step is the step that failed.
	Step string
	// Err is the cause (never holding a secret).
	Err error
	// Evidence is what was seen, for the job record.
	Evidence map[string]any
}

// Error implements error.
func (f *Failure) Error() string {
	if f.Err == nil {
		return f.Category
	}
	return f.Category + ": " + f.Err.Error()
}

// Unwrap returns the cause.
func (f *Failure) Unwrap() error { return f.Err }

// Reason returns the category (fleet.Reasoner).
func (f *Failure) Reason() string { return f.Category }

func fail(category, step string, err error, evidence map[string]any) *Failure {
	return &Failure{Category: category, Step: step, Err: err, Evidence: evidence}
}

// Stop causes: why a node's work stopped before it had a result.
var (
	errInterrupted = errors.New("interrupted")
	errCancelled   = errors.New("cancelled by operator")
	errLeaseLost   = errors.New("another controller took the job over")
	errNodeTimeout = errors.New("node timeout")
)

// notPossible marks a path that could not be carried out: the next path
// in the playbook is tried.
type notPossible struct{ err error }

func (n *notPossible) Error() string { return n.err.Error() }
func (n *notPossible) Unwrap() error { return n.err }

func cannot(format string, args ...any) error {
	return &notPossible{err: fmt.Errorf(format, args...)}
}

// mustJSON marshals v (map/struct of plain values) for the store.
func mustJSON(v any) json.RawMessage {
	if v == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(map[string]string{"marshal_error": err.Error()})
	}
	return b
}
