package inventory

import (
	"slices"
	"strconv"
	"time"

	yaml "go.yaml.in/yaml/v3"
)

// Leaf fields of a node, in schema order. Each has a bit in nodeMeta.set.
const (
	fName = iota
	fRack
	fLabels
	fBMCAddress
	fBMCUsername
	fBMCPassword
	fCipherSuites
	fPrivilege
	fAllowInsecureIPMI
	fInsecureTLS
	fCAFile
	fBootFlagTimeout
	fVerify
	fRedfishSession
	fBootModeOverride
	fMinInterval
	fMaxConcurrent
	fTimeout
	fRetries
	fSSHAddress
	fSSHPort
	fSSHUser
	fSSHIdentity
	fSSHKnownHosts
	fSSHHostKeyPolicy
	fSSHJumpHost
	fSSHPassword
	fSSHAgent
	fMACs
	fSerial
	fGUID
	fBootMode
	fBootDisk
	fPlaybook
	fSkipIdentityCheck
	nLeaves
)

// kind is how a field's value is written.
type kind uint8

const (
	kSection    kind = iota // a mapping of more fields
	kString                 // any scalar but a boolean, taken as written
	kEnum                   // a string from a fixed set (case-insensitive, stored lower case)
	kInt                    // an integer
	kBool                   // true or false
	kDuration               // a Go duration string ("2s")
	kStringList             // a list of strings (a single string is a list of one)
	kIntList                // a list of integers (a single integer is a list of one)
	kLabels                 // a mapping of strings
	kSecret                 // a credential reference
)

// field describes one key of the native format.
type field struct {
	key  string
	path string // dotted path from the node ("bmc.options.verify")
	kind kind
	leaf int      // index of the leaf; -1 for a section
	enum []string // allowed values of a kEnum
	sub  []*field // fields of a section
	// ptr returns the field's storage in n (a *string, *int, *bool,
	// *time.Duration, *[]string, *[]int, *map[string]string or *Secret).
	ptr func(n *Node) any
	// check validates (and may normalize) a decoded value.
	check func(d *decoder, c *nodeCtx, f *field, v *yaml.Node)
}

// schema is the native format: the fields of a node, and every leaf by index.
type schema struct {
	node   []*field
	leaves [nLeaves]*field
}

// Enumerations.
var (
	privileges       = []string{"user", "operator", "administrator"}
	bootFlagTimeouts = []string{"disable", "keep"}
	verifyLevels     = []string{"full", "device-only", "off"}
	bootModeOverride = []string{"auto", "always", "never"}
	hostKeyPolicies  = []string{"strict", "accept-new"}
	agentModes       = []string{"push", "commands"}
	bootModes        = []string{"legacy", "uefi"}
)

// nativeSchema is the one description of the native format. It is built once
// and never changed.
var nativeSchema = buildSchema()

