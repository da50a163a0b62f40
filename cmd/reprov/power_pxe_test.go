package main

import (
	"path/filepath"
	"testing"

	"github.com/reprov/reprov/agent/audit"
	"github.com/reprov/reprov/bmc"
)

// TestPowerCyclePXEOneSession: `power cycle --pxe` sets a verified one-time
// PXE boot and cycles in one session per node; a node that is off (the BMC
// refuses the cycle) is powered on instead, and the audit log says so.
func TestPowerCyclePXEOneSession(t *testing.T) {
	f := newBMCFleet(t)
	web1, web2 := f.bmcs["web-01"], f.bmcs["web-02"] // web-01 on, web-02 off
	before1, before2 := web1.Stats(), web2.Stats()
	code, out, errOut := f.run("power", "cycle", "--pxe", "--legacy", "web-*", "--yes")
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	r := rows(out)
	for node, action := range map[string]string{"web-01": "cycle", "web-02": "on"} {
		row := r[node]
		if len(row) < 8 || row[2] != "ok" || row[3] != action || row[5] != "pxe" || row[7] != "legacy" {
			t.Errorf("%s row %q, want ok, action %s, pxe once legacy\n%s", node, row, action, out)
		}
	}
	for node, b := range f.bmcs {
		if node != "web-01" && node != "web-02" {
			continue
		}
		boots := b.Machine().Boots()
		if len(boots) != 1 || boots[0].Device != bmc.BootPXE || !boots[0].Valid || boots[0].EFI {
			t.Errorf("%s booted %+v, want one legacy PXE boot", node, boots)
		}
	}
	for node, d := range map[string]struct{ before, after uint64 }{
		"web-01": {before1.SessionsOpened, web1.Stats().SessionsOpened},
		"web-02": {before2.SessionsOpened, web2.Stats().SessionsOpened},
	} {
		if n := d.after - d.before; n != 1 {
			t.Errorf("%s: %d RMCP+ sessions opened, want 1", node, n)
		}
	}
	if n := web1.Stats().Received - before1.Received; n > 10 {
		t.Errorf("web-01: %d exchanges for override + verification + cycle, want at most 10", n)
	}

	recs, err := audit.Read(filepath.Join(f.stateDir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	type step struct{ action, result string }
	got := map[string][]step{}
	intents := map[string]string{}
	for _, rec := range recs {
		if rec.Phase == audit.PhaseIntent {
			intents[rec.ID] = rec.Action
			continue
		}
		if intents[rec.ID] != rec.Action {
			t.Errorf("outcome %+v without its intent before it", rec)
		}
		got[rec.Node] = append(got[rec.Node], step{rec.Action, rec.Result})
	}
	want := map[string][]step{
		"web-01": {{"set boot override", audit.ResultOK}, {"power cycle", audit.ResultOK}},
		"web-02": {{"set boot override", audit.ResultOK}, {"power cycle", audit.ResultSkipped}, {"power on", audit.ResultOK}},
	}
	for node, w := range want {
		if len(got[node]) != len(w) {
			t.Errorf("%s: audit outcomes %v, want %v", node, got[node], w)
			continue
		}
		for i := range w {
			if got[node][i] != w[i] {
				t.Errorf("%s: audit outcomes %v, want %v", node, got[node], w)
				break
			}
		}
	}
	f.noSecrets(t, out, errOut)
}

func TestPowerPXEFlagsNeedPXE(t *testing.T) {
	f := newBMCFleet(t)
	if code, _, errOut := f.run("power", "cycle", "--uefi", "web-01"); code != exitUsage {
		t.Errorf("--uefi without --pxe: exit %d, want %d\n%s", code, exitUsage, errOut)
	}
}
