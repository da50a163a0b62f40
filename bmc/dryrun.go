package bmc

import (
	"context"
	"fmt"
	"strings"
)

// DryRun returns a Client that reads through c but does not write: SetPower
// and SetBootOverride call describe with what they would do (e.g. "power
// cycle", "set boot override pxe once (uefi)") and return an error
// wrapping ErrDryRun, without reaching the BMC. describe may be nil.
//
// Skipped writes fail rather than pretend success on purpose: a caller
// that does not know about dry runs then stops, instead of going on as if
// the node had been power-cycled (and, say, waiting for it to land).
// Callers that do know branch on errors.Is(err, ErrDryRun) and report the
// node as skipped. SetBootOverride's result says nothing was verified and
// carries the warning "dry run: not executed".
func DryRun(c Client, describe func(string)) Client {
	if describe == nil {
		describe = func(string) {}
	}
	return &dryRunClient{c: c, describe: describe}
}

type dryRunClient struct {
	c        Client
	describe func(string)
}

// DescribePower is the dry-run wording of a power action.
func DescribePower(a PowerAction) string { return "power " + string(a) }

// DescribeBootOverride is the dry-run wording of a boot override.
func DescribeBootOverride(o BootOverride) string {
	var b strings.Builder
	fmt.Fprintf(&b, "set boot override %s", o.Device)
	if o.Persistent {
		b.WriteString(" persistent")
	} else {
		b.WriteString(" once")
	}
	if o.Mode != BootModeUnset {
		fmt.Fprintf(&b, " (%s)", o.Mode)
	}
	return b.String()
}

func (d *dryRunClient) SetPower(ctx context.Context, a PowerAction) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	desc := DescribePower(a)
	d.describe(desc)
	return fmt.Errorf("%w: would %s", ErrDryRun, desc)
}

func (d *dryRunClient) SetBootOverride(ctx context.Context, o BootOverride) (BootResult, error) {
	if err := ctx.Err(); err != nil {
		return BootResult{}, err
	}
	desc := DescribeBootOverride(o)
	d.describe(desc)
	return BootResult{Verified: VerifyOff, Warnings: []string{ErrDryRun.Error()}},
		fmt.Errorf("%w: would %s", ErrDryRun, desc)
}

func (d *dryRunClient) PowerState(ctx context.Context) (PowerState, error) {
	return d.c.PowerState(ctx)
}

func (d *dryRunClient) BootOverride(ctx context.Context) (BootOverride, error) {
	return d.c.BootOverride(ctx)
}

func (d *dryRunClient) Identity(ctx context.Context) (Identity, error) { return d.c.Identity(ctx) }

func (d *dryRunClient) SystemIdentity(ctx context.Context) (SystemID, error) {
	return d.c.SystemIdentity(ctx)
}

func (d *dryRunClient) Protocol() string { return d.c.Protocol() }

func (d *dryRunClient) Close(ctx context.Context) error { return d.c.Close(ctx) }
