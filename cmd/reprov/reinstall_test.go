package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/reprov/reprov/agent"
	"github.com/reprov/reprov/agent/audit"
	"github.com/reprov/reprov/agent/inband"
	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/lab/fleet"
)

// childEnv makes the test binary run reprov itself (the SIGKILL test runs
// a real controller process).
const childEnv = "REPROV_TEST_CHILD_ARGS"

func TestMain(m *testing.M) {
	if args := os.Getenv(childEnv); args != "" {
		var argv []string
		if err := json.Unmarshal([]byte(args), &argv); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := runAllCmds(ctx, argv, os.Stdin, os.Stdout, os.Stderr, os.Getenv)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// runAllCmds runs reprov with every command registered, adding the ones
// root.go does not (yet) register.
func runAllCmds(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	a := newApp(stdin, stdout, stderr, getenv)
	root := newRootCmd(a)
	have := map[string]bool{}
	for _, sub := range root.Commands() {
		have[sub.Name()] = true
	}
	for _, sub := range []*cobra.Command{newPowerCmd(a), newBootdevCmd(a), newBMCCmd(a), newReinstallCmd(a), newPlanCmd(a),
		newRestoreCmd(a), newJobsCmd(a), newPlaybooksCmd(a), newDemoCmd(a)} {
		if !have[sub.Name()] {
			root.AddCommand(sub)
		}
	}
	markUsageErrors(root)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err != nil && err != errSomeFailed {
		fmt.Fprintf(stderr, "reprov: %v\n", err)
	}
	return exitCode(ctx, err)
}

// labCLI is a lab with a reprov configuration for it.
type labCLI struct {
	t        *testing.T
	lab      *fleet.Lab
	dir      string
	config   string
	stateDir string
	secrets  []string
}

const testPlaybookTimeouts = "timeouts: {precheck: 3s, oob_boot: 10s, power: 10s, wait_landing: 15s, inband: 20s, reboot: 5s}\n"

func newLabCLI(t *testing.T, mix []fleet.ModelCount, bootDelay time.Duration, with ...func(*fleet.Config)) *labCLI {
	t.Helper()
	dir := t.TempDir()
	if bootDelay == 0 {
		bootDelay = 20 * time.Millisecond
	}
	lc := fleet.Config{Mix: mix, Dir: filepath.Join(dir, "lab"),
		BootDelay: bootDelay, OSBootTime: 100 * time.Millisecond,
		NetbootRetry: 20 * time.Millisecond, NetbootRetryMax: 200 * time.Millisecond, PowerPoll: 20 * time.Millisecond}
	for _, f := range with {
		f(&lc)
	}
	l, err := fleet.Start(context.Background(), lc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	files, err := l.WriteFiles(filepath.Join(dir, "lab", "inventory.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	pbDir := filepath.Join(dir, "playbooks")
	if err := os.MkdirAll(pbDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"default", "hp-dl360-g7", "uefi-generic"} {
		body := "name: " + name + "\nextends: " + name + "\n" + testPlaybookTimeouts
		if err := os.WriteFile(filepath.Join(pbDir, name+".yaml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	stub := filepath.Join(dir, "reprov-agent")
	if err := fleet.WriteAgentStub(stub); err != nil {
		t.Fatal(err)
	}
	c := &labCLI{t: t, lab: l, dir: dir, stateDir: filepath.Join(dir, "state"), config: filepath.Join(dir, "reprov-test.yaml")}
	cfg := fmt.Sprintf(`inventory: %q
state_dir: %q
landing:
  listen: %q
  url: %q
  kernel: http://netboot.test/vmlinuz
  initrd: [http://netboot.test/initrd.img]
  cmdline: boot=live toram
  probe_interval: 300ms
store:
  lease: 2s
playbooks:
  dir: %q
inband:
  agent_binary: %q
`, files.Inventory, c.stateDir, l.LandingListen(), l.LandingURL(), pbDir, stub)
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

func (c *labCLI) getenv(k string) string {
	switch k {
	case "HOME":
		return c.dir
	case "XDG_CONFIG_HOME":
		return filepath.Join(c.dir, "config")
	}
	return ""
}

// run runs reprov in-process with the lab's configuration.
func (c *labCLI) run(ctx context.Context, args ...string) (int, string, string) {
	c.t.Helper()
	var out bytes.Buffer
	var errb syncBuffer
	code := runAllCmds(ctx, append([]string{"--config", c.config}, args...), strings.NewReader(""), &out, &errb, c.getenv)
	return code, out.String(), errb.String()
}

// noSecrets fails when any output, the audit log or the job store's
// records hold a secret of the lab.
func (c *labCLI) noSecrets(outputs ...string) {
	c.t.Helper()
	if b, err := os.ReadFile(filepath.Join(c.stateDir, "audit.jsonl")); err == nil {
		outputs = append(outputs, string(b))
	}
	if b, err := os.ReadFile(filepath.Join(c.stateDir, "reprov.db")); err == nil {
		outputs = append(outputs, string(b))
	}
	for _, o := range outputs {
		for _, s := range c.secrets {
			for _, line := range strings.Split(s, "\n") {
				if len(line) >= 12 && strings.Contains(o, line) {
					c.t.Errorf("a secret of the lab appears in an output: %.40q…", line)
				}
			}
		}
	}
}

func (c *labCLI) store() *store.Store {
	c.t.Helper()
	st, err := store.Open(context.Background(), "sqlite://"+filepath.Join(c.stateDir, "reprov.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { st.Close() })
	return st
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestReinstallALabRack(t *testing.T) {
	c := newLabCLI(t, []fleet.ModelCount{{Model: fleet.ModelIPMI, Count: 2}, {Model: fleet.ModelDL360G7, Count: 2},
		{Model: fleet.ModelDeadBMC, Count: 1}, {Model: fleet.ModelWrongIdentity, Count: 1}}, 0)
	ctx := ctxFor(t, 2*time.Minute)
	code, out, errOut := c.run(ctx, "reinstall", "--all", "--yes")
	if code != exitFailed {
		t.Fatalf("exit %d, want 1 (two nodes must fail)\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	r := rows(out)
	for _, n := range c.lab.Nodes() {
		row := strings.Join(r[n.Name()], " ")
		var want []string
		switch n.Model() {
		case fleet.ModelIPMI:
			want = []string{"landed oob ipxe"}
		case fleet.ModelDL360G7:
			want = []string{"landed inband ipxe"}
		case fleet.ModelDeadBMC:
			want = []string{"failed", agent.ReasonBMCUnreachable}
		case fleet.ModelWrongIdentity:
			want = []string{"failed", agent.ReasonIdentityMismatch}
		}
		for _, w := range want {
			if !strings.Contains(row, w) {
				t.Errorf("%s: row %q lacks %q\n%s", n.Name(), row, w, out)
			}
		}
	}
	for _, w := range []string{"landed out-of-band: 2", "landed in-band:     2 (1 escalated", "failed:             2",
		"identity mismatch (1): wrongid-001", "precheck: BMC unreachable (1): deadbmc-001", "learned: the board ignores"} {
		if !strings.Contains(out, w) {
			t.Errorf("summary lacks %q:\n%s", w, out)
		}
	}
	if !strings.Contains(errOut, "node wrongid-001: identity mismatch") || !strings.Contains(errOut, "[6/6] reinstall") {
		t.Errorf("stderr lacks the failure detail or the progress:\n%s", errOut)
	}

	// The job store tells each node's story.
	_, list, _ := c.run(ctx, "jobs", "list")
	if n := strings.Count(list, "landed"); n != 4 || strings.Count(list, "failed") != 2 {
		t.Errorf("jobs list: %d landed rows, want 4, and 2 failed:\n%s", n, list)
	}
	var g7 string
	for _, n := range c.lab.NodesOf(fleet.ModelDL360G7) {
		if n.Playbook() == "default" {
			g7 = n.Name()
		}
	}
	code, show, _ := c.run(ctx, "jobs", "show", g7)
	for _, w := range []string{"landed, path inband", "oob_boot", "power", "wait_landing", "inband", "landing: ipxe",
		"quirk: ignores-oob-pxe", "saved boot sector: "} {
		if code != 0 || !strings.Contains(show, w) {
			t.Errorf("jobs show %s (exit %d) lacks %q:\n%s", g7, code, w, show)
		}
	}
	code, js, _ := c.run(ctx, "-o", "json", "jobs", "show", g7)
	var d jobDetail
	if err := json.Unmarshal([]byte(js), &d); code != 0 || err != nil || d.Job.State != store.JobLanded || len(d.Steps) < 10 {
		t.Errorf("jobs show -o json: exit %d, %v, %+v", code, err, d.Job)
	}
	c.noSecrets(out, errOut, list, show, js)
}

func TestReinstallJSONAndConfirmation(t *testing.T) {
	c := newLabCLI(t, []fleet.ModelCount{{Model: fleet.ModelIPMI, Count: 2}}, 0)
	ctx := ctxFor(t, time.Minute)
	// No terminal, no --yes: refused, nothing done.
	code, out, errOut := c.run(ctx, "reinstall", "--all")
	if code != exitUsage || !strings.Contains(errOut, "stdin is not a terminal (pass --yes)") || !strings.Contains(errOut, "About to reinstall 2 node(s):\n") || !strings.Contains(errOut, "in 1 rack(s)") {
		t.Fatalf("without --yes: exit %d, want 2 with the confirmation text\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, n := range c.lab.Nodes() {
		if n.Status().BootCount != 0 {
			t.Errorf("%s booted although the reinstall was refused", n.Name())
		}
	}
	if jobs, err := c.store().NodeJobs(ctx, store.JobFilter{}); err != nil || len(jobs) != 0 {
		t.Errorf("a refused reinstall left jobs %+v %v", jobs, err)
	}
	code, out, errOut = c.run(ctx, "-o", "json", "reinstall", "ipmi-001", "--yes")
	var res struct {
		Run     store.Run                       `json:"run"`
		Results []struct{ Node, Status string } `json:"results"`
		Summary agent.Summary                   `json:"summary"`
	}
	if err := json.Unmarshal([]byte(out), &res); code != exitOK || err != nil || len(res.Results) != 1 || res.Results[0].Status != "ok" || res.Summary.LandedOOB != 1 {
		t.Fatalf("-o json: exit %d, %v, %+v\n%s\n%s", code, err, res, out, errOut)
	}
}

func TestPlanListsStepsCommandsAndDisk(t *testing.T) {
	c := newLabCLI(t, []fleet.ModelCount{{Model: fleet.ModelIPMI, Count: 1}, {Model: fleet.ModelDL360G7, Count: 2}, {Model: fleet.ModelWrongIdentity, Count: 1}}, 0)
	ctx := ctxFor(t, time.Minute)
	g7 := c.lab.NodesOf(fleet.ModelDL360G7)[1] // playbook hp-dl360-g7: in-band first
	code, out, errOut := c.run(ctx, "plan", g7.Name(), "ipmi-001")
	if code != exitOK {
		t.Fatalf("plan: exit %d\n%s\n%s", code, out, errOut)
	}
	bmcHost := strings.TrimPrefix(c.lab.Node("ipmi-001").BMCAddress(), "ipmi://")
	for _, w := range []string{
		"node " + g7.Name() + " (rack r01): playbook hp-dl360-g7, paths inband, oob",
		"disk: /dev/sda",
		"zero: bytes 0..511 (512 bytes)",
		"inband/wipe-boot-sector [destructive]",
		"wipe-boot-sector --disk /dev/sda --saved-sha256",
		"inband/next-boot [destructive]",
		"inband/reboot [destructive]",
		"identity: serial      match",
		"plan copies no agent to the node",
		"when: if the path before cannot be carried out",
		"node ipmi-001 (rack r01): playbook default, paths oob, inband",
		"ipmitool -I lanplus -H " + strings.Split(bmcHost, ":")[0],
		"chassis power cycle",
		"raw 0x00 0x08 0x05 0x80 0x04 0x00 0x00 0x00",
		"GET " + c.lab.LandingURL() + "/boot/ipxe?mac=… from " + c.lab.Node("ipmi-001").MAC(),
	} {
		if !strings.Contains(out, w) {
			t.Errorf("plan lacks %q:\n%s", w, out)
		}
	}
	// A wrong identity is a problem (exit 1), found without touching it.
	code, out2, _ := c.run(ctx, "plan", "wrongid-001")
	if code != exitFailed || !strings.Contains(out2, "PROBLEM: identity mismatch") {
		t.Errorf("plan of the wrong identity: exit %d\n%s", code, out2)
	}
	// Offline: from the inventory alone; the BMC gets no packet.
	before := g7.IPMIBMC().Stats().Received
	code, out3, _ := c.run(ctx, "plan", "--offline", g7.Name())
	if code != exitOK || !strings.Contains(out3, "offline: from the inventory alone") || !strings.Contains(out3, "ssh: not contacted") ||
		!strings.Contains(out3, "the disk holding /boot, else /") {
		t.Errorf("plan --offline: exit %d\n%s", code, out3)
	}
	if after := g7.IPMIBMC().Stats().Received; after != before {
		t.Errorf("plan --offline sent %d datagrams to the BMC", after-before)
	}
	// Plan changes nothing: no agent pushed, no act audited.
	if code, aud, _ := c.run(ctx, "audit", g7.Name()); strings.Contains(aud, "push-agent") || strings.Contains(aud, "intent") {
		t.Errorf("plan audited acts on %s (exit %d):\n%s", g7.Name(), code, aud)
	}
	// Plan changes nothing: no job, nothing booted.
	if jobs, _ := c.store().NodeJobs(ctx, store.JobFilter{}); len(jobs) != 0 {
		t.Errorf("plan made jobs %+v", jobs)
	}
	for _, n := range c.lab.Nodes() {
		if n.Status().BootCount != 0 || !n.Bootable() {
			t.Errorf("plan touched %s", n.Name())
		}
	}
	// --dry-run of reinstall is the plan.
	code, out4, _ := c.run(ctx, "reinstall", "--dry-run", g7.Name())
	if code != exitOK || !strings.Contains(out4, "dry run of reinstall: nothing is changed") || !strings.Contains(out4, "disk: /dev/sda") {
		t.Errorf("reinstall --dry-run: exit %d\n%s", code, out4)
	}
	c.noSecrets(out, out2, out3, out4, errOut)
}

func TestPowerAndBootdevRefuseNodesUnderReinstall(t *testing.T) {
	c := newLabCLI(t, []fleet.ModelCount{{Model: fleet.ModelIPMI, Count: 2}}, 0)
	ctx := ctxFor(t, time.Minute)
	st := c.store()
	run, err := st.CreateRun(ctx, store.RunSpec{CreatedBy: "another controller"})
	if err != nil {
		t.Fatal(err)
	}
	job, err := st.AcquireNode(ctx, store.AcquireRequest{RunID: run.ID, Node: "ipmi-001"})
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"power", "cycle", "ipmi-*", "--yes"}, {"bootdev", "pxe", "ipmi-001"}} {
		code, out, errOut := c.run(ctx, args...)
		if code != exitUsage || !strings.Contains(errOut, fmt.Sprintf("ipmi-001: job %d of run %d is queued", job.ID, run.ID)) || !strings.Contains(errOut, "--force") {
			t.Errorf("%v on a node under reinstall: exit %d, want 2 naming the job\n%s\n%s", args, code, out, errOut)
		}
	}
	if n := c.lab.Node("ipmi-002"); n.Status().BootCount != 0 {
		t.Error("a refused power cycle touched another node")
	}
	code, out, errOut := c.run(ctx, "power", "cycle", "--force", "ipmi-001")
	if code != exitOK {
		t.Errorf("power cycle --force: exit %d\n%s\n%s", code, out, errOut)
	}
	// jobs cancel ends the queued job; then power needs no --force.
	code, out, _ = c.run(ctx, "jobs", "cancel", "ipmi-001")
	if code != exitOK || !strings.Contains(out, "cancelled") {
		t.Errorf("jobs cancel: exit %d\n%s", code, out)
	}
	if code, _, errOut := c.run(ctx, "power", "status", "ipmi-001"); code != exitOK {
		t.Errorf("power status: %d %s", code, errOut)
	}
	if code, _, errOut := c.run(ctx, "bootdev", "disk", "ipmi-001"); code != exitOK {
		t.Errorf("bootdev after cancel: %d %s", code, errOut)
	}
}

func TestPlaybooksCommands(t *testing.T) {
	c := newCLI(t)
	code, out, errOut := runCLI(c, "playbooks", "list")
	for _, w := range []string{"default", "hp-dl360-g7", "uefi-generic", "inband,oob", "builtin:hp-dl360-g7.yaml"} {
		if code != exitOK || !strings.Contains(out, w) {
			t.Errorf("playbooks list (exit %d) lacks %q:\n%s%s", code, w, out, errOut)
		}
	}
	code, out, _ = runCLI(c, "playbooks", "show", "hp-dl360-g7")
	for _, w := range []string{"paths: [inband, oob]", "wait_landing: 20m0s", "boot_sector: mbr", "# as written (builtin/hp-dl360-g7.yaml)"} {
		if code != exitOK || !strings.Contains(out, w) {
			t.Errorf("playbooks show (exit %d) lacks %q:\n%s", code, w, out)
		}
	}
	if code, _, errOut := runCLI(c, "playbooks", "show", "nope"); code != exitUsage || !strings.Contains(errOut, "unknown playbook") {
		t.Errorf("show of an unknown playbook: exit %d %s", code, errOut)
	}
	good := c.write("pb/good.yaml", "name: batch\nextends: hp-dl360-g7\ntimeouts: {wait_landing: 40m}\n")
	if code, out, _ := runCLI(c, "playbooks", "validate", good); code != exitOK || !strings.Contains(out, "ok:") {
		t.Errorf("validate a good file: exit %d\n%s", code, out)
	}
	bad := c.write("pb/bad.yaml", "name: web\nextends: defualt\npaths: [oob]\npower_action: cylce\n")
	code, out, _ = runCLI(c, "playbooks", "validate", bad)
	if code != exitFailed || !strings.Contains(out, bad+":2:") || !strings.Contains(out, bad+":4:") || !strings.Contains(out, "did you mean") {
		t.Errorf("validate a bad file: exit %d, want 1 with file:line problems\n%s", code, out)
	}
}

// runCLI runs reprov with every command in the cli's environment.
func runCLI(c *cli, args ...string) (int, string, string) {
	var out bytes.Buffer
	var errb syncBuffer
	code := runAllCmds(context.Background(), args, strings.NewReader(""), &out, &errb, c.getenv)
	return code, out.String(), errb.String()
}

func TestRestorePutsTheSavedBootSectorBack(t *testing.T) {
	c := newLabCLI(t, []fleet.ModelCount{{Model: fleet.ModelDL360G7, Count: 2}}, 0)
	ctx := ctxFor(t, time.Minute)
	n := c.lab.NodesOf(fleet.ModelDL360G7)[1] // in-band first
	orig := n.BootSector()
	if code, out, errOut := c.run(ctx, "reinstall", n.Name(), "--yes"); code != exitOK {
		t.Fatalf("reinstall: exit %d\n%s\n%s", code, out, errOut)
	}
	if n.Bootable() {
		t.Fatal("the in-band reinstall left the boot sector bootable")
	}
	zeroed := n.BootSector()
	// The node runs an OS again (its installer put the boot sector back),
	// then its boot sector is zeroed again as a wipe leaves it — the
	// situation restore is for.
	if err := writeSector(ctx, n, orig); err != nil {
		t.Fatal(err)
	}
	n.PowerOff()
	n.PowerOn()
	if _, err := n.Wait(ctx, func(s fleet.Status) bool { return s.OSUp }); err != nil {
		t.Fatal(err)
	}
	if err := writeSector(ctx, n, zeroed); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := c.run(ctx, "restore", n.Name())
	if code != exitUsage || !strings.Contains(errOut, "stdin is not a terminal") {
		t.Errorf("restore without --yes: exit %d\n%s", code, errOut)
	}
	code, out, errOut := c.run(ctx, "restore", n.Name(), "--yes")
	if code != exitOK || !strings.Contains(out, "restored 512 bytes to /dev/sda") || !strings.Contains(out, "(before: zero), verified true") {
		t.Fatalf("restore: exit %d\n%s\n%s", code, out, errOut)
	}
	if !bytes.Equal(n.BootSector(), orig) {
		t.Error("the boot sector is not the saved one after restore")
	}
	recs := checkAuditFile(t, filepath.Join(c.stateDir, "audit.jsonl"))
	if recs[inband.ActionRestore] != 1 {
		t.Errorf("audit log: %d restores, want 1", recs[inband.ActionRestore])
	}
	c.noSecrets(out, errOut)
}

// writeSector writes sector 0 of a lab node's disk (the test standing in
// for an installer or an operator).
func writeSector(ctx context.Context, n *fleet.Node, b []byte) error {
	d, err := n.Host().OpenDisk(ctx, "/dev/sda", true)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.WriteAt(ctx, b, 0)
}

// checkAuditFile checks the audit log (every outcome after its intent,
// each node wiped at most once) and counts the intents by action.
func checkAuditFile(t *testing.T, path string) map[string]int {
	t.Helper()
	recs, err := audit.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	counts := map[string]int{}
	wipes := map[string]int{}
	for _, r := range recs {
		switch r.Phase {
		case audit.PhaseIntent:
			seen[r.ID] = true
			counts[r.Action]++
			if r.Action == inband.ActionWipe {
				wipes[r.Node]++
			}
		case audit.PhaseOutcome:
			if !seen[r.ID] {
				t.Errorf("audit outcome without its intent before it: %+v", r)
			}
		}
	}
	for node, n := range wipes {
		if n > 1 {
			t.Errorf("audit log: node %s's boot sector wiped %d times", node, n)
		}
	}
	return counts
}

// TestKilledControllerResumes runs reprov reinstall as a real process,
// SIGKILLs it in the middle of the run, and resumes from the store: every
// node lands, every intent is settled, no boot sector is wiped twice.
func TestKilledControllerResumes(t *testing.T) {
	c := newLabCLI(t, []fleet.ModelCount{{Model: fleet.ModelIPMI, Count: 3}, {Model: fleet.ModelDL360G7, Count: 4}, {Model: fleet.ModelUEFI, Count: 1}},
		400*time.Millisecond)
	ctx := ctxFor(t, 2*time.Minute)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	child := func(args ...string) *exec.Cmd {
		argv, _ := json.Marshal(append([]string{"--config", c.config}, args...))
		cmd := exec.CommandContext(ctx, exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+string(argv), "HOME="+c.dir, "XDG_CONFIG_HOME="+filepath.Join(c.dir, "config"))
		return cmd
	}
	var out1 bytes.Buffer
	first := child("reinstall", "--all", "--yes")
	first.Stdout, first.Stderr = &out1, &out1
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill it once some node went through its in-band unit while others
	// are still being worked on.
	st := c.storeWhenReady(ctx)
	deadline := time.Now().Add(time.Minute)
	for {
		if time.Now().After(deadline) {
			first.Process.Kill()
			t.Fatalf("the run never reached the kill point\n%s", out1.String())
		}
		if killPoint(ctx, st) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	if ws, ok := first.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the first controller was not killed: %v\n%s", first.ProcessState, out1.String())
	}
	active, _ := st.NodeJobs(ctx, store.JobFilter{States: []store.JobState{store.JobQueued, store.JobRunning}})
	if len(active) == 0 {
		t.Fatalf("no job was left active by the killed controller: the kill came too late\n%s", out1.String())
	}
	t.Logf("killed with %d job(s) active", len(active))

	var out2 bytes.Buffer
	second := child("reinstall", "--all", "--yes", "--resume")
	second.Stdout, second.Stderr = &out2, &out2
	if err := second.Run(); err != nil {
		t.Fatalf("the resumed run: %v\nfirst:\n%s\nsecond:\n%s", err, out1.String(), out2.String())
	}
	resumed, settled := 0, 0
	for _, n := range c.lab.Nodes() {
		jobs, err := st.NodeJobs(ctx, store.JobFilter{Node: n.Name()})
		if err != nil || len(jobs) != 1 || jobs[0].State != store.JobLanded {
			t.Errorf("%s: jobs %+v %v; want its one job landed", n.Name(), jobs, err)
			continue
		}
		if jobs[0].Generation > 0 {
			resumed++
		}
		steps, _ := st.Steps(ctx, jobs[0].ID)
		for _, s := range steps {
			if s.Phase == store.PhaseOutcome && strings.Contains(string(s.Detail), `"settled":{"by_job":`) {
				settled++
				t.Logf("%s: %s settled %s: %s", n.Name(), s.Name, s.Result, s.Detail)
			}
		}
		if open, err := st.UnsettledSteps(ctx, n.Name()); err != nil || len(open) != 0 {
			t.Errorf("%s: unsettled intents after the resume: %+v %v", n.Name(), open, err)
		}
		if n.Model() == fleet.ModelDL360G7 && n.Bootable() {
			t.Errorf("%s landed with its boot sector intact", n.Name())
		}
	}
	if resumed == 0 || settled == 0 {
		t.Errorf("%d job(s) resumed, %d intent(s) settled by looking; want some of each\nsecond:\n%s", resumed, settled, out2.String())
	}
	checkAuditFile(t, filepath.Join(c.stateDir, "audit.jsonl"))
	if t.Failed() {
		for _, n := range c.lab.Nodes() {
			_, show, _ := c.run(ctx, "jobs", "show", n.Name())
			t.Logf("%s", show)
		}
		b, _ := os.ReadFile(filepath.Join(c.stateDir, "audit.jsonl"))
		t.Logf("audit:\n%s\nfirst:\n%s\nsecond:\n%s", b, out1.String(), out2.String())
	}
	if !strings.Contains(out2.String(), "resumed earlier jobs:") {
		t.Errorf("the resumed run's summary does not list the resumed jobs:\n%s", out2.String())
	}
	c.noSecrets(out1.String(), out2.String())
}

// storeWhenReady opens the store once the first controller created it.
func (c *labCLI) storeWhenReady(ctx context.Context) *store.Store {
	c.t.Helper()
	p := filepath.Join(c.stateDir, "reprov.db")
	for {
		if _, err := os.Stat(p); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			c.t.Fatal("the store never appeared")
		case <-time.After(20 * time.Millisecond):
		}
	}
	return c.store()
}

// killPoint: an in-band unit completed, and some node is not done.
func killPoint(ctx context.Context, st *store.Store) bool {
	jobs, err := st.NodeJobs(ctx, store.JobFilter{})
	if err != nil {
		return false
	}
	inbandDone, busy := false, false
	for _, j := range jobs {
		if j.State.Active() && j.Step != agent.StepInband {
			busy = true
		}
		steps, err := st.Steps(ctx, j.ID)
		if err != nil {
			return false
		}
		for _, s := range steps {
			if s.Phase == store.PhaseOutcome && s.Name == agent.StepInband && s.Result == store.ResultOK {
				inbandDone = true
			}
		}
	}
	return inbandDone && busy
}

func TestDemoRunsToTheExpectedEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo runs a 24-node lab")
	}
	c := newCLI(t)
	code, out, errOut := runCLI(c, "demo", "--quiet")
	if code != exitOK {
		t.Fatalf("demo: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, w := range []string{"run 1: 24 nodes", "landed out-of-band: 16", "landed in-band:     6 (3 escalated",
		"precheck: BMC unreachable (1): deadbmc-001", "identity mismatch (1): wrongid-001", "demo: every node ended as expected"} {
		if !strings.Contains(out, w) {
			t.Errorf("demo output lacks %q:\n%s", w, out)
		}
	}
	// reprov serve ran alongside; the demo checked that its page showed
	// the rack (else "demo: UNEXPECTED").
	if !regexp.MustCompile(`demo: reprov serve runs alongside: status page http://127\.0\.0\.1:\d+/`).MatchString(errOut) {
		t.Errorf("the demo did not show reprov serve's page:\n%s", errOut)
	}
}

func TestReinstallInterruptedExitsThree(t *testing.T) {
	c := newLabCLI(t, []fleet.ModelCount{{Model: fleet.ModelIPMI, Count: 3}}, 700*time.Millisecond)
	ctx, cancel := context.WithCancel(ctxFor(t, time.Minute))
	go func() {
		// Ctrl-C once every node was power-cycled and is awaited.
		for _, n := range c.lab.Nodes() {
			if _, err := n.Wait(ctx, func(s fleet.Status) bool { return s.BootCount > 0 }); err != nil {
				return
			}
		}
		cancel()
	}()
	code, out, errOut := c.run(ctx, "reinstall", "--all", "--yes")
	if code != exitInterrupted {
		t.Fatalf("exit %d, want 3\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "interrupted:        3 (reprov reinstall --resume") || !strings.Contains(errOut, "every node's state is recorded") {
		t.Errorf("the interrupted run does not say so:\n%s\n%s", out, errOut)
	}
	st := c.store()
	for _, n := range c.lab.Nodes() {
		jobs, err := st.NodeJobs(context.Background(), store.JobFilter{Node: n.Name()})
		if err != nil || len(jobs) != 1 || jobs[0].State != store.JobInterrupted {
			t.Errorf("%s: %+v %v, want its job interrupted", n.Name(), jobs, err)
		}
	}
	code, out, errOut = c.run(ctxFor(t, time.Minute), "reinstall", "--all", "--yes", "--resume")
	if code != exitOK || strings.Count(out, "landed  oob") != 3 {
		t.Errorf("--resume: exit %d\n%s\n%s", code, out, errOut)
	}
}

// TestDryRunCatchesWhatTheRunWouldRefuse: reinstall --dry-run contacts
// nothing it would change and still reports what the real run would
// refuse: a landing URL that is not http(s), a credential that does not
// resolve. It exits 1 and names the node and the key.
func TestDryRunCatchesWhatTheRunWouldRefuse(t *testing.T) {
	c := newLabCLI(t, []fleet.ModelCount{{Model: fleet.ModelIPMI, Count: 1}}, 0)
	ctx := ctxFor(t, time.Minute)
	cfg, err := os.ReadFile(c.config)
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(cfg), "url: \""+c.lab.LandingURL()+"\"", "url: \"ftp://x\"", 1)
	if bad == string(cfg) {
		t.Fatalf("the lab config has no landing url line:\n%s", cfg)
	}
	if err := os.WriteFile(c.config, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := c.run(ctx, "reinstall", "--all", "--dry-run")
	// Refused either by the configuration check (exit 2) or by the plan
	// (exit 1, the node named): never exit 0.
	switch {
	case code == exitUsage && strings.Contains(errOut, "landing.url"):
	case code == exitFailed && strings.Contains(out, "landing.url \"ftp://x\"") && strings.Contains(out, "ipmi-001"):
	default:
		t.Errorf("dry run with landing.url ftp://x: exit %d, want 1 (naming landing.url and the node) or 2 (naming landing.url)\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if n := c.lab.Nodes()[0]; n.Status().BootCount != 0 {
		t.Error("the dry run booted the node")
	}
}
