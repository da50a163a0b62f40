//go:build e2e

// Package e2e_test is reprov's end-to-end test on a real virtual machine
// (make e2e; docs/testing.md): QEMU under TCG with SeaBIOS and the NIC's
// iPXE ROM, a disk with an MBR booting a tiny Linux with sshd, and
// OpenIPMI's ipmi_sim as its BMC (LAN IPMI on loopback, /dev/ipmi0 in the
// guest). Every check looks at the VM — its disk bytes, its serial console,
// its board's log, what it fetched over the network — not only at what
// reprov reports.
package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reprov/reprov/agent"
	"github.com/reprov/reprov/agent/audit"
	"github.com/reprov/reprov/agent/fleet"
	"github.com/reprov/reprov/agent/inband"
	"github.com/reprov/reprov/agent/inband/sshx"
	"github.com/reprov/reprov/agent/inband/steps"
	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/e2e/rig"
	"github.com/reprov/reprov/inventory"
	"github.com/reprov/reprov/lab/labtool"
)

// Bounds of the slow parts (QEMU without KVM on two busy cores); they
// are deadlines, never expected durations.
const (
	bootTimeout      = 3 * time.Minute // power-on to sshd
	landTimeout      = 3 * time.Minute // reboot to the landing request
	reinstallTimeout = 8 * time.Minute // one `reprov reinstall`
)

// env is what every scenario shares: the image and reprov's binaries.
type env struct {
	root string
	img  rig.Image
	bin  string // holds reprov and reprov-agent-linux-amd64
}

func (e *env) reprov() string { return filepath.Join(e.bin, "reprov") }
func (e *env) agentBin() string {
	return filepath.Join(e.bin, "reprov-agent-linux-amd64")
}

// TestE2E builds the image and reprov once, then runs the rig's own test
// and the reinstall scenarios side by side, each on its own VM.
func TestE2E(t *testing.T) {
	for _, tool := range []string{"qemu-system-x86_64", "ipmi_sim", "socat", "flock", "sfdisk", "mcopy", "syslinux"} {
		labtool.RequireTool(t, tool)
	}
	e := setup(t)
	// The longest first: go test runs GOMAXPROCS parallel subtests at once.
	for _, sc := range []struct {
		name string
		run  func(*testing.T, *env)
	}{
		{"reinstall/board-ignores-pxe", testIgnoresPXE},
		{"rig", testRig},
		{"reinstall/board-honours-pxe", testHonoursPXE},
		{"reinstall/through-serve", testServe},
		{"reinstall/wrong-identity", testWrongIdentity},
	} {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			if strings.HasPrefix(sc.name, "reinstall/") {
				requireReinstall(t, e)
			}
			sc.run(t, e)
		})
	}
}

func setup(t *testing.T) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	e := &env{root: repoRoot(t)}
	if dir := os.Getenv("REPROV_E2E_IMAGE"); dir != "" {
		e.img = rig.Image{Dir: dir}
	} else {
		var log bytes.Buffer
		img, err := rig.BuildImage(ctx, e.root, &log)
		if err != nil {
			t.Fatalf("build the node image: %v\n%s", err, log.String())
		}
		e.img = img
	}
	if dir := os.Getenv("REPROV_E2E_BIN"); dir != "" {
		e.bin = dir
	} else {
		e.bin = t.TempDir()
		goTool, err := exec.LookPath("go")
		if err != nil {
			t.Fatalf("e2e: go is not on PATH to build reprov (or set REPROV_E2E_BIN): %v", err)
		}
		for _, b := range []struct {
			out, pkg string
			static   bool
		}{{"reprov", "./cmd/reprov", false}, {"reprov-agent-linux-amd64", "./cmd/reprov-agent", true}} {
			cmd := exec.CommandContext(ctx, goTool, "build", "-o", filepath.Join(e.bin, b.out), b.pkg)
			cmd.Dir = e.root
			cmd.Env = os.Environ()
			if b.static {
				cmd.Env = append(cmd.Env, "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
			}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("go build %s: %v\n%s", b.pkg, err, out)
			}
		}
	}
	for _, f := range []string{e.img.Disk(), e.img.Kernel(), e.img.Initrd(), e.img.SSHKey(), e.reprov(), e.agentBin()} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("e2e: %v", err)
		}
	}
	return e
}

