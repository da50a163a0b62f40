package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/lab/ipmisim"
	"github.com/reprov/reprov/lab/labtool"
)

// TestBootdevPXEAgreesWithIpmitoolOnIpmiSim is the bmc issue's acceptance
// check: `reprov bootdev pxe` against OpenIPMI's simulator, read back by an
// independent client (ipmitool), then `reprov power cycle` boots it once.
func TestBootdevPXEAgreesWithIpmitoolOnIpmiSim(t *testing.T) {
	ipmitool := labtool.RequireTool(t, "ipmitool")
	sim := ipmisim.Start(t, ipmisim.Config{InitiallyOn: true})
	c := newCLI(t)
	pw := c.write("secrets/bmc", sim.Password()+"\n")
	// ipmi_sim offers cipher suites 0–14 only; its read-back keeps only the device.
	inv := c.write("fleet.yaml", fmt.Sprintf(`nodes:
  - name: sim-01
    rack: r1
    bmc:
      address: "ipmi://%s:%d"
      username: %s
      password: "file:%s"
      options: {cipher_suites: [3], verify: device-only, timeout: 10s}
`, sim.Host(), sim.Port(), sim.Username(), pw))

	code, out, errOut := c.run("bootdev", "pxe", "sim-01", "--inventory", inv)
	if code != 0 {
		t.Fatalf("reprov bootdev pxe: exit %d\n%s\n%s", code, out, errOut)
	}
	if got := sim.BootDevice(); got != bmc.BootPXE {
		t.Fatalf("ipmi_sim's chassis stored boot device %q, want pxe", got)
	}

	cmd := exec.Command(ipmitool, "-I", "lanplus", "-C", "3", "-H", sim.Host(), "-p", strconv.Itoa(sim.Port()),
		"-U", sim.Username(), "-E", "chassis", "bootparam", "get", "5")
	cmd.Env = append(os.Environ(), "IPMI_PASSWORD="+sim.Password())
	got, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ipmitool bootparam get 5: %v\n%s", err, got)
	}
	if !strings.Contains(string(got), "Force PXE") {
		t.Errorf("ipmitool does not read back PXE after reprov set it:\n%s", got)
	}

	before := sim.PowerOns()
	if code, out, errOut := c.run("power", "cycle", "sim-01", "--inventory", inv); code != 0 {
		t.Fatalf("reprov power cycle: exit %d\n%s\n%s", code, out, errOut)
	}
	bootsBefore := len(sim.Boots())
	labtool.Eventually(t, 60*time.Second, "ipmi_sim powered off and on, and booted", func() bool {
		return sim.PowerOns() > before && sim.Powered() && len(sim.Boots()) > bootsBefore
	})
	if boots := sim.Boots(); len(boots) == 0 || boots[len(boots)-1] != bmc.BootPXE {
		t.Errorf("the cycle's boot used %v, want pxe last", boots)
	}
}

// TestDeviceOnlyBMCIsNamedWithItsOption: ipmi_sim keeps the boot device and
// clears the valid bit. At verify full, bootdev fails saying so with the
// exact option to set, and plan then warns about the node with it.
func TestDeviceOnlyBMCIsNamedWithItsOption(t *testing.T) {
	labtool.RequireTool(t, "ipmi_sim")
	sim := ipmisim.Start(t, ipmisim.Config{InitiallyOn: true})
	c := newCLI(t)
	pw := c.write("secrets/bmc", sim.Password()+"\n")
	inv := c.write("fleet.yaml", fmt.Sprintf(`nodes:
  - name: sim-01
    rack: r1
    bmc:
      address: "ipmi://%s:%d"
      username: %s
      password: "file:%s"
      options: {cipher_suites: [3], timeout: 10s}
`, sim.Host(), sim.Port(), sim.Username(), pw))

	code, out, errOut := c.run("bootdev", "pxe", "sim-01", "--inventory", inv)
	if code != exitFailed {
		t.Fatalf("bootdev pxe at verify full on ipmi_sim: exit %d, want 1\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"device-only BMC: set bmc.options.verify: device-only", "kept the boot device but cleared the valid bit"} {
		if !strings.Contains(out+errOut, want) {
			t.Errorf("bootdev output lacks %q:\n%s\n%s", want, out, errOut)
		}
	}
	code, out, errOut = c.run("plan", "sim-01", "--offline", "--inventory", inv)
	if !strings.Contains(out, "bmc.options.verify: device-only for sim-01 ("+inv+":2)") {
		t.Errorf("plan (exit %d) does not name the option for the device-only BMC:\n%s\n%s", code, out, errOut)
	}
}

// TestReinstallLearnsADeviceOnlyBMC: a reinstall whose out-of-band step
// meets ipmi_sim's device-only read-back (the device kept, the valid bit
// cleared) fails the node with a reason that says so with the option to
// set, records the device-only-bmc quirk (quirks list shows it), and plan
// then names the exact option for the node — without powering it.
func TestReinstallLearnsADeviceOnlyBMC(t *testing.T) {
	labtool.RequireTool(t, "ipmi_sim")
	sim := ipmisim.Start(t, ipmisim.Config{InitiallyOn: true})
	c := newCLI(t)
	pw := c.write("secrets/bmc", sim.Password()+"\n")
	inv := c.write("fleet.yaml", fmt.Sprintf(`nodes:
  - name: sim-01
    rack: r1
    macs: ["52:54:00:12:34:56"]
    bmc:
      address: "ipmi://%s:%d"
      username: %s
      password: "file:%s"
      options: {cipher_suites: [3], timeout: 10s}
`, sim.Host(), sim.Port(), sim.Username(), pw))
	cfg := c.write("reprov.yaml", "landing:\n  listen: 127.0.0.1:0\n  url: http://127.0.0.1:1/\n  kernel: http://netboot.test/vmlinuz\n")
	powerOns := sim.PowerOns()

	code, out, errOut := c.run("reinstall", "sim-01", "--yes", "--inventory", inv, "--config", cfg)
	if code != exitFailed {
		t.Fatalf("reinstall against a device-only BMC at verify full: exit %d, want 1\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"sim-01", "kept the boot device but cleared the valid bit", "set bmc.options.verify: device-only",
		"learned: the BMC keeps the boot device but clears the valid bit: set bmc.options.verify: device-only: sim-01"} {
		if !strings.Contains(out+errOut, want) {
			t.Errorf("reinstall output lacks %q:\n%s\n%s", want, out, errOut)
		}
	}
	if sim.PowerOns() != powerOns {
		t.Errorf("the node was power-cycled although its boot override was not verified")
	}
	code, out, errOut = c.run("quirks", "list", "--inventory", inv, "--config", cfg)
	if code != exitOK || !strings.Contains(out, "device-only-bmc") || !strings.Contains(out, "sim-01") {
		t.Errorf("quirks list (exit %d) lacks the learned device-only-bmc of sim-01:\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = c.run("plan", "sim-01", "--offline", "--inventory", inv, "--config", cfg)
	if !strings.Contains(out, "bmc.options.verify: device-only for sim-01 ("+inv+":2)") {
		t.Errorf("plan (exit %d) does not name the option for the device-only BMC:\n%s\n%s", code, out, errOut)
	}
}
