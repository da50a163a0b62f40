// Package rig runs reprov's end-to-end test node: a real PC (QEMU under
// TCG, SeaBIOS, the NIC's iPXE ROM) booting a real Linux from a disk with an
// MBR, with OpenIPMI's ipmi_sim as its BMC — LAN IPMI on loopback out of
// band, /dev/ipmi0 in the guest through QEMU's ipmi-bmc-extern.
//
// Each Node has its own directory, copy of the disk, MAC, DMI serial and
// ports. The machine's power is ipmi_sim's chassis_control program
// (chassis.sh): it starts QEMU on power-on and stops it on power-off, and
// records every request; the board either honours the BMC's PXE boot
// device or ignores it like an HP DL360 G7 (Board).
//
// The guest reaches the host's loopback as 10.0.2.2 (QEMU user network):
// the NIC's iPXE loads boot.ipxe over QEMU's TFTP, which chains to
// LandingURL/boot/ipxe?mac=${net0/mac} and retries until answered.
//
// The image (disk, kernel, initramfs, keys) comes from
// scripts/e2e/build-image.sh; docs/testing.md describes the whole rig.
package rig

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

//go:embed chassis.sh
var chassisScript string

// Board is how the node's firmware treats the boot device its BMC was given.
type Board string

const (
	// HonoursPXE is a well-behaved board: a PXE override set through the
	// BMC makes the next boot a network boot.
	HonoursPXE Board = "honours"
	// IgnoresPXE is an HP DL360 G7: the BMC accepts the override, the board
	// boots its disk anyway (and the NIC only when the disk has no bootable
	// MBR).
	IgnoresPXE Board = "ignores"
)

// Defaults of a Config.
const (
	DefaultBMCUser     = "admin"
	DefaultBMCPassword = "e2e-bmc-secret"
	DefaultMemoryMB    = 384
	// GuestHost is the host's loopback as the guest sees it in QEMU's user
	// network.
	GuestHost = "10.0.2.2"
)

// Config configures a Node.
type Config struct {
	// Image is the built image (scripts/e2e/build-image.sh).
	Image Image
	// Dir is the node's own directory (disk copy, configuration, logs).
	Dir string
	// Name is the node's name in logs; default "e2e-node".
	Name string
	// Serial is the DMI system serial the guest reads (-smbios type=1).
	Serial string
	// MAC is the NIC's address; default a random locally administered one.
	MAC string
	// Board says whether the board honours the BMC's PXE override.
	Board Board
	// LandingURL is the base URL boot.ipxe chains to, as the guest reaches
	// it (http://10.0.2.2:PORT).
	LandingURL string
	// BMCUser and BMCPassword are the BMC's administrator account.
	BMCUser, BMCPassword string
	// BMCLANAddress is the address the BMC reports as its own LAN IP
	// in-band (Get LAN Configuration Parameters); default 127.0.0.1, where
	// it listens. "0.0.0.0" makes it an unconfigured BMC.
	BMCLANAddress string
	// MemoryMB is the guest's memory; default DefaultMemoryMB.
	MemoryMB int
	// Logger receives the rig's progress; nil discards.
	Logger *slog.Logger
}

// Image is a built node image.
type Image struct {
	// Dir holds disk.img, vmlinuz, initrd.gz, id_ed25519 and host_key.pub.
	Dir string
}

// Disk is the pristine disk image.
func (i Image) Disk() string { return filepath.Join(i.Dir, "disk.img") }

// Kernel and Initrd are the node's kernel and initramfs (the same files the
// disk boots), for netbooting the "installer".
func (i Image) Kernel() string { return filepath.Join(i.Dir, "vmlinuz") }

// Initrd is the initramfs (see Kernel).
func (i Image) Initrd() string { return filepath.Join(i.Dir, "initrd.gz") }

// SSHKey is the private key root on the node accepts.
func (i Image) SSHKey() string { return filepath.Join(i.Dir, "id_ed25519") }