func repoRoot(t *testing.T) string {
	t.Helper()
	d, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		p := filepath.Dir(d)
		if p == d {
			t.Fatal("e2e: no go.mod above the working directory")
		}
		d = p
	}
}

// requireReinstall skips (fails under CI) while reprov has no reinstall.
func requireReinstall(t *testing.T, e *env) {
	t.Helper()
	out, err := exec.Command(e.reprov(), "reinstall", "--help").CombinedOutput()
	if err == nil {
		return
	}
	msg := fmt.Sprintf("reprov reinstall is not available yet: %v: %s", err, firstLine(string(out)))
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// --- one VM ------------------------------------------------------------------

// vm is a node of the rig with its reprov files.
type vm struct {
	*rig.Node
	files rig.ReprovFiles
	e     *env
}

type vmOpts struct {
	board       rig.Board
	landingPort int
	installURL  string
	// invSerial is the serial the inventory claims (default the VM's).
	invSerial string
	playbook  string
}

func startVM(t *testing.T, e *env, name string, o vmOpts) *vm {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	n, err := rig.Start(ctx, rig.Config{Image: e.img, Dir: filepath.Join(dir, "node"), Name: name, Board: o.board,
		LandingURL: rig.LandingURL(o.landingPort), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !n.BMCRunning() {
			t.Errorf("node %s: its BMC (ipmi_sim) died during the test", n.Name())
		}
		if t.Failed() {
			t.Logf("node %s (%s):\n%s", n.Name(), n.Dir(), n.Logs())
		}
		n.Close()
	})
	files, err := rig.WriteReprov(rig.ReprovSetup{Dir: dir, LandingPort: o.landingPort, InstallURL: o.installURL,
		AgentBinary: e.agentBin(),
		Nodes:       []rig.InventoryNode{{Node: n, Serial: o.invSerial, Playbook: o.playbook}}})
	if err != nil {
		t.Fatal(err)
	}
	return &vm{Node: n, files: files, e: e}
}

// boot powers the VM on (the front-panel button) and waits for its OS.
func (v *vm) boot(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	if err := v.PowerOn(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := v.WaitSSH(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("node %s: power-on to sshd in %s", v.Name(), time.Since(start).Round(100*time.Millisecond))
}

// inventoryNode is the node as reprov's inventory has it.
func (v *vm) inventoryNode(t *testing.T) inventory.Node {
	t.Helper()
	inv, _, err := inventory.Load(v.files.Inventory)
	if err != nil {
		t.Fatal(err)
	}
	return inv.Nodes[0]
}

// dial logs in to the VM's OS the way reprov does (strict known_hosts with
// the baked host key).
func (v *vm) dial(t *testing.T) *sshx.Client {
	t.Helper()
	cfg, err := sshx.ConfigFor(v.inventoryNode(t), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := sshx.Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("ssh to node %s: %v", v.Name(), err)
	}
	return c
}

// run runs a command on the VM's OS.
func (v *vm) run(t *testing.T, cmd string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := v.dial(t)
	defer c.Close()
	out, err := c.Run(ctx, cmd, nil)
	if err != nil {
		t.Fatalf("node %s: %s: %v", v.Name(), cmd, err)
	}
	return strings.TrimSpace(string(out))
}

// bootID is the running kernel's boot id, over SSH.
func (v *vm) bootID(t *testing.T) string {
	t.Helper()
	id := v.run(t, "cat /proc/sys/kernel/random/boot_id")
	if len(id) != 36 {
		t.Fatalf("node %s: boot id %q", v.Name(), id)
	}
	return id
}

// reprovResult is `reprov reinstall -o json`.
type reprovResult struct {
	Results []struct {
		Node   string           `json:"node"`
		Status fleet.Status     `json:"status"`
		Reason string           `json:"reason"`
		Error  string           `json:"error"`
		Detail agent.NodeReport `json:"detail"`
	} `json:"results"`
}

// reinstall runs `reprov reinstall NODE --yes -o json` as an operator would
// and returns its exit code, its decoded report and its stderr.
func (v *vm) reinstall(t *testing.T) (int, reprovResult, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), reinstallTimeout)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, v.e.reprov(), "--config", v.files.Config, "reinstall", v.Name(), "--yes", "-o", "json")
	cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("reprov reinstall %s: %v\nstderr:\n%s", v.Name(), err, stderr.String())
	}
	var res reprovResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil || len(res.Results) != 1 {
		t.Fatalf("reprov reinstall %s (exit %d): report %q: %v\nstderr:\n%s", v.Name(), code, stdout.String(), err, lastLines(stderr.String(), 40))
	}
	t.Logf("reprov reinstall %s (%s): exit %d, %s, path %s, landing %s, escalated %v, learned %v, reason %q",
		v.Name(), time.Since(start).Round(100*time.Millisecond), code, res.Results[0].Status, res.Results[0].Detail.Path, res.Results[0].Detail.Landing,
		res.Results[0].Detail.Escalated, res.Results[0].Detail.Learned, res.Results[0].Reason)
	return code, res, stderr.String()
}

