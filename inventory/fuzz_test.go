package inventory

import (
	"errors"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func addSeedFiles(f *testing.F, files ...string) {
	f.Helper()
	for _, name := range files {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
}

// checkResult holds for every input: an error is a *ValidationError whose
// problems name the file; success gives an inventory whose nodes have names.
func checkResult(t *testing.T, name string, inv *Inventory, ws []Warning, err error) {
	t.Helper()
	if err != nil {
		var ve *ValidationError
		if !errors.As(err, &ve) || len(ve.Problems) == 0 {
			t.Fatalf("error is not a *ValidationError with problems: %v", err)
		}
		for _, p := range ve.Problems {
			if p.Pos.File != name {
				t.Fatalf("problem without the file name: %v", p)
			}
		}
		if inv != nil {
			t.Fatal("inventory returned with an error")
		}
		return
	}
	if inv == nil {
		t.Fatal("no inventory and no error")
	}
	seen := map[string]bool{}
	for _, n := range inv.Nodes {
		if !validName(n.Name) || seen[n.Name] {
			t.Fatalf("loaded a node with an invalid or duplicate name %q", n.Name)
		}
		seen[n.Name] = true
		if n.BMC.Address != "" {
			if _, err := n.BMCAddress(); err != nil {
				t.Fatalf("loaded an invalid BMC address: %v", err)
			}
		}
		for _, s := range []Secret{n.BMC.Password, n.SSH.Password} {
			if !s.IsZero() && s.Kind() == "" {
				t.Fatalf("loaded a credential that is not a reference")
			}
		}
	}
	for _, w := range ws {
		if w.Pos.File != name && w.Pos.File != "" {
			t.Fatalf("warning names another file: %v", w)
		}
	}
}

func FuzzLoadNative(f *testing.F) {
	addSeedFiles(f, "fleet.yaml", "fleet.json")
	f.Add([]byte("defaults:\n  bmc: {options: {cipher_suites: [0]}}\nnodes:\n  - name: a\n  - name: a\n    macs: [zz]\n"))
	f.Add([]byte("x: &a [*a]\nnodes:\n  - <<: *a\n"))
	f.Add([]byte("nodes:\n  - {name: a, bmc: {address: \"redfish://[::1]:1/redfish/v1/Systems/1\"}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, name := range []string{"f.yaml", "f.json"} {
			inv, ws, err := LoadBytes(name, data)
			checkResult(t, name, inv, ws, err)
		}
	})
}

func FuzzLoadTOML(f *testing.F) {
	addSeedFiles(f, "fleet.toml")
	f.Add([]byte("[[nodes]]\nname = \"a\"\n[nodes.bmc]\naddress = \"ipmi://h\"\n[[nodes]]\nname = \"b\"\nbmc = {address = \"ipmi://h\"}\n[nodes.bmc]\n"))
	f.Add([]byte("a.b.c = 1\n[a]\n[a.b]\n[[a.b.d]]\nnodes = [{name = 0x1F}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		inv, ws, err := LoadBytes("f.toml", data)
		checkResult(t, "f.toml", inv, ws, err)
	})
}

func FuzzImportAnsible(f *testing.F) {
	for _, name := range []string{"ansible/hosts.yml", "ansible/hosts.ini"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, filepath.Ext(name) == ".ini")
	}
	f.Add([]byte("[a:children]\nb\n[b:children]\na\n[a]\nh[01:03] x='[1, \"2\"]'\n"), true)
	f.Add([]byte("all:\n  children:\n    g: &g\n      children:\n        h: *g\n"), false)
	f.Fuzz(func(t *testing.T, data []byte, ini bool) {
		name := "hosts.yml"
		if ini {
			name = "hosts.ini"
		}
		inv, ws, err := ImportBytes(name, data, FromAnsible, ImportOptions{})
		checkResult(t, name, inv, ws, err)
	})
}

func FuzzImportNetBox(f *testing.F) {
	addSeedFiles(f, "netbox/devices.csv")
	f.Add([]byte("Name,OOB IP,cf_bmc_protocol,cf_macs\na,::1/64,redfish,\"aa:bb:cc:dd:ee:ff\nzz\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		inv, ws, err := ImportBytes("devices.csv", data, FromNetBoxCSV, ImportOptions{})
		checkResult(t, "devices.csv", inv, ws, err)
	})
}

// FuzzHostlist: a selection pattern either expands to at most maxExpansion
// valid globs, or is refused with an ErrPattern error naming the pattern;
// a pattern without brackets is left as it is.
func FuzzHostlist(f *testing.F) {
	for _, s := range []string{"web-[01-12]", "web-[1-3,10]", "rack[1-2]-n[01-40]", "web-*", "web-?", "[a-z]", "[!x]",
		"web-[", "[3-1]", "[1,,2]", `\[1]`, "n[0-99999999]", "[]", "[^]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, pat string) {
		got, err := expandHostlist(pat)
		if err != nil {
			if !errors.Is(err, ErrPattern) || !strings.Contains(err.Error(), strconv.Quote(pat)) {
				t.Fatalf("error %q does not wrap ErrPattern or name the pattern", err)
			}
			return
		}
		if len(got) == 0 || len(got) > maxExpansion {
			t.Fatalf("%q expanded to %d patterns", pat, len(got))
		}
		for _, g := range got {
			if _, err := path.Match(g, ""); err != nil {
				t.Fatalf("%q expanded to an invalid glob %q", pat, g)
			}
		}
		if !strings.ContainsAny(pat, "[]") && (len(got) != 1 || got[0] != pat) {
			t.Fatalf("%q without brackets expanded to %q", pat, got)
		}
	})
}
