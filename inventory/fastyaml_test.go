package inventory

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// loadYAMLv3 loads data as LoadBytes did before the fast path: through
// yaml.v3's node tree.
func loadYAMLv3(t testing.TB, name string, data []byte) (*Inventory, []Warning, error) {
	return loadYAMLv3From(t, name, data, sourceAuto)
}

func loadYAMLv3From(t testing.TB, name string, data []byte, src source) (*Inventory, []Warning, error) {
	t.Helper()
	cfg, err := AnsibleOptions{}.compile()
	if err != nil {
		t.Fatal(err)
	}
	return loadWith(name, data, src, cfg, true)
}

// sameAsYAMLv3 checks that the fast path, when it accepts data, gives what
// yaml.v3's path gives: the same nodes, or the same problems (message,
// file, line, node, field), and the same warnings. It reports whether the
// fast path accepted data.
func sameAsYAMLv3(t *testing.T, name string, data []byte) bool {
	t.Helper()
	return sameAsYAMLv3From(t, name, data, sourceAuto)
}

// sameAsYAMLv3From is sameAsYAMLv3 for a file read as src (LoadBytes reads
// sourceAuto, an import of a native file sourceNative).
func sameAsYAMLv3From(t *testing.T, name string, data []byte, src source) bool {
	t.Helper()
	r, ok := loadFastYAML(name, data, src)
	if !ok {
		return false
	}
	inv, ws, err := loadYAMLv3From(t, name, data, src)
	if got, want := problemList(r.err), problemList(err); !slices.Equal(got, want) {
		t.Fatalf("problems differ for %q:\nfast:    %q\nyaml.v3: %q", data, got, want)
	}
	if !reflect.DeepEqual(r.inv, inv) {
		t.Fatalf("inventories differ for %q:\nfast:    %#v\nyaml.v3: %#v", data, r.inv, inv)
	}
	if !reflect.DeepEqual(r.warnings, ws) {
		t.Fatalf("warnings differ for %q:\nfast:    %q\nyaml.v3: %q", data, warningsOf(r.warnings), warningsOf(ws))
	}
	return true
}

// problemList lists the problems of a load's error, each with its file,
// line, node, field and message.
func problemList(err error) []string {
	if err == nil {
		return nil
	}
	ve, ok := err.(*ValidationError)
	if !ok {
		return []string{"not a *ValidationError: " + err.Error()}
	}
	out := make([]string, len(ve.Problems))
	for i, p := range ve.Problems {
		out[i] = p.Error()
	}
	return out
}

// fastSeeds are documents at the edges of the fast path's subset.
var fastSeeds = []string{
	"",
	"# only a comment\n",
	"nodes: []\n",
	"{}",
	"- a\n- b\n",
	"hello\n",
	"nodes:\n- name: a\n  macs:\n  - 3c:4a:92:11:22:33\n  - 3c:4a:92:11:22:34\n  rack: r1\n- name: b\n",
	"nodes:\n  -\n    name: a\n  -\n  - name: b\n",
	"nodes:\n  - - a\n    - b\n",
	"nodes:\n  - name: 'it''s'\n  - name: \"a\\x41\\u00e9\\t\"\n  - {name: c, labels: {a: b, c: ~}}\n",
	"defaults:\n  ssh: {port: 022}\nnodes:\n  - name: a\n    ssh: {port: 0x16, address: 10.0.0.1}\n",
	"nodes:\n  - name: a # comment\n    bmc: # comment\n      address: ipmi://h:623 # c\n#x\n  # y\n",
	"nodes:\n  - name: a\n    rack: r1: 2\n",
	"nodes:\n  - name: a\n    rack: [r1\n",
	"nodes:\n  - name: a\n  rack: b\n",
	"nodes:\n  - name: a\n   rack: b\n",
	"nodes:\n  - name: a\n    rack: b\n      c\n",
	"nodes:\n  - name: a\ndefaults:\n  rack: r\n",
	"nodes:\n  - name: a\nnodes:\n  - name: b\nbogus: 1\n",
	"x-a: &a {rack: r}\nnodes:\n  - <<: *a\n    name: a\n",
	"nodes:\n  - name: a\n    labels: |\n      a\n",
	"nodes:\n\t- name: a\n",
	"nodes:\r\n  - name: a\r\n",
	"all:\n  hosts:\n    a:\n",
	"nodes: [{name: a}]\n_meta: {}\n",
	"---\nnodes: []\n",
	"nodes:\n  - name: a\n    skip_identity_check: yes\n    bmc: {options: {timeout: 1.5, retries: -1, cipher_suites: [+3, 017, 0b11]}}\n",
	"nodes:\n  - name: 2001-12-14\n    serial: .5\n    guid: 1e3\n    rack: -.inf\n",
	"nodes:\n  - {name: a, macs: [\"a\", 'b',c]}\n  - {\"name\":\"b\"}\n  - {name: c d:e}\n",
	"nodes:\n  - name: a\n    labels:\n      role: web\n      role: db\n    rack: r1\n    rack: r2\n",
	"defaults:\n  bmc: {password: file:/nonexistent/x}\nnodes:\n  - name: a\n    bmc: {password: file:/nonexistent/x}\n",
}

