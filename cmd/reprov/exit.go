package main

import (
	"context"
	"errors"
	"fmt"
)

// Exit codes, everywhere (docs/configuration.md).
const (
	exitOK          = 0
	exitFailed      = 1 // the command ran and some node failed, or validate found errors
	exitUsage       = 2 // usage or configuration error
	exitInterrupted = 3
)

// exitError carries an exit code with the error that caused it.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageError marks err as a usage or configuration error (exit 2).
func usageError(err error) error { return &exitError{code: exitUsage, err: err} }

// usagef is usageError with formatting.
func usagef(format string, args ...any) error { return usageError(fmt.Errorf(format, args...)) }

// failedError marks err as "ran, but something failed" (exit 1).
func failedError(err error) error { return &exitError{code: exitFailed, err: err} }

// errSomeFailed is returned by commands whose per-node rows already say
// what failed; main prints nothing more for it.
var errSomeFailed = &exitError{code: exitFailed, err: errors.New("some nodes failed")}

// exitCode maps an error returned by a command to the process exit code.
func exitCode(ctx context.Context, err error) int {
	if err == nil {
		return exitOK
	}
	// Errors of packages that carry their own exit code (the agent tree's
	// usage errors) keep it.
	var coded interface{ ExitCode() int }
	if errors.As(err, &coded) && !errors.As(err, new(*exitError)) {
		if ctx.Err() != nil && coded.ExitCode() != exitUsage {
			return exitInterrupted
		}
		return coded.ExitCode()
	}
	var ee *exitError
	isExit := errors.As(err, &ee)
	switch {
	case isExit && ee.code == exitUsage:
		return exitUsage
	case errors.Is(err, context.Canceled) || ctx.Err() != nil:
		return exitInterrupted
	case isExit:
		return ee.code
	}
	return exitFailed
}
