package steps

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/bougou/go-ipmi/pkg/types"

	"github.com/reprov/reprov/agent/inband/host"
)

// Verify levels of a boot-override read-back (inventory bmc.options.verify).
const (
	VerifyFull       = "full"
	VerifyDeviceOnly = "device-only"
	VerifyOff        = "off"
)

// NextBootOptions are the inputs of NextBoot.
type NextBootOptions struct {
	// Mode is legacy, uefi, or "" for what the node booted with.
	Mode string
	// MACs are the inventory's NICs: the UEFI network entry on one of them wins.
	MACs []string
	// Verify is the read-back level: full (default), device-only, off.
	Verify string
	// BootFlagTimeout is disable (default: ask the BMC not to clear the
	// flags after 60 s) or keep.
	BootFlagTimeout string
	// NoModprobe leaves kernel modules alone.
	NoModprobe bool
	// DryRun says what would be done without doing it.
	DryRun bool
	// BeforeWrite runs with the plan right before the first write.
	BeforeWrite func(*NextBootResult) error
}

// NextBootResult is the result of next-boot.
type NextBootResult struct {
	Version int    `json:"version"`
	DryRun  bool   `json:"dry_run,omitempty"`
	Target  string `json:"target"`
	// Mode is legacy or uefi; ModeReason says how it was chosen.
	Mode       string          `json:"mode"`
	ModeReason string          `json:"mode_reason"`
	EFI        *EFIBootResult  `json:"efi,omitempty"`
	IPMI       *IPMIBootResult `json:"ipmi"`
}

// EFIBootResult is the UEFI half of next-boot: BootNext.
type EFIBootResult struct {
	Entry        EFIEntry `json:"entry"`
	Commands     []string `json:"commands"`
	BootNext     string   `json:"boot_next,omitempty"`
	Verified     bool     `json:"verified"`
	PreviousNext string   `json:"previous_boot_next,omitempty"`
}

// IPMIBootResult is the IPMI half of next-boot: boot flags force PXE.
type IPMIBootResult struct {
	// Via is "ipmitool" or "open" (reprov's own in-band IPMI).
	Via           string   `json:"via"`
	Commands      []string `json:"commands"`
	LoadedModules []string `json:"loaded_modules,omitempty"`
	// Requested is what was set, ReadBack what the BMC reports after.
	Requested BootFlags  `json:"requested"`
	ReadBack  *BootFlags `json:"read_back,omitempty"`
	// TimerDisabled: the BMC accepted "don't clear the flags after 60 s".
	TimerDisabled bool   `json:"timer_disabled"`
	Note          string `json:"note,omitempty"`
	VerifyLevel   string `json:"verify_level"`
	Verified      bool   `json:"verified"`
	// Error is set when the IPMI half failed but the step did not (UEFI,
	// where BootNext is what counts).
	Error string `json:"error,omitempty"`
}

