// Package bmc is reprov's out-of-band half: small capability interfaces for
// a node's baseboard management controller (power, boot override, identity),
// in the spirit of bmclib's one-method interfaces, and the wrappers that add
// retry, per-BMC rate and concurrency limits and dry-run around any
// implementation. Implementations live in bmc/ipmi (go-ipmi, RMCP+) and
// bmc/redfish (gofish).
//
// The package imports nothing else of reprov.
package bmc

import (
	"context"
	"time"
)

// PowerState is a node's power as its BMC reports it.
type PowerState string

// Power states. PoweringOn and PoweringOff are transitions a Redfish BMC
// reports while the machine changes state; IPMI reports only on and off.
const (
	PowerOn          PowerState = "on"
	PowerOff         PowerState = "off"
	PowerPoweringOn  PowerState = "powering-on"
	PowerPoweringOff PowerState = "powering-off"
	PowerUnknown     PowerState = "unknown"
)

// Transitional reports whether s is a transition (powering on or off):
// neither on nor off yet.
func (s PowerState) Transitional() bool { return s == PowerPoweringOn || s == PowerPoweringOff }

// PowerAction is a power change.
type PowerAction string

// Power actions. Cycle and reset of a node that is off either power it on
// (Redfish, and BMCs that allow it) or fail with ErrPoweredOff having
// changed nothing (IPMI BMCs that refuse them): see PowerSetter.
const (
	ActionOn    PowerAction = "on"
	ActionOff   PowerAction = "off"
	ActionCycle PowerAction = "cycle"
	ActionReset PowerAction = "reset"
)

// BootDevice is the device a boot override points at.
type BootDevice string

// Boot devices. BootNone means no override is active.
const (
	BootNone BootDevice = "none"
	BootPXE  BootDevice = "pxe"
	BootDisk BootDevice = "disk"
	BootBIOS BootDevice = "bios"
)

// BootMode is the firmware boot type an override asks for.
type BootMode string

// Boot modes. BootModeUnset leaves the BMC's choice alone.
const (
	BootModeUnset  BootMode = ""
	BootModeLegacy BootMode = "legacy"
	BootModeUEFI   BootMode = "uefi"
)

// BootOverride is a next-boot device override.
type BootOverride struct {
	Device     BootDevice `json:"device"`
	Persistent bool       `json:"persistent"`
	Mode       BootMode   `json:"mode,omitempty"`
}

// VerifyLevel is how much of a written boot override was read back and checked.
type VerifyLevel string

// Verification levels (per-node option "verify").
const (
	VerifyFull       VerifyLevel = "full"
	VerifyDeviceOnly VerifyLevel = "device-only"
	VerifyOff        VerifyLevel = "off"
)

// BootResult is what SetBootOverride did and what it proved.
type BootResult struct {
	// Verified is the level that was actually checked against the read-back.
	Verified VerifyLevel `json:"verified"`
	// ReadBack is the override as read after writing (zero when VerifyOff).
	ReadBack BootOverride `json:"read_back"`
	// Warnings are non-fatal findings, e.g. the BMC does not support
	// disabling the boot-flag timeout.
	Warnings []string `json:"warnings,omitempty"`
}

// Identity is what a BMC tells about itself and its system.
type Identity struct {
	Protocol     string   `json:"protocol"`
	Vendor       string   `json:"vendor,omitempty"`
	Model        string   `json:"model,omitempty"`
	Serial       string   `json:"serial,omitempty"`
	Firmware     string   `json:"firmware,omitempty"`
	BMCMAC       string   `json:"bmc_mac,omitempty"`
	BMCIP        string   `json:"bmc_ip,omitempty"`
	CipherSuite  int      `json:"cipher_suite,omitempty"`
	SystemPath   string   `json:"system_path,omitempty"`
	PowerActions []string `json:"power_actions,omitempty"`
}

// PowerStateGetter reads power state.
type PowerStateGetter interface {
	PowerState(ctx context.Context) (PowerState, error)
}

// PowerSetter changes power state. ActionCycle and ActionReset of a node
// that is off either power it on or fail with an error wrapping
// ErrPoweredOff, having changed nothing; a caller that wants the node
// running then sends ActionOn (recording that intent first). Neither reads
// the power state beforehand where the protocol does not need it: IPMI
// reads it only when the BMC refuses the action.
type PowerSetter interface {
	SetPower(ctx context.Context, action PowerAction) error
}

// BootOverrideSetter sets the next-boot override and verifies it by reading back.
type BootOverrideSetter interface {
	SetBootOverride(ctx context.Context, o BootOverride) (BootResult, error)
}

// BootOverrideGetter reads the current boot override.
type BootOverrideGetter interface {
	BootOverride(ctx context.Context) (BootOverride, error)
}

// Identifier reads the BMC's identity.
type Identifier interface {
	Identity(ctx context.Context) (Identity, error)
}

// Client is an open connection to one BMC with every capability. Close
// releases its session; it is safe to call more than once and must be
// called on every path, with a fresh short context after cancellation.
type Client interface {
	PowerStateGetter
	PowerSetter
	BootOverrideSetter
	BootOverrideGetter
	Identifier
	SystemIdentifier
	// Protocol is "ipmi" or "redfish".
	Protocol() string
	Close(ctx context.Context) error
}

// Endpoint is where and how to reach one BMC.
type Endpoint struct {
	// Protocol is "ipmi", "redfish" or "" (detect).
	Protocol string
	// Scheme is "https" or "http" for Redfish.
	Scheme string
	Host   string
	Port   int
	// SystemPath is a Redfish system URI (/redfish/v1/Systems/1); empty
	// means the only system the service lists.
	SystemPath string
	Username   string
	Password   string
	Options    Options
}

// Options are the per-node protocol options (docs/bmc.md).
type Options struct {
	CipherSuites      []int
	Privilege         string
	AllowInsecureIPMI bool
	InsecureTLS       bool
	CAFile            string
	// KeepBootFlagTimeout leaves the IPMI 60 s boot-flag timer alone.
	KeepBootFlagTimeout bool
	Verify              VerifyLevel
	RedfishSession      bool
	// BootModeOverride is auto, always or never.
	BootModeOverride string
	Timeout          time.Duration
	Retries          int
	MinInterval      time.Duration
	MaxConcurrent    int
}
