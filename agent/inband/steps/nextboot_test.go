package steps_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/reprov/reprov/agent/inband/host"
	"github.com/reprov/reprov/agent/inband/host/fixture"
	"github.com/reprov/reprov/agent/inband/steps"
	"github.com/reprov/reprov/lab/ipmibmc"
	"github.com/reprov/reprov/lab/labtool"
)

// startBMC starts a lab BMC reporting lanIP as its LAN address and points
// the layout's /dev/ipmi0 at it.
func startBMC(t *testing.T, l *host.Layout, lanIP string) *ipmibmc.BMC {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b, err := ipmibmc.Start(ctx, ipmibmc.Config{LANIP: lanIP, InitiallyOn: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(); cancel() })
	pw := filepath.Join(t.TempDir(), "bmc-password")
	if err := os.WriteFile(pw, []byte(b.Password()), 0o600); err != nil {
		t.Fatal(err)
	}
	l.IPMI = &host.LANTarget{Host: b.Host(), Port: b.Port(), Username: b.Username(), PasswordFile: pw, CipherSuite: 3}
	return b
}

// ipmitoolWrapper makes the layout's ipmitool the real one, over lanplus
// to the lab BMC (the password from a file, never on a command line).
func ipmitoolWrapper(t *testing.T, l *host.Layout) {
	t.Helper()
	real := labtool.RequireTool(t, "ipmitool")
	p := filepath.Join(l.Root, "bin", "ipmitool")
	script := fmt.Sprintf("#!/bin/sh\nexec %s -I lanplus -H %s -p %d -U %s -f %s -C 3 \"$@\"\n",
		real, l.IPMI.Host, l.IPMI.Port, l.IPMI.Username, l.IPMI.PasswordFile)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	l.Tools["ipmitool"] = p
}

// efibootmgrFake is an efibootmgr for the fixture: it prints a boot list
// and keeps BootNext in a file, as the real one keeps it in NVRAM.
func efibootmgrFake(t *testing.T, l *host.Layout) string {
	t.Helper()
	state := filepath.Join(l.Root, "efi-bootnext")
	p := filepath.Join(l.Root, "bin", "efibootmgr")
	script := `#!/bin/sh
state=` + state + `
if [ "$1" = "-n" ]; then echo "$2" > "$state"; fi
echo "BootCurrent: 0001"
[ -s "$state" ] && echo "BootNext: $(cat "$state")"
echo "BootOrder: 0001,0002,0003"
echo "Boot0001* debian	HD(1,GPT,2c4b5d3e,0x800,0x100000)/File(\EFI\debian\shimx64.efi)"
echo "Boot0002* UEFI PXEv4 (MAC:AABBCCDDEEFF)	PciRoot(0x0)/Pci(0x3,0x0)/MAC(aabbccddeeff,1)/IPv4(0.0.0.00.0.0.0,0,0)"
echo "Boot0003* UEFI PXEv4 (MAC:3C4A92112233)	PciRoot(0x0)/Pci(0x4,0x0)/MAC(3c4a92112233,1)/IPv4(0.0.0.00.0.0.0,0,0)"
`
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	l.Tools["efibootmgr"] = p
	return state
}