// HostKey returns the node's SSH host public key ("ssh-ed25519 AAAA…").
func (i Image) HostKey() (string, error) {
	b, err := os.ReadFile(filepath.Join(i.Dir, "host_key.pub"))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// BuildImage runs scripts/e2e/build-image.sh (which installs what is missing
// and caches the image by its inputs) and returns the image. repoRoot is the
// repository's top directory.
func BuildImage(ctx context.Context, repoRoot string, log io.Writer) (Image, error) {
	script := filepath.Join(repoRoot, "scripts", "e2e", "build-image.sh")
	cmd := exec.CommandContext(ctx, script)
	cmd.Dir = repoRoot
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = log
	if err := cmd.Run(); err != nil {
		return Image{}, fmt.Errorf("%s: %w", script, err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	img := Image{Dir: strings.TrimSpace(lines[len(lines)-1])}
	if _, err := os.Stat(img.Disk()); err != nil {
		return Image{}, fmt.Errorf("%s printed %q, which has no disk.img: %w", script, img.Dir, err)
	}
	return img, nil
}

// Node is one virtual machine and its BMC. The machine starts powered off.
type Node struct {
	cfg     Config
	log     *slog.Logger
	sshPort int
	bmcPort int
	kcsPort int
	sim     *exec.Cmd
	simDone chan struct{}
	simExit string // how ipmi_sim ended; read after simDone is closed

	closeOnce sync.Once
}

// Start prepares the node's directory (disk copy, TFTP root with
// boot.ipxe, ipmi_sim configuration, chassis program, QEMU start script)
// and starts its BMC. The machine is off: PowerOn, or a BMC power command,
// starts it. Close stops both.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	for _, tool := range []string{"qemu-system-x86_64", "ipmi_sim", "socat", "flock"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("rig: %s is not installed (scripts/e2e/install-deps.sh): %w", tool, err)
		}
	}
	if cfg.Dir == "" || cfg.Image.Dir == "" || cfg.LandingURL == "" {
		return nil, errors.New("rig: Dir, Image and LandingURL are required")
	}
	if cfg.Name == "" {
		cfg.Name = "e2e-node"
	}
	if cfg.Serial == "" {
		cfg.Serial = "E2E-" + strings.ToUpper(randomHex(4))
	}
	if cfg.MAC == "" {
		cfg.MAC = "52:54:00:" + randomHex(1) + ":" + randomHex(1) + ":" + randomHex(1)
	}
	cfg.MAC = strings.ToLower(cfg.MAC)
	if cfg.Board == "" {
		cfg.Board = HonoursPXE
	}
	if cfg.Board != HonoursPXE && cfg.Board != IgnoresPXE {
		return nil, fmt.Errorf("rig: board %q: want %q or %q", cfg.Board, HonoursPXE, IgnoresPXE)
	}
	if cfg.BMCUser == "" {
		cfg.BMCUser = DefaultBMCUser
	}
	if cfg.BMCPassword == "" {
		cfg.BMCPassword = DefaultBMCPassword
	}
	if cfg.BMCLANAddress == "" {
		cfg.BMCLANAddress = "127.0.0.1"
	}
	if cfg.MemoryMB == 0 {
		cfg.MemoryMB = DefaultMemoryMB
	}
	n := &Node{cfg: cfg, log: cfg.Logger, simDone: make(chan struct{})}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	// Ports are picked free, then bound by ipmi_sim and QEMU: another
	// process may take one in between, so a failed start is tried again
	// with new ones.
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if n.sshPort, err = freePort("tcp4"); err != nil {
			return nil, err
		}
		if n.kcsPort, err = freePort("tcp4"); err != nil {
			return nil, err
		}
		if n.bmcPort, err = freePort("udp4"); err != nil {
			return nil, err
		}
		if err = n.writeFiles(); err != nil {
			return nil, fmt.Errorf("rig: node %s: %w", cfg.Name, err)
		}
		n.simDone = make(chan struct{})
		if err = n.startBMC(ctx); err == nil || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("rig: node %s: %w", cfg.Name, err)
	}
	n.log.Info("rig: node ready (powered off)", "node", cfg.Name, "dir", cfg.Dir, "bmc", n.BMCAddr(),
		"ssh", n.SSHAddr(), "mac", cfg.MAC, "serial", cfg.Serial, "board", string(cfg.Board))
	return n, nil
}