// NextBoot makes the next boot a network boot, in-band: legacy — IPMI boot
// flags force PXE through /dev/ipmi0 (ipmitool where the node has it,
// reprov's own open-interface client otherwise), read back to verify;
// UEFI — efibootmgr BootNext to the network entry, read back, plus the
// IPMI flags with the EFI bit.
func NextBoot(ctx context.Context, h host.Host, opts NextBootOptions) (*NextBootResult, error) {
	res := &NextBootResult{Version: ProtocolVersion, DryRun: opts.DryRun, Target: "pxe"}
	switch opts.Mode {
	case "legacy", "uefi":
		res.Mode, res.ModeReason = opts.Mode, "configured boot.mode"
	case "", "auto":
		res.Mode, res.ModeReason = "legacy", "no /sys/firmware/efi: the node booted in legacy (BIOS) mode"
		if fi, err := h.Stat(ctx, "/sys/firmware/efi"); err == nil && fi.Mode.IsDir() {
			res.Mode, res.ModeReason = "uefi", "/sys/firmware/efi exists: the node booted in UEFI mode"
		}
	default:
		return nil, fmt.Errorf("boot mode %q: want legacy, uefi or auto", opts.Mode)
	}
	verify := opts.Verify
	if verify == "" {
		verify = VerifyFull
	}
	if verify != VerifyFull && verify != VerifyDeviceOnly && verify != VerifyOff {
		return nil, fmt.Errorf("verify level %q: want full, device-only or off", verify)
	}
	efi := res.Mode == "uefi"

	// Plan the UEFI half: pick the entry (reading only).
	if efi {
		if !hasTool(ctx, h, "efibootmgr") {
			return nil, fmt.Errorf("%w: the node boots UEFI but has no efibootmgr to set BootNext", ErrNoNetworkEntry)
		}
		out, err := h.Run(ctx, "efibootmgr", "-v")
		if err != nil {
			return nil, fmt.Errorf("efibootmgr -v: %w", err)
		}
		list := ParseEFIBootMgr(string(out))
		e, ok := list.NetworkEntry(opts.MACs)
		if !ok {
			var have []string
			for _, x := range list.Entries {
				have = append(have, "Boot"+x.Num+" "+x.Description)
			}
			return nil, fmt.Errorf("%w in efibootmgr -v (entries: %s)", ErrNoNetworkEntry, strings.Join(have, "; "))
		}
		res.EFI = &EFIBootResult{Entry: e, Commands: []string{"efibootmgr -n " + e.Num}, PreviousNext: list.BootNext}
	}

	// Plan the IPMI half.
	ib := &IPMIBootResult{VerifyLevel: verify,
		Requested: BootFlags{Valid: true, EFI: efi, Device: "pxe"}}
	req := &types.BootOptionParam_BootFlags{BootFlagsValid: true, BIOSBootType: types.BIOSBootType(efi),
		BootDeviceSelector: types.BootDeviceSelectorForcePXE}
	ib.Requested.Raw = bootFlagsOf(req).Raw
	res.IPMI = ib
	useTool := hasTool(ctx, h, "ipmitool")
	var toolCmds [][]string
	if useTool {
		ib.Via = "ipmitool"
		if opts.BootFlagTimeout != "keep" {
			toolCmds = append(toolCmds, ipmitoolDisableTimer)
		}
		if efi {
			toolCmds = append(toolCmds, ipmitoolForcePXEEFI)
		} else {
			toolCmds = append(toolCmds, ipmitoolForcePXE)
		}
		toolCmds = append(toolCmds, ipmitoolGetFlags)
		for _, c := range toolCmds {
			ib.Commands = append(ib.Commands, "ipmitool "+strings.Join(c, " "))
		}
	} else {
		ib.Via = "open"
		if opts.BootFlagTimeout != "keep" {
			ib.Commands = append(ib.Commands, "IPMI Set System Boot Options param 3 = 0x08 (don't clear the flags after 60 s)")
		}
		ib.Commands = append(ib.Commands,
			fmt.Sprintf("IPMI Set System Boot Options param 5 = %s (valid, next boot only, %s, force PXE)", ib.Requested.Raw, map[bool]string{true: "EFI", false: "legacy"}[efi]),
			"IPMI Get System Boot Options param 5 (read back)")
	}
	if !ipmiDevicePresent(ctx, h) {
		ib.Commands = append([]string{"modprobe ipmi_si", "modprobe ipmi_devintf"}, ib.Commands...)
	}
	if opts.DryRun {
		return res, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if opts.BeforeWrite != nil {
		if err := opts.BeforeWrite(res); err != nil {
			return nil, err
		}
	}

	// UEFI: BootNext, read back.
	if efi {
		if _, err := h.Run(ctx, "efibootmgr", "-n", res.EFI.Entry.Num); err != nil {
			return res, fmt.Errorf("efibootmgr -n %s: %w", res.EFI.Entry.Num, err)
		}
		out, err := h.Run(ctx, "efibootmgr")
		if err != nil {
			return res, fmt.Errorf("efibootmgr (read back): %w", err)
		}
		res.EFI.BootNext = ParseEFIBootMgr(string(out)).BootNext
		if !strings.EqualFold(res.EFI.BootNext, res.EFI.Entry.Num) {
			return res, fmt.Errorf("%w: BootNext reads back %q, want %s", ErrVerifyFailed, res.EFI.BootNext, res.EFI.Entry.Num)
		}
		res.EFI.Verified = true
	}

	// IPMI: boot flags, read back.
	err := setIPMIBootFlags(ctx, h, ib, useTool, toolCmds, req, !opts.NoModprobe, opts.BootFlagTimeout != "keep")
	if err != nil {
		if efi && res.EFI.Verified {
			ib.Error = err.Error()
			return res, nil
		}
		return res, err
	}
	return res, nil
}

func setIPMIBootFlags(ctx context.Context, h host.Host, ib *IPMIBootResult, useTool bool, toolCmds [][]string,
	req *types.BootOptionParam_BootFlags, load, disableTimer bool) error {
	loaded, err := ensureIPMIDevice(ctx, h, load)
	ib.LoadedModules = loaded
	if err != nil && !useTool {
		return err
	}
	var back BootFlags
	if useTool {
		for _, c := range toolCmds[:len(toolCmds)-1] {
			_, err := h.Run(ctx, "ipmitool", c...)
			switch {
			case err == nil && c[0] == "raw" && c[3] == "0x03":
				ib.TimerDisabled = true
			case err != nil && c[0] == "raw" && c[3] == "0x03":
				ib.Note = "the BMC refused to disable the 60 s boot-flag timer (" + firstLine(err.Error()) + "); the reboot follows within seconds"
			case err != nil:
				// ipmitool exits 0 on some failures and non-zero on others:
				// the read-back below is what decides.
				ib.Note = strings.TrimSpace(ib.Note + " ipmitool " + strings.Join(c, " ") + ": " + firstLine(err.Error()))
			}
		}
		out, err := h.Run(ctx, "ipmitool", ipmitoolGetFlags...)
		if err != nil {
			return fmt.Errorf("read back boot flags (ipmitool %s): %w", strings.Join(ipmitoolGetFlags, " "), err)
		}
		back, err = parseBootParamData(string(out))
		if err != nil {
			return fmt.Errorf("read back boot flags: %w", err)
		}
	} else {
		c, err := h.IPMI(ctx)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrNoIPMI, err)
		}
		defer c.Close(context.WithoutCancel(ctx))
		if disableTimer {
			if err := c.SetSystemBootOptionsParamFor(ctx, &types.BootOptionParam_BMCBootFlagValidBitClear{DontClearOnCommandReceivedTimeout: true}); err != nil {
				ib.Note = "the BMC refused to disable the 60 s boot-flag timer (" + firstLine(err.Error()) + "); the reboot follows within seconds"
			} else {
				ib.TimerDisabled = true
			}
		}
		if err := c.SetSystemBootOptionsParamFor(ctx, req); err != nil {
			return fmt.Errorf("set boot flags: %w", err)
		}
		got := &types.BootOptionParam_BootFlags{}
		if err := c.GetSystemBootOptionsParamFor(ctx, got); err != nil {
			return fmt.Errorf("read back boot flags: %w", err)
		}
		back = bootFlagsOf(got)
	}
	ib.ReadBack = &back
	want := ib.Requested
	var bad []string
	switch ib.VerifyLevel {
	case VerifyOff:
		ib.Note = strings.TrimSpace(ib.Note + " read-back not checked (verify: off)")
		return nil
	case VerifyDeviceOnly:
		if back.Device != want.Device {
			bad = append(bad, fmt.Sprintf("device %s, want %s", back.Device, want.Device))
		}
	default:
		if back.Device != want.Device {
			bad = append(bad, fmt.Sprintf("device %s, want %s", back.Device, want.Device))
		}
		if !back.Valid {
			bad = append(bad, "valid bit clear")
		}
		if back.EFI != want.EFI {
			bad = append(bad, fmt.Sprintf("EFI bit %t, want %t", back.EFI, want.EFI))
		}
		if back.Persistent {
			bad = append(bad, "persistent, want next boot only")
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: boot flags read back %s: %s", ErrVerifyFailed, back.Raw, strings.Join(bad, ", "))
	}
	ib.Verified = true
	return nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// RebootOptions are the inputs of Reboot.
type RebootOptions struct {
	// Delay is how long after the step returns the reboot starts, so the
	// answer gets out before the link drops.
	Delay       time.Duration
	DryRun      bool
	BeforeWrite func(*RebootResult) error
}

// RebootResult is the result of reboot.
type RebootResult struct {
	Version      int     `json:"version"`
	DryRun       bool    `json:"dry_run,omitempty"`
	Method       string  `json:"method"`
	DelaySeconds float64 `json:"delay_seconds"`
	// BootID is the boot id before the reboot: a node that answers with
	// the same one did not reboot, with another one booted again.
	BootID string `json:"boot_id,omitempty"`
}

// DefaultRebootDelay leaves time for the answer to reach the controller.
const DefaultRebootDelay = 2 * time.Second

// Reboot reboots the node, detached: systemctl reboot, then reboot -f,
// then sysrq 'b', after Delay.
func Reboot(ctx context.Context, h host.Host, opts RebootOptions) (*RebootResult, error) {
	if opts.Delay <= 0 {
		opts.Delay = DefaultRebootDelay
	}
	res := &RebootResult{Version: ProtocolVersion, DryRun: opts.DryRun, DelaySeconds: opts.Delay.Seconds(),
		Method: "detached: " + host.RebootCommand(opts.Delay)}
	if b, err := h.ReadFile(ctx, "/proc/sys/kernel/random/boot_id"); err == nil {
		res.BootID = strings.TrimSpace(string(b))
	}
	if opts.DryRun {
		return res, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if opts.BeforeWrite != nil {
		if err := opts.BeforeWrite(res); err != nil {
			return nil, err
		}
	}
	info, err := h.Reboot(ctx, opts.Delay)
	if err != nil {
		return nil, fmt.Errorf("reboot: %w", err)
	}
	res.Method = info.Method
	return res, nil
}
