package playbooks

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

// docs/playbooks.md is the operators' reference: it must name every key of
// the schema and every value of every enum, so that the code and the page
// cannot drift apart silently.
func TestDocsListEverything(t *testing.T) {
	b, err := os.ReadFile("../docs/playbooks.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	var want []string
	for _, k := range topKeys {
		want = append(want, "`"+k+"`")
	}
	for _, group := range []struct {
		prefix string
		keys   []string
	}{{"timeouts.", timeoutKeys}, {"wipe.", wipeKeys}, {"install.", installKeys}} {
		for _, k := range group.keys {
			want = append(want, "`"+group.prefix+k+"`")
		}
	}
	for _, k := range hookKeys {
		want = append(want, "`"+k+"`")
	}
	for _, v := range pathValues {
		want = append(want, "`"+string(v)+"`")
	}
	for _, v := range powerActionValues {
		want = append(want, "`"+string(v)+"`")
	}
	for _, v := range bootModeValues {
		want = append(want, "`"+string(v)+"`")
	}
	for _, v := range bootSectorValues {
		want = append(want, "`"+string(v)+"`")
	}
	for _, v := range uefiValues {
		want = append(want, "`"+string(v)+"`")
	}
	for _, v := range hookEnvNames {
		want = append(want, "`"+v+"`")
	}
	for _, d := range []struct {
		key string
		val string
	}{
		{"timeouts.precheck", formatDuration(defaultTimeouts.Precheck)},
		{"timeouts.oob_boot", formatDuration(defaultTimeouts.OOBBoot)},
		{"timeouts.power", formatDuration(defaultTimeouts.Power)},
		{"timeouts.wait_landing", formatDuration(defaultTimeouts.WaitLanding)},
		{"timeouts.inband", formatDuration(defaultTimeouts.Inband)},
		{"timeouts.reboot", formatDuration(defaultTimeouts.Reboot)},
	} {
		// The table row of each timeout states its default as Go prints it.
		want = append(want, "| `"+d.key+"` | duration | `"+d.val+"`")
	}
	for _, w := range want {
		if !strings.Contains(doc, w) {
			t.Errorf("docs/playbooks.md does not mention %s", w)
		}
	}
}

// Every YAML example in docs/playbooks.md is a valid playbook, and the
// page's summary of each built-in says what the built-in file says.
func TestDocsExamples(t *testing.T) {
	b, err := os.ReadFile("../docs/playbooks.md")
	if err != nil {
		t.Fatal(err)
	}
	builtins, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	blocks := 0
	for _, part := range strings.Split(string(b), "```yaml\n")[1:] {
		block, _, ok := strings.Cut(part, "```")
		if !ok {
			t.Fatalf("unterminated yaml block: %.40q", part)
		}
		blocks++
		set, err := build(append(mustBuiltinSources(t), &source{file: "docs-example.yaml", data: []byte(block)}))
		if err != nil {
			t.Errorf("docs example does not load:\n%s\n%v", block, err)
			continue
		}
		for _, name := range builtins.Names() {
			doc, _ := set.Get(name)
			if doc.Source.Builtin || doc.Extends != "" {
				continue // not this block's subject
			}
			orig, _ := builtins.Get(name)
			if !slices.Equal(doc.Paths, orig.Paths) || doc.Timeouts != orig.Timeouts || doc.PowerAction != orig.PowerAction ||
				doc.BootMode != orig.BootMode || doc.Escalate != orig.Escalate || doc.Wipe != orig.Wipe {
				t.Errorf("docs/playbooks.md describes built-in %s as\n%s\nbut it is\n%s", name, summary(doc), summary(orig))
			}
		}
	}
	if blocks < 6 {
		t.Errorf("found %d yaml examples; the page has more", blocks)
	}
}

func mustBuiltinSources(t *testing.T) []*source {
	t.Helper()
	srcs, err := builtinSources()
	if err != nil {
		t.Fatal(err)
	}
	return srcs
}

func summary(p *Playbook) string {
	return fmt.Sprintf("paths %v timeouts %+v power %s boot %s escalate %v wipe %+v", p.Paths, p.Timeouts, p.PowerAction, p.BootMode, p.Escalate, p.Wipe)
}