func (n *Node) path(name string) string { return filepath.Join(n.cfg.Dir, name) }

func (n *Node) writeFiles() error {
	if err := os.MkdirAll(n.path("tftp"), 0o755); err != nil {
		return err
	}
	// A fresh state dir: ipmi_sim's saved state would override lan.conf.
	if err := os.RemoveAll(n.path("bmc-state")); err != nil {
		return err
	}
	if err := os.MkdirAll(n.path("bmc-state"), 0o700); err != nil {
		return err
	}
	if err := copyFile(n.cfg.Image.Disk(), n.DiskPath()); err != nil {
		return fmt.Errorf("copy disk: %w", err)
	}
	files := []struct {
		name    string
		mode    os.FileMode
		content string
	}{
		{"tftp/boot.ipxe", 0o644, BootScript(n.cfg.LandingURL)},
		{"chassis.sh", 0o755, chassisScript},
		{"lan.sh", 0o755, lanScript(n.cfg.BMCLANAddress, n.cfg.MAC)},
		{"qemu-start.sh", 0o755, n.qemuStartScript()},
		{"lan.conf", 0o600, n.lanConf()},
		{"bmc.emu", 0o644, "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nmc_enable 0x20\n"},
		{"board", 0o644, string(n.cfg.Board) + "\n"},
		{"boot", 0o644, "none\n"},
		{"powerons", 0o644, "0\n"},
		{"chassis.log", 0o644, ""},
		{"console.log", 0o644, ""},
	}
	for _, f := range files {
		if err := os.WriteFile(n.path(f.name), []byte(f.content), f.mode); err != nil {
			return err
		}
	}
	return nil
}

// BootScript is boot.ipxe, what QEMU's TFTP hands the NIC's iPXE: chain to
// the landing endpoint with the NIC's MAC, retrying until it answers (the
// endpoint may not listen yet, or answer 503 for a moment).
func BootScript(landingURL string) string {
	return "#!ipxe\n" +
		"echo reprov-e2e: netboot ${net0/mac}\n" +
		":retry\n" +
		"chain " + strings.TrimRight(landingURL, "/") + "/boot/ipxe?mac=${net0/mac} || goto wait\n" +
		":wait\n" +
		"echo reprov-e2e: landing endpoint did not answer; retrying\n" +
		"sleep 2\n" +
		"goto retry\n"
}

// qemuStartScript is DIR/qemu-start.sh BOOTARG: QEMU under TCG (this
// machine's /dev/kvm cannot run SeaBIOS's iPXE and syslinux), daemonized
// once it runs, its serial console appended to console.log.
func (n *Node) qemuStartScript() string {
	args := n.QEMUArgs("$1")
	var b strings.Builder
	b.WriteString("#!/bin/sh\n# Started by chassis.sh on power-on: qemu-start.sh BOOTARG (order=cn, once=n,order=cn).\n")
	b.WriteString("exec qemu-system-x86_64")
	quote := func(a string) string {
		if a == "$1" {
			return `"$1"`
		}
		return shellQuote(a)
	}
	for i := 0; i < len(args); i++ {
		b.WriteString(" \\\n  " + quote(args[i]))
		// An option and its value on one line.
		if strings.HasPrefix(args[i], "-") && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			i++
			b.WriteString(" " + quote(args[i]))
		}
	}
	b.WriteString("\n")
	return b.String()
}

