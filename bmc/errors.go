package bmc

import (
	"errors"
	"fmt"
)

// Sentinel errors callers branch on. Implementations wrap them (with %w) in
// an error that says what was tried; errors never contain credentials.
var (
	// ErrAuthentication: the BMC refused the username or password.
	ErrAuthentication = errors.New("BMC refused the credentials")
	// ErrNoAnswer: the BMC did not answer (after the configured tries).
	ErrNoAnswer = errors.New("no answer from BMC")
	// ErrCipherSuite: none of the allowed IPMI cipher suites is offered.
	ErrCipherSuite = errors.New("cipher suite not offered")
	// ErrInsecureRefused: the configuration asks for cipher suite 0 or
	// IPMI 1.5 without the node opting in.
	ErrInsecureRefused = errors.New("insecure IPMI refused")
	// ErrReverted: the BMC accepted a write and read back something else.
	ErrReverted = errors.New("override reverted by the BMC")
	// ErrDeviceOnly: an IPMI BMC kept the written boot device but read
	// back the valid bit clear (OpenIPMI's ipmi_sim, some old BMCs): the
	// override may still be honoured; the node needs verify: device-only.
	// It is always wrapped together with ErrReverted.
	ErrDeviceOnly = errors.New("the BMC kept the boot device but cleared the valid bit (a device-only BMC): set bmc.options.verify: device-only for this node in the inventory")
	// ErrUnsupported: the BMC does not support the operation or value.
	ErrUnsupported = errors.New("not supported by the BMC")
	// ErrBusy: the BMC answered busy / out of resources / initializing.
	ErrBusy = errors.New("BMC busy")
	// ErrTLS: the Redfish service's certificate could not be verified.
	ErrTLS = errors.New("TLS verification failed")
	// ErrPoweredOff: a power cycle or reset was refused because the machine
	// is off, and nothing was changed. Callers that want the machine
	// running power it on instead (IPMI BMCs commonly refuse Chassis
	// Control cycle of an off chassis with completion code D5h).
	ErrPoweredOff = errors.New("machine is powered off")
	// ErrDryRun marks a write that a dry-run wrapper described and skipped.
	ErrDryRun = errors.New("dry run: not executed")
)

// TemporaryError marks an error worth retrying (a timeout, a busy BMC, an
// HTTP 5xx/429). The retry wrapper retries only these.
type TemporaryError struct{ Err error }

// Error implements error.
func (e *TemporaryError) Error() string { return e.Err.Error() }

// Unwrap returns the wrapped error.
func (e *TemporaryError) Unwrap() error { return e.Err }

// Temporary wraps err as retryable; nil stays nil.
func Temporary(err error) error {
	if err == nil {
		return nil
	}
	return &TemporaryError{Err: err}
}

// IsTemporary reports whether err (or anything it wraps) is retryable.
func IsTemporary(err error) bool {
	var t *TemporaryError
	return errors.As(err, &t)
}

// OpError says which operation on which BMC failed.
type OpError struct {
	Op  string // e.g. "set boot override", "connect"
	BMC string // host:port or URL, never with credentials
	Err error
}

// Error implements error.
func (e *OpError) Error() string { return fmt.Sprintf("%s %s: %v", e.Op, e.BMC, e.Err) }

// Unwrap returns the wrapped error.
func (e *OpError) Unwrap() error { return e.Err }
