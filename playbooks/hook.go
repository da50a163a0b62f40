package playbooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// MaxHookOutput is how much of a hook's combined stdout and stderr is kept:
// the last MaxHookOutput bytes.
const MaxHookOutput = 16 << 10

// hookKillGrace is how long a timed-out or cancelled hook has between
// SIGTERM to its process group and SIGKILL.
const hookKillGrace = 5 * time.Second

// ErrHookTimeout is wrapped by the error of a hook that ran out of its
// timeout (and was killed).
var ErrHookTimeout = errors.New("hook timed out")

// The variables RunHook sets. No REPROV_* variable is inherited from the
// controller's environment: a pre-hook never sees a stale REPROV_RESULT, and
// reprov's own settings (which may hold a store DSN) stay with reprov.
const (
	EnvNode       = "REPROV_NODE"
	EnvRack       = "REPROV_RACK"
	EnvBMCAddress = "REPROV_BMC_ADDRESS"
	EnvSSHAddress = "REPROV_SSH_ADDRESS"
	EnvMACs       = "REPROV_MACS"
	EnvRun        = "REPROV_RUN"
	EnvResult     = "REPROV_RESULT"
	EnvReason     = "REPROV_REASON"
)

var hookEnvNames = []string{EnvNode, EnvRack, EnvBMCAddress, EnvSSHAddress, EnvMACs, EnvRun, EnvResult, EnvReason}

// reprovEnvPrefix starts every variable of reprov's own.
const reprovEnvPrefix = "REPROV_"

// HookEnv is what a hook learns about its node, through REPROV_*
// environment variables. It holds no credentials by construction.
type HookEnv struct {
	// Node is the node's name (REPROV_NODE).
	Node string
	// Rack is the node's rack (REPROV_RACK).
	Rack string
	// BMCAddress is the node's BMC address as in the inventory, without any
	// user:password@ part (REPROV_BMC_ADDRESS).
	BMCAddress string
	// SSHAddress is the node's SSH address (REPROV_SSH_ADDRESS).
	SSHAddress string
	// MACs are the node's MAC addresses (REPROV_MACS, space-separated).
	MACs []string
	// Run is the run's id (REPROV_RUN).
	Run string
	// Result is set for post-hooks only: "landed" or "failed" (REPROV_RESULT).
	Result string
	// Reason is set for post-hooks of a failed node: why (REPROV_REASON).
	Reason string
	// Withhold names inherited environment variables that are not passed
	// to the hook: the ones the inventory's credential references name
	// (see SecretEnvNames).
	Withhold []string
}

// Vars returns the REPROV_* assignments ("NAME=value"), in a fixed order.
// REPROV_RESULT and REPROV_REASON are present only when set.
func (e HookEnv) Vars() []string {
	vars := []string{
		EnvNode + "=" + e.Node,
		EnvRack + "=" + e.Rack,
		EnvBMCAddress + "=" + e.BMCAddress,
		EnvSSHAddress + "=" + e.SSHAddress,
		EnvMACs + "=" + strings.Join(e.MACs, " "),
		EnvRun + "=" + e.Run,
	}
	if e.Result != "" {
		vars = append(vars, EnvResult+"="+e.Result)
	}
	if e.Reason != "" {
		vars = append(vars, EnvReason+"="+e.Reason)
	}
	for i, v := range vars {
		vars[i] = strings.ReplaceAll(v, "\x00", "")
	}
	return vars
}

// Environ returns base without the withheld variables and without any
// REPROV_* variable, followed by Vars.
func (e HookEnv) Environ(base []string) []string {
	drop := make(map[string]bool, len(e.Withhold))
	for _, n := range e.Withhold {
		drop[n] = true
	}
	out := make([]string, 0, len(base)+8)
	for _, kv := range base {
		name, _, _ := strings.Cut(kv, "=")
		if !drop[name] && !strings.HasPrefix(name, reprovEnvPrefix) {
			out = append(out, kv)
		}
	}
	return append(out, e.Vars()...)
}

// HookResult is what one hook run did, for the node's event record.
type HookResult struct {
	// Hook is the hook's name.
	Hook string `json:"hook"`
	// ExitCode is the exit status; -1 when the command did not start or was
	// killed by a signal.
	ExitCode int `json:"exit_code"`
	// Output is the end of the combined stdout and stderr (at most
	// MaxHookOutput bytes).
	Output string `json:"output"`
	// OutputTruncated reports that earlier output was dropped.
	OutputTruncated bool `json:"output_truncated,omitempty"`
	// Duration is how long the hook ran.
	Duration time.Duration `json:"duration"`
	// TimedOut reports that the hook's timeout killed it.
	TimedOut bool `json:"timed_out,omitempty"`
}