// QEMUArgs is the QEMU command line (without the program), with bootArg as
// the -boot value.
func (n *Node) QEMUArgs(bootArg string) []string {
	return []string{
		"-name", "reprov-e2e-" + n.cfg.Name,
		"-accel", "tcg",
		"-machine", "pc,graphics=off", // SeaBIOS and iPXE print on the serial console
		"-m", strconv.Itoa(n.cfg.MemoryMB),
		"-nodefaults", "-display", "none", "-vga", "none",
		"-chardev", "file,id=con0,path=" + n.path("console.log") + ",append=on",
		"-serial", "chardev:con0",
		"-monitor", "unix:" + n.path("monitor.sock") + ",server=on,wait=off",
		"-drive", "file=" + n.DiskPath() + ",format=raw,if=ide,index=0,media=disk",
		"-netdev", fmt.Sprintf("user,id=net0,tftp=%s,bootfile=boot.ipxe,hostfwd=tcp:127.0.0.1:%d-:22", n.path("tftp"), n.sshPort),
		"-device", "e1000,netdev=net0,mac=" + n.cfg.MAC,
		"-chardev", fmt.Sprintf("socket,id=bmc0chr,host=127.0.0.1,port=%d,reconnect=2", n.kcsPort),
		"-device", "ipmi-bmc-extern,chardev=bmc0chr,id=bmc0",
		"-device", "isa-ipmi-kcs,bmc=bmc0",
		"-smbios", "type=1,manufacturer=reprov,product=e2e-node,serial=" + n.cfg.Serial,
		"-boot", bootArg,
		"-daemonize", "-pidfile", n.path("qemu.pid"),
	}
}

func (n *Node) lanConf() string {
	return fmt.Sprintf(`# ipmi_sim: the BMC of e2e node %s (generated by reprov e2e/rig)
name "%s"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 %d
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid %s
    lan_config_program "%s"
  endlan
  serial 15 127.0.0.1 %d codec VM
  chassis_control "%s %s"
user 2 true "%s" "%s" admin 10 none md2 md5 straight
`, n.cfg.Name, n.cfg.Name, n.bmcPort, randomHex(16), n.path("lan.sh"), n.kcsPort,
		n.path("chassis.sh"), n.cfg.Dir, n.cfg.BMCUser, n.cfg.BMCPassword)
}

// lanScript is ipmi_sim's lan_config_program: what the BMC reports as its
// LAN address (out of band and, what the identity check reads, in-band).
func lanScript(ip, nodeMAC string) string {
	// The BMC's own MAC: the node's with the first octet changed.
	bmcMAC := "02" + nodeMAC[2:]
	return fmt.Sprintf(`#!/bin/sh
# ipmi_sim lan_config_program: lan.sh get|set|check PARAM...
op=$1
shift
case $op in
get)
	for p in "$@"; do
		case $p in
		ip_addr) echo "ip_addr:%s" ;;
		ip_addr_src) echo "ip_addr_src:static" ;;
		mac_addr) echo "mac_addr:%s" ;;
		subnet_mask) echo "subnet_mask:255.0.0.0" ;;
		default_gw_ip_addr|backup_gw_ip_addr) echo "$p:0.0.0.0" ;;
		default_gw_mac_addr|backup_gw_mac_addr) echo "$p:00:00:00:00:00:00" ;;
		*) echo "unknown parameter $p"; exit 1 ;;
		esac
	done
	;;
set|check) exit 0 ;;
*) exit 1 ;;
esac
`, ip, bmcMAC)
}

func (n *Node) startBMC(ctx context.Context) error {
	logf, err := os.Create(n.path("ipmi_sim.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	// ipmi_sim does not ignore SIGPIPE: a write to QEMU's connection just
	// as QEMU quits (a power-off) would kill it. An ignored signal stays
	// ignored across exec.
	cmd := exec.Command("/bin/sh", "-c", `trap "" PIPE; exec ipmi_sim -n -c "$1" -f "$2" -s "$3"`, "ipmi_sim",
		n.path("lan.conf"), n.path("bmc.emu"), n.path("bmc-state"))
	cmd.Dir = n.cfg.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start ipmi_sim: %w", err)
	}
	n.sim = cmd
	go func() {
		_ = cmd.Wait()
		n.simExit = cmd.ProcessState.String()
		close(n.simDone)
	}()
	// Ready when it answers an RMCP presence ping and listens for QEMU.
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-n.simDone:
			b, _ := os.ReadFile(n.path("ipmi_sim.log"))
			return fmt.Errorf("ipmi_sim exited: %s", tail(string(b), 600))
		case <-ctx.Done():
			n.stopBMC()
			return ctx.Err()
		default:
		}
		if rmcpPing(n.BMCAddr()) {
			return nil
		}
		if time.Now().After(deadline) {
			n.stopBMC()
			return fmt.Errorf("ipmi_sim on %s not ready within 10 s", n.BMCAddr())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (n *Node) stopBMC() {
	if n.sim != nil && n.sim.Process != nil {
		_ = n.sim.Process.Kill()
		<-n.simDone
	}
}

// Close powers the machine off (QEMU quits) and stops the BMC.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		_, _ = n.chassis(context.Background(), "set", "power", "0")
		// A QEMU the chassis program lost track of: kill it by its pid file.
		if pid := n.qemuPID(); pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		n.stopBMC()
		n.log.Info("rig: node stopped", "node", n.cfg.Name)
	})
	return nil
}

