package inventory

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// fleetNodes is testdata/fleet.{yaml,toml,json}: every field, defaults merged.
func fleetNodes() []Node {
	defOpts := BMCOptions{CipherSuites: []int{17, 3}, Timeout: 5 * time.Second, Retries: 3}
	return []Node{
		{
			Name: "web-014", Rack: "r12",
			Labels:   map[string]string{"site": "ams1", "role": "web", "model": "dl360g7", "topology.kubernetes.io/zone": "ams1-a"},
			BMC:      BMC{Address: "ipmi://10.1.12.14", Username: "admin", Password: NewSecret("env:BMC_PASSWORD"), Options: defOpts},
			SSH:      SSH{Address: "10.2.12.14", User: "root", Identity: "~/.ssh/id_ed25519", KnownHosts: "~/.ssh/known_hosts"},
			MACs:     []string{"3c:4a:92:11:22:33", "3c:4a:92:11:22:34"},
			Serial:   "CZJ1234ABC",
			Boot:     Boot{Mode: "legacy", Disk: "/dev/disk/by-path/pci-0000:03:00.0-scsi-0:0:0:0"},
			Playbook: "hp-dl360-g7",
		},
		{
			Name: "web-015", Rack: "r12",
			Labels: map[string]string{"site": "ams1", "role": "web", "model": "dl360g7"},
			BMC: BMC{Address: "ipmi://10.1.12.15:6230", Username: "admin", Password: NewSecret("env:BMC_PASSWORD"),
				Options: BMCOptions{
					CipherSuites: []int{17, 3}, Timeout: 5 * time.Second, Retries: 3,
					Privilege: "operator", BootFlagTimeout: "keep", Verify: "device-only",
					MinInterval: 250 * time.Millisecond, MaxConcurrent: 2,
				}},
			SSH:      SSH{Address: "10.2.12.15", Port: 2222, User: "root", Identity: "~/.ssh/id_ed25519", KnownHosts: "~/.ssh/known_hosts", HostKeyPolicy: "accept-new"},
			MACs:     []string{"3c:4a:92:11:22:35"},
			Serial:   "CZJ1234ABD",
			Boot:     Boot{Mode: "legacy"},
			Playbook: "hp-dl360-g7",
		},
		{
			Name: "db-001", Rack: "r13",
			Labels: map[string]string{"site": "ams1", "role": "db", "model": "r750"},
			BMC: BMC{Address: "redfish+https://10.1.13.1/redfish/v1/Systems/System.Embedded.1", Username: "root", Password: NewSecret("file:/etc/reprov/idrac.pw"),
				Options: BMCOptions{
					CipherSuites: []int{17, 3}, Timeout: 5 * time.Second, Retries: 3,
					CAFile: "/etc/reprov/site-ca.pem", RedfishSession: true, BootModeOverride: "always",
				}},
			SSH: SSH{Address: "db-001.ams1.example.net", User: "ops", Identity: "~/.ssh/id_ed25519", KnownHosts: "~/.ssh/known_hosts",
				JumpHost: "ops@bastion.ams1.example.net:2200", Agent: "commands"},
			MACs:   []string{"b8:ca:3a:01:02:03"},
			Serial: "7XK9Q33",
			Boot:   Boot{Mode: "uefi", Disk: "/dev/nvme0n1"},
		},
		{
			Name: "lab-001", Rack: "lab",
			Labels: map[string]string{"site": "ams1", "role": "lab"},
			BMC: BMC{Address: "[fd00::10]:6230", Username: "admin", Password: NewSecret("plain:calvin"),
				Options: BMCOptions{CipherSuites: []int{0}, AllowInsecureIPMI: true, Timeout: 5 * time.Second, Retries: 3}},
			SSH:               SSH{Address: "fd00::20", User: "root", Identity: "~/.ssh/id_ed25519", KnownHosts: "~/.ssh/known_hosts", Password: NewSecret("env:LAB_SSH_PASSWORD")},
			Boot:              Boot{Mode: "legacy"},
			SkipIdentityCheck: true,
		},
		{
			Name: "lab-002", Rack: "lab",
			Labels: map[string]string{"site": "ams1"},
			BMC: BMC{Address: "redfish+http://127.0.0.1:8000", Username: "admin", Password: NewSecret("env:BMC_PASSWORD"),
				Options: BMCOptions{CipherSuites: []int{17, 3}, InsecureTLS: true, Timeout: 5 * time.Second, Retries: 3}},
			SSH:  SSH{Address: "127.0.0.1", Port: 2022, User: "root", Identity: "~/.ssh/id_ed25519", KnownHosts: "~/.ssh/known_hosts"},
			Boot: Boot{Mode: "legacy"},
		},
	}
}

// TestLoadEveryField loads the same fleet written in YAML, TOML and JSON and
// checks every field of every node, defaults merged, and the warnings.
func TestLoadEveryField(t *testing.T) {
	for _, file := range []string{"fleet.yaml", "fleet.toml", "fleet.json"} {
		t.Run(file, func(t *testing.T) {
			path := filepath.Join("testdata", file)
			inv, ws, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if inv.Source != path {
				t.Errorf("Source = %q, want %q", inv.Source, path)
			}
			for _, n := range inv.Nodes {
				if n.Pos.File != path || n.Pos.Line == 0 {
					t.Errorf("node %s: Pos = %v, want %s and a line", n.Name, n.Pos, path)
				}
			}
			diffNodes(t, withoutPos(inv.Nodes), fleetNodes())

			// The risky settings of lab-001 and lab-002 are warned about,
			// each on the line that sets it.
			var got []string
			for _, w := range ws {
				if w.Pos.File != path || w.Pos.Line == 0 {
					t.Errorf("warning without position: %v", w)
				}
				got = append(got, w.Node+" "+w.Field)
			}
			want := []string{
				"lab-001 bmc.password", // plain: literal
				"lab-001 bmc.options.allow_insecure_ipmi",
				"lab-001 bmc.options.cipher_suites", // suite 0
				"lab-001 skip_identity_check",
				"lab-002 bmc.options.insecure_tls",
			}
			if !slices.Equal(got, want) {
				t.Errorf("warnings:\n got %q\nwant %q", got, want)
			}
		})
	}
}

