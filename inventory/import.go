package inventory

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
	yaml "go.yaml.in/yaml/v3"
)

// Importer names, for Import's from argument.
const (
	FromAuto      = ""           // by extension, then content
	FromAnsible   = "ansible"    // an Ansible inventory, YAML or INI
	FromNetBoxCSV = "netbox-csv" // a NetBox device CSV export
	FromNative    = "native"     // reprov's own format
)

// ImportOptions tunes Import.
type ImportOptions struct {
	// Ansible tunes the Ansible importer.
	Ansible AnsibleOptions
}

// Import reads what operators already keep — an Ansible inventory (YAML or
// INI) or a NetBox device CSV export — as an Inventory, validated exactly
// like the native format. from is FromAnsible, FromNetBoxCSV, FromNative, or
// FromAuto to decide by extension and content. Problems carry the source
// file's lines.
func Import(path, from string, opts ImportOptions) (*Inventory, []Warning, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read inventory: %w", err)
	}
	return ImportBytes(path, data, from, opts)
}

// ImportBytes is Import for data already read; name is used in problems
// and to choose the format.
func ImportBytes(name string, data []byte, from string, opts ImportOptions) (*Inventory, []Warning, error) {
	cfg, err := opts.Ansible.compile()
	if err != nil {
		return nil, nil, err
	}
	var src source
	switch from {
	case FromAuto:
		src = sourceAuto
	case FromAnsible:
		src = sourceAnsible
	case "netbox", FromNetBoxCSV:
		src = sourceNetBox
	case FromNative:
		src = sourceNative
	default:
		return nil, nil, fmt.Errorf("unknown inventory source %q (want %s, %s or %s)", from, FromAnsible, FromNetBoxCSV, FromNative)
	}
	return load(name, data, src, cfg)
}

// ErrLiteralCredentials is returned by WriteNative when nodes carry plain:
// credentials and the caller did not ask to keep them.
var ErrLiteralCredentials = errors.New("literal credentials")

// WriteOptions tunes WriteNativeOptions.
type WriteOptions struct {
	// KeepLiterals writes plain: credentials through as they are. Without
	// it, an inventory with any is refused with ErrLiteralCredentials, so that
	// a conversion never spreads a password into a new file unasked.
	KeepLiterals bool
}

// WriteNative writes inv in the native format — "yaml", "json" or "toml" —
// with credentials as references. Values shared by every node are written
// once under defaults. Loading the result gives the same nodes. Nodes with
// plain: credentials make it fail with ErrLiteralCredentials; see
// WriteNativeOptions.
func WriteNative(w io.Writer, inv *Inventory, format string) error {
	return WriteNativeOptions(w, inv, format, WriteOptions{})
}

// WriteNativeOptions is WriteNative with options.
func WriteNativeOptions(w io.Writer, inv *Inventory, format string, opts WriteOptions) error {
	switch format {
	case "yaml", "yml", "json", "toml":
	default:
		return fmt.Errorf("unknown inventory format %q (want yaml, json or toml)", format)
	}
	var literal []string
	for _, n := range inv.Nodes {
		for _, s := range []Secret{n.BMC.Password, n.SSH.Password} {
			if s.IsZero() {
				continue
			}
			switch s.Kind() {
			case "plain":
				if !slices.Contains(literal, n.Name) {
					literal = append(literal, n.Name)
				}
			case "":
				return fmt.Errorf("node %s: a credential is not a reference (env:NAME, file:PATH or plain:VALUE)", n.Name)
			}
		}
	}
	if len(literal) > 0 && !opts.KeepLiterals {
		names := literal
		more := ""
		if len(names) > 10 {
			more = fmt.Sprintf(" and %d more", len(names)-10)
			names = names[:10]
		}
		return fmt.Errorf("%w: node %s%s have plain: passwords; give them env:NAME or file:PATH references in the source, or ask to keep the literals", ErrLiteralCredentials, strings.Join(names, ", "), more)
	}

	out := nativeOut(inv.Nodes)
	var buf bytes.Buffer
	comment := "# reprov inventory"
	if inv.Source != "" {
		comment += ", converted from " + strings.ReplaceAll(inv.Source, "\n", " ")
	}
	switch format {
	case "yaml", "yml":
		buf.WriteString(comment + "\n")
		enc := yaml.NewEncoder(&buf)
		enc.SetIndent(2)
		if err := enc.Encode(out); err != nil {
			return fmt.Errorf("write inventory: %w", err)
		}
		if err := enc.Close(); err != nil {
			return fmt.Errorf("write inventory: %w", err)
		}
	case "json":
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(out); err != nil {
			return fmt.Errorf("write inventory: %w", err)
		}
	case "toml":
		buf.WriteString(comment + "\n")
		enc := toml.NewEncoder(&buf)
		enc.SetIndentTables(true)
		if err := enc.Encode(out); err != nil {
			return fmt.Errorf("write inventory: %w", err)
		}
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("write inventory: %w", err)
	}
	return nil
}

