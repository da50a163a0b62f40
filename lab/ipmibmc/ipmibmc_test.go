package ipmibmc_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/command/chassis"
	"github.com/bougou/go-ipmi/pkg/types"

	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/lab/ipmibmc"
	"github.com/reprov/reprov/lab/labtool"
)

func start(t *testing.T, cfg ipmibmc.Config) *ipmibmc.BMC {
	t.Helper()
	b, err := ipmibmc.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// connect opens a session with go-ipmi's own client, closed at cleanup.
func connect(t *testing.T, b *ipmibmc.BMC) *client.Client {
	t.Helper()
	c := dial(t, b)
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// dial opens a session; the caller closes it (exactly once: go-ipmi's
// client panics on a second Close).
func dial(t *testing.T, b *ipmibmc.BMC) *client.Client {
	t.Helper()
	c, err := client.NewClient(b.Host(), b.Port(), b.Username(), b.Password())
	if err != nil {
		t.Fatal(err)
	}
	c.WithCipherSuiteID(types.CipherSuiteID17).WithTimeout(time.Second).WithRetry(1)
	if err := c.Connect(context.Background()); err != nil {
		t.Fatalf("connect: %v", err)
	}
	return c
}

func TestStartManySpreadsOverLoopback(t *testing.T) {
	bmcs, err := ipmibmc.StartMany(context.Background(), 300, ipmibmc.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer ipmibmc.CloseAll(bmcs)
	seen := map[string]bool{}
	hosts := map[string]bool{}
	for _, b := range bmcs {
		if seen[b.Addr()] {
			t.Fatalf("address %s used twice", b.Addr())
		}
		seen[b.Addr()] = true
		hosts[b.Host()] = true
	}
	if len(hosts) != 300 || !hosts["127.0.0.2"] || !hosts["127.0.1.2"] {
		t.Errorf("%d distinct IPs; want 300 from 127.0.0.2 on", len(hosts))
	}
	c := connect(t, bmcs[299])
	ip := &types.LanConfigParam_IP{}
	if err := c.GetLanConfigParamFor(context.Background(), types.ChannelNumberSelf, ip); err != nil {
		t.Fatal(err)
	}
	if ip.IP.String() != bmcs[299].Host() {
		t.Errorf("BMC on %s reports LAN IP %s", bmcs[299].Host(), ip.IP)
	}
}

func TestCycleOfAnOffMachine(t *testing.T) {
	ctx := context.Background()
	b := start(t, ipmibmc.Config{})
	c := connect(t, b)
	_, err := c.ChassisControl(ctx, chassis.ChassisControlPowerCycle)
	var re *types.ResponseError
	if !errors.As(err, &re) || re.CompletionCode() != types.CodeNotSupported {
		t.Fatalf("cycle of an off machine: %v, want completion code D5h", err)
	}
	if b.Machine().Powered() {
		t.Fatal("refused cycle powered the machine on")
	}

	b2 := start(t, ipmibmc.Config{CycleWhenOffPowersOn: true})
	c2 := connect(t, b2)
	if _, err := c2.ChassisControl(ctx, chassis.ChassisControlPowerCycle); err != nil {
		t.Fatalf("cycle with CycleWhenOffPowersOn: %v", err)
	}
	if !b2.Machine().Powered() || b2.Machine().PowerOns() != 1 {
		t.Fatal("cycle with CycleWhenOffPowersOn did not power on")
	}
}

func TestPowerCycleDelay(t *testing.T) {
	ctx := context.Background()
	b := start(t, ipmibmc.Config{InitiallyOn: true, PowerCycleDelay: 200 * time.Millisecond})
	c := connect(t, b)
	if _, err := c.ChassisControl(ctx, chassis.ChassisControlPowerCycle); err != nil {
		t.Fatal(err)
	}
	if b.Machine().Powered() {
		t.Fatal("machine still on right after the cycle command")
	}
	deadline := time.Now().Add(5 * time.Second)
	for !b.Machine().Powered() {
		if time.Now().After(deadline) {
			t.Fatal("machine never came back on")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if b.Machine().PowerOns() != 1 {
		t.Errorf("power-ons %d, want 1", b.Machine().PowerOns())
	}
}

func TestPowerButtonIgnoresOneTimeOverride(t *testing.T) {
	ctx := context.Background()
	b := start(t, ipmibmc.Config{})
	c := connect(t, b)
	if err := c.SetBootDevice(ctx, types.BootDeviceSelectorForcePXE, types.BIOSBootTypeLegacy, false); err != nil {
		t.Fatal(err)
	}
	if got := b.Machine().BootDevice(); got != bmc.BootPXE {
		t.Fatalf("stored device %q", got)
	}
	b.Machine().SetPowered(true)
	boots := b.Machine().Boots()
	if len(boots) != 1 || boots[0].Valid {
		t.Fatalf("button power-on boots %+v, want one boot without override", boots)
	}
	if b.Machine().BootDevice() != bmc.BootNone {
		t.Error("button power-on did not clear the one-time override")
	}
	// A persistent override survives boots.
	if err := c.SetBootDevice(ctx, types.BootDeviceSelectorForceHardDrive, types.BIOSBootTypeEFI, true); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ChassisControl(ctx, chassis.ChassisControlHardReset); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ChassisControl(ctx, chassis.ChassisControlHardReset); err != nil {
		t.Fatal(err)
	}
	boots = b.Machine().Boots()
	if len(boots) != 3 || boots[2].Device != bmc.BootDisk || !boots[2].Persistent || !boots[2].EFI {
		t.Errorf("boots %+v, want two persistent EFI disk boots after the first", boots)
	}
}

func TestSessionsAndFaults(t *testing.T) {
	ctx := context.Background()
	b := start(t, ipmibmc.Config{MaxSessions: 1})
	c := dial(t, b)
	if n := b.ActiveSessions(); n != 1 {
		t.Fatalf("%d sessions, want 1", n)
	}
	b.Faults().BusyNext(2)
	for i := 0; i < 2; i++ {
		_, err := c.GetChassisStatus(ctx)
		var re *types.ResponseError
		if !errors.As(err, &re) || re.CompletionCode() != types.CodeNodeBusy {
			t.Fatalf("busy fault %d: %v", i, err)
		}
	}
	if _, err := c.GetChassisStatus(ctx); err != nil {
		t.Fatalf("after the busy answers: %v", err)
	}
	// The client has its answer before the BMC counts it as sent: wait
	// until every request received was answered.
	labtool.Eventually(t, 5*time.Second, "the BMC's counters to settle", func() bool {
		s := b.Stats()
		return s.Sent+s.Dropped == s.Received
	})
	before := b.Stats()
	b.Faults().SetDropAll(true)
	c.WithTimeout(100 * time.Millisecond).WithRetry(0)
	if _, err := c.GetChassisStatus(ctx); err == nil {
		t.Fatal("a BMC dropping everything answered")
	}
	if s := b.Stats(); s.Dropped != before.Dropped+1 || s.Sent != before.Sent {
		t.Errorf("stats %+v after one dropped request (before %+v)", s, before)
	}
	b.Faults().SetDropAll(false)
	c.WithTimeout(time.Second).WithRetry(1)
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := b.ActiveSessions(); n != 0 {
		t.Fatalf("%d sessions after close", n)
	}
}
