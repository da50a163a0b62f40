// Package ipmisim runs OpenIPMI's ipmi_sim (Debian package openipmi) as an
// independent IPMI 2.0 BMC for tests. The harness writes lan.conf and an .emu
// file into a temporary directory, plus two small shell programs that
// ipmi_sim calls: a chassis control program that keeps the simulated
// machine's power, power-on count, next-boot device and boot log in files,
// and a LAN configuration program that reports the BMC's IP and MAC. The
// harness reads those files, so a *Sim is a bmctest.Machine.
//
// What ipmi_sim does and does not do (see docs/field-notes.md): cipher suites 0–14
// only (no 17: use 3); boot parameter 5 reads back only the device selector
// (valid, persistent and EFI bits read as 0) and has no 60 s timeout;
// boot parameter 3 is accepted and ignored; a power cycle is off, then on
// about a second later, even for a machine that was off.
package ipmisim

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/lab/ipmibmc"
	"github.com/reprov/reprov/lab/labtool"
)

// Defaults used when a Config field is empty.
const (
	DefaultUsername = "admin"
	DefaultPassword = "password"
)

// Config configures a simulator.
type Config struct {
	// Host is the loopback IP to serve on; default 127.0.0.1.
	Host string
	// Port is the UDP port; 0 picks a free one.
	Port int
	// Username and Password of the administrator account (user 2).
	// Usernames are at most 16 bytes, passwords at most 20.
	Username, Password string
	// LANIP and LANMAC are what Get LAN Configuration Parameters reports as
	// the BMC's address (what an in-band identity check reads); defaults:
	// Host and 02:00:<Host bytes>.
	LANIP, LANMAC string
	// SystemGUID is what Get System GUID reports, in 8-4-4-4-12 text
	// (RFC 4122 order); ipmi_sim sends lan.conf's "guid" bytes as written,
	// and the harness writes them in SMBIOS order (first three fields
	// little-endian), as most BMCs send them. Default: a GUID derived from
	// Host and Port.
	SystemGUID string
	// Serial is the product serial of FRU 0 (an .emu mc_add_fru_data
	// image); empty: no FRU data.
	Serial string
	// InitiallyOn starts the machine powered on.
	InitiallyOn bool
	// StartTimeout bounds waiting for the simulator to answer; default 10 s.
	StartTimeout time.Duration
}

// Sim is a running ipmi_sim. It implements bmctest.Machine.
type Sim struct {
	cfg     Config
	dir     string
	machine string // directory of the machine's state files
	cmd     *exec.Cmd
	exited  chan struct{}

	mu       sync.Mutex // serializes SetPowered against itself
	stopOnce sync.Once
}

// Start starts ipmi_sim on a free loopback port, waits until it answers an
// RMCP presence ping and registers its shutdown with t.Cleanup. It skips the
// test (fails under CI=true) when ipmi_sim is not installed.
func Start(t testing.TB, cfg Config) *Sim {
	t.Helper()
	bin := labtool.RequireTool(t, "ipmi_sim")
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Username == "" {
		cfg.Username = DefaultUsername
	}
	if cfg.Password == "" {
		cfg.Password = DefaultPassword
	}
	if len(cfg.Username) > 16 || len(cfg.Password) > 20 {
		t.Fatalf("ipmisim: username at most 16 bytes, password at most 20")
	}
	ip := net.ParseIP(cfg.Host).To4()
	if ip == nil {
		t.Fatalf("ipmisim: host %q is not an IPv4 address", cfg.Host)
	}
	if cfg.LANIP == "" {
		cfg.LANIP = cfg.Host
	}
	if cfg.LANMAC == "" {
		cfg.LANMAC = fmt.Sprintf("02:00:%02x:%02x:%02x:%02x", ip[0], ip[1], ip[2], ip[3])
	}
	if cfg.SystemGUID != "" && !bmc.ValidGUID(cfg.SystemGUID) {
		t.Fatalf("ipmisim: system GUID %q is not a GUID", cfg.SystemGUID)
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 10 * time.Second
	}
	fixedPort := cfg.Port != 0
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		c := cfg
		if !fixedPort {
			c.Port = labtool.FreeUDPPort(t, cfg.Host)
		}
		s, err := start(bin, t.TempDir(), c)
		if err == nil {
			t.Cleanup(func() { _ = s.Close() })
			return s
		}
		lastErr = err
		if fixedPort {
			break
		}
	}
	t.Fatalf("ipmisim: %v", lastErr)
	return nil
}

