package redfish_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/lab/redfishbmc"
)

const system1 = "/redfish/v1/Systems/1"

func TestSilentlyRevertedOverrideIsErrReverted(t *testing.T) {
	b := startBMC(t, redfishbmc.Config{Quirks: redfishbmc.Quirks{SilentlyRevert: true}})
	c := open(t, b.Endpoint())
	for _, level := range []bmc.VerifyLevel{"", bmc.VerifyFull, bmc.VerifyDeviceOnly} {
		t.Run(string(level), func(t *testing.T) {
			ep := b.Endpoint()
			ep.Options.Verify = level
			c := open(t, ep)
			res, err := c.SetBootOverride(ctxT(t), bmc.BootOverride{Device: bmc.BootPXE})
			if !errors.Is(err, bmc.ErrReverted) {
				t.Fatalf("err = %v, want ErrReverted", err)
			}
			for _, want := range []string{"read back Target=None Enabled=Disabled", "wrote Target=Pxe Enabled=Once", b.URL()} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if res.ReadBack.Device != bmc.BootNone {
				t.Errorf("ReadBack %+v, want the reverted none", res.ReadBack)
			}
		})
	}
	// With verification off the client cannot know, and says so.
	ep := b.Endpoint()
	ep.Options.Verify = bmc.VerifyOff
	res, err := open(t, ep).SetBootOverride(ctxT(t), bmc.BootOverride{Device: bmc.BootPXE})
	if err != nil || res.Verified != bmc.VerifyOff {
		t.Errorf("verify off: %+v, %v; want success with Verified off", res, err)
	}
	if got, _ := c.BootOverride(ctxT(t)); got.Device != bmc.BootNone {
		t.Errorf("BootOverride reads %q after the revert", got.Device)
	}
}

func TestBootModeOverridePolicies(t *testing.T) {
	tests := []struct {
		name     string
		cfg      redfishbmc.Config
		policy   string
		mode     bmc.BootMode
		wantMode string // the mode the BMC holds afterwards
		wantErr  error
		warning  string // a substring of a warning, "" for none
	}{
		{name: "auto sends a listed mode", cfg: redfishbmc.Config{}, mode: bmc.BootModeUEFI, wantMode: "UEFI"},
		{name: "auto unset keeps mode", cfg: redfishbmc.Config{}, wantMode: "Legacy"},
		{name: "auto refuses a mode not allowed", cfg: redfishbmc.Config{BootModes: []string{"UEFI"}}, mode: bmc.BootModeLegacy, wantMode: "UEFI", wantErr: bmc.ErrUnsupported},
		{name: "auto falls back without mode on iLO 5", cfg: redfishbmc.Config{Quirks: redfishbmc.Quirks{RejectMode: true}}, mode: bmc.BootModeUEFI, wantMode: "Legacy", warning: "refused BootSourceOverrideMode=UEFI"},
		{name: "auto on a BMC without mode", cfg: redfishbmc.Config{NoBootMode: true}, mode: bmc.BootModeUEFI, wantMode: "", warning: "has no BootSourceOverrideMode"},
		{name: "auto sends current mode to Supermicro", cfg: redfishbmc.Config{Boot: redfishbmc.BootSettings{Mode: "UEFI"}, Quirks: redfishbmc.Quirks{RequireMode: true}}, wantMode: "UEFI"},
		{name: "never", cfg: redfishbmc.Config{}, policy: "never", mode: bmc.BootModeUEFI, wantMode: "Legacy", warning: "not sent"},
		{name: "never fails on Supermicro", cfg: redfishbmc.Config{Quirks: redfishbmc.Quirks{RequireMode: true}}, policy: "never", mode: bmc.BootModeUEFI, wantMode: "Legacy", wantErr: errAny},
		{name: "always fails on iLO 5", cfg: redfishbmc.Config{Quirks: redfishbmc.Quirks{RejectMode: true}}, policy: "always", mode: bmc.BootModeUEFI, wantMode: "Legacy", wantErr: errAny},
		{name: "always", cfg: redfishbmc.Config{}, policy: "always", mode: bmc.BootModeUEFI, wantMode: "UEFI"},
		{name: "unknown policy", cfg: redfishbmc.Config{}, policy: "sometimes", mode: bmc.BootModeUEFI, wantMode: "Legacy", wantErr: errAny},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := startBMC(t, tc.cfg)
			ep := b.Endpoint()
			ep.Options.BootModeOverride = tc.policy
			c := open(t, ep)
			res, err := c.SetBootOverride(ctxT(t), bmc.BootOverride{Device: bmc.BootPXE, Mode: tc.mode})
			switch {
			case tc.wantErr == errAny && err == nil:
				t.Errorf("no error")
			case tc.wantErr != nil && tc.wantErr != errAny && !errors.Is(err, tc.wantErr):
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			case tc.wantErr == nil && err != nil:
				t.Fatalf("err = %v", err)
			}
			if got := b.Machine().Boot().Mode; got != tc.wantMode {
				t.Errorf("BMC mode %q, want %q", got, tc.wantMode)
			}
			wantDev := bmc.BootPXE
			if tc.wantErr != nil {
				wantDev = bmc.BootNone
			}
			if got := b.Machine().BootDevice(); got != wantDev {
				t.Errorf("BMC device %q, want %q", got, wantDev)
			}
			if tc.wantErr != nil {
				return
			}
			found := tc.warning == ""
			for _, w := range res.Warnings {
				if strings.Contains(w, tc.warning) && tc.warning != "" {
					found = true
				}
			}
			if !found || (tc.warning == "" && len(res.Warnings) > 0) {
				t.Errorf("warnings %q, want one containing %q", res.Warnings, tc.warning)
			}
		})
	}
}

