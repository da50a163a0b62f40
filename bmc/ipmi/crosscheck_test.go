package ipmi_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/lab/ipmibmc"
	"github.com/reprov/reprov/lab/ipmisim"
	"github.com/reprov/reprov/lab/labtool"
)

// ipmitool runs ipmitool over lanplus with the password in IPMI_PASSWORD
// (-E), so it never appears on a command line or in the test log.
func ipmitool(t *testing.T, suite int, host string, port int, user, pass string, args ...string) string {
	t.Helper()
	bin := labtool.RequireTool(t, "ipmitool")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	full := append([]string{"-I", "lanplus", "-C", itoa(suite), "-H", host, "-p", itoa(port), "-U", user, "-E"}, args...)
	cmd := exec.CommandContext(ctx, bin, full...)
	cmd.Env = append(os.Environ(), "IPMI_PASSWORD="+pass)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ipmitool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// ipmitoolBootFlags is ipmitool's reading of boot parameter 5.
type ipmitoolBootFlags struct {
	valid, persistent, efi bool
	device                 string
}

func parseIPMIToolBootParam5(t *testing.T, out string) ipmitoolBootFlags {
	t.Helper()
	var f ipmitoolBootFlags
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		l := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "-"))
		switch {
		case l == "Boot Flag Valid":
			f.valid = true
		case l == "Options apply to all future boots":
			f.persistent = true
		case l == "BIOS EFI boot":
			f.efi = true
		case strings.HasPrefix(l, "Boot Device Selector"):
			if _, v, ok := strings.Cut(l, ":"); ok {
				f.device = strings.TrimSpace(v)
			}
		}
	}
	if f.device == "" {
		t.Fatalf("no boot device selector in ipmitool output:\n%s", out)
	}
	return f
}

func TestIPMIToolSeesPXESetOnIPMISim(t *testing.T) {
	sim := ipmisim.Start(t, ipmisim.Config{})
	c := open(t, endpoint(sim.Host(), sim.Port(), sim.Username(), sim.Password(),
		bmc.Options{CipherSuites: []int{3}, Verify: bmc.VerifyDeviceOnly}))
	ctx := context.Background()
	// Start from another device, so PXE cannot be a leftover.
	if _, err := c.SetBootOverride(ctx, bmc.BootOverride{Device: bmc.BootDisk}); err != nil {
		t.Fatalf("set disk: %v", err)
	}
	before := parseIPMIToolBootParam5(t, ipmitool(t, 3, sim.Host(), sim.Port(), sim.Username(), sim.Password(), "chassis", "bootparam", "get", "5"))
	if strings.Contains(before.device, "PXE") {
		t.Fatalf("ipmitool sees %q before reprov set PXE", before.device)
	}
	res, err := c.SetBootOverride(ctx, bmc.BootOverride{Device: bmc.BootPXE, Mode: bmc.BootModeLegacy})
	if err != nil {
		t.Fatalf("set pxe once: %v", err)
	}
	if res.Verified != bmc.VerifyDeviceOnly {
		t.Errorf("verified %q, want device-only", res.Verified)
	}
	got := parseIPMIToolBootParam5(t, ipmitool(t, 3, sim.Host(), sim.Port(), sim.Username(), sim.Password(), "chassis", "bootparam", "get", "5"))
	if got.device != "Force PXE" {
		t.Errorf("ipmitool reads boot device %q, want Force PXE", got.device)
	}
}

func TestIdentityReportsLANAddressIPMISim(t *testing.T) {
	sim := ipmisim.Start(t, ipmisim.Config{LANIP: "10.20.30.40", LANMAC: "52:54:00:12:34:56"})
	c := open(t, endpoint(sim.Host(), sim.Port(), sim.Username(), sim.Password(),
		bmc.Options{CipherSuites: []int{3}, Verify: bmc.VerifyDeviceOnly}))
	id, err := c.Identity(context.Background())
	if err != nil {
		t.Fatalf("identity: %v", err)
	}
	if id.BMCIP != "10.20.30.40" || id.BMCMAC != "52:54:00:12:34:56" {
		t.Errorf("identity BMC address %q %q, want 10.20.30.40 52:54:00:12:34:56", id.BMCIP, id.BMCMAC)
	}
	if id.CipherSuite != 3 || id.Protocol != "ipmi" {
		t.Errorf("identity cipher suite %d protocol %q", id.CipherSuite, id.Protocol)
	}
	// ipmi_sim's .emu declares manufacturer 0x1291 and product 0x0f02.
	if id.Vendor != "IANA 4753" || id.Model != "product 0x0f02" {
		t.Errorf("identity vendor %q model %q", id.Vendor, id.Model)
	}
}

