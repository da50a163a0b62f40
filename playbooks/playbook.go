// Package playbooks holds reprov's per-board strategies: which paths a
// reinstall takes and in which order, per-step timeouts, the power action,
// the boot mode, whether a detected ignored boot override escalates to the
// in-band path, what the in-band step wipes, what the landing endpoint boots,
// and the hooks run on the controller before and after each node.
//
// Playbooks are YAML. The built-ins (default, hp-dl360-g7, uefi-generic) are
// embedded in the binary; operators add or override them with files in a
// directory. Every file is parsed with positions, so every problem names its
// file and line, and one run reports all problems of all files
// (docs/playbooks.md).
package playbooks

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DefaultName is the playbook used by nodes that name none.
const DefaultName = "default"

// Path is one way of making a node boot from the network.
type Path string

const (
	// PathOOB is the out-of-band path: a one-time PXE boot override through
	// the BMC, then the power action.
	PathOOB Path = "oob"
	// PathInband is the in-band path over SSH: identify the node, wipe its
	// boot sector (or set UEFI BootNext), set the next boot to PXE, reboot.
	PathInband Path = "inband"
)

// PowerAction is how the out-of-band path restarts a node that is on. A
// node that is off is always powered on.
type PowerAction string

const (
	// PowerCycle is a chassis power cycle (IPMI "cycle", Redfish PowerCycle).
	PowerCycle PowerAction = "cycle"
	// PowerReset is a hard reset without removing power (IPMI "reset",
	// Redfish ForceRestart).
	PowerReset PowerAction = "reset"
	// PowerOffOn is power off, wait until the BMC reports off, power on: for
	// BMCs whose cycle or reset is unreliable.
	PowerOffOn PowerAction = "off-on"
)

// BootMode is the firmware boot mode requested with the boot override.
type BootMode string

const (
	// BootLegacy is BIOS (legacy) PXE.
	BootLegacy BootMode = "legacy"
	// BootUEFI is UEFI network boot.
	BootUEFI BootMode = "uefi"
	// BootNode takes the mode from the node's inventory entry (boot.mode),
	// legacy when the node does not say.
	BootNode BootMode = "node"
)

// BootSectorWipe is what the in-band step zeroes on the boot disk of a node
// whose running OS booted in legacy mode (and on UEFI nodes when
// WipePolicy.UEFI is UEFIWipe). The sectors are saved before the write.
type BootSectorWipe string

const (
	// WipeNone zeroes nothing: the in-band step only sets the next boot and
	// reboots (for boards that honour an in-band force_pxe).
	WipeNone BootSectorWipe = "none"
	// WipeMBR zeroes sector 0 (boot code and partition table).
	WipeMBR BootSectorWipe = "mbr"
	// WipeMBRGPT zeroes sector 0 and, on a GPT disk, both GPT headers
	// (primary at LBA 1, backup at the last LBA).
	WipeMBRGPT BootSectorWipe = "mbr+gpt"
)

// UEFIHandling is what the in-band step does on a node whose running OS
// booted in UEFI mode, where zeroing sector 0 does not stop the firmware
// from booting its NVRAM entries.
type UEFIHandling string

const (
	// UEFIBootNext sets BootNext to the network boot entry and writes
	// nothing to the disk.
	UEFIBootNext UEFIHandling = "bootnext"
	// UEFIWipe zeroes what WipePolicy.BootSector says and also sets
	// BootNext to the network boot entry.
	UEFIWipe UEFIHandling = "wipe"
)