// The output shape of the native format. Field order is the documented order.
type (
	outFile struct {
		Defaults *outNode  `json:"defaults,omitempty" yaml:"defaults,omitempty" toml:"defaults,omitempty"`
		Nodes    []outNode `json:"nodes" yaml:"nodes" toml:"nodes"`
	}
	outNode struct {
		Name              string            `json:"name,omitempty" yaml:"name,omitempty" toml:"name,omitempty"`
		Rack              string            `json:"rack,omitempty" yaml:"rack,omitempty" toml:"rack,omitempty"`
		Labels            map[string]string `json:"labels,omitempty" yaml:"labels,omitempty" toml:"labels,omitempty,inline"`
		BMC               *outBMC           `json:"bmc,omitempty" yaml:"bmc,omitempty" toml:"bmc,omitempty"`
		SSH               *outSSH           `json:"ssh,omitempty" yaml:"ssh,omitempty" toml:"ssh,omitempty"`
		MACs              []string          `json:"macs,omitempty" yaml:"macs,omitempty,flow" toml:"macs,omitempty"`
		Serial            string            `json:"serial,omitempty" yaml:"serial,omitempty" toml:"serial,omitempty"`
		Boot              *outBoot          `json:"boot,omitempty" yaml:"boot,omitempty,flow" toml:"boot,omitempty,inline"`
		Playbook          string            `json:"playbook,omitempty" yaml:"playbook,omitempty" toml:"playbook,omitempty"`
		SkipIdentityCheck bool              `json:"skip_identity_check,omitempty" yaml:"skip_identity_check,omitempty" toml:"skip_identity_check,omitempty"`
	}
	outBMC struct {
		Address  string      `json:"address,omitempty" yaml:"address,omitempty" toml:"address,omitempty"`
		Username string      `json:"username,omitempty" yaml:"username,omitempty" toml:"username,omitempty"`
		Password string      `json:"password,omitempty" yaml:"password,omitempty" toml:"password,omitempty"`
		Options  *outOptions `json:"options,omitempty" yaml:"options,omitempty" toml:"options,omitempty"`
	}
	outOptions struct {
		CipherSuites      []int  `json:"cipher_suites,omitempty" yaml:"cipher_suites,omitempty,flow" toml:"cipher_suites,omitempty"`
		Privilege         string `json:"privilege,omitempty" yaml:"privilege,omitempty" toml:"privilege,omitempty"`
		AllowInsecureIPMI bool   `json:"allow_insecure_ipmi,omitempty" yaml:"allow_insecure_ipmi,omitempty" toml:"allow_insecure_ipmi,omitempty"`
		InsecureTLS       bool   `json:"insecure_tls,omitempty" yaml:"insecure_tls,omitempty" toml:"insecure_tls,omitempty"`
		CAFile            string `json:"ca_file,omitempty" yaml:"ca_file,omitempty" toml:"ca_file,omitempty"`
		BootFlagTimeout   string `json:"boot_flag_timeout,omitempty" yaml:"boot_flag_timeout,omitempty" toml:"boot_flag_timeout,omitempty"`
		Verify            string `json:"verify,omitempty" yaml:"verify,omitempty" toml:"verify,omitempty"`
		RedfishSession    bool   `json:"redfish_session,omitempty" yaml:"redfish_session,omitempty" toml:"redfish_session,omitempty"`
		BootModeOverride  string `json:"boot_mode_override,omitempty" yaml:"boot_mode_override,omitempty" toml:"boot_mode_override,omitempty"`
		MinInterval       string `json:"min_interval,omitempty" yaml:"min_interval,omitempty" toml:"min_interval,omitempty"`
		MaxConcurrent     int    `json:"max_concurrent,omitempty" yaml:"max_concurrent,omitempty" toml:"max_concurrent,omitempty"`
		Timeout           string `json:"timeout,omitempty" yaml:"timeout,omitempty" toml:"timeout,omitempty"`
		Retries           int    `json:"retries,omitempty" yaml:"retries,omitempty" toml:"retries,omitempty"`
	}
	outSSH struct {
		Address       string `json:"address,omitempty" yaml:"address,omitempty" toml:"address,omitempty"`
		Port          int    `json:"port,omitempty" yaml:"port,omitempty" toml:"port,omitempty"`
		User          string `json:"user,omitempty" yaml:"user,omitempty" toml:"user,omitempty"`
		Identity      string `json:"identity,omitempty" yaml:"identity,omitempty" toml:"identity,omitempty"`
		KnownHosts    string `json:"known_hosts,omitempty" yaml:"known_hosts,omitempty" toml:"known_hosts,omitempty"`
		HostKeyPolicy string `json:"host_key_policy,omitempty" yaml:"host_key_policy,omitempty" toml:"host_key_policy,omitempty"`
		JumpHost      string `json:"jump_host,omitempty" yaml:"jump_host,omitempty" toml:"jump_host,omitempty"`
		Password      string `json:"password,omitempty" yaml:"password,omitempty" toml:"password,omitempty"`
		Agent         string `json:"agent,omitempty" yaml:"agent,omitempty" toml:"agent,omitempty"`
	}
	outBoot struct {
		Mode string `json:"mode,omitempty" yaml:"mode,omitempty" toml:"mode,omitempty"`
		Disk string `json:"disk,omitempty" yaml:"disk,omitempty" toml:"disk,omitempty"`
	}
)