// errAny stands for "some error" in tables.
var errAny = errors.New("any error")

func TestOverrideValues(t *testing.T) {
	b := startBMC(t, redfishbmc.Config{})
	c := open(t, b.Endpoint())
	tests := []struct {
		o    bmc.BootOverride
		want redfishbmc.BootSettings
	}{
		{bmc.BootOverride{Device: bmc.BootPXE, Mode: bmc.BootModeUEFI}, redfishbmc.BootSettings{Target: "Pxe", Enabled: "Once", Mode: "UEFI"}},
		{bmc.BootOverride{Device: bmc.BootDisk, Persistent: true}, redfishbmc.BootSettings{Target: "Hdd", Enabled: "Continuous", Mode: "UEFI"}},
		{bmc.BootOverride{Device: bmc.BootBIOS, Mode: bmc.BootModeLegacy}, redfishbmc.BootSettings{Target: "BiosSetup", Enabled: "Once", Mode: "Legacy"}},
		{bmc.BootOverride{Device: bmc.BootNone}, redfishbmc.BootSettings{Target: "None", Enabled: "Disabled", Mode: "Legacy"}},
	}
	for _, tc := range tests {
		res, err := c.SetBootOverride(ctxT(t), tc.o)
		if err != nil {
			t.Fatalf("%+v: %v", tc.o, err)
		}
		if got := b.Machine().Boot(); got != tc.want {
			t.Errorf("%+v: BMC holds %+v, want %+v", tc.o, got, tc.want)
		}
		got, err := c.BootOverride(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if got != res.ReadBack || got.Device != tc.o.Device || got.Persistent != tc.o.Persistent {
			t.Errorf("%+v: BootOverride %+v, ReadBack %+v", tc.o, got, res.ReadBack)
		}
		if res.Verified != bmc.VerifyFull {
			t.Errorf("Verified %q", res.Verified)
		}
	}
	// Every PATCH followed a fresh read of the system.
	if p, g := b.Requests("PATCH", system1), b.Requests("GET", system1); p != len(tests) || g < 3*len(tests) {
		t.Errorf("%d PATCHes and %d GETs of the system; want %d PATCHes, each after a read and before a read-back", p, g, len(tests))
	}
}

func TestUnsupportedTarget(t *testing.T) {
	b := startBMC(t, redfishbmc.Config{BootTargets: []string{"None", "Hdd"}})
	c := open(t, b.Endpoint())
	_, err := c.SetBootOverride(ctxT(t), bmc.BootOverride{Device: bmc.BootPXE})
	if !errors.Is(err, bmc.ErrUnsupported) || !strings.Contains(err.Error(), "[None Hdd]") {
		t.Errorf("err = %v, want ErrUnsupported listing the allowed targets", err)
	}
	if n := b.Requests("PATCH", system1); n != 0 {
		t.Errorf("%d PATCHes sent for a target the BMC does not list", n)
	}
}

func TestETagChangesBetweenOverrides(t *testing.T) {
	// AMI/XCC: If-Match required. The ETag changes with every write and
	// power change; each SetBootOverride must use a fresh one.
	b := startBMC(t, redfishbmc.Config{Quirks: redfishbmc.Quirks{RequireIfMatch: true, RejectAllowableValues: true}})
	c := open(t, b.Endpoint())
	ctx := ctxT(t)
	for i, d := range []bmc.BootDevice{bmc.BootPXE, bmc.BootDisk, bmc.BootPXE} {
		if _, err := c.SetBootOverride(ctx, bmc.BootOverride{Device: d}); err != nil {
			t.Fatalf("override %d: %v", i, err)
		}
		if err := c.SetPower(ctx, bmc.ActionCycle); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
	}
	if got := b.Machine().PowerOns(); got != 3 {
		t.Errorf("PowerOns %d, want 3", got)
	}
}