// reprovCmd runs another reprov command with the node's configuration and
// returns its output.
func (v *vm) reprovCmd(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, v.e.reprov(), append([]string{"--config", v.files.Config}, args...)...)
	cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("reprov %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

// --- the rig, without reprov's engine ----------------------------------------

// testRig proves the rig: the VM boots its disk; its OS answers SSH with
// the baked host key and has /dev/ipmi0 and the DMI serial; reprov's
// `power cycle` goes through ipmi_sim and reboots it (new boot id); the
// in-band step through agent/inband (the pushed reprov-agent on busybox)
// zeroes the MBR and sets force_pxe through the guest's /dev/ipmi0; the
// board boots the NIC, whose iPXE requests the landing URL with the VM's
// MAC; and the disk differs from the image in sector 0 only.
func testRig(t *testing.T, e *env) {
	land := serveTestLanding(t)
	v := startVM(t, e, "rig-node", vmOpts{board: rig.IgnoresPXE, landingPort: land.port})
	v.boot(t)

	if got := v.run(t, "test -c /dev/ipmi0 && echo present"); got != "present" {
		t.Errorf("/dev/ipmi0 on the guest: %q", got)
	}
	if got := v.run(t, "cat /sys/class/dmi/id/product_serial"); got != v.Serial() {
		t.Errorf("DMI serial %q, want %q", got, v.Serial())
	}
	if got := v.run(t, "cat /sys/class/net/eth0/address"); got != v.MAC() {
		t.Errorf("MAC %q, want %q", got, v.MAC())
	}
	boot1 := v.bootID(t)

	// Out of band: reprov's power cycle through ipmi_sim.
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	mark := len(v.ChassisLog())
	out, err := exec.CommandContext(ctx, e.reprov(), "--config", v.files.Config, "power", "cycle", v.Name()).CombinedOutput()
	if err != nil {
		t.Fatalf("reprov power cycle: %v\n%s", err, out)
	}
	if err := v.WaitSSH(ctx); err != nil {
		t.Fatal(err)
	}
	boot2 := v.bootID(t)
	if boot2 == boot1 {
		t.Fatalf("after reprov power cycle the boot id is still %s", boot1)
	}
	if log := strings.Join(v.ChassisLog()[mark:], "\n"); !strings.Contains(log, "power off") || !strings.Contains(log, "power on") {
		t.Errorf("the board saw no power off and on from reprov's cycle:\n%s", log)
	}

	// In band: agent/inband pushes reprov-agent to the busybox guest.
	pristine := readFile(t, e.img.Disk())
	stateDir := t.TempDir()
	alog, err := audit.Open(filepath.Join(stateDir, "audit.jsonl"), "rig")
	if err != nil {
		t.Fatal(err)
	}
	defer alog.Close()
	c := v.dial(t)
	defer c.Close()
	s, err := inband.NewSession(v.inventoryNode(t), c, inband.Config{StateDir: stateDir, Run: "rig", Audit: alog,
		AgentBinary: e.agentBin(), Wipe: inband.WipePolicy{BootSector: inband.WipeMBR}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	mark = len(v.ChassisLog())
	since := time.Now()
	res, err := s.Reinstall(ctx)
	if err != nil {
		t.Fatalf("in-band step: %v", err)
	}
	if chk := res.Identity.Check; chk.Matched != 3 {
		t.Errorf("identity check matched %d facts, want serial, MAC and BMC address: %+v", chk.Matched, chk.Facts)
	}
	if res.Wipe == nil || !res.Wipe.Verified || res.Wipe.BytesZeroed != 512 {
		t.Errorf("wipe: %+v, want 512 bytes zeroed and verified", res.Wipe)
	}
	if res.NextBoot == nil || res.NextBoot.IPMI == nil || res.NextBoot.IPMI.Via != "open" {
		t.Errorf("next-boot: %+v, want force_pxe through /dev/ipmi0 by reprov's own client", res.NextBoot)
	}
	// The guest's /dev/ipmi0 reached the BMC: the board was told pxe.
	if log := strings.Join(v.ChassisLog()[mark:], "\n"); !strings.Contains(log, "set boot pxe") {
		t.Errorf("the board was never told pxe in-band:\n%s", log)
	}

	// The board ignores force_pxe, but the disk has no bootable MBR now:
	// SeaBIOS falls through to the NIC, and iPXE asks the landing URL.
	if err := land.waitMAC(ctx, v.MAC(), since); err != nil {
		t.Fatalf("%v\nconsole:\n%s", err, v.ConsoleTail(20))
	}
	if !strings.Contains(v.Console(), "Boot failed: not a bootable disk") {
		t.Errorf("the console does not show SeaBIOS refusing the wiped disk")
	}
	checkOnlyMBRZeroed(t, pristine, v.DiskPath())
	saved, err := steps.ReadSavedFile(res.SavedFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(saved.Ranges) != 1 || !bytes.Equal(saved.Ranges[0].Data, pristine[:512]) {
		t.Errorf("the saved boot sector is not the disk's original sector 0")
	}
}

// --- the reinstall scenarios -------------------------------------------------

// testHonoursPXE: a board that honours the BMC's one-time PXE override.
// reprov lands the node out of band; the disk is untouched.
func testHonoursPXE(t *testing.T, e *env) {
	inst := serveInstaller(t, e)
	v := startVM(t, e, "honours-node", vmOpts{board: rig.HonoursPXE, landingPort: freeTCPPort(t), installURL: inst.GuestURL()})
	v.boot(t)
	pristine := readFile(t, e.img.Disk())
	mark, since, cons := len(v.ChassisLog()), time.Now(), v.ConsoleSize()

	code, res, stderr := v.reinstall(t)
	r := res.Results[0]
	if code != 0 || r.Status != fleet.StatusOK || r.Detail.State != store.JobLanded {
		t.Fatalf("reinstall: exit %d, %s (%s): %s\n%s", code, r.Status, r.Reason, r.Error, lastLines(stderr, 30))
	}
	if r.Detail.Path != "oob" || r.Detail.Escalated {
		t.Errorf("path %q escalated %v, want out of band only", r.Detail.Path, r.Detail.Escalated)
	}
	// On the VM: the board booted the network once, on reprov's request.
	board := strings.Join(v.ChassisLog()[mark:], "\n")
	if !strings.Contains(board, "set boot pxe") || !strings.Contains(board, "boot: network (the board honours the pxe override)") {
		t.Errorf("the board was not told pxe, or did not boot the network:\n%s", board)
	}
	waitInstaller(t, v, inst, since, cons)
	// The power cycle went straight to the network: no boot of the old OS
	// between the first and the installer.
	if boots := v.Boots(); len(boots) != 2 || boots[0].Installer || !boots[1].Installer {
		t.Errorf("boots %+v; want the OS from disk, then the installer", boots)
	}
	checkUnchanged(t, pristine, v.DiskPath())
}

// testIgnoresPXE: an HP DL360 G7 board on the default playbook. reprov sets
// PXE and cycles power, sees the old OS come back with a new boot id,
// escalates in-band (identity, MBR zeroed, force_pxe through the guest's
// /dev/ipmi0, reboot) and the node lands. A second run, with the learned
// quirk, goes in-band at once.
func testIgnoresPXE(t *testing.T, e *env) {
	inst := serveInstaller(t, e)
	v := startVM(t, e, "ignores-node", vmOpts{board: rig.IgnoresPXE, landingPort: freeTCPPort(t), installURL: inst.GuestURL()})
	v.boot(t)
	pristine := readFile(t, e.img.Disk())
	oldBoot := v.bootID(t)
	mark, since, cons := len(v.ChassisLog()), time.Now(), v.ConsoleSize()

	code, res, stderr := v.reinstall(t)
	r := res.Results[0]
	if code != 0 || r.Status != fleet.StatusOK || r.Detail.State != store.JobLanded {
		t.Fatalf("reinstall: exit %d, %s (%s): %s\n%s", code, r.Status, r.Reason, r.Error, lastLines(stderr, 30))
	}
	if !r.Detail.Escalated || r.Detail.Path != "inband" || !slices.Contains(r.Detail.Learned, store.QuirkIgnoresOOBPXE) {
		t.Errorf("report: path %q escalated %v learned %v; want the in-band path after detection, quirk %s learned",
			r.Detail.Path, r.Detail.Escalated, r.Detail.Learned, store.QuirkIgnoresOOBPXE)
	}
	// On the VM, in order: the BMC was told pxe, the power cycled, the
	// board ignored pxe and booted its disk (the old OS, a new boot id),
	// then force_pxe came in-band and the board fell through to the NIC.
	board := v.ChassisLog()[mark:]
	want := []string{"set boot pxe", "power off", "power on", "the board IGNORES the pxe override", "set boot pxe"}
	if !inOrder(board, want) {
		t.Errorf("the board's log is not %q in order:\n%s", want, strings.Join(board, "\n"))
	}
	// The old OS came back from the disk, with a new boot id, before the
	// installer booted.
	boots := v.Boots()
	cameBack := false
	for _, b := range boots {
		if b.Installer {
			break
		}
		if b.SSHUp && b.ID != oldBoot && b.ID != boots[0].ID {
			cameBack = true
		}
	}
	if boots[0].ID != oldBoot || !cameBack {
		t.Errorf("the old OS did not come back with a new boot id before the installer: boots %+v, first %s", boots, oldBoot)
	}
	if !strings.Contains(v.Console(), "Boot failed: not a bootable disk") {
		t.Errorf("the console does not show SeaBIOS refusing the wiped disk")
	}
	waitInstaller(t, v, inst, since, cons)
	checkOnlyMBRZeroed(t, pristine, v.DiskPath())
	// The landing endpoint matched the VM's request to the node: iPXE
	// printed the MAC it asked with, then the node's install script.
	if _, err := v.WaitConsole(context.Background(), 0, "reprov-e2e: netboot "+v.MAC()); err != nil ||
		!strings.Contains(v.Console(), "reprov: "+v.Name()+" landed") {
		t.Errorf("the console does not show iPXE asking with MAC %s and getting %s's install script", v.MAC(), v.Name())
	}
	// And the job store recorded the landing with that MAC.
	if out := v.reprovCmd(t, "jobs", "show", v.Name(), "-o", "json"); !strings.Contains(out, v.MAC()) {
		t.Errorf("reprov jobs show %s does not record the landing from MAC %s:\n%s", v.Name(), v.MAC(), out)
	}

	// reprov saved the sector before zeroing it (its undo): the original.
	savedFile, err := inband.LatestSaved(v.files.StateDir, v.Name())
	if err != nil {
		t.Fatal(err)
	}
	saved, err := steps.ReadSavedFile(savedFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(saved.Ranges) != 1 || saved.Ranges[0].Offset != 0 || !bytes.Equal(saved.Ranges[0].Data, pristine[:512]) {
		t.Fatalf("reprov's saved boot sector %s is not the disk's original sector 0", savedFile)
	}

	// Second run: put the old OS back (the saved sector, written while the
	// machine is off), boot it, reinstall again: in-band first, no BMC
	// power cycle.
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	if err := v.PowerOff(ctx); err != nil {
		t.Fatal(err)
	}
	restoreMBR(t, v.DiskPath(), saved.Ranges[0].Data)
	v.boot(t)
	mark, since, cons = len(v.ChassisLog()), time.Now(), v.ConsoleSize()
	code, res, stderr = v.reinstall(t)
	r = res.Results[0]
	if code != 0 || r.Status != fleet.StatusOK || r.Detail.State != store.JobLanded {
		t.Fatalf("second reinstall: exit %d, %s (%s): %s\n%s", code, r.Status, r.Reason, r.Error, lastLines(stderr, 30))
	}
	if r.Detail.Path != "inband" || r.Detail.Escalated {
		t.Errorf("second run: path %q escalated %v, want in-band first from the learned quirk", r.Detail.Path, r.Detail.Escalated)
	}
	board = v.ChassisLog()[mark:]
	for _, l := range board {
		if strings.Contains(l, "power off") || strings.Contains(l, "power on") {
			t.Errorf("second run: the BMC power-cycled the node (%q); the learned quirk should go in-band directly:\n%s", l, strings.Join(board, "\n"))
			break
		}
	}
	if !inOrder(board, []string{"set boot pxe"}) {
		t.Errorf("second run: no force_pxe in-band:\n%s", strings.Join(board, "\n"))
	}
	waitInstaller(t, v, inst, since, cons)
	checkOnlyMBRZeroed(t, pristine, v.DiskPath())
}

// testWrongIdentity: the inventory's serial is not the VM's. reprov stops
// the node before anything is written, and says which fact did not match.
func testWrongIdentity(t *testing.T, e *env) {
	v := startVM(t, e, "wrong-node", vmOpts{board: rig.IgnoresPXE, landingPort: freeTCPPort(t),
		installURL: "http://" + rig.GuestHost + ":9/never", invSerial: "CZJ0000WRONG", playbook: "hp-dl360-g7"})
	v.boot(t)
	pristine := readFile(t, e.img.Disk())
	bootBefore := v.bootID(t)
	mark := len(v.ChassisLog())

	code, res, stderr := v.reinstall(t)
	r := res.Results[0]
	if code != 1 || r.Status != fleet.StatusFailed {
		t.Fatalf("reinstall of a node with the wrong serial: exit %d, status %s; want exit 1, failed", code, r.Status)
	}
	msg := r.Error + " " + r.Reason + " " + stderr
	for _, want := range []string{"serial", "CZJ0000WRONG", v.Serial()} {
		if !strings.Contains(msg, want) {
			t.Errorf("the failure does not name %q: %s / %s", want, r.Reason, r.Error)
		}
	}
	checkUnchanged(t, pristine, v.DiskPath())
	if board := v.ChassisLog()[mark:]; len(board) > 0 {
		t.Errorf("the BMC was written to although the identity did not match:\n%s", strings.Join(board, "\n"))
	}
	if got := v.bootID(t); got != bootBefore || len(v.Boots()) != 1 {
		t.Errorf("the node rebooted (boot id %s, was %s; boots %+v)", got, bootBefore, v.Boots())
	}
}

// --- VM-side evidence --------------------------------------------------------

// waitInstaller waits until the VM netbooted reprov's install script: it
// fetched the installer's kernel and initrd from the install server and the
// installer booted with the node's name on its command line. since and
// console (an offset in the console log) are when the reinstall started:
// an installer boot of an earlier run does not count.
func waitInstaller(t *testing.T, v *vm, inst *rig.InstallServer, since time.Time, console int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), landTimeout)
	defer cancel()
	if _, err := v.WaitConsole(ctx, console, "reprov-e2e: installer for node="+v.Name()); err != nil {
		t.Fatalf("the installer never booted: %v\ninstall server requests: %+v", err, inst.Requests())
	}
	for _, p := range []string{"/vmlinuz", "/initrd.gz"} {
		if !inst.Fetched(p, since) {
			t.Errorf("the VM never fetched %s from the install server (requests %+v)", p, inst.Requests())
		}
	}
}

func serveInstaller(t *testing.T, e *env) *rig.InstallServer {
	t.Helper()
	s, err := rig.ServeInstaller(e.img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// testLanding stands in for reprov's landing endpoint in the rig test: it
// records which MACs asked and answers a script that idles.
type testLanding struct {
	port int
	mu   sync.Mutex
	seen map[string]time.Time
}

func serveTestLanding(t *testing.T) *testLanding {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl := &testLanding{port: l.Addr().(*net.TCPAddr).Port, seen: map[string]time.Time{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /boot/ipxe", func(w http.ResponseWriter, r *http.Request) {
		mac := strings.ToLower(r.URL.Query().Get("mac"))
		tl.mu.Lock()
		tl.seen[mac] = time.Now()
		tl.mu.Unlock()
		fmt.Fprint(w, "#!ipxe\necho reprov-e2e: test landing endpoint answered ${net0/mac}\nsleep 600\n")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return tl
}

func (tl *testLanding) waitMAC(ctx context.Context, mac string, since time.Time) error {
	for {
		tl.mu.Lock()
		at, ok := tl.seen[strings.ToLower(mac)]
		tl.mu.Unlock()
		if ok && !at.Before(since) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the landing endpoint never saw MAC %s: %w", mac, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// checkUnchanged fails unless the disk is byte-identical to the image.
func checkUnchanged(t *testing.T, pristine []byte, disk string) {
	t.Helper()
	if d := diffRanges(pristine, readFile(t, disk)); len(d) > 0 {
		t.Errorf("the disk changed at %v; want it byte-identical to the image", d)
	}
}

// checkOnlyMBRZeroed fails unless sector 0 is zero and every other byte is
// the image's.
func checkOnlyMBRZeroed(t *testing.T, pristine []byte, disk string) {
	t.Helper()
	got := readFile(t, disk)
	if len(got) != len(pristine) {
		t.Fatalf("the disk is %d bytes, the image %d", len(got), len(pristine))
	}
	if !bytes.Equal(got[:512], make([]byte, 512)) {
		t.Errorf("sector 0 is not zeroed")
	}
	if d := diffRanges(pristine[512:], got[512:]); len(d) > 0 {
		t.Errorf("bytes beyond sector 0 changed at %v (offsets from 512)", d)
	}
}

// diffRanges returns the [start,end) ranges where a and b differ.
func diffRanges(a, b []byte) [][2]int {
	var out [][2]int
	n := max(len(a), len(b))
	for i := 0; i < n; {
		if i < len(a) && i < len(b) && a[i] == b[i] {
			i++
			continue
		}
		j := i
		for j < n && (j >= len(a) || j >= len(b) || a[j] != b[j]) {
			j++
		}
		out = append(out, [2]int{i, j})
		i = j
	}
	return out
}

func restoreMBR(t *testing.T, disk string, sector []byte) {
	t.Helper()
	f, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(sector, 0); err != nil {
		t.Fatal(err)
	}
}

// inOrder reports whether each of want occurs in lines, in that order.
func inOrder(lines, want []string) bool {
	i := 0
	for _, l := range lines {
		if i < len(want) && strings.Contains(l, want[i]) {
			i++
		}
	}
	return i == len(want)
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	return labtool.FreeTCPPort(t, "127.0.0.1")
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// tWriter sends log lines to t.Log.
type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
