package ipmi

import (
	"context"
	"errors"
	"fmt"

	"github.com/bougou/go-ipmi/pkg/types"

	"github.com/reprov/reprov/bmc"
)

// selectorOf maps a device to the boot device selector of parameter 5.
func selectorOf(d bmc.BootDevice) (types.BootDeviceSelector, error) {
	switch d {
	case bmc.BootPXE:
		return types.BootDeviceSelectorForcePXE, nil
	case bmc.BootDisk:
		return types.BootDeviceSelectorForceHardDrive, nil
	case bmc.BootBIOS:
		return types.BootDeviceSelectorForceBIOSSetup, nil
	case bmc.BootNone:
		return types.BootDeviceSelectorNoOverride, nil
	}
	return 0, fmt.Errorf("%w: boot device %q (pxe, disk, bios, none)", bmc.ErrUnsupported, d)
}

// deviceOf names a boot device selector.
func deviceOf(s types.BootDeviceSelector) bmc.BootDevice {
	switch s {
	case types.BootDeviceSelectorNoOverride:
		return bmc.BootNone
	case types.BootDeviceSelectorForcePXE:
		return bmc.BootPXE
	case types.BootDeviceSelectorForceHardDrive, types.BootDeviceSelectorForceHardDriveSafe:
		return bmc.BootDisk
	case types.BootDeviceSelectorForceBIOSSetup:
		return bmc.BootBIOS
	}
	return bmc.BootDevice(fmt.Sprintf("selector-0x%02x", uint8(s)))
}

// overrideOf reads parameter 5 as an override. With trustValid false (the
// BMC reads back only the device, verify level device-only) the valid bit is
// ignored.
func overrideOf(f *types.BootOptionParam_BootFlags, trustValid bool) bmc.BootOverride {
	if trustValid && !f.BootFlagsValid {
		return bmc.BootOverride{Device: bmc.BootNone}
	}
	o := bmc.BootOverride{Device: deviceOf(f.BootDeviceSelector)}
	if o.Device == bmc.BootNone {
		return o
	}
	if trustValid {
		o.Persistent = f.Persist
		o.Mode = bmc.BootModeLegacy
		if f.BIOSBootType == types.BIOSBootTypeEFI {
			o.Mode = bmc.BootModeUEFI
		}
	}
	return o
}

func describe(f *types.BootOptionParam_BootFlags) string {
	valid, persist, efi := 0, 0, 0
	if f.BootFlagsValid {
		valid = 1
	}
	if f.Persist {
		persist = 1
	}
	if f.BIOSBootType == types.BIOSBootTypeEFI {
		efi = 1
	}
	return fmt.Sprintf("device=%s valid=%d persistent=%d efi=%d", deviceOf(f.BootDeviceSelector), valid, persist, efi)
}

