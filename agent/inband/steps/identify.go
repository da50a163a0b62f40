package steps

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"strings"

	"github.com/reprov/reprov/agent/inband/host"
)

// Identity is what a node says about itself: the result of identify.
type Identity struct {
	Version int `json:"version"`
	// Serial is the DMI product serial; empty when the node cannot tell,
	// and then SerialUnknown says why.
	Serial        string `json:"serial,omitempty"`
	SerialUnknown string `json:"serial_unknown,omitempty"`
	// NICs are the physical network interfaces (lo and virtual ones skipped).
	NICs []NIC `json:"nics"`
	// BootID is the running kernel's boot id: it changes on every boot.
	BootID string `json:"boot_id,omitempty"`
	// Firmware is "uefi" when /sys/firmware/efi exists, else "legacy".
	Firmware string `json:"firmware"`
	// BMC is the node's BMC LAN address, read in-band.
	BMC BMCAddress `json:"bmc"`
}

// NIC is one physical network interface.
type NIC struct {
	Name string `json:"name"`
	MAC  string `json:"mac"`
	// PermanentMAC is the burned-in address of a bonded interface, whose
	// current address is the bond's.
	PermanentMAC string `json:"permanent_mac,omitempty"`
}

// BMCAddress is the BMC's LAN address as the node's in-band IPMI reports it.
type BMCAddress struct {
	Address string `json:"address,omitempty"`
	Channel int    `json:"channel,omitempty"`
	// Via is "ipmitool" or "open" (reprov's own in-band IPMI).
	Via string `json:"via,omitempty"`
	// Unknown says why the address could not be read.
	Unknown string `json:"unknown,omitempty"`
	// LoadedModules lists kernel modules loaded to reach /dev/ipmi0.
	LoadedModules []string `json:"loaded_modules,omitempty"`
}

// MACs returns every address of the node's NICs, lower case, deduplicated.
func (id *Identity) MACs() []string {
	seen := map[string]bool{}
	var out []string
	for _, n := range id.NICs {
		for _, m := range []string{n.MAC, n.PermanentMAC} {
			if m != "" && !seen[m] {
				seen[m] = true
				out = append(out, m)
			}
		}
	}
	return out
}

// IdentifyOptions tune Identify.
type IdentifyOptions struct {
	// NoModprobe leaves kernel modules alone: a BMC address that needs
	// ipmi_si/ipmi_devintf loaded is then unknown.
	NoModprobe bool
}

// Identify reads the node's identity facts. A fact it cannot read is left
// empty with the reason; Identify fails only when ctx is done.
func Identify(ctx context.Context, h host.Host, opts IdentifyOptions) (*Identity, error) {
	id := &Identity{Version: ProtocolVersion}

	serial, why := readSerial(ctx, h)
	id.Serial, id.SerialUnknown = serial, why

	id.NICs = readNICs(ctx, h)

	if b, err := h.ReadFile(ctx, "/proc/sys/kernel/random/boot_id"); err == nil {
		id.BootID = strings.TrimSpace(string(b))
	}

	id.Firmware = "legacy"
	if fi, err := h.Stat(ctx, "/sys/firmware/efi"); err == nil && fi.Mode.IsDir() {
		id.Firmware = "uefi"
	}

	id.BMC = readBMCAddress(ctx, h, !opts.NoModprobe)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return id, nil
}

// placeholderSerials are what firmware writes when nobody set a serial.
var placeholderSerials = map[string]bool{
	"": true, "0": true, "none": true, "n/a": true, "na": true, "not specified": true,
	"not available": true, "not applicable": true, "to be filled by o.e.m.": true,
	"default string": true, "system serial number": true, "chassis serial number": true,
	"0123456789": true, "123456789": true, "serial": true, "unknown": true, "invalid": true,
	"oem": true, "o.e.m.": true, "empty": true,
}

// IsPlaceholderSerial reports whether s is not a real serial number.
func IsPlaceholderSerial(s string) bool {
	t := strings.ToLower(strings.TrimSpace(s))
	if placeholderSerials[t] {
		return true
	}
	if strings.Trim(t, "0") == "" || strings.Trim(t, "f") == "" || strings.Trim(t, "x") == "" || strings.Trim(t, ".- ") == "" {
		return true
	}
	return false
}

