// Package bmctest is the conformance suite every bmc.Client implementation
// must pass, run against each real test peer (ipmi_sim, go-ipmi's reference
// BMC, the Redfish test BMC with each quirk switched on). It checks what a
// user would see on the machine, through the peer's own view of it, not
// only what the client reports.
package bmctest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/reprov/reprov/bmc"
)

// Machine is the test peer's own view of the simulated machine, read
// without going through the client under test.
type Machine interface {
	// Powered reports whether the machine is on.
	Powered() bool
	// PowerOns counts off→on transitions since the peer started.
	PowerOns() int
	// BootDevice is the device the peer has stored as the next-boot
	// override (bmc.BootNone when none).
	BootDevice() bmc.BootDevice
	// SetPowered forces the machine's power, for test set-up.
	SetPowered(on bool)
}

// Target is one peer with a way to open the client under test.
type Target struct {
	// Open returns a fresh client connected to the peer.
	Open func(ctx context.Context) (bmc.Client, error)
	// Machine is the peer's view of the machine.
	Machine Machine
	// Verify is the read-back level the peer supports faithfully
	// (ipmi_sim: device-only).
	Verify bmc.VerifyLevel
	// SystemID is the machine identity the peer was configured to report
	// (system GUID in RFC 4122 text, product serial). Every fact set here
	// must be read back by SystemIdentity and match.
	SystemID bmc.SystemID
}

// Timeout bounds each conformance step; power changes on ipmi_sim take ~1 s.
const Timeout = 20 * time.Second

// Run runs the conformance suite. newTarget is called once per subtest and
// must give a peer whose state no other subtest shares.
func Run(t *testing.T, newTarget func(t *testing.T) Target) {
	t.Helper()
	cases := []struct {
		name string
		run  func(t *testing.T, ctx context.Context, tg Target, c bmc.Client)
	}{
		{"PowerStateMatchesMachine", testPowerState},
		{"PowerOnFromOff", testPowerOn},
		{"PowerOff", testPowerOff},
		{"CycleWhenOnPowersOffAndOn", testCycleOn},
		{"CycleWhenOffPowersOnOrSaysOff", testCycleOff},
		{"PXEOnceIsStoredAndReadBack", testPXEOnce},
		{"DiskOverride", testDiskOverride},
		{"Identity", testIdentity},
		{"SystemIdentityMatchesPeer", testSystemIdentity},
		{"CloseTwiceIsSafe", testCloseTwice},
		{"CancelledContextFailsFast", testCancelled},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tg := newTarget(t)
			ctx, cancel := context.WithTimeout(context.Background(), Timeout)
			defer cancel()
			c, err := tg.Open(ctx)
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			t.Cleanup(func() {
				cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer ccancel()
				_ = c.Close(cctx)
			})
			tc.run(t, ctx, tg, c)
		})
	}
}

// Eventually waits until cond holds or the deadline passes.
func Eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testPowerState(t *testing.T, ctx context.Context, tg Target, c bmc.Client) {
	for _, on := range []bool{true, false} {
		tg.Machine.SetPowered(on)
		want := bmc.PowerOff
		if on {
			want = bmc.PowerOn
		}
		got, err := c.PowerState(ctx)
		if err != nil {
			t.Fatalf("power state: %v", err)
		}
		if got != want {
			t.Errorf("machine powered=%v: client says %q, want %q", on, got, want)
		}
	}
}

func testPowerOn(t *testing.T, ctx context.Context, tg Target, c bmc.Client) {
	tg.Machine.SetPowered(false)
	if err := c.SetPower(ctx, bmc.ActionOn); err != nil {
		t.Fatalf("power on: %v", err)
	}
	Eventually(t, Timeout, "machine powered on", tg.Machine.Powered)
}

func testPowerOff(t *testing.T, ctx context.Context, tg Target, c bmc.Client) {
	tg.Machine.SetPowered(true)
	if err := c.SetPower(ctx, bmc.ActionOff); err != nil {
		t.Fatalf("power off: %v", err)
	}
	Eventually(t, Timeout, "machine powered off", func() bool { return !tg.Machine.Powered() })
}

func testCycleOn(t *testing.T, ctx context.Context, tg Target, c bmc.Client) {
	tg.Machine.SetPowered(true)
	before := tg.Machine.PowerOns()
	if err := c.SetPower(ctx, bmc.ActionCycle); err != nil {
		t.Fatalf("power cycle: %v", err)
	}
	Eventually(t, Timeout, "machine off and on again", func() bool {
		return tg.Machine.PowerOns() > before && tg.Machine.Powered()
	})
}

