package redfish_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/bmc/redfish"
	"github.com/reprov/reprov/lab/labtool"
	"github.com/reprov/reprov/lab/redfishbmc"
)

const (
	resetPath  = "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset"
	systemPath = "/redfish/v1/Systems/1"
)

// TestPowerOnWhilePoweringOff: "on" during a shutdown waits for Off and
// then powers the machine on, instead of taking PoweringOff for on.
func TestPowerOnWhilePoweringOff(t *testing.T) {
	b := startBMC(t, redfishbmc.Config{Powered: true, Quirks: redfishbmc.Quirks{ReportTransitions: true}})
	m := b.Machine()
	c := open(t, b.Endpoint())
	ctx := ctxT(t)
	before := m.PowerOns()
	m.BeginShutdown(700 * time.Millisecond)
	if got, err := c.PowerState(ctx); err != nil || got != bmc.PowerPoweringOff {
		t.Fatalf("power state during a shutdown: %q, %v; want %q", got, err, bmc.PowerPoweringOff)
	}
	if err := c.SetPower(ctx, bmc.ActionOn); err != nil {
		t.Fatalf("power on while powering off: %v", err)
	}
	if !m.Powered() || m.PowerOns() != before+1 {
		t.Errorf("after power on: powered %v, %d new boots; want on after one boot", m.Powered(), m.PowerOns()-before)
	}
	if n := b.Requests("POST", resetPath); n != 1 {
		t.Errorf("%d resets sent, want 1 (On, after the machine was off)", n)
	}
	// Off during a shutdown sends nothing: the machine is going off.
	m.BeginShutdown(300 * time.Millisecond)
	if err := c.SetPower(ctx, bmc.ActionOff); err != nil {
		t.Fatalf("power off while powering off: %v", err)
	}
	if m.Powered() || b.Requests("POST", resetPath) != 1 {
		t.Errorf("power off during a shutdown: powered %v, %d resets; want off and no reset sent", m.Powered(), b.Requests("POST", resetPath))
	}
}

// TestCycleWhilePoweringOff: a cycle during a shutdown waits for Off and
// powers on once.
func TestCycleWhilePoweringOff(t *testing.T) {
	b := startBMC(t, redfishbmc.Config{Powered: true, Quirks: redfishbmc.Quirks{ReportTransitions: true, ConflictDuringTransition: true}})
	m := b.Machine()
	c := open(t, b.Endpoint())
	before := m.PowerOns()
	m.BeginShutdown(500 * time.Millisecond)
	if err := c.SetPower(ctxT(t), bmc.ActionCycle); err != nil {
		t.Fatalf("cycle while powering off: %v", err)
	}
	if !m.Powered() || m.PowerOns() != before+1 {
		t.Errorf("after cycle: powered %v, %d new boots; want on after one boot", m.Powered(), m.PowerOns()-before)
	}
	if n := b.Requests("POST", resetPath); n != 1 {
		t.Errorf("%d resets sent, want 1: none refused with 409, since reprov waited", n)
	}
}