func (n *Node) qemuPID() int {
	b, err := os.ReadFile(n.path("qemu.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	// Alive, and not a zombie waiting for a pid 1 that reaps only now and
	// then.
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' || stat[i+2] == 'X' {
		return 0
	}
	return pid
}

// chassis runs the chassis program as ipmi_sim does.
func (n *Node) chassis(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, n.path("chassis.sh"), append([]string{n.cfg.Dir}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("chassis.sh %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// PowerOn presses the power button: the machine starts (booting as the
// board and the pending boot device say) unless it is on.
func (n *Node) PowerOn(ctx context.Context) error {
	_, err := n.chassis(ctx, "set", "power", "1")
	return err
}

// PowerOff holds the power button: QEMU quits.
func (n *Node) PowerOff(ctx context.Context) error {
	_, err := n.chassis(ctx, "set", "power", "0")
	return err
}

// Powered reports whether QEMU runs.
func (n *Node) Powered() bool { return n.qemuPID() > 0 }

// PowerOns counts the machine's starts.
func (n *Node) PowerOns() int {
	b, _ := os.ReadFile(n.path("powerons"))
	v, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return v
}

// SetBoard changes how the board treats the BMC's boot device (it takes
// effect at the next boot decision).
func (n *Node) SetBoard(b Board) error {
	return os.WriteFile(n.path("board"), []byte(string(b)+"\n"), 0o644)
}

// Name is the node's name.
func (n *Node) Name() string { return n.cfg.Name }

// Dir is the node's directory.
func (n *Node) Dir() string { return n.cfg.Dir }

// Serial is the DMI serial the guest reads.
func (n *Node) Serial() string { return n.cfg.Serial }

// MAC is the NIC's address (lower case).
func (n *Node) MAC() string { return n.cfg.MAC }

// Image is the image the node's disk was copied from.
func (n *Node) Image() Image { return n.cfg.Image }

// DiskPath is the node's own disk image.
func (n *Node) DiskPath() string { return n.path("disk.img") }

// SSHAddr is where the guest's sshd is forwarded (127.0.0.1:PORT).
func (n *Node) SSHAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.sshPort)) }

// SSHPort is the forwarded SSH port.
func (n *Node) SSHPort() int { return n.sshPort }

// BMCAddr is the BMC's LAN IPMI address (127.0.0.1:PORT, UDP).
func (n *Node) BMCAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.bmcPort)) }

// BMCPort is the BMC's UDP port.
func (n *Node) BMCPort() int { return n.bmcPort }

// BMCUser and BMCPassword are the BMC's administrator account.
func (n *Node) BMCUser() string { return n.cfg.BMCUser }

// BMCPassword is the BMC administrator's password.
func (n *Node) BMCPassword() string { return n.cfg.BMCPassword }

// KnownHostsLine is the known_hosts line of the guest's forwarded sshd.
func (n *Node) KnownHostsLine() (string, error) {
	k, err := n.cfg.Image.HostKey()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("[127.0.0.1]:%d %s", n.sshPort, k), nil
}

// Console returns the guest's serial console output so far (every boot,
// appended).
func (n *Node) Console() string {
	b, _ := os.ReadFile(n.path("console.log"))
	return string(b)
}

// ConsoleSize is the console log's length: an offset for WaitConsole.
func (n *Node) ConsoleSize() int { return len(n.Console()) }