// hoistable are the leaves WriteNative moves to defaults when every node
// has the same value. Identity (name, MACs, serial, addresses), rack, labels
// and the identity-check opt-out stay with each node.
var hoistable = []int{
	fBMCUsername, fBMCPassword, fCipherSuites, fPrivilege, fAllowInsecureIPMI, fInsecureTLS,
	fCAFile, fBootFlagTimeout, fVerify, fRedfishSession, fBootModeOverride, fMinInterval,
	fMaxConcurrent, fTimeout, fRetries,
	fSSHPort, fSSHUser, fSSHIdentity, fSSHKnownHosts, fSSHHostKeyPolicy, fSSHJumpHost, fSSHPassword, fSSHAgent,
	fBootMode, fBootDisk, fPlaybook,
}

func nativeOut(in []Node) outFile {
	nodes := slices.Clone(in)
	var def Node
	hoisted := false
	if len(nodes) > 1 {
		for _, leaf := range hoistable {
			f := nativeSchema.leaves[leaf]
			if leafZero(f, &nodes[0]) {
				continue
			}
			same := true
			for i := 1; i < len(nodes) && same; i++ {
				same = leafEqual(f, &nodes[0], &nodes[i])
			}
			if !same {
				continue
			}
			copyLeaf(f, &def, &nodes[0])
			for i := range nodes {
				leafClear(f, &nodes[i])
			}
			hoisted = true
		}
	}
	out := outFile{Nodes: make([]outNode, len(nodes))}
	if hoisted {
		d := toOut(&def)
		out.Defaults = &d
	}
	for i := range nodes {
		out.Nodes[i] = toOut(&nodes[i])
	}
	return out
}

func leafZero(f *field, n *Node) bool {
	switch p := f.ptr(n).(type) {
	case *string:
		return *p == ""
	case *int:
		return *p == 0
	case *bool:
		return !*p
	case *time.Duration:
		return *p == 0
	case *Secret:
		return p.IsZero()
	case *[]string:
		return len(*p) == 0
	case *[]int:
		return len(*p) == 0
	case *map[string]string:
		return len(*p) == 0
	}
	return true
}