func readSerial(ctx context.Context, h host.Host) (serial, why string) {
	b, err := h.ReadFile(ctx, "/sys/class/dmi/id/product_serial")
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", "no DMI product serial on this node"
	case err != nil:
		return "", "DMI product serial not readable: " + err.Error()
	}
	s := strings.TrimSpace(strings.TrimRight(string(b), "\x00"))
	if IsPlaceholderSerial(s) {
		return "", fmt.Sprintf("DMI product serial is a placeholder (%q)", s)
	}
	return s, ""
}

// NormalizeMAC returns a MAC address in lower-case colon form, or "".
func NormalizeMAC(s string) string {
	s = strings.TrimSpace(s)
	if len(s) == 12 && !strings.ContainsAny(s, ":-.") {
		var b strings.Builder
		for i := 0; i < 12; i += 2 {
			if i > 0 {
				b.WriteByte(':')
			}
			b.WriteString(s[i : i+2])
		}
		s = b.String()
	}
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return ""
	}
	if hw.String() == "00:00:00:00:00:00" {
		return ""
	}
	return hw.String()
}

func readNICs(ctx context.Context, h host.Host) []NIC {
	names, err := h.ReadDir(ctx, "/sys/class/net")
	if err != nil {
		return nil
	}
	nics := []NIC{}
	for _, name := range names {
		if name == "lo" || strings.ContainsAny(name, "/") {
			continue
		}
		real, err := h.EvalSymlinks(ctx, "/sys/class/net/"+name)
		if err != nil || strings.Contains(real, "/devices/virtual/") {
			continue
		}
		b, err := h.ReadFile(ctx, "/sys/class/net/"+name+"/address")
		if err != nil {
			continue
		}
		nic := NIC{Name: name, MAC: NormalizeMAC(string(b))}
		if p, err := h.ReadFile(ctx, "/sys/class/net/"+name+"/bonding_slave/perm_hwaddr"); err == nil {
			nic.PermanentMAC = NormalizeMAC(string(p))
		}
		if nic.MAC == "" && nic.PermanentMAC == "" {
			continue
		}
		nics = append(nics, nic)
	}
	return nics
}

// Expected is what the inventory says a node is.
type Expected struct {
	Node   string
	Serial string
	MACs   []string
	// BMCAddresses are the BMC's IP addresses (a name resolved by the caller).
	BMCAddresses []string
	// BMCUnresolved says why the inventory's BMC host gave no address.
	BMCUnresolved string
}

// Fact results.
const (
	FactMatch    = "match"
	FactMismatch = "mismatch"
	FactSkipped  = "skipped"
)

// FactCheck is one identity fact compared.
type FactCheck struct {
	Fact     string `json:"fact"`
	Expected string `json:"expected,omitempty"`
	Found    string `json:"found,omitempty"`
	Result   string `json:"result"`
	Reason   string `json:"reason,omitempty"`
}

// IdentityCheck is the outcome of the identity interlock (docs/security.md).
type IdentityCheck struct {
	Version int         `json:"version"`
	Node    string      `json:"node"`
	Facts   []FactCheck `json:"facts"`
	Matched int         `json:"matched"`
	OK      bool        `json:"ok"`
	// OptedOut is set when the node skips the check (skip_identity_check).
	OptedOut bool `json:"opted_out,omitempty"`
}

// Mismatches returns the facts that did not match.
func (c *IdentityCheck) Mismatches() []FactCheck {
	var out []FactCheck
	for _, f := range c.Facts {
		if f.Result == FactMismatch {
			out = append(out, f)
		}
	}
	return out
}

// Err returns nil when the check passed, else an *IdentityError.
func (c *IdentityCheck) Err() error {
	if c.OK {
		return nil
	}
	return &IdentityError{Check: c}
}

// IdentityError names every mismatch (expected vs found), or says that
// nothing could be compared. It matches ErrIdentityMismatch or
// ErrNothingToCompare.
type IdentityError struct{ Check *IdentityCheck }

