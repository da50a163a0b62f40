package inventory

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoSecretInOutput sets credentials with marker values in the
// environment, a file and plain: literals, and checks that no error,
// warning, JSON or string form of the inventory or its nodes contains them.
func TestNoSecretInOutput(t *testing.T) {
	const (
		envMarker   = "MARKER-env-7f3a"
		fileMarker  = "MARKER-file-91bc"
		plainMarker = "MARKER-plain-c0de"
	)
	t.Setenv("REPROV_TEST_BMC_PW", envMarker)
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "bmc.pw")
	if err := os.WriteFile(pwFile, []byte(fileMarker+"\n"), 0o644); err != nil { // group-readable: a warning
		t.Fatal(err)
	}
	if err := os.Chmod(pwFile, 0o644); err != nil {
		t.Fatal(err)
	}
	doc := fmt.Sprintf(`nodes:
  - name: a
    bmc: {address: ipmi://10.0.0.1, password: env:REPROV_TEST_BMC_PW}
    ssh: {address: 10.0.1.1, password: "plain:%s"}
  - name: b
    bmc: {address: ipmi://10.0.0.2, password: "file:%s"}
  - name: c
    bmc: {address: ipmi://10.0.0.3, password: "plain:%s"}
`, plainMarker, pwFile, plainMarker)
	inv, ws, err := LoadBytes("f.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	// The references do resolve to the markers: the checks below could fail.
	for i, want := range []string{envMarker, fileMarker, plainMarker} {
		if got, err := inv.Nodes[i].BMC.Password.Resolve(); err != nil || got != want {
			t.Fatalf("node %d password resolves to %q, %v", i, got, err)
		}
	}

	var outputs []string
	add := func(what string, s string) { outputs = append(outputs, what+": "+s) }
	js, err := json.Marshal(inv)
	if err != nil {
		t.Fatal(err)
	}
	add("json", string(js))
	for _, n := range inv.Nodes {
		add("%v", fmt.Sprintf("%v", n))
		add("%+v", fmt.Sprintf("%+v", n))
		add("%#v", fmt.Sprintf("%#v", n))
		add("String", n.BMC.Password.String())
		add("row", strings.Join(n.TableRow(), " "))
	}
	for _, w := range ws {
		add("warning", w.String())
	}
	var buf bytes.Buffer
	err = WriteNative(&buf, inv, "yaml")
	add("write refusal", fmt.Sprint(err))
	add("write output", buf.String())

	// Inputs with credentials where they do not belong, in every importer.
	bad := []struct{ name, doc string }{
		{"f.yaml", "nodes:\n  - name: a\n    bmc: {password: " + plainMarker + "}\n    ssh: {password: \"env:" + plainMarker + "\"}\n"},
		{"f.yaml", "nodes:\n  - name: a\n    bmc: {password: [" + plainMarker + "]}\n    ssh: {password: {x: " + plainMarker + "}}\n"},
		{"f.yaml", "nodes:\n  - name: a\n    bmc: {address: \"ipmi://admin:" + plainMarker + "@10.0.0.1\"}\n"},
		{"f.yaml", "nodes:\n  - name: a\n    bmc: {address: \"admin:" + plainMarker + "@10.0.0.1:623\"}\n"},
		{"f.toml", "[[nodes]]\nname = \"a\"\nbmc.password = \"" + plainMarker + "\"\nbmc.address = \"redfish://u:" + plainMarker + "@h/redfish/v1/Systems/1\"\n"},
		{"f.json", `{"nodes": [{"name": "a", "bmc": {"password": "` + plainMarker + `"}}]}`},
		{"hosts.ini", "[web]\nw1 ipmi_password=" + plainMarker + " ansible_ssh_pass='" + plainMarker + "' ansible_port=x\nw2 ipmi_password='[\"" + plainMarker + "\"]'\n"},
		{"hosts.yml", "all:\n  hosts:\n    w1:\n      ipmi_password: [" + plainMarker + "]\n      ansible_password: !vault |\n        $ANSIBLE_VAULT;1.1;AES256\n        " + plainMarker + "\n"},
	}
	for _, b := range bad {
		inv, ws, err := LoadBytes(b.name, []byte(b.doc))
		add(b.name+" error", fmt.Sprint(err))
		for _, w := range ws {
			add(b.name+" warning", w.String())
		}
		if inv != nil {
			js, _ := json.Marshal(inv)
			add(b.name+" json", string(js))
		}
	}
	for _, o := range outputs {
		for _, m := range []string{envMarker, fileMarker, plainMarker} {
			if strings.Contains(o, m) {
				t.Errorf("secret %s leaked in %s", m, o)
			}
		}
	}
	// And the checks did produce errors and warnings to look at.
	if len(outputs) < 20 || !strings.Contains(strings.Join(outputs, "\n"), "the value is not shown") {
		t.Errorf("too little output checked: %d", len(outputs))
	}
}

// TestSecretCacheReadsOncePerRun: a run's cache reads a password file once
// (a later change is not seen by that run, and is by the next run's
// cache), caches a failure naming the reference only, and a nil cache
// reads every time.
func TestSecretCacheReadsOncePerRun(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "bmc.pw")
	write := func(v string) {
		t.Helper()
		if err := os.WriteFile(pw, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s := NewSecret("file:" + pw)
	write("first-7d2e")
	run := &SecretCache{}
	if v, err := run.Resolve(s); err != nil || v != "first-7d2e" {
		t.Fatalf("Resolve = %q, %v; want first-7d2e", v, err)
	}
	write("second-44ab")
	if v, _ := run.Resolve(s); v != "first-7d2e" {
		t.Errorf("same run after the file changed: %q, want the value it read first", v)
	}
	if v, _ := (&SecretCache{}).Resolve(s); v != "second-44ab" {
		t.Errorf("next run: %q, want second-44ab", v)
	}
	var none *SecretCache
	if v, _ := none.Resolve(s); v != "second-44ab" {
		t.Errorf("nil cache: %q, want second-44ab", v)
	}

	missing := NewSecret("file:" + filepath.Join(dir, "absent.pw"))
	_, err1 := run.Resolve(missing)
	if err := os.WriteFile(filepath.Join(dir, "absent.pw"), []byte("late-91f0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err2 := run.Resolve(missing)
	if err1 == nil || err2 == nil || v != "" {
		t.Fatalf("missing file: %v, then %q, %v; want the same failure twice in one run", err1, v, err2)
	}
	if !strings.Contains(err2.Error(), "absent.pw") || strings.Contains(err2.Error(), "late-91f0") {
		t.Errorf("error %q: want the reference named, no value", err2)
	}
}