func start(bin, dir string, cfg Config) (*Sim, error) {
	s := &Sim{cfg: cfg, dir: dir, machine: filepath.Join(dir, "machine"), exited: make(chan struct{})}
	if err := os.MkdirAll(s.machine, 0o755); err != nil {
		return nil, err
	}
	stateDir := filepath.Join(dir, "state")
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, err
	}
	power := "0"
	if cfg.InitiallyOn {
		power = "1"
	}
	files := map[string]string{
		filepath.Join(s.machine, "power"):    power + "\n",
		filepath.Join(s.machine, "powerons"): "0\n",
		filepath.Join(s.machine, "boot"):     "none\n",
		filepath.Join(s.machine, "bootlog"):  "",
		filepath.Join(dir, "lan.conf"):       lanConf(s, cfg),
		filepath.Join(dir, "sim.emu"):        emuFile(cfg),
	}
	for name, content := range files {
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, "lan.conf") {
			mode = 0o600 // holds the password
		}
		if err := os.WriteFile(name, []byte(content), mode); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(s.chassisProg(), []byte(chassisScript), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(s.lanProg(), []byte(lanScript(cfg)), 0o755); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "ipmi_sim.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "-n",
		"-c", filepath.Join(dir, "lan.conf"),
		"-f", filepath.Join(dir, "sim.emu"),
		"-s", stateDir)
	cmd.Dir = dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	// No stdin: ipmi_sim's console would otherwise read the test's stdin.
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start ipmi_sim: %w", err)
	}
	s.cmd = cmd
	go func() {
		_ = cmd.Wait()
		close(s.exited)
	}()
	if err := s.waitReady(cfg.StartTimeout); err != nil {
		_ = s.Close()
		log, _ := os.ReadFile(filepath.Join(dir, "ipmi_sim.log"))
		return nil, fmt.Errorf("ipmi_sim on %s not ready: %w; log: %s", s.Addr(), err, tail(string(log), 800))
	}
	return s, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// waitReady sends RMCP presence pings until a pong comes back, the process
// exits or d passes.
func (s *Sim) waitReady(d time.Duration) error {
	deadline := time.Now().Add(d)
	conn, err := net.Dial("udp4", s.Addr())
	if err != nil {
		return err
	}
	defer conn.Close()
	ping := []byte{0x06, 0x00, 0xff, 0x06, 0x00, 0x00, 0x11, 0xbe, 0x80, 0x01, 0x00, 0x00}
	buf := make([]byte, 512)
	for {
		select {
		case <-s.exited:
			return errors.New("ipmi_sim exited")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no presence pong within %v", d)
		}
		if _, err := conn.Write(ping); err == nil {
			_ = conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			if n, err := conn.Read(buf); err == nil && n >= 9 && buf[3] == 0x06 && buf[8] == 0x40 {
				return nil
			}
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// Addr is the simulator's address (host:port).
func (s *Sim) Addr() string { return net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.Port)) }

// Host is the IP the simulator serves on.
func (s *Sim) Host() string { return s.cfg.Host }

// Port is the UDP port the simulator serves on.
func (s *Sim) Port() int { return s.cfg.Port }

// Username is the administrator account's name.
func (s *Sim) Username() string { return s.cfg.Username }

// Password is the administrator account's password.
func (s *Sim) Password() string { return s.cfg.Password }

// Dir is the directory holding the configuration, state and log.
func (s *Sim) Dir() string { return s.dir }

// Close stops ipmi_sim. It is safe to call more than once.
func (s *Sim) Close() error {
	s.stopOnce.Do(func() {
		if s.cmd != nil && s.cmd.Process != nil {
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	})
	return nil
}

// Powered reports whether the machine is on.
func (s *Sim) Powered() bool { return s.read("power") == "1" }

// PowerOns counts off→on transitions since the simulator started.
func (s *Sim) PowerOns() int {
	n, _ := strconv.Atoi(s.read("powerons"))
	return n
}

// BootDevice is the next-boot device ipmi_sim handed to the chassis program
// (bmc.BootNone when none or consumed by a boot).
func (s *Sim) BootDevice() bmc.BootDevice { return deviceOf(s.read("boot")) }

// Boots returns the device each boot used (power-on or reset), oldest first.
func (s *Sim) Boots() []bmc.BootDevice {
	var out []bmc.BootDevice
	for _, l := range strings.Split(s.read("bootlog"), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, deviceOf(l))
		}
	}
	return out
}