func leafEqual(f *field, a, b *Node) bool {
	switch p := f.ptr(a).(type) {
	case *string:
		return *p == *f.ptr(b).(*string)
	case *int:
		return *p == *f.ptr(b).(*int)
	case *bool:
		return *p == *f.ptr(b).(*bool)
	case *time.Duration:
		return *p == *f.ptr(b).(*time.Duration)
	case *Secret:
		return p.ref == f.ptr(b).(*Secret).ref
	case *[]string:
		return slices.Equal(*p, *f.ptr(b).(*[]string))
	case *[]int:
		return slices.Equal(*p, *f.ptr(b).(*[]int))
	}
	return false
}

// leafClear zeroes a leaf by assignment (never through shared storage).
func leafClear(f *field, n *Node) {
	switch p := f.ptr(n).(type) {
	case *string:
		*p = ""
	case *int:
		*p = 0
	case *bool:
		*p = false
	case *time.Duration:
		*p = 0
	case *Secret:
		*p = Secret{}
	case *[]string:
		*p = nil
	case *[]int:
		*p = nil
	case *map[string]string:
		*p = nil
	}
}

// secretOut writes a credential reference; a plain literal is written only
// because the caller checked KeepLiterals.
func secretOut(s Secret) string {
	if s.Kind() == "plain" {
		v, _ := s.Resolve()
		return "plain:" + v
	}
	return s.ref
}

func durationOut(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

func toOut(n *Node) outNode {
	o := outNode{
		Name: n.Name, Rack: n.Rack, Labels: n.Labels, MACs: n.MACs, Serial: n.Serial,
		Playbook: n.Playbook, SkipIdentityCheck: n.SkipIdentityCheck,
	}
	op := n.BMC.Options
	opts := outOptions{
		CipherSuites: op.CipherSuites, Privilege: op.Privilege, AllowInsecureIPMI: op.AllowInsecureIPMI,
		InsecureTLS: op.InsecureTLS, CAFile: op.CAFile, BootFlagTimeout: op.BootFlagTimeout, Verify: op.Verify,
		RedfishSession: op.RedfishSession, BootModeOverride: op.BootModeOverride,
		MinInterval: durationOut(op.MinInterval), MaxConcurrent: op.MaxConcurrent,
		Timeout: durationOut(op.Timeout), Retries: op.Retries,
	}
	bmc := outBMC{Address: n.BMC.Address, Username: n.BMC.Username, Password: secretOut(n.BMC.Password)}
	if !isZeroValue(opts) {
		bmc.Options = &opts
	}
	if !isZeroValue(bmc) {
		o.BMC = &bmc
	}
	ssh := outSSH{
		Address: n.SSH.Address, Port: n.SSH.Port, User: n.SSH.User, Identity: n.SSH.Identity,
		KnownHosts: n.SSH.KnownHosts, HostKeyPolicy: n.SSH.HostKeyPolicy, JumpHost: n.SSH.JumpHost,
		Password: secretOut(n.SSH.Password), Agent: n.SSH.Agent,
	}
	if ssh != (outSSH{}) {
		o.SSH = &ssh
	}
	if n.Boot != (Boot{}) {
		o.Boot = &outBoot{Mode: n.Boot.Mode, Disk: n.Boot.Disk}
	}
	return o
}

func isZeroValue[T outOptions | outBMC](v T) bool {
	switch x := any(v).(type) {
	case outOptions:
		return len(x.CipherSuites) == 0 && x.Privilege == "" && !x.AllowInsecureIPMI && !x.InsecureTLS &&
			x.CAFile == "" && x.BootFlagTimeout == "" && x.Verify == "" && !x.RedfishSession &&
			x.BootModeOverride == "" && x.MinInterval == "" && x.MaxConcurrent == 0 && x.Timeout == "" && x.Retries == 0
	case outBMC:
		return x.Address == "" && x.Username == "" && x.Password == "" && x.Options == nil
	}
	return false
}
