package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/lab/faultmatrix"
	"github.com/reprov/reprov/lab/fleet"
)

// reprovChild returns a command running this test binary as reprov (see
// TestMain), a real process the fault matrix can SIGKILL.
func reprovChild(t *testing.T, dir string) func(ctx context.Context, args ...string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return func(ctx context.Context, args ...string) *exec.Cmd {
		argv, _ := json.Marshal(args)
		cmd := exec.CommandContext(ctx, exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+string(argv), "HOME="+dir, "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
		return cmd
	}
}

// TestFaultMatrix runs the small fault matrix (docs/reliability.md): a few
// nodes per fault, the controller SIGKILLed at half the nodes started and
// resumed, the landing endpoint's address taken away for a while. Every
// node must end in its expected terminal state and every invariant hold.
func TestFaultMatrix(t *testing.T) {
	if testing.Short() {
		t.Skip("the fault matrix runs a lab and several controllers")
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var progress strings.Builder
	rep, err := faultmatrix.Run(ctx, faultmatrix.Small(), faultmatrix.Options{Dir: dir, Reprov: reprovChild(t, dir), Progress: &progress})
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	var table strings.Builder
	rep.Table(&table)
	t.Logf("\n%s\n%s", progress.String(), table.String())
	if err := rep.Write(dir); err != nil {
		t.Fatal(err)
	}
	for _, n := range rep.Results {
		if n.OK {
			continue
		}
		t.Errorf("%s (%s): %s (reason %q)", n.Node, n.Fault, n.Why, n.Reason)
	}
	for _, inv := range rep.Invariants {
		if !inv.Held {
			t.Errorf("invariant %q violated: %v", inv.Name, inv.Violations)
		}
	}
	if len(rep.Controllers) < 2 || !rep.Controllers[0].Killed {
		t.Errorf("the first controller was not killed mid-run: %+v", rep.Controllers)
	}
}

// TestStateDiskFull: the state dir is a small tmpfs, filled to the last
// byte once every job is running its precheck (slowed by a 2 s BMC
// round trip). An intent that cannot be written must never be followed by
// its act: no node is booted and no boot override is written while the
// disk is full (docs/reliability.md, controller faults).
func TestStateDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a controller against BMCs with 2 s round trips")
	}
	dir := t.TempDir()
	c := newLabCLIFaults(t, dir, []fleet.ModelCount{{Model: fleet.ModelIPMI, Count: 3}},
		map[string][]fleet.Fault{"ipmi-001": {fleet.FaultLatency}, "ipmi-002": {fleet.FaultLatency}, "ipmi-003": {fleet.FaultLatency}})
	if err := os.MkdirAll(c.stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", c.stateDir).CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount a tmpfs for the state dir (needs root): %v %s", err, out)
		}
		t.Skipf("cannot mount a tmpfs for the state dir (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", c.stateDir).Run() })
	ctx := ctxFor(t, 3*time.Minute)
	cmd := reprovChild(t, dir)(ctx, "--config", c.config, "reinstall", "--all", "--yes")
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	st := c.storeWhenReady(ctx)
	for {
		jobs, _ := st.NodeJobs(ctx, store.JobFilter{States: []store.JobState{store.JobRunning}})
		if len(jobs) == 3 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("the controller ended before every job ran: %v\n%s", err, out.String())
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	// Fill the state dir's file system.
	f, err := os.Create(filepath.Join(c.stateDir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	for {
		if _, err := f.Write(buf[:1]); err != nil {
			break
		}
	}
	f.Close()
	full := time.Now()
	// The prechecks end within ~30 s; then every node's end cannot be
	// recorded, and the controller must still end (exit 1), each node
	// reported failed or interrupted.
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() == 0 {
			t.Errorf("the controller ended with %v while the disk was full, want exit 1", err)
		}
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-done
		t.Errorf("the controller still ran %s after the disk filled: killed", time.Since(full).Round(time.Second))
	}
	for _, n := range c.lab.Nodes() {
		if !regexp.MustCompile(`(?m)` + n.Name() + `.*(failed|interrupted)`).MatchString(out.String()) {
			t.Errorf("%s not reported failed or interrupted", n.Name())
		}
	}
	for _, n := range c.lab.Nodes() {
		s := n.Status()
		if s.BootCount != 0 || n.IPMIBMC().Machine().BootFlags().Valid {
			t.Errorf("%s was acted on with the state dir full: %d boot(s), boot override %+v", n.Name(), s.BootCount, n.IPMIBMC().Machine().BootFlags())
		}
	}
	t.Logf("disk full for %s; controller output:\n%s", time.Since(full).Round(time.Second), out.String())
	c.noSecrets(out.String())
}

// newLabCLIFaults is newLabCLI with faults, its state dir under dir.
func newLabCLIFaults(t *testing.T, dir string, mix []fleet.ModelCount, faults map[string][]fleet.Fault) *labCLI {
	t.Helper()
	l, err := fleet.Start(context.Background(), fleet.Config{Mix: mix, Dir: filepath.Join(dir, "lab"),
		BootDelay: 20 * time.Millisecond, OSBootTime: 100 * time.Millisecond, Faults: faults,
		NetbootRetry: 20 * time.Millisecond, NetbootRetryMax: 200 * time.Millisecond, PowerPoll: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	files, err := l.WriteFiles(filepath.Join(dir, "lab", "inventory.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c := &labCLI{t: t, lab: l, dir: dir, stateDir: filepath.Join(dir, "state"), config: filepath.Join(dir, "reprov-test.yaml")}
	cfg := fmt.Sprintf("inventory: %q\nstate_dir: %q\nlanding:\n  listen: %q\n  url: %q\n  kernel: http://netboot.test/vmlinuz\n  initrd: [http://netboot.test/initrd.img]\n  cmdline: boot=live\nstore:\n  lease: 3s\n",
		files.Inventory, c.stateDir, l.LandingListen(), l.LandingURL())
	if err := os.WriteFile(c.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{files.BMCPassword, files.Identity} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		c.secrets = append(c.secrets, strings.TrimSpace(string(b)))
	}
	return c
}