func TestIdentityGoIPMI(t *testing.T) {
	b := startBMC(t, ipmibmc.Config{LANIP: "10.1.2.3", LANMAC: "aa:bb:cc:dd:ee:01", ManufacturerID: 11, ProductID: 0x2000, FirmwareMajor: 2, FirmwareMinor: 0x30})
	c := open(t, bmcEndpoint(b, bmc.Options{}))
	id, err := c.Identity(context.Background())
	if err != nil {
		t.Fatalf("identity: %v", err)
	}
	want := bmc.Identity{Protocol: "ipmi", Vendor: "HP", Model: "product 0x2000", Firmware: "2.30",
		BMCIP: "10.1.2.3", BMCMAC: "aa:bb:cc:dd:ee:01", CipherSuite: 17}
	if id.Protocol != want.Protocol || id.Vendor != want.Vendor || id.Model != want.Model || id.Firmware != want.Firmware ||
		id.BMCIP != want.BMCIP || id.BMCMAC != want.BMCMAC || id.CipherSuite != want.CipherSuite {
		t.Errorf("identity %+v, want %+v", id, want)
	}
}

func TestIPMIToolAgainstGoIPMIBMC(t *testing.T) {
	for _, suite := range []int{3, 17} {
		t.Run("suite"+itoa(suite), func(t *testing.T) {
			b := startBMC(t, ipmibmc.Config{})
			m := b.Machine()
			tool := func(args ...string) string {
				return ipmitool(t, suite, b.Host(), b.Port(), b.Username(), b.Password(), args...)
			}
			for _, on := range []bool{false, true} {
				m.SetPowered(on)
				want := "Chassis Power is off"
				if on {
					want = "Chassis Power is on"
				}
				if out := tool("chassis", "power", "status"); !strings.Contains(out, want) {
					t.Errorf("machine powered=%v: ipmitool says %q", on, strings.TrimSpace(out))
				}
			}
			c := open(t, bmcEndpoint(b, bmc.Options{CipherSuites: []int{suite}}))
			if _, err := c.SetBootOverride(context.Background(), bmc.BootOverride{Device: bmc.BootPXE, Mode: bmc.BootModeUEFI}); err != nil {
				t.Fatalf("set pxe once (uefi): %v", err)
			}
			got := parseIPMIToolBootParam5(t, tool("chassis", "bootparam", "get", "5"))
			want := ipmitoolBootFlags{valid: true, persistent: false, efi: true, device: "Force PXE"}
			if got != want {
				t.Errorf("ipmitool reads %+v, want %+v", got, want)
			}
			if out := tool("chassis", "bootparam", "get", "3"); !strings.Contains(out, "Don't automatically clear boot flag valid bit on timeout") {
				t.Errorf("boot-flag timeout not disabled, ipmitool reads parameter 3 as:\n%s", out)
			}
			if err := c.Close(context.Background()); err != nil {
				t.Fatalf("close: %v", err)
			}
			noSessionsLeft(t, b)
		})
	}
}

func TestFreeIPMIAgainstGoIPMIBMC(t *testing.T) {
	ipmipower := labtool.RequireTool(t, "ipmipower")
	chassisConfig := labtool.RequireTool(t, "ipmi-chassis-config")
	b := startBMC(t, ipmibmc.Config{})
	hostPort := b.Host() + ":" + itoa(b.Port())
	run := func(bin string, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// A throwaway password: -p on the command line is acceptable here.
		full := append([]string{"-D", "LAN_2_0", "-h", hostPort, "-u", b.Username(), "-p", b.Password()}, args...)
		out, err := exec.CommandContext(ctx, bin, full...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	for _, on := range []bool{true, false} {
		b.Machine().SetPowered(on)
		want := ": off"
		if on {
			want = ": on"
		}
		if out := run(ipmipower, "--stat"); !strings.HasSuffix(strings.TrimSpace(out), want) {
			t.Errorf("machine powered=%v: ipmipower --stat says %q", on, strings.TrimSpace(out))
		}
	}
	c := open(t, bmcEndpoint(b, bmc.Options{}))
	if _, err := c.SetBootOverride(context.Background(), bmc.BootOverride{Device: bmc.BootPXE, Mode: bmc.BootModeUEFI}); err != nil {
		t.Fatalf("set pxe once (uefi): %v", err)
	}
	out := run(chassisConfig, "--checkout", "--section", "Chassis_Boot_Flags")
	got := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 2 && !strings.HasPrefix(f[0], "#") {
			got[f[0]] = f[1]
		}
	}
	for k, v := range map[string]string{"Boot_Device": "PXE", "BIOS_Boot_Type": "EFI", "Boot_Flags_Persistent": "No"} {
		if got[k] != v {
			t.Errorf("ipmi-chassis-config reads %s=%q, want %q", k, got[k], v)
		}
	}
}