func TestNextBootLegacyOpenInterface(t *testing.T) {
	n := node("")
	n.Disks = nil
	n.IPMIDevice = false // the driver is not loaded: next-boot loads it
	_, l := build(t, n)
	b := startBMC(t, l, "10.1.12.14")
	h, err := fixture.New(l)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	dry, err := steps.NextBoot(ctx, h, steps.NextBootOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if dry.IPMI.Via != "open" || dry.Mode != "legacy" || b.Machine().BootFlags().Valid {
		t.Fatalf("dry run %+v set something or chose wrong", dry.IPMI)
	}
	if _, err := os.Stat(l.ModprobeLog); err == nil {
		t.Fatal("the dry run loaded modules")
	}

	announced := false
	res, err := steps.NextBoot(ctx, h, steps.NextBootOptions{BeforeWrite: func(*steps.NextBootResult) error {
		announced = true
		if b.Machine().BootFlags().Valid {
			t.Error("flags were set before BeforeWrite")
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !announced || !res.IPMI.Verified || res.IPMI.Via != "open" || !res.IPMI.TimerDisabled {
		t.Fatalf("result %+v", res.IPMI)
	}
	f := b.Machine().BootFlags()
	if !f.Valid || f.Device != "pxe" || f.EFI || f.Persistent || !b.Machine().BootFlagTimeoutDisabled() {
		t.Fatalf("BMC holds %+v, want valid one-time legacy PXE with the timer disabled", f)
	}
	log, _ := os.ReadFile(l.ModprobeLog)
	if string(log) != "ipmi_si\nipmi_devintf\n" || strings.Join(res.IPMI.LoadedModules, ",") != "ipmi_si,ipmi_devintf" {
		t.Fatalf("modprobe log %q, loaded %v", log, res.IPMI.LoadedModules)
	}

	// identify reads the BMC's LAN address in-band.
	id, err := steps.Identify(ctx, h, steps.IdentifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if id.BMC.Address != "10.1.12.14" || id.BMC.Via != "open" {
		t.Fatalf("BMC address %+v", id.BMC)
	}
}

func TestNextBootLegacyIpmitool(t *testing.T) {
	n := node("")
	n.Disks = nil
	_, l := build(t, n)
	b := startBMC(t, l, "10.1.12.14")
	ipmitoolWrapper(t, l)
	h, err := fixture.New(l)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	res, err := steps.NextBoot(ctx, h, steps.NextBootOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.IPMI.Via != "ipmitool" || !res.IPMI.Verified {
		t.Fatalf("result %+v", res.IPMI)
	}
	if !strings.Contains(strings.Join(res.IPMI.Commands, "\n"), "ipmitool chassis bootparam set bootflag force_pxe") {
		t.Fatalf("commands %v", res.IPMI.Commands)
	}
	if f := b.Machine().BootFlags(); !f.Valid || f.Device != "pxe" || f.EFI {
		t.Fatalf("BMC holds %+v", f)
	}
	id, err := steps.Identify(ctx, h, steps.IdentifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if id.BMC.Address != "10.1.12.14" || id.BMC.Via != "ipmitool" {
		t.Fatalf("BMC address %+v", id.BMC)
	}

	// A BMC that ignores the write is caught by the read-back, whatever
	// ipmitool's exit status says.
	n2 := node("")
	n2.Disks = nil
	_, l2 := build(t, n2)
	b2 := startBMC(t, l2, "10.1.12.15")
	ipmitoolWrapper(t, l2)
	b2.Faults().SetIgnoreBootWrites(true)
	h2, _ := fixture.New(l2)
	_, err = steps.NextBoot(ctx, h2, steps.NextBootOptions{})
	if !errors.Is(err, steps.ErrVerifyFailed) {
		t.Fatalf("BMC ignoring the write: %v, want ErrVerifyFailed", err)
	}
}

func TestNextBootUEFI(t *testing.T) {
	n := node("")
	n.Disks = nil
	n.UEFI = true
	_, l := build(t, n)
	b := startBMC(t, l, "10.1.12.14")
	state := efibootmgrFake(t, l)
	h, _ := fixture.New(l)
	res, err := steps.NextBoot(context.Background(), h, steps.NextBootOptions{MACs: []string{"3c:4a:92:11:22:33"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Mode != "uefi" || res.EFI == nil || res.EFI.Entry.Num != "0003" || !res.EFI.Verified {
		t.Fatalf("result %+v efi %+v", res, res.EFI)
	}
	if got, _ := os.ReadFile(state); strings.TrimSpace(string(got)) != "0003" {
		t.Fatalf("BootNext %q, want 0003 (the network entry on the inventory's NIC)", got)
	}
	if f := b.Machine().BootFlags(); !f.Valid || f.Device != "pxe" || !f.EFI {
		t.Fatalf("BMC holds %+v, want PXE with the EFI bit", f)
	}
}
