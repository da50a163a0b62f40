package redfish_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/lab/labtool"
	"github.com/reprov/reprov/lab/redfishbmc"
)

// redfishtool runs Debian's redfishtool (an independent Redfish client)
// against b over HTTPS. redfishtool never verifies certificates (it
// passes verify=False to python-requests); -S Always makes it use https
// for every request. The password is on its command line, so failures
// print only the subcommand.
func redfishtool(t *testing.T, b *redfishbmc.BMC, extra []string, args ...string) []byte {
	t.Helper()
	path := labtool.RequireTool(t, "redfishtool")
	ep := b.Endpoint()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	full := append([]string{"-r", ep.Host + ":" + strconv.Itoa(ep.Port), "-u", ep.Username, "-p", ep.Password, "-S", "Always", "-T", "10"}, extra...)
	full = append(full, args...)
	cmd := exec.CommandContext(ctx, path, full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("redfishtool %v: %v\nstdout: %s\nstderr: %s", args, err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes()
}

func redfishtoolBoot(t *testing.T, b *redfishbmc.BMC) (target, enabled string) {
	t.Helper()
	var out struct {
		Boot struct {
			BootSourceOverrideTarget  string
			BootSourceOverrideEnabled string
		}
	}
	raw := redfishtool(t, b, nil, "Systems", "-I", "1", "get", "-P", "Boot")
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("redfishtool Boot output %q: %v", raw, err)
	}
	return out.Boot.BootSourceOverrideTarget, out.Boot.BootSourceOverrideEnabled
}

func redfishtoolPower(t *testing.T, b *redfishbmc.BMC, extra ...string) string {
	t.Helper()
	var out struct{ PowerState string }
	raw := redfishtool(t, b, extra, "Systems", "-I", "1", "get", "-P", "PowerState")
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("redfishtool PowerState output %q: %v", raw, err)
	}
	return out.PowerState
}

func TestCrossCheckWithRedfishtool(t *testing.T) {
	labtool.RequireTool(t, "redfishtool")
	// If-Match required: redfishtool sends the ETag it read, as we do.
	b := startBMC(t, redfishbmc.Config{Quirks: redfishbmc.Quirks{RequireIfMatch: true}})
	m := b.Machine()
	c := open(t, b.Endpoint())
	ctx := ctxT(t)

	// Power state: the machine, redfishtool and our client agree.
	for _, on := range []bool{false, true} {
		m.SetPowered(on)
		want := map[bool]string{false: "Off", true: "On"}[on]
		if got := redfishtoolPower(t, b); got != want {
			t.Errorf("machine on=%v: redfishtool reads %q", on, got)
		}
		if got, err := c.PowerState(ctx); err != nil || (got == bmc.PowerOn) != on {
			t.Errorf("machine on=%v: client reads %q, %v", on, got, err)
		}
	}

	// redfishtool writes the override; the machine and our client see it.
	redfishtool(t, b, nil, "Systems", "-I", "1", "setBootOverride", "Once", "Pxe")
	if got := m.BootDevice(); got != bmc.BootPXE {
		t.Errorf("after redfishtool setBootOverride Once Pxe the BMC holds %q", got)
	}
	if got, err := c.BootOverride(ctx); err != nil || got.Device != bmc.BootPXE || got.Persistent {
		t.Errorf("client reads %+v, %v; want pxe once", got, err)
	}

	// Our client writes; redfishtool reads it back.
	if _, err := c.SetBootOverride(ctx, bmc.BootOverride{Device: bmc.BootDisk, Persistent: true}); err != nil {
		t.Fatal(err)
	}
	if target, enabled := redfishtoolBoot(t, b); target != "Hdd" || enabled != "Continuous" {
		t.Errorf("redfishtool reads Target=%s Enabled=%s, want Hdd Continuous", target, enabled)
	}

	// redfishtool resets: the machine reboots once; ForceOff turns it off
	// and our client sees it.
	if _, err := c.SetBootOverride(ctx, bmc.BootOverride{Device: bmc.BootPXE}); err != nil {
		t.Fatal(err)
	}
	before := m.PowerOns()
	redfishtool(t, b, nil, "Systems", "-I", "1", "reset", "ForceRestart")
	if got := m.PowerOns() - before; got != 1 || !m.Powered() {
		t.Errorf("redfishtool reset ForceRestart: %d boots, powered %v", got, m.Powered())
	}
	if target, enabled := redfishtoolBoot(t, b); target != "None" || enabled != "Disabled" {
		t.Errorf("one-time override not consumed by the reboot: Target=%s Enabled=%s", target, enabled)
	}
	redfishtool(t, b, nil, "Systems", "-I", "1", "reset", "ForceOff")
	if got, err := c.PowerState(ctx); err != nil || got != bmc.PowerOff {
		t.Errorf("after redfishtool ForceOff the client reads %q, %v", got, err)
	}

	// Our client powers on; redfishtool (with a session) sees it, and
	// logs its session out.
	if err := c.SetPower(ctx, bmc.ActionOn); err != nil {
		t.Fatal(err)
	}
	if got := redfishtoolPower(t, b, "-A", "Session"); got != "On" {
		t.Errorf("redfishtool reads %q after our power on", got)
	}
	if n := b.Sessions(); n != 0 {
		t.Errorf("%d sessions open after redfishtool's session run", n)
	}
	if n := b.Requests("POST", sessionsPath); n != 1 {
		t.Errorf("redfishtool -A Session logged in %d times, want 1", n)
	}
}
