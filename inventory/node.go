// Package inventory holds reprov's model of the fleet: nodes with their
// racks, labels, BMC and SSH endpoints, identity facts and credential
// references; the loaders for the native format (YAML, TOML, JSON) and for
// what operators already keep (Ansible inventories, NetBox CSV exports); and
// node selection.
//
// The package imports nothing else of reprov.
package inventory

import "time"

// Inventory is a loaded, validated fleet.
type Inventory struct {
	// Source is the file the inventory was read from.
	Source string `json:"source,omitempty"`
	// Nodes are in file order, defaults already merged.
	Nodes []Node `json:"nodes"`
}

// Node is one machine reprov can reinstall. Defaults have been merged in.
type Node struct {
	Name   string            `json:"name"`
	Rack   string            `json:"rack,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	BMC    BMC               `json:"bmc"`
	SSH    SSH               `json:"ssh"`
	MACs   []string          `json:"macs,omitempty"`
	Serial string            `json:"serial,omitempty"`
	// GUID is the system GUID (SMBIOS system UUID) in lower-case
	// 8-4-4-4-12 form, an identity fact the BMC reports (IPMI Get System
	// GUID, Redfish UUID).
	GUID     string `json:"guid,omitempty"`
	Boot     Boot   `json:"boot"`
	Playbook string `json:"playbook,omitempty"`
	// SkipIdentityCheck opts the node out of the in-band identity interlock
	// (the identity interlock, docs/inband.md). Plan output shows it.
	SkipIdentityCheck bool `json:"skip_identity_check,omitempty"`

	// Pos is where the node is defined (file and line of its entry).
	Pos Position `json:"-"`
}

// Position is a place in an inventory file.
type Position struct {
	File string
	Line int
}

// BMC is a node's out-of-band controller.
type BMC struct {
	// Address in metal3's URL conventions: ipmi://host[:port],
	// redfish://…, redfish+http://…, redfish+https://host[:port]/redfish/v1/Systems/ID,
	// or a bare host[:port] meaning "detect".
	Address  string     `json:"address,omitempty"`
	Username string     `json:"username,omitempty"`
	Password Secret     `json:"password,omitempty"`
	Options  BMCOptions `json:"options,omitempty"`
}

// BMCOptions are per-node knobs for talking to a BMC. Zero values mean the
// documented defaults (docs/bmc.md).
type BMCOptions struct {
	// CipherSuites lists the IPMI cipher suites to try, in order (default 17, 3).
	CipherSuites []int `json:"cipher_suites,omitempty"`
	// Privilege is the IPMI session privilege: user, operator or administrator (default).
	Privilege string `json:"privilege,omitempty"`
	// AllowInsecureIPMI permits cipher suite 0 and IPMI 1.5 (with a warning).
	AllowInsecureIPMI bool `json:"allow_insecure_ipmi,omitempty"`
	// InsecureTLS skips Redfish TLS verification.
	InsecureTLS bool `json:"insecure_tls,omitempty"`
	// CAFile verifies the Redfish TLS certificate against this CA bundle.
	CAFile string `json:"ca_file,omitempty"`
	// BootFlagTimeout is "disable" (default: disable the IPMI 60 s boot-flag
	// timer) or "keep" (for BMCs that abort the boot when it is sent).
	BootFlagTimeout string `json:"boot_flag_timeout,omitempty"`
	// Verify is the boot-override read-back level: full (default), device-only, off.
	Verify string `json:"verify,omitempty"`
	// RedfishSession uses a Redfish session instead of basic auth.
	RedfishSession bool `json:"redfish_session,omitempty"`
	// BootModeOverride controls sending Redfish BootSourceOverrideMode:
	// auto (default: only where the BMC lists it), always, never.
	BootModeOverride string `json:"boot_mode_override,omitempty"`
	// MinInterval is the minimum time between two commands to this BMC.
	MinInterval time.Duration `json:"min_interval,omitempty"`
	// MaxConcurrent is how many commands may be in flight to this BMC (default 1).
	MaxConcurrent int `json:"max_concurrent,omitempty"`
	// Timeout bounds one BMC exchange (default 5s).
	Timeout time.Duration `json:"timeout,omitempty"`
	// Retries is how many times a timed-out or busy exchange is retried (default 3).
	Retries int `json:"retries,omitempty"`
}

// SSH is how reprov reaches the node's running OS for the in-band step.
type SSH struct {
	Address string `json:"address,omitempty"`
	Port    int    `json:"port,omitempty"`
	User    string `json:"user,omitempty"`
	// Identity is a private key file. With none, ssh-agent is used.
	Identity string `json:"identity,omitempty"`
	// KnownHosts is the known_hosts file to check host keys against.
	KnownHosts string `json:"known_hosts,omitempty"`
	// HostKeyPolicy is strict (default) or accept-new.
	HostKeyPolicy string `json:"host_key_policy,omitempty"`
	// JumpHost is user@host[:port] of a bastion to dial through.
	JumpHost string `json:"jump_host,omitempty"`
	// Password enables password authentication; off unless set.
	Password Secret `json:"password,omitempty"`
	// Agent is how the in-band steps run on the node: push (default: a slim
	// reprov-agent binary, checksum verified, removed afterwards) or
	// commands (POSIX commands only, for sites that forbid copying binaries).
	Agent string `json:"agent,omitempty"`
}

// Boot is how the node boots.
type Boot struct {
	// Mode is legacy or uefi.
	Mode string `json:"mode,omitempty"`
	// Disk is the boot disk to wipe in-band (a /dev path, by-path or by-id link).
	// Empty means the disk that holds /boot or /.
	Disk string `json:"disk,omitempty"`
}