// WaitConsole waits until the console shows marker after offset and
// returns the offset just past it.
func (n *Node) WaitConsole(ctx context.Context, offset int, marker string) (int, error) {
	for {
		c := n.Console()
		if offset <= len(c) {
			if i := strings.Index(c[offset:], marker); i >= 0 {
				return offset + i + len(marker), nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("node %s: console never showed %q: %w; last lines:\n%s", n.cfg.Name, marker, ctx.Err(), n.ConsoleTail(15))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ConsoleTail returns the console's last lines (for failure messages).
func (n *Node) ConsoleTail(lines int) string {
	return lastLines(n.Console(), lines)
}

// Boot is one boot of the guest's Linux, as its serial console shows it.
type Boot struct {
	// ID is the kernel's boot id.
	ID string
	// Installer is set when the kernel was netbooted as the installer
	// (reprov's install script); otherwise it is the OS from the disk.
	Installer bool
	// SSHUp is set when the OS started its sshd.
	SSHUp bool
}

// Boots returns the guest's boots of Linux, oldest first (firmware-only
// boots, such as iPXE waiting for the landing endpoint, are not listed).
func (n *Node) Boots() []Boot {
	var boots []Boot
	sc := bufio.NewScanner(strings.NewReader(n.Console()))
	for sc.Scan() {
		line := sc.Text()
		if _, v, ok := strings.Cut(line, "reprov-e2e: boot_id="); ok {
			boots = append(boots, Boot{ID: strings.TrimSpace(v)})
			continue
		}
		if len(boots) == 0 {
			continue
		}
		b := &boots[len(boots)-1]
		switch {
		case strings.Contains(line, "reprov-e2e: sshd up"):
			b.SSHUp = true
		case strings.Contains(line, "reprov-e2e: installer for node="):
			b.Installer = true
		}
	}
	return boots
}

// ChassisLog returns the chassis program's log lines (power requests,
// boot devices set, and how each boot went), oldest first.
func (n *Node) ChassisLog() []string {
	b, _ := os.ReadFile(n.path("chassis.log"))
	var out []string
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// BMCRunning reports whether ipmi_sim still runs.
func (n *Node) BMCRunning() bool {
	select {
	case <-n.simDone:
		return false
	default:
		return true
	}
}

// Logs returns the tails of the rig's logs, for a failing test.
func (n *Node) Logs() string {
	var b strings.Builder
	if !n.BMCRunning() {
		fmt.Fprintf(&b, "--- ipmi_sim is not running: %s\n", n.simExit)
	}
	for _, f := range []string{"chassis.log", "qemu.log", "ipmi_sim.log"} {
		data, _ := os.ReadFile(n.path(f))
		fmt.Fprintf(&b, "--- %s\n%s\n", f, lastLines(string(data), 20))
	}
	fmt.Fprintf(&b, "--- console.log\n%s\n", n.ConsoleTail(30))
	return b.String()
}

// WaitSSH waits until the guest's sshd answers with its banner.
func (n *Node) WaitSSH(ctx context.Context) error {
	for {
		if sshBanner(n.SSHAddr()) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s: sshd on %s never answered: %w; console:\n%s", n.cfg.Name, n.SSHAddr(), ctx.Err(), n.ConsoleTail(15))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// sshBanner reports whether addr answers with an SSH banner (QEMU's
// hostfwd accepts connections even when the guest has no sshd).
func sshBanner(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		return false
	}
	return string(buf) == "SSH-"
}

func rmcpPing(addr string) bool {
	conn, err := net.Dial("udp4", addr)
	if err != nil {
		return false
	}
	defer conn.Close()
	ping := []byte{0x06, 0x00, 0xff, 0x06, 0x00, 0x00, 0x11, 0xbe, 0x80, 0x01, 0x00, 0x00}
	if _, err := conn.Write(ping); err != nil {
		return false
	}
	_ = conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	buf := make([]byte, 512)
	n, err := conn.Read(buf)
	return err == nil && n >= 9 && buf[3] == 0x06 && buf[8] == 0x40
}

func freePort(network string) (int, error) {
	switch network {
	case "udp4":
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("free UDP port: %w", err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port, nil
	default:
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("free TCP port: %w", err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port, nil
	}
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '-' || r == '_' || r == '.' || r == '/' || r == ',' || r == ':' || r == '=' ||
			r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