// TestConflictIsBusyAndRetried: a BMC that shows On but answers 409 to a
// Reset during a transition: the reset is sent again after the
// transition, and a transition that does not end is "BMC busy".
func TestConflictIsBusyAndRetried(t *testing.T) {
	b := startBMC(t, redfishbmc.Config{Powered: true, Quirks: redfishbmc.Quirks{ConflictDuringTransition: true}})
	m := b.Machine()
	c := open(t, b.Endpoint())
	ctx := ctxT(t)

	m.BeginShutdown(400 * time.Millisecond)
	before := m.PowerOns()
	if err := c.SetPower(ctx, bmc.ActionCycle); err != nil {
		t.Fatalf("cycle refused once with 409: %v", err)
	}
	if n := b.Requests("POST", resetPath); n != 2 {
		t.Errorf("%d resets sent, want 2 (refused with 409, then On)", n)
	}
	if !m.Powered() || m.PowerOns() != before+1 {
		t.Errorf("after cycle: powered %v, %d new boots; want on after one boot", m.Powered(), m.PowerOns()-before)
	}

	// A shutdown that outlasts the retries.
	m.BeginShutdown(time.Minute)
	start := time.Now()
	err := c.SetPower(ctx, bmc.ActionReset)
	if !errors.Is(err, bmc.ErrBusy) || !bmc.IsTemporary(err) {
		t.Fatalf("reset refused with 409 every time: %v; want a temporary bmc.ErrBusy", err)
	}
	if !strings.Contains(err.Error(), "powering off") {
		t.Errorf("error %q lost the BMC's message", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("giving up took %v", d)
	}
}

// TestRefusedBootPatchKeepsMessage: both PATCHes (with and without the
// mode) refused: the error carries the BMC's message.
func TestRefusedBootPatchKeepsMessage(t *testing.T) {
	b := startBMC(t, redfishbmc.Config{Quirks: redfishbmc.Quirks{BootReadOnly: true}})
	c := open(t, b.Endpoint())
	_, err := c.SetBootOverride(ctxT(t), bmc.BootOverride{Device: bmc.BootPXE, Mode: bmc.BootModeLegacy})
	if err == nil {
		t.Fatal("a read-only Boot accepted the override")
	}
	msg := err.Error()
	if strings.Contains(msg, "%!") || !strings.Contains(msg, "PropertyNotWritable") || !strings.Contains(msg, "HTTP 400") {
		t.Errorf("error %q: want the BMC's 400 message, no formatting debris", msg)
	}
	if n := b.Requests("PATCH", systemPath); n != 2 {
		t.Errorf("%d PATCHes, want 2 (with and without the mode)", n)
	}
}

// TestContinuousNotSentWhenNotAllowed: a BMC listing only [Disabled, Once]
// never gets Continuous.
func TestContinuousNotSentWhenNotAllowed(t *testing.T) {
	b := startBMC(t, redfishbmc.Config{Quirks: redfishbmc.Quirks{EnabledOnceOnly: true}})
	c := open(t, b.Endpoint())
	ctx := ctxT(t)
	_, err := c.SetBootOverride(ctx, bmc.BootOverride{Device: bmc.BootPXE, Persistent: true})
	if !errors.Is(err, bmc.ErrUnsupported) || !strings.Contains(err.Error(), "[Disabled Once]") {
		t.Fatalf("persistent override: %v; want ErrUnsupported naming the allowed values", err)
	}
	if n := b.Requests("PATCH", systemPath); n != 0 {
		t.Errorf("%d PATCHes sent, want none", n)
	}
	if _, err := c.SetBootOverride(ctx, bmc.BootOverride{Device: bmc.BootPXE}); err != nil {
		t.Fatalf("one-time override: %v", err)
	}
	if got := b.Machine().Boot(); got.Target != "Pxe" || got.Enabled != redfishbmc.EnabledOnce {
		t.Errorf("BMC holds %+v, want Pxe Once", got)
	}
}

// TestSessionWithoutLocation: the session is found from the login body
// and deleted; with no URI at all the session is refused.
func TestSessionWithoutLocation(t *testing.T) {
	b := startBMC(t, redfishbmc.Config{Quirks: redfishbmc.Quirks{SessionNoLocation: true}})
	ep := b.Endpoint()
	ep.Options.RedfishSession = true
	ep.Options.CAFile = b.CAFile()
	ctx := ctxT(t)
	c, err := redfish.Open(ctx, ep, testLogger(t))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if _, err := c.PowerState(ctx); err != nil {
		t.Fatal(err)
	}
	if n := b.Sessions(); n != 1 {
		t.Errorf("%d sessions open, want 1", n)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	if n := b.Sessions(); n != 0 {
		t.Errorf("%d sessions left open after Close (leaked)", n)
	}

	b.SetQuirks(redfishbmc.Quirks{SessionNoURI: true})
	_, err = redfish.Open(ctx, ep, testLogger(t))
	if !errors.Is(err, bmc.ErrUnsupported) || !strings.Contains(err.Error(), "unset redfish_session") {
		t.Fatalf("open with a session that has no URI: %v; want a refusal", err)
	}
}

// TestRedfishtoolSeesPoweringOff cross-checks the lab's transition with
// an independent client.
func TestRedfishtoolSeesPoweringOff(t *testing.T) {
	labtool.RequireTool(t, "redfishtool")
	b := startBMC(t, redfishbmc.Config{Powered: true, Quirks: redfishbmc.Quirks{ReportTransitions: true, EnabledOnceOnly: true}})
	b.Machine().BeginShutdown(time.Minute)
	if got := redfishtoolPower(t, b); got != "PoweringOff" {
		t.Errorf("redfishtool reads %q during a shutdown, want PoweringOff", got)
	}
	got, err := open(t, b.Endpoint()).PowerState(context.Background())
	if err != nil || got != bmc.PowerPoweringOff {
		t.Errorf("client reads %q, %v", got, err)
	}
	var out struct {
		Boot map[string]any
	}
	raw := redfishtool(t, b, nil, "Systems", "-I", "1", "get", "-P", "Boot")
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	if v, _ := json.Marshal(out.Boot["BootSourceOverrideEnabled@Redfish.AllowableValues"]); string(v) != `["Disabled","Once"]` {
		t.Errorf("redfishtool reads allowable values %s", v)
	}
}