func FuzzFastYAML(f *testing.F) {
	for _, name := range []string{"fleet.yaml", "fleet.json", "ansible/hosts.yml"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add(fleetYAML(12))
	for _, s := range fastSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sameAsYAMLv3(t, "f.yaml", data)
		sameAsYAMLv3From(t, "f.yaml", data, sourceNative)
		// The same input with the bytes the fast path never reads turned
		// into ones it does, so that mutations explore structure rather
		// than end in the byte check.
		sameAsYAMLv3(t, "f.yaml", inSubsetBytes(data))
	})
}

// inSubsetBytes maps each byte the fast path declines (a control
// character but newline, DEL, non-ASCII) to a space, a newline or one of
// YAML's indicators.
func inSubsetBytes(data []byte) []byte {
	const indicators = " \n-:#[]{},'\"&*!|>?%@`~."
	out := make([]byte, len(data))
	for i, c := range data {
		if c < ' ' && c != '\n' || c >= 0x7f {
			c = indicators[int(c)%len(indicators)]
		}
		out[i] = c
	}
	return out
}

// TestFastYAMLSameAsYAMLv3 runs the seeds of FuzzFastYAML, and checks that
// the fast path accepts the files it is for.
func TestFastYAMLSameAsYAMLv3(t *testing.T) {
	for _, s := range fastSeeds {
		sameAsYAMLv3(t, "f.yaml", []byte(s))
		sameAsYAMLv3From(t, "f.yaml", []byte(s), sourceNative)
	}
	data, err := os.ReadFile(filepath.Join("testdata", "fleet.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for name, doc := range map[string][]byte{
		"testdata/fleet.yaml":  data,
		"generated fleet":      fleetYAML(100),
		"indentless lists":     []byte(fastSeeds[6]),
		"quotes and escapes":   []byte(fastSeeds[9]),
		"comments":             []byte(fastSeeds[11]),
		"defaults after nodes": []byte(fastSeeds[17]),
		"duplicate keys":       []byte(fastSeeds[29]),
	} {
		if !sameAsYAMLv3(t, "f.yaml", doc) {
			t.Errorf("%s: the fast path declined it", name)
		}
	}
	for _, doc := range []string{
		fastSeeds[12], fastSeeds[13], fastSeeds[19], fastSeeds[20], fastSeeds[21], fastSeeds[22], fastSeeds[23], fastSeeds[25],
	} {
		if sameAsYAMLv3(t, "f.yaml", []byte(doc)) {
			t.Errorf("the fast path accepted %q, outside its subset", doc)
		}
	}
}

// TestFastYAMLKeepsYAMLv3Messages checks that a file the fast path declines
// still gets yaml.v3's message.
func TestFastYAMLKeepsYAMLv3Messages(t *testing.T) {
	_, _, err := LoadBytes("f.yaml", []byte("nodes:\n  - name: a\n    rack: r1: 2\n"))
	if got := problemList(err); len(got) != 1 || !strings.HasSuffix(got[0], "mapping values are not allowed in this context") {
		t.Errorf("got %q", got)
	}
}

// TestFastYAMLLineCombinations checks the property of FuzzFastYAML on every
// three-line document made of lines that mix indentation, list and mapping
// forms, flow collections, quotes and comments.
func TestFastYAMLLineCombinations(t *testing.T) {
	lines := []string{
		"nodes:", "- name: a", "  - name: b", "  rack: r", "    ssh:", "      port: 22",
		"  macs:", "  - aa:bb:cc:dd:ee:ff", "    - - \"3c:4a:92:11:22:33\"", "-",
		"  - {name: c, labels: {\"a\": 'b'}} # c", "defaults:", " y: ~", "# c",
	}
	accepted := 0
	for _, a := range lines {
		for _, b := range lines {
			for _, c := range lines {
				if sameAsYAMLv3(t, "f.yaml", []byte(a+"\n"+b+"\n"+c)) {
					accepted++
				}
			}
		}
	}
	if accepted == 0 {
		t.Error("the fast path declined every combination")
	}
}