// TestLoadPositions checks the line each node is attributed to, in all three formats.
func TestLoadPositions(t *testing.T) {
	want := map[string][]int{
		"fleet.yaml": {20, 30, 47, 69, 79},
		"fleet.toml": {18, 29, 49, 73, 81},
		"fleet.json": {13, 24, 43, 63, 75},
	}
	for file, lines := range want {
		inv, _, err := Load(filepath.Join("testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		var got []int
		for _, n := range inv.Nodes {
			got = append(got, n.Pos.Line)
		}
		if !slices.Equal(got, lines) {
			t.Errorf("%s: node lines %v, want %v", file, got, lines)
		}
	}
}

func TestDefaultsMerge(t *testing.T) {
	const doc = `
defaults:
  rack: r1
  labels: {site: ams1, role: generic}
  bmc:
    username: admin
    password: env:BMC_PASSWORD
    options: {cipher_suites: [17, 3], redfish_session: true, timeout: 5s, privilege: operator}
  ssh: {user: root, port: 2222}
  boot: {mode: legacy}
  skip_identity_check: true
nodes:
  - name: inherits
    bmc: {address: ipmi://10.0.0.1}
  - name: overrides
    rack: r2
    labels: {role: db, tier: gold}
    bmc:
      address: ipmi://10.0.0.2
      username: root
      options: {cipher_suites: [3], redfish_session: false}
    ssh: {port: 22}
    boot: {mode: uefi}
    skip_identity_check: false
`
	inv, _ := mustLoadBytes(t, "f.yaml", doc)
	want := []Node{
		{
			Name: "inherits", Rack: "r1",
			Labels: map[string]string{"site": "ams1", "role": "generic"},
			BMC: BMC{Address: "ipmi://10.0.0.1", Username: "admin", Password: NewSecret("env:BMC_PASSWORD"),
				Options: BMCOptions{CipherSuites: []int{17, 3}, RedfishSession: true, Timeout: 5 * time.Second, Privilege: "operator"}},
			SSH:               SSH{User: "root", Port: 2222},
			Boot:              Boot{Mode: "legacy"},
			SkipIdentityCheck: true,
		},
		{
			// Scalars: the node wins. Labels: merged key-wise, the node
			// winning. Options: merged field-wise. Lists: replaced. An
			// explicit false beats a default true.
			Name: "overrides", Rack: "r2",
			Labels: map[string]string{"site": "ams1", "role": "db", "tier": "gold"},
			BMC: BMC{Address: "ipmi://10.0.0.2", Username: "root", Password: NewSecret("env:BMC_PASSWORD"),
				Options: BMCOptions{CipherSuites: []int{3}, RedfishSession: false, Timeout: 5 * time.Second, Privilege: "operator"}},
			SSH:               SSH{User: "root", Port: 22},
			Boot:              Boot{Mode: "uefi"},
			SkipIdentityCheck: false,
		},
	}
	diffNodes(t, withoutPos(inv.Nodes), want)
	// The merge copies: changing one node's labels or lists leaves the
	// others alone.
	inv.Nodes[0].Labels["site"] = "changed"
	inv.Nodes[0].BMC.Options.CipherSuites[0] = 99
	inv2, _ := mustLoadBytes(t, "f.yaml", doc+"  - name: third\n    bmc: {address: ipmi://10.0.0.3}\n")
	if inv2.Nodes[2].Labels["site"] != "ams1" || inv.Nodes[1].Labels["site"] != "ams1" || inv2.Nodes[2].BMC.Options.CipherSuites[0] != 17 {
		t.Error("nodes share label maps or lists")
	}
}

// TestProblems checks each kind of problem, with its exact message and line,
// in YAML, JSON and TOML. FILE stands for the file name.
func TestProblems(t *testing.T) {
	cases := []struct {
		name             string
		yaml, json, toml string
		want             []string
		wantTOML         []string // when TOML words or places it differently
	}{
		{
			name: "unknown key in a node, with a suggestion",
			yaml: "nodes:\n  - name: a\n    bmc:\n      adress: ipmi://10.0.0.1\n",
			json: "{\"nodes\": [\n  {\"name\": \"a\",\n   \"bmc\": {\n     \"adress\": \"ipmi://10.0.0.1\"}}]}\n",
			toml: "[[nodes]]\nname = \"a\"\n[nodes.bmc]\nadress = \"ipmi://10.0.0.1\"\n",
			want: []string{`FILE:4: node a: bmc.adress: unknown key (did you mean "address"?)`},
		},
		{
			name: "unknown key in defaults",
			yaml: "defaults:\n  ssh:\n    usr: root\nnodes: []\n",
			json: "{\"defaults\": {\n  \"ssh\": {\n    \"usr\": \"root\"}},\n \"nodes\": []}\n",
			toml: "[defaults]\n[defaults.ssh]\nusr = \"root\"\n",
			want: []string{`FILE:3: defaults.ssh.usr: unknown key (did you mean "user"?)`},
		},
		{
			name: "unknown key deep in options, no close match",
			yaml: "nodes:\n  - name: a\n    bmc:\n      options: {colour: red}\n",
			json: "{\"nodes\": [\n  {\"name\": \"a\",\n   \"bmc\": {\n     \"options\": {\"colour\": \"red\"}}}]}\n",
			toml: "[[nodes]]\nname = \"a\"\n[nodes.bmc]\noptions = {colour = \"red\"}\n",
			want: []string{`FILE:4: node a: bmc.options.colour: unknown key (want cipher_suites, privilege, allow_insecure_ipmi, insecure_tls, ca_file, boot_flag_timeout, verify, redfish_session, boot_mode_override, min_interval, max_concurrent, timeout or retries)`},
		},
		{
			name: "unknown top-level key",
			yaml: "node:\n  - name: a\n",
			json: "{\"node\": [{\"name\": \"a\"}]}\n",
			toml: "[[node]]\nname = \"a\"\n",
			want: []string{`FILE:1: node: unknown key (did you mean "nodes"?)`},
		},
		{
			name: "wrong type: string for an integer",
			yaml: "nodes:\n  - name: a\n    ssh:\n      port: \"22\"\n",
			json: "{\"nodes\": [\n  {\"name\": \"a\",\n   \"ssh\": {\n     \"port\": \"22\"}}]}\n",
			toml: "[[nodes]]\nname = \"a\"\n[nodes.ssh]\nport = \"22\"\n",
			want: []string{`FILE:4: node a: ssh.port: want an integer, got a string`},
		},
		{
			name: "wrong type: list for labels, mapping for a string",
			yaml: "nodes:\n  - name: a\n    labels: [web]\n    rack: {x: 1}\n",
			json: "{\"nodes\": [\n  {\"name\": \"a\",\n   \"labels\": [\"web\"],\n   \"rack\": {\"x\": 1}}]}\n",
			toml: "[[nodes]]\nname = \"a\"\nlabels = [\"web\"]\nrack = {x = 1}\n",
			want: []string{
				`FILE:3: node a: labels: want a mapping of label keys to values, got a list`,
				`FILE:4: node a: rack: want a string, got a mapping`,
			},
		},
		{
			name: "wrong type: boolean",
			yaml: "nodes:\n  - name: a\n    skip_identity_check: \"yes\"\n",
			json: "{\"nodes\": [\n  {\"name\": \"a\",\n   \"skip_identity_check\": \"yes\"}]}\n",
			toml: "[[nodes]]\nname = \"a\"\nskip_identity_check = \"yes\"\n",
			want: []string{`FILE:3: node a: skip_identity_check: want true or false, got a string`},
		},
		{
			name: "missing name",
			yaml: "nodes:\n  - name: a\n  - rack: r1\n",
			json: "{\"nodes\": [\n  {\"name\": \"a\"},\n  {\"rack\": \"r1\"}]}\n",
			toml: "[[nodes]]\nname = \"a\"\n[[nodes]]\nrack = \"r1\"\n",
			want: []string{`FILE:3: node #2: name: missing: every node needs a unique name`},
		},
		{
			name: "invalid name",
			yaml: "nodes:\n  - name: web 14\n",
			json: "{\"nodes\": [\n  {\"name\": \"web 14\"}]}\n",
			toml: "[[nodes]]\nname = \"web 14\"\n",
			want: []string{`FILE:2: node #1: name: "web 14" is not a valid node name (use letters, digits, '.', '_' and '-', starting with a letter or digit)`},
		},
		{
			name: "duplicate name cites the first",
			yaml: "nodes:\n  - name: a\n  - name: b\n  - name: a\n",
			json: "{\"nodes\": [\n  {\"name\": \"a\"},\n  {\"name\": \"b\"},\n  {\"name\": \"a\"}]}\n",
			toml: "nodes = [\n  {name = \"a\"},\n  {name = \"b\"},\n  {name = \"a\"},\n]\n",
			want: []string{`FILE:4: node a: name: duplicate node name "a" (first defined at line 2)`},
		},
		{
			name:     "duplicate MAC, normalized",
			yaml:     "nodes:\n  - name: a\n    macs: [\"3c:4a:92:11:22:33\"]\n  - name: b\n    macs: [\"3C-4A-92-11-22-33\"]\n",
			json:     "{\"nodes\": [\n  {\"name\": \"a\",\n   \"macs\": [\"3c:4a:92:11:22:33\"]},\n  {\"name\": \"b\",\n   \"macs\": [\"3C-4A-92-11-22-33\"]}]}\n",
			toml:     "[[nodes]]\nname = \"a\"\nmacs = [\"3c:4a:92:11:22:33\"]\n[[nodes]]\nname = \"b\"\nmacs = [\"3C-4A-92-11-22-33\"]\n",
			want:     []string{`FILE:5: node b: macs: MAC 3c:4a:92:11:22:33 is also listed for node a (line 3)`},
			wantTOML: []string{`FILE:6: node b: macs: MAC 3c:4a:92:11:22:33 is also listed for node a (line 3)`},
		},
		{
			name:     "duplicate BMC address, normalized host:port",
			yaml:     "nodes:\n  - name: a\n    bmc: {address: \"ipmi://10.0.0.1:623\"}\n  - name: b\n    bmc: {address: \"10.0.0.1\"}\n",
			json:     "{\"nodes\": [\n  {\"name\": \"a\",\n   \"bmc\": {\"address\": \"ipmi://10.0.0.1:623\"}},\n  {\"name\": \"b\",\n   \"bmc\": {\"address\": \"10.0.0.1\"}}]}\n",
			toml:     "[[nodes]]\nname = \"a\"\nbmc.address = \"ipmi://10.0.0.1:623\"\n[[nodes]]\nname = \"b\"\nbmc.address = \"10.0.0.1\"\n",
			want:     []string{`FILE:5: node b: bmc.address: 10.0.0.1 is also the BMC of node a (line 3)`},
			wantTOML: []string{`FILE:6: node b: bmc.address: 10.0.0.1 is also the BMC of node a (line 3)`},
		},
		{
			name: "MAC syntax",
			yaml: "nodes:\n  - name: a\n    macs:\n      - 3c:4a:92:11:22:33\n      - 3c:4a:92:11:22\n",
			json: "{\"nodes\": [\n  {\"name\": \"a\",\n   \"macs\": [\n      \"3c:4a:92:11:22:33\",\n      \"3c:4a:92:11:22\"]}]}\n",
			toml: "[[nodes]]\nname = \"a\"\nmacs = [\n      \"3c:4a:92:11:22:33\",\n      \"3c:4a:92:11:22\"]\n",
			want: []string{`FILE:5: node a: macs: "3c:4a:92:11:22" is not a MAC address (want 6 bytes like 3c:4a:92:11:22:33)`},
		},
		{
			name: "BMC address scheme",
			yaml: "nodes:\n  - name: web-014\n    bmc: {address: \"ipmj://10.1.12.14\"}\n",
			json: "{\"nodes\": [\n  {\"name\": \"web-014\",\n   \"bmc\": {\"address\": \"ipmj://10.1.12.14\"}}]}\n",
			toml: "[[nodes]]\nname = \"web-014\"\nbmc = {address = \"ipmj://10.1.12.14\"}\n",
			want: []string{`FILE:3: node web-014: bmc.address: unknown scheme "ipmj" (did you mean "ipmi"?)`},
		},
		{
			name: "BMC address host, port and path",
			yaml: "nodes:\n  - name: a\n    bmc: {address: \"ipmi://bmc_1..x\"}\n  - name: b\n    bmc: {address: \"ipmi://10.0.0.2:99999\"}\n  - name: c\n    bmc: {address: \"redfish://10.0.0.3/redfish/v1/Chassis/1\"}\n",
			json: "{\"nodes\": [\n  {\"name\": \"a\",\n   \"bmc\": {\"address\": \"ipmi://bmc_1..x\"}},\n  {\"name\": \"b\",\n   \"bmc\": {\"address\": \"ipmi://10.0.0.2:99999\"}},\n  {\"name\": \"c\",\n   \"bmc\": {\"address\": \"redfish://10.0.0.3/redfish/v1/Chassis/1\"}}]}\n",
			toml: "nodes = [\n  {name = \"a\",\n   bmc = {address = \"ipmi://bmc_1..x\"}},\n  {name = \"b\",\n   bmc = {address = \"ipmi://10.0.0.2:99999\"}},\n  {name = \"c\",\n   bmc = {address = \"redfish://10.0.0.3/redfish/v1/Chassis/1\"}},\n]\n",
			want: []string{
				`FILE:3: node a: bmc.address: host "bmc_1..x" is not a valid host name or IP address`,
				`FILE:5: node b: bmc.address: port 99999 is out of range (1-65535)`,
				`FILE:7: node c: bmc.address: path "/redfish/v1/Chassis/1" is not a Redfish system (want /redfish/v1/Systems/ID)`,
			},
		},
		{
			name: "credential that is not a reference is not echoed",
			yaml: "nodes:\n  - name: a\n    bmc:\n      password: hunter2\n",
			json: "{\"nodes\": [\n  {\"name\": \"a\",\n   \"bmc\": {\n      \"password\": \"hunter2\"}}]}\n",
			toml: "[[nodes]]\nname = \"a\"\n[nodes.bmc]\npassword = \"hunter2\"\n",
			want: []string{`FILE:4: node a: bmc.password: not a credential reference (write env:NAME, file:PATH or plain:VALUE; the value is not shown)`},
		},
		{
			name: "credential reference syntax",
			yaml: "defaults:\n  ssh:\n    password: \"env:my-pass\"\n  bmc:\n    password: 12345\nnodes: []\n",
			json: "{\"defaults\": {\n  \"ssh\": {\n    \"password\": \"env:my-pass\"},\n  \"bmc\": {\n    \"password\": 12345}},\n \"nodes\": []}\n",
			toml: "[defaults]\n[defaults.ssh]\npassword = \"env:my-pass\"\n[defaults.bmc]\npassword = 12345\n",
			want: []string{
				`FILE:3: defaults.ssh.password: env: needs an environment variable name (letters, digits and _, not starting with a digit)`,
				`FILE:5: defaults.bmc.password: want a credential reference (env:NAME, file:PATH or plain:VALUE), got an integer; the value is not shown`,
			},
		},
		{
			name: "enumerations",
			yaml: "nodes:\n  - name: a\n    boot: {mode: bios}\n    ssh: {host_key_policy: accept_new, agent: scp}\n    bmc:\n      options: {privilege: admin, verify: ful, boot_flag_timeout: off, boot_mode_override: sometimes}\n",
			json: "{\"nodes\": [\n  {\"name\": \"a\",\n   \"boot\": {\"mode\": \"bios\"},\n   \"ssh\": {\"host_key_policy\": \"accept_new\", \"agent\": \"scp\"},\n   \"bmc\": {\n     \"options\": {\"privilege\": \"admin\", \"verify\": \"ful\", \"boot_flag_timeout\": \"off\", \"boot_mode_override\": \"sometimes\"}}}]}\n",
			toml: "[[nodes]]\nname = \"a\"\nboot = {mode = \"bios\"}\nssh = {host_key_policy = \"accept_new\", agent = \"scp\"}\n[nodes.bmc]\noptions = {privilege = \"admin\", verify = \"ful\", boot_flag_timeout = \"off\", boot_mode_override = \"sometimes\"}\n",
			want: []string{
				`FILE:3: node a: boot.mode: unknown value "bios" (want legacy or uefi)`,
				`FILE:4: node a: ssh.host_key_policy: unknown value "accept_new" (want strict or accept-new) (did you mean "accept-new"?)`,
				`FILE:4: node a: ssh.agent: unknown value "scp" (want push or commands)`,
				`FILE:6: node a: bmc.options.privilege: unknown value "admin" (want user, operator or administrator) (did you mean "administrator"?)`,
				`FILE:6: node a: bmc.options.verify: unknown value "ful" (want full, device-only or off) (did you mean "full"?)`,
				`FILE:6: node a: bmc.options.boot_flag_timeout: unknown value "off" (want disable or keep)`,
				`FILE:6: node a: bmc.options.boot_mode_override: unknown value "sometimes" (want auto, always or never)`,
			},
		},
		{
			name: "cipher suites",
			yaml: "nodes:\n  - name: a\n    bmc:\n      options:\n        cipher_suites: [17, 2]\n  - name: b\n    bmc:\n      options:\n        cipher_suites: [0]\n",
			json: "{\"nodes\": [\n  {\"name\": \"a\",\n   \"bmc\": {\n     \"options\": {\n       \"cipher_suites\": [17, 2]}}},\n  {\"name\": \"b\",\n   \"bmc\": {\n     \"options\": {\n       \"cipher_suites\": [0]}}}]}\n",
			toml: "nodes = [\n  {name = \"a\",\n   bmc = {\n     options = {\n       cipher_suites = [17, 2]}}},\n  {name = \"b\",\n   bmc = {\n     options = {\n       cipher_suites = [0]}}},\n]\n",
			want: []string{
				`FILE:5: node a: bmc.options.cipher_suites: cipher suite 2 is not allowed (use 17 or 3; 0 only with allow_insecure_ipmi: true)`,
				`FILE:9: node b: bmc.options.cipher_suites: cipher suite 0 has no authentication or encryption; it needs bmc.options.allow_insecure_ipmi: true`,
			},
		},
		{
			name: "ranges",
			yaml: "nodes:\n  - name: a\n    ssh: {port: 0}\n    bmc:\n      options: {max_concurrent: 0, retries: -1}\n",
			json: "{\"nodes\": [\n  {\"name\": \"a\",\n   \"ssh\": {\"port\": 0},\n   \"bmc\": {\n     \"options\": {\"max_concurrent\": 0, \"retries\": -1}}}]}\n",
			toml: "[[nodes]]\nname = \"a\"\nssh = {port = 0}\n[nodes.bmc]\noptions = {max_concurrent = 0, retries = -1}\n",
			want: []string{
				`FILE:3: node a: ssh.port: port 0 is out of range (1-65535)`,
				`FILE:5: node a: bmc.options.max_concurrent: 0 is out of range (1-64; default 1)`,
				`FILE:5: node a: bmc.options.retries: -1 is out of range (0-100; default 3)`,
			},
		},
		{
			name: "durations",
			yaml: "nodes:\n  - name: a\n    bmc:\n      options:\n        timeout: 5\n        min_interval: 2 seconds\n",
			json: "{\"nodes\": [\n  {\"name\": \"a\",\n   \"bmc\": {\n     \"options\": {\n        \"timeout\": 5,\n        \"min_interval\": \"2 seconds\"}}}]}\n",
			toml: "[[nodes]]\nname = \"a\"\n[nodes.bmc]\n[nodes.bmc.options]\ntimeout = 5\nmin_interval = \"2 seconds\"\n",
			want: []string{
				`FILE:5: node a: bmc.options.timeout: want a duration like "2s" (a number needs a unit), got an integer`,
				`FILE:6: node a: bmc.options.min_interval: "2 seconds" is not a duration (write it like "500ms", "2s" or "1m30s")`,
			},
		},
		{
			name: "boot disk and addresses",
			yaml: "nodes:\n  - name: a\n    boot: {disk: sda}\n    ssh: {address: \"10.0.0.1:22\", jump_host: \"ops@\"}\n",
			json: "{\"nodes\": [\n  {\"name\": \"a\",\n   \"boot\": {\"disk\": \"sda\"},\n   \"ssh\": {\"address\": \"10.0.0.1:22\", \"jump_host\": \"ops@\"}}]}\n",
			toml: "[[nodes]]\nname = \"a\"\nboot = {disk = \"sda\"}\nssh = {address = \"10.0.0.1:22\", jump_host = \"ops@\"}\n",
			want: []string{
				`FILE:3: node a: boot.disk: "sda" must be an absolute /dev path, like /dev/sda or /dev/disk/by-path/...`,
				`FILE:4: node a: ssh.address: "10.0.0.1:22" has a port: write address: 10.0.0.1 and port: 22`,
				`FILE:4: node a: ssh.jump_host: "ops@": host "" is not a valid host name or IP address (want user@host[:port])`,
			},
		},
		{
			name: "labels",
			yaml: "nodes:\n  - name: a\n    labels:\n      -bad: x\n      ok: \"two words\"\n",
			json: "{\"nodes\": [\n  {\"name\": \"a\",\n   \"labels\": {\n      \"-bad\": \"x\",\n      \"ok\": \"two words\"}}]}\n",
			toml: "[[nodes]]\nname = \"a\"\n[nodes.labels]\n-bad = \"x\"\nok = \"two words\"\n",
			want: []string{
				`FILE:4: node a: labels: label key "-bad": use letters, digits, '-', '_' and '.', starting and ending with a letter or digit`,
				`FILE:5: node a: labels.ok: label value "two words": use letters, digits, '-', '_' and '.', starting and ending with a letter or digit (so that selectors can match it)`,
			},
		},
		{
			name:     "key given twice",
			yaml:     "nodes:\n  - name: a\n    name: b\n",
			json:     "{\"nodes\": [\n  {\"name\": \"a\",\n   \"name\": \"b\"}]}\n",
			toml:     "[[nodes]]\nname = \"a\"\nname = \"b\"\n",
			want:     []string{`FILE:3: node a: name: key appears twice (first at line 2)`},
			wantTOML: []string{`FILE:3: name: key defined twice (first at line 2)`},
		},
		{
			name: "name in defaults",
			yaml: "defaults:\n  name: x\nnodes: []\n",
			json: "{\"defaults\": {\n  \"name\": \"x\"},\n \"nodes\": []}\n",
			toml: "[defaults]\nname = \"x\"\n",
			want: []string{`FILE:2: defaults.name: a node name cannot have a default`},
		},
		{
			name: "shapes",
			yaml: "defaults: [1]\nnodes: {a: 1}\n",
			json: "{\"defaults\": [1],\n \"nodes\": {\"a\": 1}}\n",
			toml: "defaults = [1]\nnodes = {a = 1}\n",
			want: []string{
				`FILE:1: defaults: want a mapping of node fields, got a list`,
				`FILE:2: nodes: want a list of nodes, got a mapping`,
			},
		},
	}
	for _, c := range cases {
		for _, f := range []struct{ name, doc string }{{"f.yaml", c.yaml}, {"f.json", c.json}, {"f.toml", c.toml}} {
			t.Run(c.name+"/"+f.name, func(t *testing.T) {
				want := c.want
				if f.name == "f.toml" && c.wantTOML != nil {
					want = c.wantTOML
				}
				_, _, err := LoadBytes(f.name, []byte(f.doc))
				got := problemsOf(t, err)
				var exp []string
				for _, w := range want {
					exp = append(exp, strings.ReplaceAll(w, "FILE", f.name))
				}
				if !slices.Equal(got, exp) {
					t.Errorf("problems:\n got %q\nwant %q", got, exp)
				}
			})
		}
	}
}

// TestSyntaxErrors checks that a file that does not parse is one problem
// with the line where the parser gave up.
func TestSyntaxErrors(t *testing.T) {
	cases := []struct {
		name, doc string
		want      string
	}{
		{"f.yaml", "nodes:\n  - name: a\n    rack: [r1\n", "f.yaml:3: did not find expected ',' or ']'"},
		{"f.yaml", "nodes:\n  - name: a\n    rack: r1: 2\n", "f.yaml:3: mapping values are not allowed in this context"},
		{"f.yaml", "nodes:\n  - name: a\n---\nnodes: []\n", "f.yaml:3: a second YAML document: an inventory is one document (remove the ---)"},
		{"f.json", "{\"nodes\": [\n  {\"name\": \"a\"},\n  {\"name\": \"b\"}\n  {\"name\": \"c\"}]}\n", "f.json:4: not valid JSON: invalid character '{' after array element"},
		{"f.toml", "[[nodes]]\nname = \"a\"\nrack = r1\n", "f.toml:3: unexpected character U+0072 'r' at start of value"},
		{"f.toml", "[[nodes]]\nname = \"a\"\nrack = \"r1\n", "f.toml:3: basic strings cannot have new lines"},
		{"f.toml", "[[nodes]]\nname = \"a\"\nport = 022\n", "f.toml:3: integers cannot have leading zeroes"},
	}
	for _, c := range cases {
		_, _, err := LoadBytes(c.name, []byte(c.doc))
		got := problemsOf(t, err)
		if len(got) != 1 || got[0] != c.want {
			t.Errorf("%s %q:\n got %q\nwant %q", c.name, c.doc, got, c.want)
		}
	}
}

// TestTOMLTables checks TOML's own rules and the table forms the native
// format uses (sub-tables of the last [[nodes]], dotted keys, inline tables).
func TestTOMLTables(t *testing.T) {
	t.Run("sub-tables belong to the last array element", func(t *testing.T) {
		inv, _ := mustLoadBytes(t, "f.toml", `
[[nodes]]
name = "a"
[nodes.bmc]
address = "ipmi://10.0.0.1"
[nodes.bmc.options]
cipher_suites = [17]
[[nodes]]
name = "b"
bmc.address = "ipmi://10.0.0.2"
bmc.options.cipher_suites = [3]
`)
		if got := inv.Nodes[0].BMC; got.Address != "ipmi://10.0.0.1" || !slices.Equal(got.Options.CipherSuites, []int{17}) {
			t.Errorf("node a bmc = %+v", got)
		}
		if got := inv.Nodes[1].BMC; got.Address != "ipmi://10.0.0.2" || !slices.Equal(got.Options.CipherSuites, []int{3}) {
			t.Errorf("node b bmc = %+v", got)
		}
	})
	for _, c := range []struct {
		name, doc string
		want      []string
	}{
		{"table twice", "[defaults]\nrack = \"a\"\n[defaults]\nplaybook = \"b\"\n", []string{"f.toml:3: defaults: table defined twice (first at line 1)"}},
		{"inline table closed", "[[nodes]]\nname = \"a\"\nbmc = {address = \"ipmi://h\"}\n[nodes.bmc]\nusername = \"x\"\n", []string{"f.toml:4: nodes.bmc: cannot add to the inline table of line 3"}},
		{"value then table", "[[nodes]]\nname = \"a\"\nrack = \"r\"\n[nodes.rack]\n", []string{"f.toml:4: nodes.rack: already a value (line 3), not a table"}},
		{"dotted key into a value", "[[nodes]]\nname = \"a\"\nrack = \"r\"\nrack.x = 1\n", []string{"f.toml:4: rack: already a value (line 3), not a table"}},
	} {
		_, _, err := LoadBytes("f.toml", []byte(c.doc))
		if got := problemsOf(t, err); !slices.Equal(got, c.want) {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
		}
	}
}

// TestAllProblemsAtOnce checks that one run reports every problem of a
// file, in line order, and that the error unwraps to them.
func TestAllProblemsAtOnce(t *testing.T) {
	const doc = `defaults:
  bmc: {passwrd: env:X}
nodes:
  - name: web-001
    bmc: {address: "ipmj://10.0.0.1"}
    macs: [nope]
  - name: web-002
    ssh: {port: 70000}
    boot: {mode: bios}
  - rack: r1
  - name: web-001
`
	_, _, err := LoadBytes("fleet.yaml", []byte(doc))
	want := []string{
		`fleet.yaml:2: defaults.bmc.passwrd: unknown key (did you mean "password"?)`,
		`fleet.yaml:5: node web-001: bmc.address: unknown scheme "ipmj" (did you mean "ipmi"?)`,
		`fleet.yaml:6: node web-001: macs: "nope" is not a MAC address (want 6 bytes like 3c:4a:92:11:22:33)`,
		`fleet.yaml:8: node web-002: ssh.port: port 70000 is out of range (1-65535)`,
		`fleet.yaml:9: node web-002: boot.mode: unknown value "bios" (want legacy or uefi)`,
		`fleet.yaml:10: node #3: name: missing: every node needs a unique name`,
		`fleet.yaml:11: node web-001: name: duplicate node name "web-001" (first defined at line 4)`,
	}
	if got := problemsOf(t, err); !slices.Equal(got, want) {
		t.Fatalf("problems:\n got %q\nwant %q", got, want)
	}
	if err.Error() != strings.Join(want, "\n") {
		t.Errorf("Error() =\n%s\nwant one problem per line", err)
	}
	var p Problem
	if !errors.As(err, &p) || p.Error() != want[0] {
		t.Errorf("errors.As(Problem) = %v, want the first problem", p)
	}
}

// TestProblemFormat pins the exact form of a problem and a warning.
func TestProblemFormat(t *testing.T) {
	p := Problem{Pos: Position{File: "fleet.yaml", Line: 41}, Node: "web-014", Field: "bmc.address", Msg: `unknown scheme "ipmj"`}
	if got, want := p.Error(), `fleet.yaml:41: node web-014: bmc.address: unknown scheme "ipmj"`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	p = Problem{Pos: Position{File: "fleet.toml"}, Msg: "broken"}
	if got, want := p.Error(), "fleet.toml: broken"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	w := Warning{Pos: Position{File: "a.yaml", Line: 3}, Field: "defaults.bmc.options.insecure_tls", Msg: "m"}
	if got, want := w.String(), "a.yaml:3: defaults.bmc.options.insecure_tls: m"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

// TestInheritedProblemsReportedOnce checks that a wrong value in defaults is
// reported once, at its line, not once per node.
func TestInheritedProblemsReportedOnce(t *testing.T) {
	var b strings.Builder
	b.WriteString("defaults:\n  bmc:\n    options: {cipher_suites: [0]}\n  macs: [\"3c:4a:92:11:22:33\"]\nnodes:\n")
	for _, n := range []string{"a", "b", "c"} {
		b.WriteString("  - name: " + n + "\n")
	}
	_, _, err := LoadBytes("f.yaml", []byte(b.String()))
	want := []string{
		`f.yaml:3: node a and 2 more: defaults.bmc.options.cipher_suites: cipher suite 0 has no authentication or encryption; it needs bmc.options.allow_insecure_ipmi: true`,
		`f.yaml:4: defaults.macs: gives 3 nodes the same value, which must identify one node`,
	}
	if got := problemsOf(t, err); !slices.Equal(got, want) {
		t.Errorf("problems:\n got %q\nwant %q", got, want)
	}
	// The same problem twice in one node is said once, without "and 1 more".
	_, _, err = LoadBytes("f.yaml", []byte("nodes:\n  - name: a\n    macs: [zz, zz]\n"))
	if got := problemsOf(t, err); !slices.Equal(got, []string{`f.yaml:3: node a: macs: "zz" is not a MAC address (want 6 bytes like 3c:4a:92:11:22:33)`}) {
		t.Errorf("repeated problem: %q", got)
	}
}

func TestWarnings(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open.pw")
	closed := filepath.Join(dir, "closed.pw")
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{{open, 0o644}, {closed, 0o600}} {
		if err := os.WriteFile(f.path, []byte("x\n"), f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f.path, f.mode); err != nil { // umask
			t.Fatal(err)
		}
	}
	doc := `defaults:
  bmc: {options: {insecure_tls: true}}
nodes:
  - name: a
    bmc: {address: "redfish://10.0.0.1", password: "file:` + open + `"}
  - name: b
    bmc: {address: "redfish://10.0.0.2", password: "file:` + closed + `"}
  - name: c
    bmc: {address: "redfish://10.0.0.3", password: "file:` + filepath.Join(dir, "missing.pw") + `"}
  - name: d
    ssh: {address: 10.0.0.4}
    bmc: {options: {allow_insecure_ipmi: true, cipher_suites: [0, 3]}}
`
	_, ws := mustLoadBytes(t, "f.yaml", doc)
	want := []string{
		`f.yaml:2: defaults.bmc.options.insecure_tls: the Redfish TLS certificate is not verified; prefer ca_file`,
		`f.yaml:5: node a: bmc.password: credential file ` + open + ` is readable by group or others (mode 0644); chmod 600 it`,
		`f.yaml:12: node d: bmc.options.allow_insecure_ipmi: permits IPMI cipher suite 0 and IPMI 1.5: anyone on the BMC network can read and forge commands`,
		`f.yaml:12: node d: bmc.options.cipher_suites: cipher suite 0 has no authentication, integrity or encryption`,
	}
	if got := warningsOf(ws); !slices.Equal(got, want) {
		t.Errorf("warnings:\n got %q\nwant %q", got, want)
	}
}

func TestEmptyAndShapes(t *testing.T) {
	for _, c := range []struct{ name, doc string }{
		{"f.yaml", ""},
		{"f.yaml", "# only a comment\n"},
		{"f.yaml", "nodes: []\n"},
		{"f.json", "{}"},
		{"f.toml", ""},
	} {
		inv, ws, err := LoadBytes(c.name, []byte(c.doc))
		if err != nil {
			t.Errorf("%s %q: %v", c.name, c.doc, err)
			continue
		}
		if len(inv.Nodes) != 0 || len(ws) != 1 || !strings.Contains(ws[0].Msg, "no nodes") {
			t.Errorf("%s %q: nodes %d, warnings %q; want none and a no-nodes warning", c.name, c.doc, len(inv.Nodes), warningsOf(ws))
		}
	}
	_, _, err := LoadBytes("f.yaml", []byte("- a\n- b\n"))
	if got := problemsOf(t, err); len(got) != 1 || got[0] != "f.yaml:1: the top level must be a mapping with the keys defaults and nodes, not a list" {
		t.Errorf("list document: %q", got)
	}
}

// TestYAMLAnchors checks anchors, aliases and merge keys, and that an alias
// bomb is stopped rather than expanded.
func TestYAMLAnchors(t *testing.T) {
	// Anchors on an x- key (ignored) or on defaults, merged with <<; the
	// node's own keys win over merged ones.
	inv, _ := mustLoadBytes(t, "f.yaml", `
x-dl360: &dl360
  playbook: hp-dl360-g7
  boot: {mode: legacy}
nodes:
  - <<: *dl360
    name: a
    ssh: {address: 10.0.0.1}
  - <<: *dl360
    name: b
    playbook: default
    ssh: {address: 10.0.0.2}
`)
	if a, b := inv.Nodes[0], inv.Nodes[1]; a.Playbook != "hp-dl360-g7" || a.Boot.Mode != "legacy" || b.Playbook != "default" || b.Boot.Mode != "legacy" {
		t.Errorf("merge keys: a=%s/%s b=%s/%s", a.Playbook, a.Boot.Mode, b.Playbook, b.Boot.Mode)
	}
	_, _, err := LoadBytes("f.yaml", []byte("dl360: &d {playbook: p}\nnodes:\n  - <<: *d\n    name: a\n"))
	if got := problemsOf(t, err); len(got) != 1 || got[0] != `f.yaml:1: dl360: unknown key (the top level has defaults, nodes and x-… keys for YAML anchors)` {
		t.Errorf("unknown top-level key: %q", got)
	}

	// A billion laughs: each level doubles. It must end quickly with a problem.
	var b strings.Builder
	b.WriteString("x-a0: &a0 [\"3c:4a:92:11:22:33\"]\n")
	for i := 1; i < 40; i++ {
		fmt.Fprintf(&b, "x-a%d: &a%d [*a%d, *a%d]\n", i, i, i-1, i-1)
	}
	b.WriteString("nodes:\n  - name: x\n    macs: *a39\n")
	_, _, err = LoadBytes("f.yaml", []byte(b.String()))
	if err == nil {
		t.Fatal("alias bomb loaded without error")
	}
}

func TestFormatDetection(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		file, data string
		node       string
	}{
		{"fleet.yml", "nodes:\n  - name: y1\n", "y1"},
		{"fleet.JSON", `{"nodes": [{"name": "j1"}]}`, "j1"},
		{"fleet.toml", "[[nodes]]\nname = \"t1\"\n", "t1"},
		{"fleet.conf", "[[nodes]]\nname = \"t2\"\n", "t2"},
		{"fleet.txt", "nodes:\n  - name: y2\n", "y2"},
		{"hosts", "[web]\nweb-01 ansible_host=10.0.0.1\n", "web-01"},
		{"inventory", "web-02 ansible_host=10.0.0.2\n", "web-02"},
		{"hosts.cfg", "[web]\nweb-03\n", "web-03"},
		{"site.yaml", "all:\n  hosts:\n    web-04:\n", "web-04"},
		{"devices.csv", "Name,Rack\nnb-01,r1\n", "nb-01"},
		{"export", "Name,Rack\nnb-02,r1\n", "nb-02"},
	}
	for _, c := range cases {
		inv, _, err := Load(write(c.file, c.data))
		if err != nil {
			t.Errorf("%s: %v", c.file, err)
			continue
		}
		if len(inv.Nodes) != 1 || inv.Nodes[0].Name != c.node {
			t.Errorf("%s: nodes %v, want %s", c.file, names(inv.Nodes), c.node)
		}
	}
	if _, _, err := Load(filepath.Join(dir, "absent.yaml")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want ErrNotExist", err)
	}
}

func TestNormalizeMAC(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"3c:4a:92:11:22:33", "3c:4a:92:11:22:33"},
		{"3C:4A:92:11:22:33", "3c:4a:92:11:22:33"},
		{"3c-4a-92-11-22-33", "3c:4a:92:11:22:33"},
		{"3c4a.9211.2233", "3c:4a:92:11:22:33"},
		{"3C4A92112233", "3c:4a:92:11:22:33"},
	} {
		if got, err := NormalizeMAC(c.in); err != nil || got != c.want {
			t.Errorf("NormalizeMAC(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "3c:4a:92:11:22", "3c:4a-92:11:22:33", "3g:4a:92:11:22:33", "00:11:22:33:44:55:66:77", "3c4a92112233ff", "3c:4a:92:11:22:3"} {
		if got, err := NormalizeMAC(bad); err == nil {
			t.Errorf("NormalizeMAC(%q) = %q, want an error", bad, got)
		}
	}
}

func TestParseBMCAddress(t *testing.T) {
	ok := []struct {
		in     string
		want   BMCAddress
		canon  string
		defult int
	}{
		{"ipmi://10.1.12.14", BMCAddress{Protocol: "ipmi", Host: "10.1.12.14"}, "ipmi://10.1.12.14", 623},
		{"IPMI://bmc-14.example.net:6230", BMCAddress{Protocol: "ipmi", Host: "bmc-14.example.net", Port: 6230}, "ipmi://bmc-14.example.net:6230", 6230},
		{"ipmi://[fd00::1]:623/", BMCAddress{Protocol: "ipmi", Host: "fd00::1", Port: 623}, "ipmi://[fd00::1]:623", 623},
		{"redfish://10.0.0.1", BMCAddress{Protocol: "redfish", Scheme: "https", Host: "10.0.0.1"}, "redfish://10.0.0.1", 443},
		{"redfish+https://10.0.0.1:8443/redfish/v1/Systems/1/", BMCAddress{Protocol: "redfish", Scheme: "https", Host: "10.0.0.1", Port: 8443, Path: "/redfish/v1/Systems/1"}, "redfish://10.0.0.1:8443/redfish/v1/Systems/1", 8443},
		{"redfish+http://127.0.0.1:8000/redfish/v1/Systems/System.Embedded.1", BMCAddress{Protocol: "redfish", Scheme: "http", Host: "127.0.0.1", Port: 8000, Path: "/redfish/v1/Systems/System.Embedded.1"}, "redfish+http://127.0.0.1:8000/redfish/v1/Systems/System.Embedded.1", 8000},
		{"redfish+http://bmc", BMCAddress{Protocol: "redfish", Scheme: "http", Host: "bmc"}, "redfish+http://bmc", 80},
		{"10.0.0.1", BMCAddress{Host: "10.0.0.1"}, "10.0.0.1", 0},
		{"bmc1.example.net:623", BMCAddress{Host: "bmc1.example.net", Port: 623}, "bmc1.example.net:623", 623},
		{"fd00::1", BMCAddress{Host: "fd00::1"}, "[fd00::1]", 0},
		{"[fd00::1]:6230", BMCAddress{Host: "fd00::1", Port: 6230}, "[fd00::1]:6230", 6230},
	}
	for _, c := range ok {
		got, err := ParseBMCAddress(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseBMCAddress(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
			continue
		}
		if s := got.String(); s != c.canon {
			t.Errorf("%q.String() = %q, want %q", c.in, s, c.canon)
		}
		if again, err := ParseBMCAddress(got.String()); err != nil || again != got {
			t.Errorf("String() of %q does not parse back: %+v, %v", c.in, again, err)
		}
		if p := got.DefaultPort(); p != c.defult {
			t.Errorf("%q.DefaultPort() = %d, want %d", c.in, p, c.defult)
		}
	}
	// https:// and metal3's vendor Redfish schemes are Redfish.
	for in, want := range map[string]BMCAddress{
		"https://10.0.0.1": {Protocol: "redfish", Scheme: "https", Host: "10.0.0.1"},
		"idrac-redfish://10.0.0.1/redfish/v1/Systems/System.Embedded.1": {Protocol: "redfish", Scheme: "https", Host: "10.0.0.1", Path: "/redfish/v1/Systems/System.Embedded.1"},
		"ilo5-redfish://bmc.example.net":                                {Protocol: "redfish", Scheme: "https", Host: "bmc.example.net"},
		"idrac-redfish+http://10.0.0.1:8000":                            {Protocol: "redfish", Scheme: "http", Host: "10.0.0.1", Port: 8000},
	} {
		if got, err := ParseBMCAddress(in); err != nil || got != want {
			t.Errorf("ParseBMCAddress(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	bad := []struct{ in, want string }{
		{"", "empty address"},
		{"ipmj://10.0.0.1", `unknown scheme "ipmj" (did you mean "ipmi"?)`},
		{"idrac://10.0.0.1", `scheme "idrac" is not supported: iDRAC's WS-Management is not spoken; use redfish://HOST (iDRAC 7 and later) or ipmi://HOST`},
		{"ilo5://10.0.0.1", `scheme "ilo5" is not supported: HP's RIBCL (proliantutils) is not spoken; use redfish://HOST (iLO 5 speaks Redfish) or ipmi://HOST`},
		{"redfish-virtualmedia://10.0.0.1", `scheme "redfish-virtualmedia" is not supported: reprov boots the network through the boot override, not virtual media; use redfish://HOST`},
		{"xredfish://10.0.0.1", `unknown scheme "xredfish" (did you mean "redfish"?)`},
		{"ipmi:10.0.0.1", `missing // after "ipmi:": write ipmi://HOST`},
		{"ipmi://10.0.0.1/x", `"ipmi://10.0.0.1/x": an ipmi:// address has no path`},
		{"redfish://10.0.0.1/redfish/v1/Systems", `path "/redfish/v1/Systems" is not a Redfish system (want /redfish/v1/Systems/ID)`},
		{"redfish://10.0.0.1/redfish/v1/Systems/1/Bios", `path "/redfish/v1/Systems/1/Bios" is not a Redfish system (want /redfish/v1/Systems/ID)`},
		{"redfish://10.0.0.1?x=1", `"redfish://10.0.0.1?x=1": a BMC address has no query or fragment`},
		{"ipmi://", `"ipmi://" has no host`},
		{"ipmi://10.0.0.1:0", "port 0 is out of range (1-65535)"},
		{"ipmi://10.0.0.1:x", `not a valid URL: invalid port ":x" after host`},
		{"10.0.0.300", `host "10.0.0.300" is not a valid host name or IP address`},
		{"bmc 1", "address contains spaces or control characters"},
		{"10.0.0.1/redfish/v1/Systems/1", `"10.0.0.1/redfish/v1/Systems/1": a bare address is host[:port]; a path needs redfish://host/redfish/v1/Systems/ID`},
		{"fd00::1:x:", `"fd00::1:x:" is not a valid IPv6 address (write [v6addr]:port to give a port)`},
		{"[10.0.0.1]:623", `"[10.0.0.1]:623": only an IPv6 address goes in brackets`},
		{"host:", `"host:": empty port`},
	}
	for _, c := range bad {
		_, err := ParseBMCAddress(c.in)
		if err == nil || err.Error() != c.want {
			t.Errorf("ParseBMCAddress(%q) error = %v, want %q", c.in, err, c.want)
		}
	}
	// Credentials in an address are refused without being repeated.
	for _, in := range []string{"ipmi://admin:s3cr3t@10.0.0.1", "admin:s3cr3t@10.0.0.1", "redfish://admin:s3cr3t@bmc/redfish/v1/Systems/1"} {
		_, err := ParseBMCAddress(in)
		if err == nil || strings.Contains(err.Error(), "s3cr3t") || !strings.Contains(err.Error(), "must not contain credentials") {
			t.Errorf("ParseBMCAddress(%q) error = %v", in, err)
		}
	}
}

func TestNodeBMCAddressAndTableRow(t *testing.T) {
	inv, _, err := Load(filepath.Join("testdata", "fleet.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	n, ok := inv.Node("web-015")
	if !ok {
		t.Fatal("web-015 not found")
	}
	a, err := n.BMCAddress()
	if err != nil || a != (BMCAddress{Protocol: "ipmi", Host: "10.1.12.15", Port: 6230}) {
		t.Errorf("BMCAddress() = %+v, %v", a, err)
	}
	if _, err := (Node{Name: "x"}).BMCAddress(); !errors.Is(err, ErrNoBMCAddress) {
		t.Errorf("no address: %v, want ErrNoBMCAddress", err)
	}
	want := []string{"web-015", "r12", "ipmi://10.1.12.15:6230", "root@10.2.12.15:2222", "3c:4a:92:11:22:35", "hp-dl360-g7", "model=dl360g7,role=web,site=ams1"}
	if got := n.TableRow(); !reflect.DeepEqual(got, want) {
		t.Errorf("TableRow() = %q, want %q", got, want)
	}
	if len(TableHeader()) != len(want) {
		t.Errorf("TableHeader has %d columns, rows %d", len(TableHeader()), len(want))
	}
	lab, _ := inv.Node("lab-001")
	if got := lab.TableRow()[3]; got != "root@fd00::20" {
		t.Errorf("lab-001 ssh cell = %q", got)
	}
	if got := inv.Racks(); !slices.Equal(got, []string{"lab", "r12", "r13"}) {
		t.Errorf("Racks() = %q", got)
	}
}

// TestJSONTrailingCommaRefusedWithItsLine: a .json inventory is strict
// JSON; the trailing comma YAML would accept is refused at its line.
func TestJSONTrailingCommaRefusedWithItsLine(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "fleet.json")
	body := "{\n  \"nodes\": [\n    {\"name\": \"web-01\", \"bmc\": {\"address\": \"10.0.0.1\"}},\n  ]\n}\n"
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), p+`:3: not valid JSON: trailing comma before ] (JSON allows none)`) {
		t.Errorf("Load of JSON with a trailing comma: %v", err)
	}
}