// Error implements error.
func (e *IdentityError) Error() string {
	ms := e.Check.Mismatches()
	if len(ms) == 0 {
		var skipped []string
		for _, f := range e.Check.Facts {
			skipped = append(skipped, f.Fact+" ("+f.Reason+")")
		}
		return fmt.Sprintf("node %s: %v: %s; nothing was written", e.Check.Node, ErrNothingToCompare, strings.Join(skipped, "; "))
	}
	var parts []string
	for _, m := range ms {
		parts = append(parts, fmt.Sprintf("%s expected %s, found %s", m.Fact, m.Expected, m.Found))
	}
	return fmt.Sprintf("node %s: %v: %s; nothing was written", e.Check.Node, ErrIdentityMismatch, strings.Join(parts, "; "))
}

// Is matches the sentinel of the failure.
func (e *IdentityError) Is(target error) bool {
	if len(e.Check.Mismatches()) > 0 {
		return target == ErrIdentityMismatch
	}
	return target == ErrNothingToCompare
}

// CompareIdentity applies the interlock: every fact both sides have must
// match, at least one must have matched; a fact either side cannot tell is
// skipped.
func CompareIdentity(exp Expected, id *Identity) *IdentityCheck {
	c := &IdentityCheck{Version: ProtocolVersion, Node: exp.Node}

	// DMI serial.
	sf := FactCheck{Fact: "serial", Expected: strings.TrimSpace(exp.Serial), Found: id.Serial}
	switch {
	case sf.Expected == "":
		sf.Result, sf.Reason = FactSkipped, "inventory has no serial"
	case id.Serial == "":
		sf.Result, sf.Reason = FactSkipped, "node cannot tell: "+id.SerialUnknown
	case strings.EqualFold(sf.Expected, strings.TrimSpace(id.Serial)):
		sf.Result = FactMatch
	default:
		sf.Result = FactMismatch
	}
	c.Facts = append(c.Facts, sf)

	// MACs: at least one of the inventory's.
	var want []string
	for _, m := range exp.MACs {
		if n := NormalizeMAC(m); n != "" {
			want = append(want, n)
		}
	}
	have := id.MACs()
	mf := FactCheck{Fact: "mac", Expected: strings.Join(want, ","), Found: strings.Join(have, ",")}
	switch {
	case len(want) == 0:
		mf.Result, mf.Reason = FactSkipped, "inventory has no MAC"
	case len(have) == 0:
		mf.Result, mf.Reason = FactSkipped, "node cannot tell: no physical NIC with an address"
	default:
		mf.Result = FactMismatch
		for _, w := range want {
			for _, h := range have {
				if w == h {
					mf.Result, mf.Found = FactMatch, h
				}
			}
		}
	}
	c.Facts = append(c.Facts, mf)

	// BMC LAN address.
	bf := FactCheck{Fact: "bmc_address", Expected: strings.Join(exp.BMCAddresses, ","), Found: id.BMC.Address}
	found, ferr := netip.ParseAddr(id.BMC.Address)
	switch {
	case len(exp.BMCAddresses) == 0:
		bf.Result, bf.Reason = FactSkipped, "inventory has no BMC address"
		if exp.BMCUnresolved != "" {
			bf.Reason = exp.BMCUnresolved
		}
	case id.BMC.Address == "" || ferr != nil:
		bf.Result, bf.Reason = FactSkipped, "node cannot tell: "+id.BMC.Unknown
	case found.IsUnspecified():
		bf.Result, bf.Reason = FactSkipped, "node cannot tell: BMC reports "+found.String()
	default:
		bf.Result = FactMismatch
		for _, a := range exp.BMCAddresses {
			if e, err := netip.ParseAddr(a); err == nil && e.Unmap() == found.Unmap() {
				bf.Result = FactMatch
			}
		}
	}
	c.Facts = append(c.Facts, bf)

	mismatch := false
	for _, f := range c.Facts {
		switch f.Result {
		case FactMatch:
			c.Matched++
		case FactMismatch:
			mismatch = true
		}
	}
	c.OK = !mismatch && c.Matched > 0
	return c
}

// OptedOut returns the IdentityCheck of a node that skips the interlock.
func OptedOut(node string) *IdentityCheck {
	return &IdentityCheck{Version: ProtocolVersion, Node: node, OK: true, OptedOut: true,
		Facts: []FactCheck{{Fact: "all", Result: FactSkipped, Reason: "node opts out (skip_identity_check)"}}}
}