// SetBootOverride writes the next-boot override (Set System Boot Options
// parameter 5: valid, one-time or persistent, legacy or EFI, device),
// having first disabled the BMC's 60 s boot-flag timeout (parameter 3,
// "don't clear the valid bit on timeout") unless Options.KeepBootFlagTimeout.
// A BMC without parameter 3 gets a warning in the result, not a failure.
// The override is then read back and checked at the Options.Verify level;
// a mismatch is bmc.ErrReverted, with the read-back in the result.
// BootNone clears the override (valid bit 0).
func (cl *Client) SetBootOverride(ctx context.Context, o bmc.BootOverride) (bmc.BootResult, error) {
	var res bmc.BootResult
	res.Verified = bmc.VerifyOff
	sel, err := selectorOf(o.Device)
	if err != nil {
		return res, &bmc.OpError{Op: "set boot override", BMC: cl.name, Err: err}
	}
	want := &types.BootOptionParam_BootFlags{
		BootFlagsValid:     o.Device != bmc.BootNone,
		Persist:            o.Persistent && o.Device != bmc.BootNone,
		BIOSBootType:       types.BIOSBootType(o.Mode == bmc.BootModeUEFI),
		BootDeviceSelector: sel,
	}
	switch o.Mode {
	case bmc.BootModeUnset, bmc.BootModeLegacy, bmc.BootModeUEFI:
	default:
		return res, &bmc.OpError{Op: "set boot override", BMC: cl.name,
			Err: fmt.Errorf("%w: boot mode %q (legacy, uefi)", bmc.ErrUnsupported, o.Mode)}
	}
	err = cl.op(ctx, "set boot override", func(ctx context.Context) error {
		if !cl.keepBFT && want.BootFlagsValid {
			p3 := &types.BootOptionParam_BMCBootFlagValidBitClear{DontClearOnCommandReceivedTimeout: true}
			if err := cl.c.SetSystemBootOptionsParamFor(ctx, p3); err != nil {
				cc, ok := completionCode(err)
				if !ok || !isUnsupportedCode(cc) {
					return fmt.Errorf("disable the boot-flag timeout (parameter 3): %w", err)
				}
				res.Warnings = append(res.Warnings, fmt.Sprintf(
					"the BMC refused to disable the 60 s boot-flag timeout (boot parameter 3, completion code %#02x): the override expires 60 s after being set", uint8(cc)))
				cl.log.Info("boot-flag timeout not disabled", "bmc", cl.name, "completion_code", fmt.Sprintf("%#02x", uint8(cc)))
			}
		}
		if err := cl.c.SetSystemBootOptionsParamFor(ctx, want); err != nil {
			return fmt.Errorf("write boot flags (parameter 5): %w", err)
		}
		if cl.verify == bmc.VerifyOff {
			return nil
		}
		got := &types.BootOptionParam_BootFlags{}
		if err := cl.c.GetSystemBootOptionsParamFor(ctx, got); err != nil {
			return fmt.Errorf("read back boot flags (parameter 5): %w", err)
		}
		res.ReadBack = overrideOf(got, cl.verify == bmc.VerifyFull)
		if o.Device == bmc.BootNone {
			// A cleared override reads back with the valid bit 0 whatever
			// the device bits say.
			if cl.verify == bmc.VerifyFull && got.BootFlagsValid {
				return fmt.Errorf("%w: wrote no override, read back %s", bmc.ErrReverted, describe(got))
			}
			if cl.verify == bmc.VerifyDeviceOnly && got.BootDeviceSelector != sel {
				return fmt.Errorf("%w: wrote no override, read back %s", bmc.ErrReverted, describe(got))
			}
			res.ReadBack = bmc.BootOverride{Device: bmc.BootNone}
			res.Verified = cl.verify
			return nil
		}
		ok := got.BootDeviceSelector == want.BootDeviceSelector
		if cl.verify == bmc.VerifyFull {
			ok = ok && got.BootFlagsValid && got.Persist == want.Persist
			if o.Mode != bmc.BootModeUnset {
				ok = ok && got.BIOSBootType == want.BIOSBootType
			}
		}
		if !ok && cl.verify == bmc.VerifyFull && got.BootDeviceSelector == want.BootDeviceSelector && !got.BootFlagsValid {
			// Only the valid bit is off: the BMC stores the device
			// alone (docs/bmc.md, ipmi_sim).
			return fmt.Errorf("%w: %w: wrote %s, read back %s", bmc.ErrReverted, bmc.ErrDeviceOnly, describe(want), describe(got))
		}
		if !ok {
			return fmt.Errorf("%w: wrote %s, read back %s (verify %s)", bmc.ErrReverted, describe(want), describe(got), cl.verify)
		}
		res.Verified = cl.verify
		return nil
	})
	if err != nil && !errors.Is(err, bmc.ErrReverted) {
		res.ReadBack = bmc.BootOverride{}
	}
	return res, err
}

// BootOverride reads the override in effect (parameter 5). A clear valid bit
// reads as BootNone — except at verify level device-only, for BMCs that read
// back only the device selector (ipmi_sim), where the valid bit is ignored.
func (cl *Client) BootOverride(ctx context.Context) (bmc.BootOverride, error) {
	var o bmc.BootOverride
	err := cl.op(ctx, "read boot override", func(ctx context.Context) error {
		got := &types.BootOptionParam_BootFlags{}
		if err := cl.c.GetSystemBootOptionsParamFor(ctx, got); err != nil {
			return err
		}
		o = overrideOf(got, cl.verify != bmc.VerifyDeviceOnly)
		return nil
	})
	return o, err
}