// testCycleOff: a cycle of an off machine either powers it on or fails
// with bmc.ErrPoweredOff having changed nothing, after which power on works.
func testCycleOff(t *testing.T, ctx context.Context, tg Target, c bmc.Client) {
	tg.Machine.SetPowered(false)
	ons := tg.Machine.PowerOns()
	err := c.SetPower(ctx, bmc.ActionCycle)
	switch {
	case errors.Is(err, bmc.ErrPoweredOff):
		if tg.Machine.Powered() || tg.Machine.PowerOns() != ons {
			t.Fatalf("cycle refused with %v, but the machine was powered on", err)
		}
		if err := c.SetPower(ctx, bmc.ActionOn); err != nil {
			t.Fatalf("power on after the refused cycle: %v", err)
		}
	case err != nil:
		t.Fatalf("power cycle of an off node: %v (want success or bmc.ErrPoweredOff)", err)
	}
	Eventually(t, Timeout, "machine powered on", tg.Machine.Powered)
}

func testPXEOnce(t *testing.T, ctx context.Context, tg Target, c bmc.Client) {
	res, err := c.SetBootOverride(ctx, bmc.BootOverride{Device: bmc.BootPXE, Mode: bmc.BootModeLegacy})
	if err != nil {
		t.Fatalf("set pxe once: %v", err)
	}
	if got := tg.Machine.BootDevice(); got != bmc.BootPXE {
		t.Errorf("peer stored boot device %q, want pxe", got)
	}
	if res.Verified == bmc.VerifyOff {
		t.Errorf("result says nothing was verified; the peer supports %q", tg.Verify)
	}
	if res.ReadBack.Device != bmc.BootPXE {
		t.Errorf("read-back device %q, want pxe", res.ReadBack.Device)
	}
	got, err := c.BootOverride(ctx)
	if err != nil {
		t.Fatalf("read boot override: %v", err)
	}
	if got.Device != bmc.BootPXE {
		t.Errorf("BootOverride device %q, want pxe", got.Device)
	}
	if tg.Verify == bmc.VerifyFull && got.Persistent {
		t.Errorf("one-time override reads back as persistent")
	}
}

func testDiskOverride(t *testing.T, ctx context.Context, tg Target, c bmc.Client) {
	if _, err := c.SetBootOverride(ctx, bmc.BootOverride{Device: bmc.BootDisk}); err != nil {
		t.Fatalf("set disk: %v", err)
	}
	if got := tg.Machine.BootDevice(); got != bmc.BootDisk {
		t.Errorf("peer stored boot device %q, want disk", got)
	}
}

func testIdentity(t *testing.T, ctx context.Context, tg Target, c bmc.Client) {
	id, err := c.Identity(ctx)
	if err != nil {
		t.Fatalf("identity: %v", err)
	}
	if id.Protocol != c.Protocol() || id.Protocol == "" {
		t.Errorf("identity protocol %q, client protocol %q", id.Protocol, c.Protocol())
	}
}

func testSystemIdentity(t *testing.T, ctx context.Context, tg Target, c bmc.Client) {
	want := tg.SystemID
	if want == (bmc.SystemID{}) {
		t.Fatal("the target configures no system identity for its peer")
	}
	got, err := c.SystemIdentity(ctx)
	if err != nil {
		t.Fatalf("system identity: %v", err)
	}
	matched, err := bmc.MatchIdentity(want, got)
	if err != nil {
		t.Fatalf("peer configured as %+v, client read %+v: %v", want, got, err)
	}
	for fact, v := range map[string]string{"guid": want.GUID, "serial": want.Serial} {
		if v != "" && !slices.Contains(matched, fact) {
			t.Errorf("peer reports %s %q, client read %+v: not matched (matched %v)", fact, v, got, matched)
		}
	}
	// Another machine's identity must not match what this BMC reports.
	other := bmc.SystemID{Serial: want.Serial + "X"}
	if g, ok := bmc.KnownGUID(want.GUID); ok {
		g[15] ^= 0x5a
		other.GUID = bmc.FormatGUID(g)
	}
	if _, err := bmc.MatchIdentity(other, got); !errors.Is(err, bmc.ErrIdentityMismatch) {
		t.Errorf("another machine's identity %+v matched %+v: %v", other, got, err)
	}
}

func testCloseTwice(t *testing.T, ctx context.Context, tg Target, c bmc.Client) {
	if err := c.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

func testCancelled(t *testing.T, ctx context.Context, tg Target, c bmc.Client) {
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	start := time.Now()
	_, err := c.PowerState(cctx)
	if err == nil {
		t.Fatal("power state with a cancelled context succeeded")
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v does not wrap context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("cancelled call took %v", d)
	}
}