// HookError is the error of a hook that did not succeed.
type HookError struct {
	// Hook is the hook's name.
	Hook string
	// ExitCode is the exit status, -1 when there is none.
	ExitCode int
	// TimedOut reports that the hook ran out of its timeout.
	TimedOut bool
	// Output is the captured end of its output.
	Output string
	// Err is the cause: ErrHookTimeout, the context's error, an
	// *exec.ExitError, or why the command could not start.
	Err error
}

// Error says which hook failed and how, with the last line of its output.
func (e *HookError) Error() string {
	var msg string
	switch {
	case e.TimedOut:
		msg = "timed out and was killed"
	case e.ExitCode > 0:
		msg = fmt.Sprintf("exit status %d", e.ExitCode)
	default:
		msg = e.Err.Error()
	}
	if last := lastLine(e.Output); last != "" {
		msg += ": " + last
	}
	return fmt.Sprintf("hook %q: %s", e.Hook, msg)
}

// Unwrap returns the cause.
func (e *HookError) Unwrap() error { return e.Err }

// RunHook runs h on the controller for one node and waits for it. The
// command gets the controller's environment minus env.Withhold and minus
// every inherited REPROV_* variable, plus the REPROV_* variables of env; no
// stdin; its working directory is h.Dir. It runs in its own process group,
// which is sent SIGTERM when h.Timeout passes or ctx is done, and SIGKILL
// (to whatever is left of it) at most 5 s later.
//
// The result always reports what is known. The error is nil when the
// command exited 0, else a *HookError wrapping ErrHookTimeout, ctx's error,
// the *exec.ExitError, or why the command could not start.
func RunHook(ctx context.Context, h Hook, env HookEnv, log *slog.Logger) (HookResult, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	res := HookResult{Hook: h.Name, ExitCode: -1}
	argv := h.Command()
	if len(argv) == 0 || argv[0] == "" {
		return res, &HookError{Hook: h.Name, ExitCode: -1, Err: errors.New("the hook has no command")}
	}
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = DefaultHookTimeout
	}
	hctx, cancel := context.WithTimeoutCause(ctx, timeout, ErrHookTimeout)
	defer cancel()

	out := &tailBuffer{max: MaxHookOutput}
	cmd := exec.CommandContext(hctx, argv[0], argv[1:]...)
	cmd.Dir = h.Dir
	cmd.Env = env.Environ(os.Environ())
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = hookKillGrace
	ownProcessGroup(cmd)

	log = log.With("hook", h.Name, "node", env.Node)
	log.Debug("hook starting", "timeout", timeout)
	start := time.Now()
	err := cmd.Run()
	res.Duration = time.Since(start)
	if hctx.Err() != nil {
		killProcessGroup(cmd) // whatever is left of it
	}
	res.Output, res.OutputTruncated = out.String()
	if cmd.ProcessState != nil {
		res.ExitCode = cmd.ProcessState.ExitCode()
	}
	if err == nil || (errors.Is(err, exec.ErrWaitDelay) && res.ExitCode == 0 && hctx.Err() == nil) {
		if err != nil {
			log.Warn("hook exited 0 but left a process holding its output open", "duration", res.Duration)
		} else {
			log.Info("hook succeeded", "duration", res.Duration)
		}
		return res, nil
	}

	herr := &HookError{Hook: h.Name, ExitCode: res.ExitCode, Output: res.Output, Err: err}
	switch {
	case ctx.Err() != nil:
		herr.Err = fmt.Errorf("interrupted: %w", ctx.Err())
	case hctx.Err() != nil:
		res.TimedOut, herr.TimedOut = true, true
		herr.Err = fmt.Errorf("%w after %v", ErrHookTimeout, timeout)
	}
	log.Warn("hook failed", "exit_code", res.ExitCode, "timed_out", res.TimedOut, "duration", res.Duration, "err", herr.Error())
	return res, herr
}

// lastLine returns the last non-empty line of s, at most 200 runes.
func lastLine(s string) string {
	s = strings.TrimRight(s, "\r\n\t ")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return shorten(strings.TrimSpace(s), 200)
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu      sync.Mutex
	max     int
	buf     []byte
	dropped bool
}

// Write implements io.Writer; it never fails.
func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	if len(p) >= t.max {
		t.dropped = t.dropped || len(t.buf) > 0 || len(p) > t.max
		t.buf = append(t.buf[:0], p[len(p)-t.max:]...)
		return n, nil
	}
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.dropped = true
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return n, nil
}

// String returns the kept output, starting at a line boundary when earlier
// output was dropped, and whether it was.
func (t *tailBuffer) String() (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buf
	if t.dropped {
		if i := bytes.IndexByte(b, '\n'); i >= 0 && i < len(b)-1 {
			b = b[i+1:]
		}
	}
	return string(b), t.dropped
}