func buildSchema() *schema {
	s := &schema{}
	leaf := func(i int, key string, k kind, ptr func(n *Node) any, check func(*decoder, *nodeCtx, *field, *yaml.Node), enum ...[]string) *field {
		f := &field{key: key, kind: k, leaf: i, ptr: ptr, check: check}
		if len(enum) > 0 {
			f.enum = enum[0]
		}
		return f
	}
	section := func(key string, sub ...*field) *field {
		return &field{key: key, kind: kSection, leaf: -1, sub: sub}
	}
	s.node = []*field{
		leaf(fName, "name", kString, func(n *Node) any { return &n.Name }, checkName),
		leaf(fRack, "rack", kString, func(n *Node) any { return &n.Rack }, checkRack),
		leaf(fLabels, "labels", kLabels, func(n *Node) any { return &n.Labels }, nil),
		section("bmc",
			leaf(fBMCAddress, "address", kString, func(n *Node) any { return &n.BMC.Address }, checkBMCAddress),
			leaf(fBMCUsername, "username", kString, func(n *Node) any { return &n.BMC.Username }, checkUsername),
			leaf(fBMCPassword, "password", kSecret, func(n *Node) any { return &n.BMC.Password }, checkSecret),
			section("options",
				leaf(fCipherSuites, "cipher_suites", kIntList, func(n *Node) any { return &n.BMC.Options.CipherSuites }, checkCipherSuites),
				leaf(fPrivilege, "privilege", kEnum, func(n *Node) any { return &n.BMC.Options.Privilege }, nil, privileges),
				leaf(fAllowInsecureIPMI, "allow_insecure_ipmi", kBool, func(n *Node) any { return &n.BMC.Options.AllowInsecureIPMI }, checkAllowInsecureIPMI),
				leaf(fInsecureTLS, "insecure_tls", kBool, func(n *Node) any { return &n.BMC.Options.InsecureTLS }, checkInsecureTLS),
				leaf(fCAFile, "ca_file", kString, func(n *Node) any { return &n.BMC.Options.CAFile }, checkPath),
				leaf(fBootFlagTimeout, "boot_flag_timeout", kEnum, func(n *Node) any { return &n.BMC.Options.BootFlagTimeout }, nil, bootFlagTimeouts),
				leaf(fVerify, "verify", kEnum, func(n *Node) any { return &n.BMC.Options.Verify }, nil, verifyLevels),
				leaf(fRedfishSession, "redfish_session", kBool, func(n *Node) any { return &n.BMC.Options.RedfishSession }, nil),
				leaf(fBootModeOverride, "boot_mode_override", kEnum, func(n *Node) any { return &n.BMC.Options.BootModeOverride }, nil, bootModeOverride),
				leaf(fMinInterval, "min_interval", kDuration, func(n *Node) any { return &n.BMC.Options.MinInterval }, nil),
				leaf(fMaxConcurrent, "max_concurrent", kInt, func(n *Node) any { return &n.BMC.Options.MaxConcurrent }, checkMaxConcurrent),
				leaf(fTimeout, "timeout", kDuration, func(n *Node) any { return &n.BMC.Options.Timeout }, checkTimeout),
				leaf(fRetries, "retries", kInt, func(n *Node) any { return &n.BMC.Options.Retries }, checkRetries),
			),
		),
		section("ssh",
			leaf(fSSHAddress, "address", kString, func(n *Node) any { return &n.SSH.Address }, checkSSHAddress),
			leaf(fSSHPort, "port", kInt, func(n *Node) any { return &n.SSH.Port }, checkSSHPort),
			leaf(fSSHUser, "user", kString, func(n *Node) any { return &n.SSH.User }, checkSSHUser),
			leaf(fSSHIdentity, "identity", kString, func(n *Node) any { return &n.SSH.Identity }, checkPath),
			leaf(fSSHKnownHosts, "known_hosts", kString, func(n *Node) any { return &n.SSH.KnownHosts }, checkPath),
			leaf(fSSHHostKeyPolicy, "host_key_policy", kEnum, func(n *Node) any { return &n.SSH.HostKeyPolicy }, nil, hostKeyPolicies),
			leaf(fSSHJumpHost, "jump_host", kString, func(n *Node) any { return &n.SSH.JumpHost }, checkJumpHost),
			leaf(fSSHPassword, "password", kSecret, func(n *Node) any { return &n.SSH.Password }, checkSecret),
			leaf(fSSHAgent, "agent", kEnum, func(n *Node) any { return &n.SSH.Agent }, nil, agentModes),
		),
		leaf(fMACs, "macs", kStringList, func(n *Node) any { return &n.MACs }, checkMACs),
		leaf(fSerial, "serial", kString, func(n *Node) any { return &n.Serial }, checkSerial),
		leaf(fGUID, "guid", kString, func(n *Node) any { return &n.GUID }, checkGUID),
		section("boot",
			leaf(fBootMode, "mode", kEnum, func(n *Node) any { return &n.Boot.Mode }, nil, bootModes),
			leaf(fBootDisk, "disk", kString, func(n *Node) any { return &n.Boot.Disk }, checkBootDisk),
		),
		leaf(fPlaybook, "playbook", kString, func(n *Node) any { return &n.Playbook }, checkPlaybook),
		leaf(fSkipIdentityCheck, "skip_identity_check", kBool, func(n *Node) any { return &n.SkipIdentityCheck }, checkSkipIdentity),
	}
	var walk func(prefix string, fs []*field)
	walk = func(prefix string, fs []*field) {
		for _, f := range fs {
			f.path = prefix + f.key
			if f.kind == kSection {
				walk(f.path+".", f.sub)
				continue
			}
			s.leaves[f.leaf] = f
		}
	}
	walk("", s.node)
	for i, f := range s.leaves {
		if f == nil {
			panic("inventory: schema misses leaf " + strconv.Itoa(i))
		}
	}
	return s
}

// keys returns the keys of a section's fields, for suggestions.
func keys(fs []*field) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.key
	}
	return out
}

// copyLeaf copies leaf f from src to dst. Lists are cloned; labels are
// merged key-wise, dst's keys winning.
func copyLeaf(f *field, dst, src *Node) {
	switch d := f.ptr(dst).(type) {
	case *string:
		*d = *f.ptr(src).(*string)
	case *int:
		*d = *f.ptr(src).(*int)
	case *bool:
		*d = *f.ptr(src).(*bool)
	case *time.Duration:
		*d = *f.ptr(src).(*time.Duration)
	case *Secret:
		*d = *f.ptr(src).(*Secret)
	case *[]string:
		*d = slices.Clone(*f.ptr(src).(*[]string))
	case *[]int:
		*d = slices.Clone(*f.ptr(src).(*[]int))
	case *map[string]string:
		s := *f.ptr(src).(*map[string]string)
		if len(s) == 0 {
			return
		}
		if *d == nil {
			*d = make(map[string]string, len(s))
		}
		for k, v := range s {
			if _, ok := (*d)[k]; !ok {
				(*d)[k] = v
			}
		}
	}
}
