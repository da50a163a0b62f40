package playbooks_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/reprov/reprov/lab/labtool"
	"github.com/reprov/reprov/playbooks"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func shellHook(script string, timeout time.Duration) playbooks.Hook {
	return playbooks.Hook{Name: "test", Shell: script, Timeout: timeout}
}

func TestHookSeesNodeEnvironment(t *testing.T) {
	t.Setenv("BMC_SECRET_FOR_TEST", "hunter2")
	t.Setenv("REPROV_RESULT", "stale") // from whatever started the controller
	t.Setenv("REPROV_STORE_DSN", "postgres://reprov:pw@db/reprov")
	t.Setenv("KEEP_ME", "kept")
	env := playbooks.HookEnv{
		Node: "web-014", Rack: "r12", BMCAddress: "ipmi://10.1.12.14", SSHAddress: "10.2.12.14",
		MACs: []string{"3c:4a:92:11:22:33", "3c:4a:92:11:22:34"}, Run: "run-7",
		Withhold: []string{"BMC_SECRET_FOR_TEST"},
	}
	// argv form: /usr/bin/env prints the environment exactly as received.
	res, err := playbooks.RunHook(context.Background(), playbooks.Hook{Name: "env", Argv: []string{"env"}, Timeout: time.Minute}, env, testLogger(t))
	if err != nil {
		t.Fatalf("RunHook: %v (output %q)", err, res.Output)
	}
	got := map[string]string{}
	for _, l := range strings.Split(res.Output, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			got[k] = v
		}
	}
	want := map[string]string{
		"REPROV_NODE": "web-014", "REPROV_RACK": "r12", "REPROV_BMC_ADDRESS": "ipmi://10.1.12.14",
		"REPROV_SSH_ADDRESS": "10.2.12.14", "REPROV_MACS": "3c:4a:92:11:22:33 3c:4a:92:11:22:34",
		"REPROV_RUN": "run-7", "KEEP_ME": "kept",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if v, ok := got["BMC_SECRET_FOR_TEST"]; ok {
		t.Errorf("withheld variable passed to the hook: %q", v)
	}
	if v, ok := got["REPROV_RESULT"]; ok {
		t.Errorf("a pre-hook saw REPROV_RESULT=%q", v)
	}
	if v, ok := got["REPROV_STORE_DSN"]; ok {
		t.Errorf("reprov's own setting passed to the hook: %q", v)
	}
	if strings.Contains(res.Output, "hunter2") {
		t.Error("secret value in hook output")
	}
	if res.ExitCode != 0 || res.Hook != "env" || res.TimedOut {
		t.Errorf("result = %+v", res)
	}

	// A post-hook gets the result, through a shell this time.
	env.Result, env.Reason = "failed", "timeout waiting for landing"
	res, err = playbooks.RunHook(context.Background(), shellHook(`printf '%s|%s|%s\n' "$REPROV_NODE" "$REPROV_RESULT" "$REPROV_REASON"`, time.Minute), env, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if res.Output != "web-014|failed|timeout waiting for landing\n" {
		t.Errorf("post-hook output = %q", res.Output)
	}
}

func TestHookFailureReportsExitCodeAndOutput(t *testing.T) {
	res, err := playbooks.RunHook(context.Background(),
		shellHook("echo draining web-014; echo 'scontrol: node busy' >&2; exit 3", time.Minute),
		playbooks.HookEnv{Node: "web-014"}, testLogger(t))
	var herr *playbooks.HookError
	if !errors.As(err, &herr) {
		t.Fatalf("RunHook = %v, want a *HookError", err)
	}
	if herr.ExitCode != 3 || res.ExitCode != 3 || herr.TimedOut || errors.Is(err, playbooks.ErrHookTimeout) {
		t.Errorf("exit code %d/%d timed out %v: want 3, not a timeout", herr.ExitCode, res.ExitCode, herr.TimedOut)
	}
	if res.Output != "draining web-014\nscontrol: node busy\n" || herr.Output != res.Output {
		t.Errorf("output = %q / %q", res.Output, herr.Output)
	}
	if want := `hook "test": exit status 3: scontrol: node busy`; err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
}

func TestHookCommandNotFound(t *testing.T) {
	res, err := playbooks.RunHook(context.Background(),
		playbooks.Hook{Name: "missing", Argv: []string{"reprov-no-such-command-xyz"}, Timeout: time.Minute},
		playbooks.HookEnv{}, testLogger(t))
	var herr *playbooks.HookError
	if !errors.As(err, &herr) || herr.ExitCode != -1 || res.ExitCode != -1 {
		t.Fatalf("RunHook = %+v, %v; want a *HookError with exit code -1", res, err)
	}
	if !strings.Contains(err.Error(), "reprov-no-such-command-xyz") {
		t.Errorf("error %q does not name the command", err)
	}
}

// alive reports whether pid is a running (not zombie) process.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) STATE ...; comm may contain spaces, so look after the last ')'.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z' && s[i+2] != 'X'
	}
	return true
}

func TestHookTimeoutKillsTheProcessGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	// The shell starts a child that would outlive it, records its pid, and
	// waits; the timeout must take down both.
	h := shellHook(`sleep 300 & echo $! > child.pid.tmp && mv child.pid.tmp child.pid; echo started; wait`, 300*time.Millisecond)
	h.Dir = dir
	res, err := playbooks.RunHook(context.Background(), h, playbooks.HookEnv{Node: "n1"}, testLogger(t))
	if !errors.Is(err, playbooks.ErrHookTimeout) {
		t.Fatalf("RunHook = %v, want ErrHookTimeout", err)
	}
	var herr *playbooks.HookError
	if !errors.As(err, &herr) || !herr.TimedOut || !res.TimedOut {
		t.Errorf("result %+v error %v: want TimedOut", res, err)
	}
	if res.Output != "started\n" {
		t.Errorf("output = %q", res.Output)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("the hook did not record its child: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	labtool.Eventually(t, 30*time.Second, "the hook's child to be killed", func() bool { return !alive(pid) })
}

func TestHookCancelledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	h := shellHook(`touch started; exec sleep 300`, time.Hour)
	h.Dir = dir
	done := make(chan error, 1)
	go func() {
		_, err := playbooks.RunHook(ctx, h, playbooks.HookEnv{}, testLogger(t))
		done <- err
	}()
	labtool.Eventually(t, 30*time.Second, "the hook to start", func() bool {
		_, err := os.Stat(filepath.Join(dir, "started"))
		return err == nil
	})
	cancel()
	err := <-done
	if !errors.Is(err, context.Canceled) || errors.Is(err, playbooks.ErrHookTimeout) {
		t.Fatalf("RunHook after cancel = %v, want context.Canceled and not a timeout", err)
	}
}

func TestHookOutputIsBounded(t *testing.T) {
	// 100 KiB of numbered lines, then a last line.
	res, err := playbooks.RunHook(context.Background(),
		shellHook(`i=0; while [ $i -lt 2000 ]; do printf 'line %05d %s\n' $i 0123456789012345678901234567890123456789; i=$((i+1)); done; echo THE-END`, time.Minute),
		playbooks.HookEnv{}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Output) > playbooks.MaxHookOutput || !res.OutputTruncated {
		t.Errorf("output %d bytes, truncated %v; want at most %d and truncated", len(res.Output), res.OutputTruncated, playbooks.MaxHookOutput)
	}
	if !strings.HasSuffix(res.Output, "line 01999 0123456789012345678901234567890123456789\nTHE-END\n") || !strings.HasPrefix(res.Output, "line ") {
		t.Errorf("output does not keep whole lines up to the end: starts %q ends %q", res.Output[:20], res.Output[len(res.Output)-20:])
	}
}

// Hooks of a playbook loaded from a directory run in that directory, so a
// script next to the playbook can be named relatively.
func TestHookRunsInPlaybookDirectory(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"site.yaml": "name: site\nextends: default\npre_hooks:\n  - run: [./drain.sh, --reason, reinstall]\n",
		"drain.sh":  "#!/bin/sh\necho \"drain $REPROV_NODE $*\"\n",
	})
	if err := os.Chmod(filepath.Join(dir, "drain.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	set, err := playbooks.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := set.Get("site")
	other := t.TempDir()
	t.Chdir(other)
	res, err := playbooks.RunHook(context.Background(), p.PreHooks[0], playbooks.HookEnv{Node: "web-1"}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if res.Output != "drain web-1 --reason reinstall\n" {
		t.Errorf("output = %q", res.Output)
	}
}
