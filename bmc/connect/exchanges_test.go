package connect_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/bmc/connect"
	"github.com/reprov/reprov/lab/ipmibmc"
	"github.com/reprov/reprov/lab/ipmisim"
	"github.com/reprov/reprov/lab/labtool"
	"github.com/reprov/reprov/lab/udpproxy"
)

// maxExchanges is the RMCP+ budget of "one-time PXE + power cycle" on one
// node (docs/performance.md): session setup 4 (channel authentication
// capabilities, open session, RAKP 1, RAKP 3), privilege 1, boot
// parameter 3, parameter 5, read-back, cycle, close session.
const maxExchanges = 10

// pxeCycle is the out-of-band step as reprov's CLI and engine run it: one
// session through bmc/connect's wrappers, override, cycle (power on when
// the BMC says the machine is off), close.
func pxeCycle(t *testing.T, ep bmc.Endpoint) (fellBackToOn bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := connect.Open(ctx, ep, bmc.NewLimiter(nil), nil)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer closeClient(t, c)
	if _, err := c.SetBootOverride(ctx, bmc.BootOverride{Device: bmc.BootPXE, Mode: bmc.BootModeLegacy}); err != nil {
		t.Fatalf("set pxe once: %v", err)
	}
	err = c.SetPower(ctx, bmc.ActionCycle)
	if errors.Is(err, bmc.ErrPoweredOff) {
		fellBackToOn = true
		err = c.SetPower(ctx, bmc.ActionOn)
	}
	if err != nil {
		t.Fatalf("cycle: %v", err)
	}
	return fellBackToOn
}

func TestPXECycleExchangesGoIPMI(t *testing.T) {
	ctx := context.Background()
	b, err := ipmibmc.Start(ctx, ipmibmc.Config{InitiallyOn: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	ep := bmc.Endpoint{Protocol: "ipmi", Host: b.Host(), Port: b.Port(), Username: b.Username(), Password: b.Password()}

	before := b.Stats()
	if pxeCycle(t, ep) {
		t.Fatal("the machine was on, yet the cycle was refused as powered off")
	}
	got := b.Stats()
	exchanges, sessions := got.Received-before.Received, got.SessionsOpened-before.SessionsOpened
	t.Logf("machine on: %d exchanges, %d sessions", exchanges, sessions)
	if exchanges > maxExchanges {
		t.Errorf("override + verification + cycle took %d exchanges, want at most %d", exchanges, maxExchanges)
	}
	if sessions != 1 {
		t.Errorf("%d sessions opened, want 1", sessions)
	}
	if boots := b.Machine().Boots(); len(boots) != 1 || boots[0].Device != bmc.BootPXE {
		t.Errorf("boots %+v, want one PXE boot", boots)
	}
	labtool.Eventually(t, 10*time.Second, "the session to be closed", func() bool { return b.ActiveSessions() == 0 })

	// Off: the BMC refuses the cycle (D5h); one status read, then power on.
	b.Machine().SetPowered(false)
	before = b.Stats()
	if !pxeCycle(t, ep) {
		t.Fatal("the cycle of an off machine was not refused as powered off")
	}
	got = b.Stats()
	exchanges, sessions = got.Received-before.Received, got.SessionsOpened-before.SessionsOpened
	t.Logf("machine off: %d exchanges, %d sessions", exchanges, sessions)
	if exchanges > maxExchanges+2 {
		t.Errorf("override + refused cycle + status + on took %d exchanges, want at most %d", exchanges, maxExchanges+2)
	}
	if sessions != 1 {
		t.Errorf("%d sessions opened, want 1", sessions)
	}
	if boots := b.Machine().Boots(); len(boots) != 2 || boots[1].Device != bmc.BootPXE {
		t.Errorf("boots %+v, want a second PXE boot", boots)
	}
}

func TestPXECycleExchangesIPMISim(t *testing.T) {
	labtool.RequireTool(t, "ipmi_sim")
	sim := ipmisim.Start(t, ipmisim.Config{InitiallyOn: true})
	p, err := udpproxy.Start(context.Background(), udpproxy.Config{Target: sim.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	ep := bmc.Endpoint{Protocol: "ipmi", Host: p.Host(), Port: p.Port(), Username: sim.Username(), Password: sim.Password(),
		Options: bmc.Options{CipherSuites: []int{3}, Verify: bmc.VerifyDeviceOnly}}
	pxeCycle(t, ep)
	got := p.Stats().RequestsReceived
	t.Logf("ipmi_sim: %d exchanges", got)
	if got > maxExchanges {
		t.Errorf("override + verification + cycle took %d exchanges, want at most %d", got, maxExchanges)
	}
	labtool.Eventually(t, 10*time.Second, "ipmi_sim's machine to boot from PXE after the cycle", func() bool {
		boots := sim.Boots()
		return sim.Powered() && len(boots) > 0 && boots[len(boots)-1] == bmc.BootPXE
	})
}
