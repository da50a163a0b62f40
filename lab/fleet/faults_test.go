package fleet_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/types"

	"github.com/reprov/reprov/lab/fleet"
)

func TestAssignFaults(t *testing.T) {
	fcs, err := fleet.ParseFaults("loss10=2, slow-os=1,disk-refuses-write=1")
	if err != nil {
		t.Fatal(err)
	}
	mix := []fleet.ModelCount{{Model: fleet.ModelIPMI, Count: 3}, {Model: fleet.ModelDL360G7, Count: 2}}
	got, err := fleet.AssignFaults(mix, fcs)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]fleet.Fault{"ipmi-001": fleet.FaultLoss10, "ipmi-002": fleet.FaultLoss10,
		"dl360g7-001": fleet.FaultSlowOS, "dl360g7-002": fleet.FaultDiskRefusesWrite}
	if len(got) != len(want) {
		t.Errorf("assigned %v, want %v", got, want)
	}
	for name, f := range want {
		if fs := got[name]; len(fs) != 1 || fs[0] != f {
			t.Errorf("%s: %v, want %s", name, fs, f)
		}
	}
	if _, err := fleet.AssignFaults(mix, []fleet.FaultCount{{Fault: fleet.FaultLoss1, Count: 4}}); err == nil || !strings.Contains(err.Error(), "only 3 free ipmi nodes") {
		t.Errorf("too many faulty nodes: %v", err)
	}
	for _, bad := range []string{"loss10", "nope=1", "loss1=1,loss1=2", "latency=-1"} {
		if _, err := fleet.ParseFaults(bad); err == nil {
			t.Errorf("ParseFaults(%q) accepted", bad)
		}
	}
	if _, err := fleet.Start(context.Background(), fleet.Config{Mix: mix, Faults: map[string][]fleet.Fault{"ipmi-009": {fleet.FaultLoss1}}}); err == nil {
		t.Error("a fault for a node the lab does not have was accepted")
	}
}

// TestBMCFaults: refused credentials, a reboot after the override write,
// a lossy proxy in front.
func TestBMCFaults(t *testing.T) {
	l := startLab(t, fleet.Config{Mix: mix(fleet.ModelIPMI, 3), Faults: map[string][]fleet.Fault{
		"ipmi-001": {fleet.FaultBadCredentials}, "ipmi-002": {fleet.FaultBMCReboot}, "ipmi-003": {fleet.FaultLoss30}}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bad := l.Node("ipmi-001")
	pw, err := os.ReadFile(l.Files().BMCPassword)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.NewClient(bad.IPMIBMC().Host(), bad.IPMIBMC().Port(), "admin", strings.TrimSpace(string(pw)))
	if err != nil {
		t.Fatal(err)
	}
	c.WithCipherSuiteID(types.CipherSuiteID17).WithTimeout(time.Second).WithRetry(1)
	if err := c.Connect(ctx); err == nil {
		c.Close(ctx)
		t.Error("the BMC with other credentials accepted the inventory's password")
	}
	if p := l.Node("ipmi-003").Proxy(); p == nil || !strings.Contains(l.Node("ipmi-003").BMCAddress(), p.Addr()) {
		t.Error("the lossy node's BMC address is not its proxy")
	}
	rb := l.Node("ipmi-002")
	rc := ipmiClient(t, rb, 1)
	if _, err := rc.GetChassisStatus(ctx); err != nil {
		t.Fatal(err)
	}
	if rb.IPMIBMC().Reboots() != 0 {
		t.Error("rebooted before the override was written")
	}
	if err := rc.SetBootDevice(ctx, types.BootDeviceSelectorForcePXE, types.BIOSBootTypeLegacy, false); err != nil {
		t.Fatal(err)
	}
	if _, err := rc.GetChassisStatus(ctx); err == nil {
		t.Error("the BMC answered right after its reboot")
	}
	if rb.IPMIBMC().Reboots() != 1 || rb.IPMIBMC().ActiveSessions() != 0 {
		t.Errorf("reboots %d, sessions %d: want 1 reboot and every session dropped", rb.IPMIBMC().Reboots(), rb.IPMIBMC().ActiveSessions())
	}
}
