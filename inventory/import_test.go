package inventory

import (
	"bytes"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestImportAnsibleYAML(t *testing.T) {
	path := filepath.Join("testdata", "ansible", "hosts.yml")
	inv, ws, err := Import(path, FromAnsible, ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	admin := NewSecret("env:IPMI_PASSWORD")
	want := []Node{
		{
			// ansible_user: all → root, ams1 (deeper) → ops.
			Name: "web-014", Rack: "r12",
			Labels:   map[string]string{"group.ams1": "true", "group.rack_r12": "true", "group.webservers": "true"},
			BMC:      BMC{Address: "ipmi://10.1.12.14", Username: "ADMIN", Password: admin},
			SSH:      SSH{Address: "10.2.12.14", User: "ops", Identity: "~/.ssh/ops_ed25519"},
			MACs:     []string{"3c:4a:92:11:22:33", "3c:4a:92:11:22:34"},
			Serial:   "CZJ1234ABC",
			Playbook: "hp-dl360-g7",
		},
		{
			Name: "web-015", Rack: "r12",
			Labels:   map[string]string{"group.ams1": "true", "group.rack_r12": "true", "group.webservers": "true"},
			BMC:      BMC{Address: "ipmi://10.1.12.15:6230", Username: "ADMIN", Password: admin},
			SSH:      SSH{Address: "10.2.12.15", Port: 2222, User: "ops", Identity: "~/.ssh/ops_ed25519"},
			MACs:     []string{"3c:4a:92:11:22:35"},
			Playbook: "hp-dl360-g7",
		},
		{
			// rack variable beats the rack group; databases and ams1 have
			// the same depth, databases sorts later and wins; host vars
			// beat group vars; a literal password becomes plain:.
			Name: "db-001", Rack: "r13a",
			Labels: map[string]string{"group.ams1": "true", "group.databases": "true", "group.rack_r13": "true", "tier": "gold"},
			BMC:    BMC{Address: "ipmi://10.1.13.1", Username: "ADMIN", Password: NewSecret("plain:Sup3r-s3cret!")},
			SSH:    SSH{Address: "10.2.13.1", User: "dba", Identity: "~/.ssh/ops_ed25519"},
			Boot:   Boot{Mode: "uefi", Disk: "/dev/nvme0n1"},
		},
	}
	for _, n := range []string{"batch01", "batch02", "batch03"} {
		// Host ranges expand; the templated password is not imported.
		want = append(want, Node{
			Name:   n + ".ams1.example.net",
			Labels: map[string]string{"group.batch": "true"},
			BMC:    BMC{Username: "ADMIN"},
			SSH:    SSH{Address: n + ".ams1.example.net", User: "root"},
		})
	}
	diffNodes(t, withoutPos(inv.Nodes), want)
	if inv.Nodes[0].Pos != (Position{File: path, Line: 16}) {
		t.Errorf("web-014 Pos = %v", inv.Nodes[0].Pos)
	}
	wantWarn := []string{
		path + ":34: node db-001: bmc.password: Ansible variable ipmi_password is a literal credential; imported as plain: (not shown); prefer env:NAME or file:PATH",
		path + ":53: node batch01.ams1.example.net and 2 more: bmc.password: Ansible variable ipmi_password is a Jinja template, which reprov does not evaluate; not imported",
	}
	if got := warningsOf(ws); !slices.Equal(got, wantWarn) {
		t.Errorf("warnings:\n got %q\nwant %q", got, wantWarn)
	}
	// Load reads it too, recognizing the Ansible layout.
	inv2, _, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	diffNodes(t, inv2.Nodes, inv.Nodes)
}

func TestImportAnsibleINI(t *testing.T) {
	path := filepath.Join("testdata", "ansible", "hosts.ini")
	inv, ws, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	env := NewSecret("env:IPMI_PASSWORD")
	ams2r21 := map[string]string{"group.ams2": "true", "group.rack_r21": "true", "group.web": "true"}
	ams2r22 := map[string]string{"group.ams2": "true", "group.rack_r22": "true"}
	want := []Node{
		{Name: "bastion.ams2.example.net", SSH: SSH{Address: "10.3.0.2"}},
		{
			// ams2 and web both at depth 1: web sorts later, its ansible_user wins.
			Name: "web-021", Rack: "r21", Labels: ams2r21,
			BMC:      BMC{Address: "ipmi://10.4.21.1", Username: "ADMIN", Password: env},
			SSH:      SSH{Address: "10.3.21.1", User: "deploy"},
			MACs:     []string{"3c:4a:92:aa:00:01", "3c:4a:92:aa:00:02"},
			Serial:   "CZJ2100001",
			Playbook: "hp-dl360-g7",
		},
		{
			Name: "web-022", Rack: "r21", Labels: ams2r21,
			BMC:      BMC{Address: "ipmi://10.4.21.2:6230", Username: "ADMIN", Password: env},
			SSH:      SSH{Address: "10.3.21.2", User: "deploy"},
			MACs:     []string{"3c:4a:92:aa:00:03"},
			Playbook: "hp-dl360-g7",
		},
		{
			Name: "gpu-01.ams2.example.net", Rack: "r22", Labels: ams2r22,
			BMC: BMC{Username: "ADMIN", Password: NewSecret("plain:ADMIN")},
			SSH: SSH{Address: "gpu-01.ams2.example.net", User: "root"},
		},
		{
			Name: "gpu-02.ams2.example.net", Rack: "r22", Labels: ams2r22,
			BMC: BMC{Username: "ADMIN", Password: NewSecret("plain:ADMIN")},
			SSH: SSH{Address: "gpu-02.ams2.example.net", User: "root"},
		},
		{
			// host:port sets the port; ipmi_host already a URL is kept.
			Name: "db-021", Rack: "r22", Labels: ams2r22,
			BMC: BMC{Address: "redfish://10.4.22.9/redfish/v1/Systems/1", Username: "ADMIN", Password: env},
			SSH: SSH{Address: "10.3.22.9", Port: 2222, User: "postgres"},
		},
	}
	diffNodes(t, withoutPos(inv.Nodes), want)
	var lines []int
	for _, n := range inv.Nodes {
		lines = append(lines, n.Pos.Line)
	}
	if !slices.Equal(lines, []int{2, 5, 6, 9, 9, 10}) {
		t.Errorf("node lines = %v", lines)
	}
	wantWarn := []string{
		path + ":9: node gpu-01.ams2.example.net and 1 more: bmc.password: Ansible variable ipmi_password is a literal credential; imported as plain: (not shown); prefer env:NAME or file:PATH",
	}
	if got := warningsOf(ws); !slices.Equal(got, wantWarn) {
		t.Errorf("warnings:\n got %q\nwant %q", got, wantWarn)
	}
}

func TestImportAnsibleOptions(t *testing.T) {
	const ini = `[dc1_row4_rack17]
n1 ansible_host=10.0.0.1
n2 ansible_host=10.0.0.2 location=r99
`
	inv, _, err := ImportBytes("hosts", []byte(ini), FromAnsible, ImportOptions{Ansible: AnsibleOptions{
		RackVar: "location", RackGroupPattern: `_(rack\d+)$`,
	}})
	if err != nil {
		t.Fatal(err)
	}
	if got := []string{inv.Nodes[0].Rack, inv.Nodes[1].Rack}; !slices.Equal(got, []string{"rack17", "r99"}) {
		t.Errorf("racks = %q", got)
	}
	for _, bad := range []string{`(`, `^rack`} {
		if _, _, err := ImportBytes("hosts", []byte(ini), FromAnsible, ImportOptions{Ansible: AnsibleOptions{RackGroupPattern: bad}}); err == nil {
			t.Errorf("pattern %q accepted", bad)
		}
	}
	if _, _, err := ImportBytes("hosts", []byte(ini), "cmdb", ImportOptions{}); err == nil || !strings.Contains(err.Error(), `unknown inventory source "cmdb"`) {
		t.Errorf("unknown source: %v", err)
	}
}

func TestImportAnsibleProblems(t *testing.T) {
	t.Run("ini", func(t *testing.T) {
		const ini = `[web]
web-01 ansible_host=10.0.0.1 ipmi_host=ipmj://10.1.0.1
web-02 oops
web-03 serial="unterminated
[web:wrong]
[db:vars]
just a line
[db]
db-[01:x]
db-1 mac=zz ansible_port=22a
`
		_, _, err := ImportBytes("h.ini", []byte(ini), FromAuto, ImportOptions{})
		want := []string{
			`h.ini:2: node web-01: bmc.address: unknown scheme "ipmj" (did you mean "ipmi"?) (from Ansible variable ipmi_host)`,
			`h.ini:3: host web-02: expected key=value after the host name, got a word without =`,
			`h.ini:4: no closing quotation mark`,
			`h.ini:5: section [web:wrong] has unknown type "wrong" (want vars or children)`,
			`h.ini:7: [db:vars]: expected key=value`,
			`h.ini:9: host pattern "db-[01:x]": a range is numbers [01:20] or single letters [a:f]`,
			`h.ini:10: node db-1: ssh.port: want an integer, got a string (from Ansible variable ansible_port)`,
			`h.ini:10: node db-1: macs: "zz" is not a MAC address (want 6 bytes like 3c:4a:92:11:22:33) (from Ansible variable mac)`,
		}
		if got := problemsOf(t, err); !slices.Equal(got, want) {
			t.Errorf("problems:\n got %q\nwant %q", got, want)
		}
	})
	t.Run("yaml", func(t *testing.T) {
		const doc = `all:
  children:
    web:
      hosts:
        web-01:
          ipmi_host: 10.0.0.1
          ipmi_port: 70000
        web-02: [1]
      childs: {}
    db:
      hosts: [db-01]
`
		_, ws, err := ImportBytes("h.yml", []byte(doc), FromAuto, ImportOptions{})
		want := []string{
			`h.yml:6: node web-01: bmc.address: port 70000 is out of range (1-65535) (from Ansible variable ipmi_host)`,
			`h.yml:8: host web-02: want a mapping of variables, got a list`,
			`h.yml:11: group db: hosts must be a mapping of host names (to their variables), not a list`,
		}
		if got := problemsOf(t, err); !slices.Equal(got, want) {
			t.Errorf("problems:\n got %q\nwant %q", got, want)
		}
		if got := warningsOf(ws); len(got) != 1 || got[0] != `h.yml:9: group web: unexpected key "childs" ignored (want hosts, children or vars)` {
			t.Errorf("warnings: %q", got)
		}
	})
	t.Run("group loop", func(t *testing.T) {
		const doc = "[a:children]\nb\n[b:children]\na\n[a]\nh1\n"
		_, _, err := ImportBytes("h.ini", []byte(doc), FromAnsible, ImportOptions{})
		got := problemsOf(t, err)
		if len(got) != 1 || !strings.Contains(got[0], "is its own ancestor") {
			t.Errorf("problems: %q", got)
		}
	})
}

func TestExpandHostPattern(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"web-01", []string{"web-01"}},
		{"web[01:03].x", []string{"web01.x", "web02.x", "web03.x"}},
		{"n[8:10]", []string{"n8", "n9", "n10"}},
		{"n[0:10:5]", []string{"n0", "n5", "n10"}},
		{"db-[a:c]", []string{"db-a", "db-b", "db-c"}},
		{"r[1:2]n[1:2]", []string{"r1n1", "r1n2", "r2n1", "r2n2"}},
	} {
		got, err := expandHostPattern(c.in)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("expandHostPattern(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"n[1:", "n[01:100]", "n[3:1]", "n[0:999999999]", "n[1:2:0]", "n[1]"} {
		if got, err := expandHostPattern(bad); err == nil {
			t.Errorf("expandHostPattern(%q) = %q, want an error", bad, got)
		}
	}
}

func TestImportNetBox(t *testing.T) {
	path := filepath.Join("testdata", "netbox", "devices.csv")
	inv, ws, err := Import(path, FromNetBoxCSV, ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	webLabels := func(tags ...string) map[string]string {
		l := map[string]string{
			"netbox.status": "active", "netbox.tenant": "web-team", "netbox.site": "ams3", "netbox.location": "hall-1",
			"netbox.role": "web-server", "netbox.manufacturer": "hpe", "netbox.device_type": "proliant-dl360-g7",
			"netbox.platform": "ubuntu-22.04", "netbox.cf.warranty_end": "2027-03-31", "netbox.cf.patch_window": "sunday-02-00",
		}
		for _, t := range tags {
			l["netbox.tag."+t] = "true"
		}
		return l
	}
	want := []Node{
		{
			Name: "web-031", Rack: "R31", Labels: webLabels("prod", "pxe-ok"),
			BMC:    BMC{Address: "ipmi://10.6.31.1"},
			SSH:    SSH{Address: "10.5.31.1"},
			MACs:   []string{"3c:4a:92:bb:00:01", "3c:4a:92:bb:00:02"},
			Serial: "CZJ3100001", Boot: Boot{Mode: "legacy"}, Playbook: "hp-dl360-g7",
		},
		{
			Name: "web-032", Rack: "R31", Labels: webLabels("prod"),
			BMC:    BMC{Address: "ipmi://10.6.31.2"},
			SSH:    SSH{Address: "10.5.31.2"},
			MACs:   []string{"3c:4a:92:bb:00:03"},
			Serial: "CZJ3100002", Boot: Boot{Mode: "legacy"}, Playbook: "hp-dl360-g7",
		},
		{
			Name: "db-031", Rack: "R32",
			Labels: map[string]string{
				"netbox.status": "planned", "netbox.tenant": "data-platform", "netbox.site": "ams3", "netbox.location": "hall-2",
				"netbox.role": "database", "netbox.manufacturer": "dell", "netbox.device_type": "poweredge-r750", "netbox.platform": "rocky-linux-9",
			},
			BMC:    BMC{Address: "redfish://[2001:db8:6::32]"},
			SSH:    SSH{Address: "10.5.32.1"},
			MACs:   []string{"b8:ca:3a:00:00:31"},
			Serial: "7XK9Q34", Boot: Boot{Mode: "uefi"},
		},
		{
			Name: "spare-032", Rack: "R32",
			Labels: map[string]string{
				"netbox.status": "inventory", "netbox.site": "ams3", "netbox.location": "hall-2",
				"netbox.role": "server", "netbox.manufacturer": "dell", "netbox.device_type": "poweredge-r750",
			},
			Serial: "7XK9Q35",
		},
	}
	diffNodes(t, withoutPos(inv.Nodes), want)
	var lines []int
	for _, n := range inv.Nodes {
		lines = append(lines, n.Pos.Line)
	}
	// Row 3 has a two-line comment: the rows after it start a line later.
	if !slices.Equal(lines, []int{2, 3, 5, 6}) {
		t.Errorf("node lines = %v", lines)
	}
	wantWarn := []string{
		path + ":1: columns not imported: ID, Asset tag, Position, Comments",
		path + ":6: node spare-032: neither bmc.address nor ssh.address is set: reprov cannot reach this node",
	}
	if got := warningsOf(ws); !slices.Equal(got, wantWarn) {
		t.Errorf("warnings:\n got %q\nwant %q", got, wantWarn)
	}
}

func TestImportNetBoxHeaders(t *testing.T) {
	// API/import-style names and NetBox 3 names work as well as the export's.
	const csv = "\ufeffname,device_role,serial,primary_ip4,oob_ip,cf_bmc_protocol,tags\nn1,Compute Node,S1,10.0.0.1/24,10.1.0.1/24,redfish+http,\"a, b\"\n"
	inv, _, err := ImportBytes("d.csv", []byte(csv), FromNetBoxCSV, ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []Node{{
		Name: "n1", Serial: "S1",
		Labels: map[string]string{"netbox.role": "compute-node", "netbox.tag.a": "true", "netbox.tag.b": "true"},
		BMC:    BMC{Address: "redfish+http://10.1.0.1"},
		SSH:    SSH{Address: "10.0.0.1"},
	}}
	diffNodes(t, withoutPos(inv.Nodes), want)
}

func TestImportNetBoxProblems(t *testing.T) {
	const csv = `Name,Rack,OOB IP,cf_bmc_protocol,cf_macs
a,r1,10.0.0.1,ipmj,3c:4a:92:11:22:33
,r1,10.0.0.2,,
b,r2,10.0.0.3,ipmi,"3c:4a:92:11:22:34,
zz"
c,r3,10.0.0.3,ipmi,
d,r3
`
	_, _, err := ImportBytes("f.csv", []byte(csv), FromAuto, ImportOptions{})
	want := []string{
		`f.csv:2: node a: bmc.address: unknown scheme "ipmj" (did you mean "ipmi"?) (from columns OOB IP and cf_bmc_protocol)`,
		`f.csv:3: name: the device has no name (reprov needs one per node)`,
		`f.csv:4: node b: macs: "zz" is not a MAC address (want 6 bytes like 3c:4a:92:11:22:33) (from column cf_macs)`,
		`f.csv:6: node c: bmc.address: ipmi://10.0.0.3 is also the BMC of node b (line 4)`,
		`f.csv:7: row has 2 fields, the header 5`,
	}
	if got := problemsOf(t, err); !slices.Equal(got, want) {
		t.Errorf("problems:\n got %q\nwant %q", got, want)
	}
	for _, c := range []struct{ doc, want string }{
		{"Hostname,Rack\nn1,r1\n", "f.csv:1: no Name column: is this a NetBox device export? (the first row must be the header)"},
		{"Name,Serial,Serial number\nn1,a,b\n", `f.csv:1: columns "Serial" and "Serial number" mean the same thing`},
		{"Name,Rack\n\"n1,r1\n", `f.csv:2: extraneous or missing " in quoted-field`},
	} {
		_, _, err := ImportBytes("f.csv", []byte(c.doc), FromNetBoxCSV, ImportOptions{})
		if got := problemsOf(t, err); len(got) != 1 || got[0] != c.want {
			t.Errorf("%q:\n got %q\nwant %q", c.doc, got, c.want)
		}
	}
}

// TestImportRoundTrip imports each realistic file, writes it in each native
// format and loads the result: the nodes must be the same.
func TestImportRoundTrip(t *testing.T) {
	for _, src := range []string{
		"fleet.yaml", "fleet.toml", "ansible/hosts.yml", "ansible/hosts.ini", "netbox/devices.csv",
	} {
		inv, _, err := Import(filepath.Join("testdata", src), FromAuto, ImportOptions{})
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		for _, format := range []string{"yaml", "json", "toml"} {
			var buf bytes.Buffer
			if err := WriteNativeOptions(&buf, inv, format, WriteOptions{KeepLiterals: true}); err != nil {
				t.Fatalf("%s → %s: %v", src, format, err)
			}
			back, _, err := LoadBytes("out."+format, buf.Bytes())
			if err != nil {
				t.Fatalf("%s → %s → Load: %v\n%s", src, format, err, buf.String())
			}
			t.Run(src+"→"+format, func(t *testing.T) { diffNodes(t, withoutPos(back.Nodes), withoutPos(inv.Nodes)) })
		}
	}
}

func TestWriteNative(t *testing.T) {
	inv, _, err := Load(filepath.Join("testdata", "ansible", "hosts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	err = WriteNative(&buf, inv, "yaml")
	if !errors.Is(err, ErrLiteralCredentials) || !strings.Contains(err.Error(), "node db-001 have plain: passwords") {
		t.Fatalf("WriteNative with a literal: %v", err)
	}
	if buf.Len() != 0 || strings.Contains(err.Error(), "Sup3r") {
		t.Error("WriteNative wrote output or leaked the literal on refusal")
	}
	if err := WriteNative(&buf, inv, "xml"); err == nil {
		t.Error("format xml accepted")
	}

	// Values every node shares go to defaults.
	fleet, _, err := Load(filepath.Join("testdata", "ansible", "hosts.ini"))
	if err != nil {
		t.Fatal(err)
	}
	fleet.Nodes = slices.DeleteFunc(fleet.Nodes, func(n Node) bool { return n.BMC.Username == "" || n.BMC.Password.Kind() == "plain" })
	buf.Reset()
	if err := WriteNative(&buf, fleet, "yaml"); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if !strings.Contains(out, "defaults:\n  bmc:\n    username: ADMIN\n    password: env:IPMI_PASSWORD\n") || strings.Count(out, "username:") != 1 {
		t.Errorf("shared BMC credentials not written once under defaults:\n%s", out)
	}
}
