package inventory

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ansibleListJSON is what `ansible-inventory -i hosts.yml --list` prints
// for a small AMS1-like inventory (group vars stay on the groups with
// --export; host vars are under _meta.hostvars).
const ansibleListJSON = `{
    "_meta": {
        "hostvars": {
            "web-014": {"ansible_host": "10.2.12.14", "ipmi_host": "10.1.12.14"},
            "web-015": {"ansible_host": "10.2.12.15", "ipmi_host": "10.1.12.15", "ipmi_port": 6230}
        }
    },
    "all": {
        "children": ["ungrouped", "ams1"],
        "vars": {"ipmi_user": "ADMIN", "ipmi_password": "env:IPMI_PASSWORD", "ansible_user": "ops"}
    },
    "ams1": {"children": ["rack_r12"]},
    "rack_r12": {"hosts": ["web-014", "web-015"]},
    "ungrouped": {}
}
`

// TestAnsibleInventoryListJSON: the JSON of `ansible-inventory --list`
// (what dynamic inventories print) is read like the YAML inventory it came
// from: groups, racks from rack groups, group and host variables.
func TestAnsibleInventoryListJSON(t *testing.T) {
	p := filepath.Join(t.TempDir(), "inventory.json")
	if err := os.WriteFile(p, []byte(ansibleListJSON), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, load := range []func() (*Inventory, []Warning, error){
		func() (*Inventory, []Warning, error) { return Load(p) },
		func() (*Inventory, []Warning, error) { return Import(p, FromAnsible, ImportOptions{}) },
	} {
		inv, _, err := load()
		if err != nil {
			t.Fatal(err)
		}
		if len(inv.Nodes) != 2 {
			t.Fatalf("nodes %+v, want web-014 and web-015", inv.Nodes)
		}
		n := inv.Nodes[1]
		if n.Name != "web-015" || n.Rack != "r12" || n.BMC.Address != "ipmi://10.1.12.15:6230" || n.BMC.Username != "ADMIN" ||
			n.SSH.Address != "10.2.12.15" || n.SSH.User != "ops" || n.Labels["group.ams1"] != "true" {
			t.Errorf("web-015 = %+v", n)
		}
		if n.Pos.File != p || n.Pos.Line == 0 {
			t.Errorf("web-015 position %v: want a line of %s", n.Pos, p)
		}
	}
	// A problem points into the JSON file.
	bad := strings.Replace(ansibleListJSON, `"ipmi_host": "10.1.12.14"`, `"ipmi_host": "ipmj://10.1.12.14"`, 1)
	if err := os.WriteFile(p, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Load(p); err == nil || !strings.Contains(err.Error(), p+`:4: node web-014: bmc.address: unknown scheme "ipmj"`) {
		t.Errorf("Load of a bad --list JSON: %v", err)
	}
}
