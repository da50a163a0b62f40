package ipmisim_test

import (
	"os"
	"os/exec"
	"slices"
	"strconv"
	"testing"

	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/lab/ipmisim"
	"github.com/reprov/reprov/lab/labtool"
)

func TestMachineFollowsIPMIToolCommands(t *testing.T) {
	ipmitool := labtool.RequireTool(t, "ipmitool")
	sim := ipmisim.Start(t, ipmisim.Config{})
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(ipmitool, append([]string{"-I", "lanplus", "-C", "3", "-H", sim.Host(),
			"-p", strconv.Itoa(sim.Port()), "-U", sim.Username(), "-E"}, args...)...)
		cmd.Env = append(os.Environ(), "IPMI_PASSWORD="+sim.Password())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("ipmitool %v: %v\n%s", args, err, out)
		}
	}
	if sim.Powered() || sim.PowerOns() != 0 || sim.BootDevice() != bmc.BootNone {
		t.Fatalf("fresh machine: powered=%v power-ons=%d boot=%q", sim.Powered(), sim.PowerOns(), sim.BootDevice())
	}
	run("chassis", "bootdev", "pxe")
	if got := sim.BootDevice(); got != bmc.BootPXE {
		t.Fatalf("boot device %q after bootdev pxe", got)
	}
	run("chassis", "power", "on")
	if !sim.Powered() || sim.PowerOns() != 1 {
		t.Fatalf("after power on: powered=%v power-ons=%d", sim.Powered(), sim.PowerOns())
	}
	if got := sim.Boots(); !slices.Equal(got, []bmc.BootDevice{bmc.BootPXE}) {
		t.Errorf("boots %v, want [pxe]", got)
	}
	if got := sim.BootDevice(); got != bmc.BootNone {
		t.Errorf("one-time device not consumed by the boot: %q", got)
	}
	run("chassis", "bootdev", "disk")
	sim.SetPowered(false)
	sim.SetPowered(true) // the power button ignores and clears the override
	if got := sim.Boots(); !slices.Equal(got, []bmc.BootDevice{bmc.BootPXE, bmc.BootNone}) {
		t.Errorf("boots %v, want [pxe none]", got)
	}
	if sim.PowerOns() != 2 || sim.BootDevice() != bmc.BootNone {
		t.Errorf("power-ons %d boot %q", sim.PowerOns(), sim.BootDevice())
	}
}