// SetPowered forces the machine's power, like the front-panel button:
// switching it on counts a power-on and a boot that ignores and clears the
// one-time boot device.
func (s *Sim) SetPowered(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := "0"
	if on {
		v = "1"
	}
	// The chassis program implements the transition; running it keeps one
	// implementation of the machine's rules.
	out, err := exec.Command(s.chassisProg(), s.machine, "button", v).CombinedOutput()
	if err != nil {
		panic(fmt.Sprintf("ipmisim: set power: %v: %s", err, out))
	}
}

func (s *Sim) chassisProg() string { return filepath.Join(s.dir, "chassis.sh") }
func (s *Sim) lanProg() string     { return filepath.Join(s.dir, "lan.sh") }

func (s *Sim) read(name string) string {
	b, err := os.ReadFile(filepath.Join(s.machine, name))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func deviceOf(v string) bmc.BootDevice {
	switch v {
	case "", "none":
		return bmc.BootNone
	case "pxe":
		return bmc.BootPXE
	case "default":
		// ipmi_sim names selector 2 (force boot from default hard drive)
		// "default".
		return bmc.BootDisk
	case "bios":
		return bmc.BootBIOS
	}
	return bmc.BootDevice(v)
}

// defaultGUID is the system GUID of a simulator on host:port.
func defaultGUID(host string, port int) string {
	ip := net.ParseIP(host).To4()
	return fmt.Sprintf("a1b2c3d4-e5f6-a7b8-c9d0-%02x%02x%02x%02x%04x", ip[0], ip[1], ip[2], ip[3], port&0xffff)
}

// SystemID is the machine identity the simulator reports.
func (s *Sim) SystemID() bmc.SystemID {
	return bmc.SystemID{GUID: s.systemGUID(), Serial: s.cfg.Serial}
}

func (s *Sim) systemGUID() string {
	if s.cfg.SystemGUID != "" {
		return s.cfg.SystemGUID
	}
	return defaultGUID(s.cfg.Host, s.cfg.Port)
}

func lanConf(s *Sim, cfg Config) string {
	b, _ := bmc.KnownGUID(s.systemGUID())
	guid := hex.EncodeToString(func() []byte { w := bmc.SwapGUIDFields(b); return w[:] }())
	return fmt.Sprintf(`# generated by reprov lab/ipmisim
name "reprovsim"
set_working_mc 0x20
  startlan 1
    addr %s %d
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid %s
    lan_config_program "%s %s"
  endlan
  chassis_control "%s %s"
user 2 true "%s" "%s" admin 10 none md2 md5 straight
`, cfg.Host, cfg.Port, guid, s.lanProg(), s.machine, s.chassisProg(), s.machine, cfg.Username, cfg.Password)
}

// emuFile is the simulator's .emu: one BMC (0x20, FRU inventory device
// supported) with FRU 0 holding a product area with cfg.Serial.
func emuFile(cfg Config) string {
	var b strings.Builder
	b.WriteString("mc_setbmc 0x20\n")
	b.WriteString("mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\n")
	if cfg.Serial != "" {
		fru := ipmibmc.ProductFRU("reprov lab", "ipmi_sim node", cfg.Serial)
		fmt.Fprintf(&b, "mc_add_fru_data 0x20 0 %d data", len(fru))
		for _, v := range fru {
			fmt.Fprintf(&b, " 0x%02x", v)
		}
		b.WriteString("\n")
	}
	b.WriteString("mc_enable 0x20\n")
	return b.String()
}

// chassisScript is ipmi_sim's chassis control program:
//
//	chassis.sh DIR get power|boot ...
//	chassis.sh DIR set power 0|1 | reset 1 | boot none|pxe|default|cdrom|bios | identify ...
//	chassis.sh DIR button 0|1          (the harness's SetPowered)
//
// A power-on (0→1) counts in powerons and is a boot: the boot device in
// effect is appended to bootlog and consumed (ipmi_sim does not pass the
// persistent bit). A reset of a machine that is on is a boot too. A button
// power-on boots without the override and clears it.
const chassisScript = `#!/bin/sh
dir=$1
shift
op=$1
shift
put() { printf '%s\n' "$2" > "$dir/$1.tmp" && mv "$dir/$1.tmp" "$dir/$1"; }
get() { cat "$dir/$1" 2>/dev/null; }
boot_now() {
	printf '%s\n' "$1" >> "$dir/bootlog"
	put boot none
}
power_on() {
	if [ "$(get power)" != "1" ]; then
		# The boot is logged before power and powerons change: a reader
		# that sees the new count also sees the boot.
		boot_now "$1"
		put power 1
		put powerons $(( $(get powerons) + 1 ))
	fi
}
case $op in
get)
	for p in "$@"; do
		case $p in
		power) echo "power:$(get power)" ;;
		boot) echo "boot:$(get boot)" ;;
		*) echo "unknown parameter $p"; exit 1 ;;
		esac
	done
	;;
set)
	while [ $# -gt 0 ]; do
		p=$1
		v=$2
		shift 2
		case $p in
		power)
			if [ "$v" = "1" ]; then power_on "$(get boot)"; else put power 0; fi
			;;
		reset)
			if [ "$(get power)" = "1" ]; then boot_now "$(get boot)"; fi
			;;
		boot)
			case $v in
			none|pxe|default|cdrom|bios) put boot "$v" ;;
			*) echo "invalid boot value $v"; exit 1 ;;
			esac
			;;
		identify)
			shift
			;;
		shutdown)
			put power 0
			;;
		*) echo "unknown parameter $p"; exit 1 ;;
		esac
	done
	;;
button)
	if [ "$1" = "1" ]; then power_on none; else put power 0; fi
	;;
*)
	echo "unknown operation $op"
	exit 1
	;;
esac
`

func lanScript(cfg Config) string {
	return fmt.Sprintf(`#!/bin/sh
# ipmi_sim LAN configuration program: lan.sh DIR get|set|check PARAM ...
shift
op=$1
shift
case $op in
get)
	for p in "$@"; do
		case $p in
		ip_addr) echo "ip_addr:%s" ;;
		ip_addr_src) echo "ip_addr_src:static" ;;
		mac_addr) echo "mac_addr:%s" ;;
		subnet_mask) echo "subnet_mask:255.255.255.0" ;;
		default_gw_ip_addr|backup_gw_ip_addr) echo "$p:0.0.0.0" ;;
		default_gw_mac_addr|backup_gw_mac_addr) echo "$p:00:00:00:00:00:00" ;;
		*) echo "unknown parameter $p"; exit 1 ;;
		esac
	done
	;;
set|check)
	exit 0
	;;
*)
	exit 1
	;;
esac
`, cfg.LANIP, strings.ToLower(cfg.LANMAC))
}