// Playbook is one per-board strategy. A loaded Playbook is complete: every
// default is applied and every field validated. Playbooks returned by a Set
// are shared; use Clone before changing one.
type Playbook struct {
	// Name is what nodes reference in their inventory entry (playbook: NAME).
	Name string `json:"name"`
	// Description is free text for operators.
	Description string `json:"description,omitempty"`
	// Extends names the playbook this one was derived from, if any.
	Extends string `json:"extends,omitempty"`
	// Paths are tried in this order. The next path is taken when one cannot
	// be carried out (oob: no BMC, BMC unreachable or refusing the override
	// or power action; inband: SSH unreachable). Never after an identity
	// mismatch, which stops the node. Each path runs at most once per run.
	Paths []Path `json:"paths"`
	// Timeouts bound each step.
	Timeouts Timeouts `json:"timeouts"`
	// PowerAction is how the out-of-band path restarts a running node.
	PowerAction PowerAction `json:"power_action"`
	// BootMode is the boot mode of the boot override.
	BootMode BootMode `json:"boot_mode"`
	// Escalate: when, after an out-of-band attempt, the old OS answers SSH
	// again with a new boot id (the board ignored the override), run the
	// in-band path. Only valid when Paths contains PathInband. With false
	// the node fails with that evidence.
	Escalate bool `json:"escalate"`
	// Wipe is what the in-band step does to the boot disk.
	Wipe WipePolicy `json:"wipe"`
	// Install is what the landing endpoint's iPXE script boots for nodes
	// of this playbook. Zero means the endpoint's configured default.
	Install InstallProfile `json:"install"`
	// PreHooks run on the controller, in order, after the prechecks passed
	// and before the first change to the node; the first that fails stops
	// the node (the rest are skipped).
	PreHooks []Hook `json:"pre_hooks,omitempty"`
	// PostHooks run on the controller, in order, for every node whose
	// pre-hooks ran, once its result is known (REPROV_RESULT landed or
	// failed); their failure is recorded, not fatal.
	PostHooks []Hook `json:"post_hooks,omitempty"`
	// Source is where the playbook is defined (the line of its document).
	Source Position `json:"source"`
	// Overrides is where the built-in playbook of the same name is defined,
	// when this operator playbook replaces it; nil otherwise.
	Overrides *Position `json:"overrides,omitempty"`
}

// Timeouts bound the steps of one node's reinstall (docs/architecture.md).
type Timeouts struct {
	// Precheck bounds all read-only checks: BMC reachable, credentials,
	// power state, SSH identify.
	Precheck time.Duration
	// OOBBoot bounds setting and reading back the one-time boot override.
	OOBBoot time.Duration
	// Power bounds the power action until the BMC reports the new state.
	Power time.Duration
	// WaitLanding is how long after the power action or the in-band reboot
	// the node has to land on the netboot server.
	WaitLanding time.Duration
	// Inband bounds the in-band step over SSH: identify, resolve the disk,
	// save and wipe, set the next boot.
	Inband time.Duration
	// Reboot is how long after the in-band reboot command the old OS has
	// to go away (SSH stops answering).
	Reboot time.Duration
}

// MarshalJSON writes the timeouts with the schema's keys as duration strings.
func (t Timeouts) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]string{
		"precheck":     formatDuration(t.Precheck),
		"oob_boot":     formatDuration(t.OOBBoot),
		"power":        formatDuration(t.Power),
		"wait_landing": formatDuration(t.WaitLanding),
		"inband":       formatDuration(t.Inband),
		"reboot":       formatDuration(t.Reboot),
	})
}

// formatDuration writes d as an operator would: "2m", "1h30m", "90s".
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// WipePolicy is what the in-band step does to the boot disk.
type WipePolicy struct {
	// BootSector is what is zeroed on a legacy-booted node.
	BootSector BootSectorWipe `json:"boot_sector"`
	// UEFI is what is done on a UEFI-booted node.
	UEFI UEFIHandling `json:"uefi"`
}

// InstallProfile is what the landing endpoint tells iPXE to boot. The URLs
// are absolute http, https or tftp URLs; Cmdline is the kernel command line,
// e.g. "root=live:… rd.live.ram=1" or "boot=live toram" for a root that runs
// from tmpfs. None of them contains whitespace-breaking control characters,
// so they can be written into an iPXE script as they are.
type InstallProfile struct {
	// Kernel is the kernel URL.
	Kernel string `json:"kernel,omitempty"`
	// Initrds are the initrd URLs, in order.
	Initrds []string `json:"initrd,omitempty"`
	// Cmdline is the kernel command line.
	Cmdline string `json:"cmdline,omitempty"`
}

