package bmc

import (
	"context"
	"errors"
	"slices"
	"testing"
)

func TestDryRunSkipsWritesAndDescribesThem(t *testing.T) {
	f := newFake()
	var said []string
	c := DryRun(f, func(s string) { said = append(said, s) })
	ctx := context.Background()

	err := c.SetPower(ctx, ActionCycle)
	if !errors.Is(err, ErrDryRun) {
		t.Errorf("dry-run power cycle returned %v, want ErrDryRun", err)
	}
	res, err := c.SetBootOverride(ctx, BootOverride{Device: BootPXE, Mode: BootModeUEFI})
	if !errors.Is(err, ErrDryRun) {
		t.Errorf("dry-run boot override returned %v, want ErrDryRun", err)
	}
	if res.Verified != VerifyOff || len(res.Warnings) == 0 {
		t.Errorf("dry-run boot result %+v claims verification or lacks the warning", res)
	}
	if n := f.count("SetPower") + f.count("SetBootOverride"); n != 0 {
		t.Errorf("%d writes reached the BMC in a dry run", n)
	}
	want := []string{"power cycle", "set boot override pxe once (uefi)"}
	if !slices.Equal(said, want) {
		t.Errorf("described %q, want %q", said, want)
	}
	if f.power != PowerOff {
		t.Errorf("node powered %s by a dry run", f.power)
	}
}

func TestDryRunPassesReads(t *testing.T) {
	f := newFake()
	c := DryRun(f, nil)
	ctx := context.Background()
	if s, err := c.PowerState(ctx); err != nil || s != PowerOff {
		t.Errorf("power state %q, %v; want off", s, err)
	}
	if _, err := c.BootOverride(ctx); err != nil {
		t.Error(err)
	}
	if id, err := c.Identity(ctx); err != nil || id.Protocol != "fake" {
		t.Errorf("identity %+v, %v", id, err)
	}
	if err := c.Close(ctx); err != nil {
		t.Error(err)
	}
	for _, m := range []string{"PowerState", "BootOverride", "Identity", "Close"} {
		if n := f.count(m); n != 1 {
			t.Errorf("%s reached the BMC %d times, want 1", m, n)
		}
	}
}

func TestDescribeBootOverride(t *testing.T) {
	for _, tc := range []struct {
		o    BootOverride
		want string
	}{
		{BootOverride{Device: BootPXE}, "set boot override pxe once"},
		{BootOverride{Device: BootDisk, Persistent: true, Mode: BootModeLegacy}, "set boot override disk persistent (legacy)"},
	} {
		if got := DescribeBootOverride(tc.o); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.o, got, tc.want)
		}
	}
}
