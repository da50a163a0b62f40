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