// IsZero reports whether the profile is empty (the endpoint's default applies).
func (p InstallProfile) IsZero() bool {
	return p.Kernel == "" && len(p.Initrds) == 0 && p.Cmdline == ""
}

// Hook is a command run on the controller for one node. Exactly one of Argv
// and Shell is set.
type Hook struct {
	// Name labels the hook in events and logs.
	Name string
	// Argv is executed directly (no shell, no variable expansion); Argv[0]
	// is looked up in PATH unless it contains a slash.
	Argv []string
	// Shell is a script run with /bin/sh -c.
	Shell string
	// Timeout bounds the run; the command's process group is killed then.
	Timeout time.Duration
	// Dir is the working directory: the directory of the playbook file for
	// operator files loaded from disk, empty (the controller's) otherwise.
	// A relative Argv[0] with a slash is resolved against it.
	Dir string
	// Pos is where the hook is defined.
	Pos Position
}

// Command returns the argv that RunHook executes.
func (h Hook) Command() []string {
	if h.Shell != "" {
		return []string{"/bin/sh", "-c", h.Shell}
	}
	return slices.Clone(h.Argv)
}

// String returns the hook's name.
func (h Hook) String() string { return h.Name }

// MarshalJSON writes the hook with its timeout as a duration string.
func (h Hook) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Name    string   `json:"name"`
		Argv    []string `json:"argv,omitempty"`
		Shell   string   `json:"shell,omitempty"`
		Timeout string   `json:"timeout"`
		Source  Position `json:"source"`
	}{h.Name, h.Argv, h.Shell, formatDuration(h.Timeout), h.Pos})
}

// Position is a place in a playbook file.
type Position struct {
	// File is the file as given to the loader; for built-ins
	// "builtin/NAME.yaml".
	File string
	// Line is 1-based; 0 means the whole file.
	Line int
	// Builtin reports whether File is embedded in reprov.
	Builtin bool
}

// String returns "file:line" ("file" when Line is 0); built-ins read
// "builtin:NAME.yaml:line".
func (p Position) String() string {
	f := p.File
	if p.Builtin {
		f = "builtin:" + trimBuiltinDir(f)
	}
	if p.Line <= 0 {
		return f
	}
	return f + ":" + strconv.Itoa(p.Line)
}

// MarshalText writes String.
func (p Position) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// Uses reports whether path is one of the playbook's paths.
func (p *Playbook) Uses(path Path) bool { return slices.Contains(p.Paths, path) }

// BootModeFor returns the boot mode for a node whose inventory boot.mode is
// nodeMode: the playbook's own mode, or for BootNode the node's ("uefi" is
// UEFI, anything else legacy).
func (p *Playbook) BootModeFor(nodeMode string) BootMode {
	if p.BootMode != BootNode {
		return p.BootMode
	}
	if BootMode(nodeMode) == BootUEFI {
		return BootUEFI
	}
	return BootLegacy
}

// Clone returns a deep copy that can be changed without affecting the Set.
func (p *Playbook) Clone() *Playbook {
	c := *p
	c.Paths = slices.Clone(p.Paths)
	c.Install.Initrds = slices.Clone(p.Install.Initrds)
	c.PreHooks = cloneHooks(p.PreHooks)
	c.PostHooks = cloneHooks(p.PostHooks)
	if p.Overrides != nil {
		o := *p.Overrides
		c.Overrides = &o
	}
	return &c
}

// String returns "NAME (FILE:LINE)".
func (p *Playbook) String() string { return fmt.Sprintf("%s (%s)", p.Name, p.Source) }

func cloneHooks(hs []Hook) []Hook {
	if hs == nil {
		return nil
	}
	out := make([]Hook, len(hs))
	for i, h := range hs {
		h.Argv = slices.Clone(h.Argv)
		out[i] = h
	}
	return out
}
