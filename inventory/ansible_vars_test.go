package inventory

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeTree writes files (path → content) under dir.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAnsibleGroupAndHostVars: group_vars/ and host_vars/ beside an
// Ansible inventory are read as Ansible reads them — files named GROUP,
// GROUP.yml, GROUP.yaml, GROUP.json, or a directory GROUP/ — with its
// precedence: host_vars > the inventory's host vars > group_vars of a child
// group > of its parent > group_vars/all > the inventory's group vars.
func TestAnsibleGroupAndHostVars(t *testing.T) {
	for _, format := range []string{"hosts.ini", "hosts.yml"} {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			writeTree(t, dir, map[string]string{
				"hosts.ini": `[webservers:children]
rack_r12

[rack_r12]
web-014 ansible_host=10.2.12.14
web-015 ansible_host=10.2.12.15 ansible_user=from-inventory-host

[webservers:vars]
ansible_user=from-inventory-group
reprov_playbook=from-inventory-group
`,
				"hosts.yml": `all:
  children:
    webservers:
      vars:
        ansible_user: from-inventory-group
        reprov_playbook: from-inventory-group
      children:
        rack_r12:
          hosts:
            web-014: {ansible_host: 10.2.12.14}
            web-015: {ansible_host: 10.2.12.15, ansible_user: from-inventory-host}
`,
				// all: lowest of the files; the parent group beats it, the
				// child beats the parent.
				"group_vars/all.yml":                "ansible_user: from-all\nreprov_playbook: from-all\nipmi_user: ADMIN\nipmi_password: env:IPMI_PASSWORD\nreprov_boot_mode: legacy\n",
				"group_vars/webservers/main.yml":    "reprov_playbook: from-webservers\nreprov_boot_mode: uefi\n",
				"group_vars/webservers/zz-bmc.yaml": "ipmi_port: 6230\n",
				"group_vars/rack_r12":               "reprov_playbook: hp-dl360-g7\n",
				"group_vars/rack_r12.yml~":          "reprov_playbook: an-editor-backup\n",
				"host_vars/web-014.json":            `{"ipmi_host": "10.1.12.14", "serial": "CZJ1234ABC"}`,
				"host_vars/web-015/bmc.yml":         "ipmi_host: 10.1.12.15\nansible_user: from-host-vars\n",
				"host_vars/web-099.yml":             "serial: NOPE\n",
			})
			inv, ws, err := Import(filepath.Join(dir, format), FromAnsible, ImportOptions{})
			if err != nil {
				t.Fatal(err)
			}
			byName := map[string]Node{}
			for _, n := range inv.Nodes {
				byName[n.Name] = n
			}
			w14, w15 := byName["web-014"], byName["web-015"]
			for _, c := range []struct{ what, got, want string }{
				{"web-014 ssh.user (group_vars/all beats the inventory's group vars)", w14.SSH.User, "from-all"},
				{"web-015 ssh.user (host_vars beats everything)", w15.SSH.User, "from-host-vars"},
				{"web-014 playbook (the child group's file beats its parent's)", w14.Playbook, "hp-dl360-g7"},
				{"web-014 boot.mode (the parent's directory beats all)", w14.Boot.Mode, "uefi"},
				{"web-014 bmc.address (host_vars JSON, the port of a group_vars directory)", w14.BMC.Address, "ipmi://10.1.12.14:6230"},
				{"web-015 bmc.address", w15.BMC.Address, "ipmi://10.1.12.15:6230"},
				{"web-014 bmc.username", w14.BMC.Username, "ADMIN"},
				{"web-014 serial", w14.Serial, "CZJ1234ABC"},
			} {
				if c.got != c.want {
					t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
				}
			}
			if !warned(ws, "host_vars/web-099.yml", "there is no host web-099") {
				t.Errorf("a host_vars file for no host is not warned about: %v", ws)
			}
		})
	}
}

// TestAnsibleVarFileProblemsNameTheirFile: a bad value in group_vars/ is
// reported at that file's line, not the inventory's.
func TestAnsibleVarFileProblemsNameTheirFile(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"hosts.ini":              "[web]\nweb-1 ansible_host=10.0.0.1\n",
		"group_vars/web.yml":     "# web\nansible_user: root\nansible_port: not-a-port\n",
		"group_vars/all/vault":   "$ANSIBLE_VAULT;1.1;AES256\n6162\n",
		"group_vars/all/bad.yml": "a: [unclosed\n",
	})
	_, ws, err := Import(filepath.Join(dir, "hosts.ini"), FromAnsible, ImportOptions{})
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want a validation error, got %v", err)
	}
	var port, syntax bool
	for _, p := range ve.Problems {
		if p.Pos.File == filepath.Join(dir, "group_vars", "web.yml") && p.Pos.Line == 3 && p.Node == "web-1" && p.Field == "ssh.port" {
			port = true
		}
		if p.Pos.File == filepath.Join(dir, "group_vars", "all", "bad.yml") {
			syntax = true
		}
	}
	if !port || !syntax {
		t.Errorf("problems %v: want ssh.port at group_vars/web.yml:3 (node web-1) and the syntax error of group_vars/all/bad.yml", ve.Problems)
	}
	if !warned(ws, filepath.Join("group_vars", "all", "vault"), "vault-encrypted") {
		t.Errorf("a vault-encrypted variable file is not warned about: %v", ws)
	}
}

func warned(ws []Warning, file, msg string) bool {
	for _, w := range ws {
		if strings.Contains(w.Pos.File+" "+w.Msg, file) && strings.Contains(w.Msg, msg) {
			return true
		}
	}
	return false
}
