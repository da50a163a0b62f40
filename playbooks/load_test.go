package playbooks_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/reprov/reprov/playbooks"
)

// writeFiles writes name → content into a fresh directory and returns it.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// lineOf returns the 1-based line of the first line of text containing marker.
func lineOf(t *testing.T, text, marker string) int {
	t.Helper()
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, marker) {
			return i + 1
		}
	}
	t.Fatalf("marker %q not in test text", marker)
	return 0
}

// problems loads dir and returns the problems' texts; it fails the test when
// loading succeeds.
func problems(t *testing.T, dir string) []string {
	t.Helper()
	_, err := playbooks.Load(dir)
	var verr *playbooks.ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("Load(%s) = %v, want a *ValidationError", dir, err)
	}
	var out []string
	for _, p := range verr.Problems {
		out = append(out, p.Error())
	}
	return out
}

func TestBuiltinsLoad(t *testing.T) {
	set, err := playbooks.Load("")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := set.Names(), []string{"default", "hp-dl360-g7", "uefi-generic"}; !slices.Equal(got, want) {
		t.Fatalf("built-in names = %v, want %v", got, want)
	}
	for _, p := range set.List() {
		if !p.Source.Builtin || p.Overrides != nil {
			t.Errorf("%s: Source %+v Overrides %v, want a built-in that overrides nothing", p.Name, p.Source, p.Overrides)
		}
		if p.Source.String() != "builtin:"+p.Name+".yaml:"+fmt.Sprint(p.Source.Line) || p.Source.Line == 0 {
			t.Errorf("%s: Source = %s", p.Name, p.Source)
		}
		if p.Description == "" {
			t.Errorf("%s: no description", p.Name)
		}
		if !p.Escalate || !p.Uses(playbooks.PathInband) || !p.Uses(playbooks.PathOOB) {
			t.Errorf("%s: paths %v escalate %v: every built-in has both paths and escalates", p.Name, p.Paths, p.Escalate)
		}
		for _, d := range []time.Duration{p.Timeouts.Precheck, p.Timeouts.OOBBoot, p.Timeouts.Power, p.Timeouts.WaitLanding, p.Timeouts.Inband, p.Timeouts.Reboot} {
			if d <= 0 {
				t.Errorf("%s: timeouts %+v has a non-positive entry", p.Name, p.Timeouts)
			}
		}
	}

	def, err := set.Get("")
	if err != nil || def.Name != playbooks.DefaultName {
		t.Fatalf(`Get("") = %v, %v; want the default playbook`, def, err)
	}
	if !slices.Equal(def.Paths, []playbooks.Path{playbooks.PathOOB, playbooks.PathInband}) || def.BootMode != playbooks.BootNode {
		t.Errorf("default: paths %v boot mode %s; want out-of-band first and the node's boot mode", def.Paths, def.BootMode)
	}
	if got := def.BootModeFor("uefi"); got != playbooks.BootUEFI {
		t.Errorf("default.BootModeFor(uefi) = %s", got)
	}
	if got := def.BootModeFor(""); got != playbooks.BootLegacy {
		t.Errorf(`default.BootModeFor("") = %s, want legacy`, got)
	}

	g7, err := set.Get("hp-dl360-g7")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(g7.Paths, []playbooks.Path{playbooks.PathInband, playbooks.PathOOB}) {
		t.Errorf("hp-dl360-g7: paths %v, want in-band first", g7.Paths)
	}
	if g7.BootModeFor("uefi") != playbooks.BootLegacy || g7.Wipe.BootSector != playbooks.WipeMBR {
		t.Errorf("hp-dl360-g7: boot mode %s wipe %+v, want legacy and the MBR", g7.BootMode, g7.Wipe)
	}
	if g7.Timeouts.WaitLanding <= def.Timeouts.WaitLanding {
		t.Errorf("hp-dl360-g7: wait_landing %v not longer than default's %v (slow POST)", g7.Timeouts.WaitLanding, def.Timeouts.WaitLanding)
	}

	uefi, err := set.Get("uefi-generic")
	if err != nil {
		t.Fatal(err)
	}
	if uefi.BootModeFor("legacy") != playbooks.BootUEFI || uefi.Wipe != (playbooks.WipePolicy{BootSector: playbooks.WipeMBRGPT, UEFI: playbooks.UEFIBootNext}) || uefi.Paths[0] != playbooks.PathOOB {
		t.Errorf("uefi-generic: %+v", uefi)
	}
}

// The built-in files are valid playbook files for an operator too:
// `reprov playbooks validate` accepts a copy of each (which then overrides
// the built-in).
func TestValidateBuiltinCopies(t *testing.T) {
	files := map[string]string{}
	err := fs.WalkDir(playbooks.BuiltinFS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(playbooks.BuiltinFS(), p)
		files[filepath.Base(p)] = string(b)
		return err
	})
	if err != nil || len(files) != 3 {
		t.Fatalf("built-in files: %v, %d", err, len(files))
	}
	dir := writeFiles(t, files)
	if ps := playbooks.Validate(dir); len(ps) != 0 {
		t.Fatalf("Validate(copies of the built-ins) = %v", ps)
	}
	var paths []string
	for name := range files {
		paths = append(paths, filepath.Join(dir, name))
	}
	if ps := playbooks.Validate(paths...); len(ps) != 0 {
		t.Fatalf("Validate(files) = %v", ps)
	}
	set, err := playbooks.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range set.List() {
		if p.Source.Builtin || p.Overrides == nil || !p.Overrides.Builtin {
			t.Errorf("%s: source %s overrides %v; want the copy, overriding the built-in", p.Name, p.Source, p.Overrides)
		}
	}
}

func TestProblems(t *testing.T) {
	tests := []struct {
		name   string
		yaml   string
		marker string // the line the problem must point at
		want   string // after "FILE:LINE: "
	}{
		{"duration", "name: hp-dl360-g7\npaths: [inband]\ntimeouts:\n  wait_landing: 5x\n", "wait_landing",
			`playbook hp-dl360-g7: timeouts.wait_landing: "5x" is not a duration`},
		{"duration without unit", "name: p\npaths: [oob]\ntimeouts: {power: 90}\n", "power",
			`playbook p: timeouts.power: "90" is not a duration (missing unit: "90s"?)`},
		{"duration not positive", "name: p\npaths: [oob]\ntimeouts:\n  reboot: 0s\n", "reboot",
			`playbook p: timeouts.reboot: must be positive, not "0s"`},
		{"unknown key", "name: p\npaths: [oob]\nescalte: false\n", "escalte",
			`playbook p: escalte: unknown key in a playbook (did you mean "escalate"?)`},
		{"unknown nested key", "name: p\npaths: [oob]\ntimeouts:\n  wait: 10m\n", "wait:",
			`playbook p: timeouts.wait: unknown key in timeouts (did you mean "wait_landing"?)`},
		{"duplicate key", "name: p\npaths: [oob]\npower_action: cycle\npower_action: reset\n", "reset",
			`playbook p: power_action: duplicate key (first at line 3)`},
		{"enum", "name: p\npaths: [oob]\npower_action: cylce\n", "cylce",
			`playbook p: power_action: "cylce" is not one of cycle, reset, off-on (did you mean "cycle"?)`},
		{"boot mode", "name: p\npaths: [oob]\nboot_mode: bios\n", "bios",
			`playbook p: boot_mode: "bios" is not one of legacy, uefi, node`},
		{"wipe", "name: p\npaths: [inband]\nwipe:\n  boot_sector: gpt\n", "gpt",
			`playbook p: wipe.boot_sector: "gpt" is not one of none, mbr, mbr+gpt`},
		{"wipe uefi", "name: p\npaths: [inband]\nwipe: {uefi: bootnxt}\n", "bootnxt",
			`playbook p: wipe.uefi: "bootnxt" is not one of bootnext, wipe (did you mean "bootnext"?)`},
		{"escalate not a bool", "name: p\npaths: [oob, inband]\nescalate: yes\n", "escalate",
			`playbook p: escalate: "yes" is not true or false`},
		{"paths empty", "name: p\npaths: []\n", "paths",
			`playbook p: paths: must list at least one of oob, inband`},
		{"paths unknown", "name: p\npaths:\n  - oob\n  - ssh\n", "ssh",
			`playbook p: paths[1]: "ssh" is not one of oob, inband`},
		{"paths repeated", "name: p\npaths:\n  - oob\n  - inband\n  - oob # again\n", "again",
			`playbook p: paths[2]: "oob" is repeated (already paths[0]); each path runs at most once`},
		{"paths not a list", "name: p\npaths: oob\n", "paths",
			`playbook p: paths: must be a list, e.g. [oob, inband], not "oob"`},
		{"paths missing", "name: p\nescalate: false\n", "name",
			`playbook p: paths: is required (e.g. paths: [oob, inband]), or extends: another playbook`},
		{"escalate without inband", "name: p\npaths: [oob]\nescalate: true\n", "escalate",
			`playbook p: escalate: true needs "inband" in paths (add it, or set escalate: false)`},
		{"uefi wipe without sectors", "name: p\npaths: [inband]\nwipe:\n  boot_sector: none\n  uefi: wipe\n", "uefi: wipe",
			`playbook p: wipe.uefi: "wipe" needs wipe.boot_sector mbr or mbr+gpt`},
		{"hook empty shell", "name: p\npaths: [oob]\npre_hooks:\n  - run: \"  \"\n", "run:",
			`playbook p: pre_hooks[0].run: is an empty command`},
		{"hook empty argv", "name: p\npaths: [oob]\npost_hooks:\n  - name: x\n    run: []\n", "run:",
			`playbook p: post_hooks[0].run: is an empty command`},
		{"hook empty shorthand", "name: p\npaths: [oob]\npre_hooks:\n  - \"\"\n", `- ""`,
			`playbook p: pre_hooks[0]: is an empty command`},
		{"hook without run", "name: p\npaths: [oob]\npre_hooks:\n  - name: drain\n", "name: drain",
			`playbook p: pre_hooks[0].run: is required`},
		{"hook timeout", "name: p\npaths: [oob]\npre_hooks:\n  - run: [true]\n    timeout: soon\n", "soon",
			`playbook p: pre_hooks[0].timeout: "soon" is not a duration`},
		{"hook unknown key", "name: p\npaths: [oob]\npre_hooks:\n  - run: [true]\n    timout: 1m\n", "timout",
			`playbook p: pre_hooks[0].timout: unknown key in pre_hooks[0] (did you mean "timeout"?)`},
		{"kernel URL", "name: p\npaths: [oob]\ninstall:\n  kernel: /srv/vmlinuz\n", "kernel",
			`playbook p: install.kernel: "/srv/vmlinuz": want an absolute http://, https:// or tftp:// URL`},
		{"cmdline newline", "name: p\npaths: [oob]\ninstall:\n  kernel: http://x/k\n  cmdline: \"a\\nchain http://evil/\"\n", "cmdline",
			`playbook p: install.cmdline: contains a control character ('\n'); the command line must be one line`},
		{"initrd without kernel", "name: p\npaths: [oob]\ninstall:\n  initrd: http://x/i\n", "initrd",
			`playbook p: install.kernel: is required when install sets initrd or cmdline`},
		{"extends unknown", "name: p\nextends: hp-dl360g7\n", "extends",
			`playbook p: extends: no playbook named "hp-dl360g7" (did you mean "hp-dl360-g7"?)`},
		{"extends itself", "name: p\nextends: p\n", "extends",
			`playbook p: extends: a playbook cannot extend itself`},
		{"bad name", "name: \"web 14\"\npaths: [oob]\n", "name",
			`name: "web 14" is not a valid name`},
		{"not a mapping", "- oob\n- inband\n", "- oob",
			`a playbook must be a mapping of keys`},
		{"YAML syntax", "name: p\npaths: [oob\ntimeouts: {}\n", "paths",
			`YAML: did not find expected ',' or ']'`},
		{"YAML indentation", "name: p\npaths: [oob]\n  escalate: false\n", "escalate",
			`YAML: did not find expected key`},
		{"YAML scanner", "name: p\npaths: [oob]\nx: y: z\n", "x: y",
			`YAML: mapping values are not allowed in this context`},
		{"merge key", "name: p\npaths: [oob]\n<<: {escalate: false}\n", "<<",
			`playbook p: <<: YAML merge keys are not supported; use extends: to build on another playbook`},
		{"several without name", "name: a\npaths: [oob]\n---\npaths: [inband]\n", "paths: [inband]",
			`name: is required when a file holds several playbooks`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeFiles(t, map[string]string{"pb.yaml": tc.yaml})
			file := filepath.Join(dir, "pb.yaml")
			got := problems(t, dir)
			prefix := fmt.Sprintf("%s:%d: ", file, lineOf(t, tc.yaml, tc.marker))
			for _, g := range got {
				if strings.HasPrefix(g, prefix) && strings.HasPrefix(strings.TrimPrefix(g, prefix), tc.want) {
					return
				}
			}
			t.Errorf("problems:\n  %s\nwant one starting %q", strings.Join(got, "\n  "), prefix+tc.want)
		})
	}
}

func TestExtendsCycle(t *testing.T) {
	a := "name: a\nextends: b\n"
	dir := writeFiles(t, map[string]string{"a.yaml": a, "b.yaml": "name: b\nextends: a\n"})
	got := problems(t, dir)
	if len(got) != 1 || !strings.Contains(got[0], "extends: cycle: a → b → a") && !strings.Contains(got[0], "extends: cycle: b → a → b") {
		t.Fatalf("problems = %q, want one extends cycle", got)
	}
}

// One run reports every problem of every file, ordered by file and line.
func TestAllProblemsOfAllFiles(t *testing.T) {
	a := "name: a\npaths: [oob, oob]\ntimeouts:\n  power: forever\n  precheck: -1s\nbogus: 1\n"
	b := "name: b\npaths: [inband]\ninstall: {kernel: \"ftp://x/k\"}\npost_hooks: [{run: []}]\n"
	c := "name: a\npaths: [oob]\nescalate: false\n" // a second "a"
	dir := writeFiles(t, map[string]string{"a.yaml": a, "b.yaml": b, "c.yaml": c})
	got := problems(t, dir)
	want := []string{
		fmt.Sprintf("%s:2: playbook a: paths[1]:", filepath.Join(dir, "a.yaml")),
		fmt.Sprintf("%s:4: playbook a: timeouts.power:", filepath.Join(dir, "a.yaml")),
		fmt.Sprintf("%s:5: playbook a: timeouts.precheck:", filepath.Join(dir, "a.yaml")),
		fmt.Sprintf("%s:6: playbook a: bogus:", filepath.Join(dir, "a.yaml")),
		fmt.Sprintf("%s:3: playbook b: install.kernel:", filepath.Join(dir, "b.yaml")),
		fmt.Sprintf("%s:4: playbook b: post_hooks[0].run:", filepath.Join(dir, "b.yaml")),
		fmt.Sprintf("%s:1: playbook a: name: is already defined at %s:1", filepath.Join(dir, "c.yaml"), filepath.Join(dir, "a.yaml")),
	}
	if len(got) != len(want) {
		t.Fatalf("got %d problems:\n  %s\nwant %d", len(got), strings.Join(got, "\n  "), len(want))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("problem %d = %q, want prefix %q", i, got[i], want[i])
		}
	}
}

func TestOverrideBuiltin(t *testing.T) {
	g7 := `# our G7s have slow RAID init
name: hp-dl360-g7
description: site G7
paths: [inband]
escalate: false
timeouts:
  wait_landing: 40m
`
	dir := writeFiles(t, map[string]string{"dl360.yaml": g7})
	set, err := playbooks.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	p, err := set.Get("hp-dl360-g7")
	if err != nil {
		t.Fatal(err)
	}
	if p.Description != "site G7" || !slices.Equal(p.Paths, []playbooks.Path{playbooks.PathInband}) || p.Escalate {
		t.Errorf("override not in effect: %+v", p)
	}
	wantSrc := filepath.Join(dir, "dl360.yaml") + ":2"
	if p.Source.String() != wantSrc || p.Source.Builtin {
		t.Errorf("Source = %s, want %s", p.Source, wantSrc)
	}
	if p.Overrides == nil || p.Overrides.String() != "builtin:hp-dl360-g7.yaml:"+fmt.Sprint(p.Overrides.Line) {
		t.Errorf("Overrides = %v, want the built-in's position", p.Overrides)
	}
	// An override replaces, it does not merge: timeouts not written are
	// the schema defaults, not the built-in's.
	if p.Timeouts.WaitLanding != 40*time.Minute || p.Timeouts.Power != 2*time.Minute || p.BootMode != playbooks.BootNode {
		t.Errorf("timeouts %+v boot mode %s: want 40m landing and schema defaults for the rest", p.Timeouts, p.BootMode)
	}
	// The other built-ins are still there.
	if _, err := set.Get("uefi-generic"); err != nil {
		t.Error(err)
	}
}

func TestExtends(t *testing.T) {
	files := map[string]string{
		// Add a hook to the built-in default without copying it.
		"default.yaml": `name: default
extends: default
pre_hooks:
  - name: drain
    run: [scontrol, update, state=drain]
    timeout: 30s
`,
		// A site variant of the G7 playbook.
		"batch.yaml": `name: batch-g7
extends: hp-dl360-g7
timeouts: {wait_landing: 45m}
install:
  kernel: http://boot.example.net/vmlinuz
  initrd: [http://boot.example.net/initrd.img]
  cmdline: boot=live toram
`,
		// Extends the operator's default, which extends the built-in.
		"web.yaml": "name: web\nextends: default\npaths: [oob]\nescalate: false\n",
	}
	dir := writeFiles(t, files)
	set, err := playbooks.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	builtins, err := playbooks.Load("")
	if err != nil {
		t.Fatal(err)
	}
	bdef, _ := builtins.Get("default")
	bg7, _ := builtins.Get("hp-dl360-g7")

	def, _ := set.Get("default")
	if def.Overrides == nil || def.Extends != "default" || !slices.Equal(def.Paths, bdef.Paths) || def.Timeouts != bdef.Timeouts || def.Wipe != bdef.Wipe {
		t.Errorf("default extending the built-in: %+v", def)
	}
	if len(def.PreHooks) != 1 || def.PreHooks[0].Name != "drain" || def.PreHooks[0].Timeout != 30*time.Second ||
		!slices.Equal(def.PreHooks[0].Argv, []string{"scontrol", "update", "state=drain"}) || def.PreHooks[0].Dir != dir {
		t.Errorf("default's pre-hooks = %+v (dir %s)", def.PreHooks, dir)
	}

	b, err := set.Get("batch-g7")
	if err != nil {
		t.Fatal(err)
	}
	want := bg7.Timeouts
	want.WaitLanding = 45 * time.Minute
	if b.Timeouts != want || !slices.Equal(b.Paths, bg7.Paths) || b.BootMode != bg7.BootMode {
		t.Errorf("batch-g7 timeouts %+v paths %v, want the G7's with wait_landing 45m", b.Timeouts, b.Paths)
	}
	if b.Install.Kernel != "http://boot.example.net/vmlinuz" || !slices.Equal(b.Install.Initrds, []string{"http://boot.example.net/initrd.img"}) || b.Install.Cmdline != "boot=live toram" {
		t.Errorf("batch-g7 install = %+v", b.Install)
	}

	web, _ := set.Get("web")
	if len(web.PreHooks) != 1 || web.Escalate || !slices.Equal(web.Paths, []playbooks.Path{playbooks.PathOOB}) {
		t.Errorf("web = %+v: want the operator default's hook, oob only, no escalation", web)
	}
}

func TestDefaultsAndShorthands(t *testing.T) {
	files := map[string]string{
		// No name: the file name is the playbook name. No escalate: it
		// is true exactly when both paths are used.
		"oob-only.yml": "paths: [oob]\nwipe: none\npre_hooks: [\"echo $REPROV_NODE\"]\n",
		"two.yaml":     "name: two-a\npaths: [inband]\n---\nname: two-b\npaths: [oob, inband]\nboot_mode: uefi\n---\n",
		".hidden.yaml": "this is not: [valid\n",
		"notes.txt":    "ignored",
	}
	set, err := playbooks.Load(writeFiles(t, files))
	if err != nil {
		t.Fatal(err)
	}
	if got := set.Names(); !slices.Equal(got, []string{"default", "hp-dl360-g7", "oob-only", "two-a", "two-b", "uefi-generic"}) {
		t.Fatalf("names = %v", got)
	}
	o, _ := set.Get("oob-only")
	if o.Escalate || o.Wipe.BootSector != playbooks.WipeNone || o.PowerAction != playbooks.PowerCycle {
		t.Errorf("oob-only = %+v", o)
	}
	if len(o.PreHooks) != 1 || o.PreHooks[0].Shell != "echo $REPROV_NODE" || o.PreHooks[0].Timeout != playbooks.DefaultHookTimeout || o.PreHooks[0].Name == "" {
		t.Errorf("shorthand hook = %+v", o.PreHooks)
	}
	a, _ := set.Get("two-a")
	b, _ := set.Get("two-b")
	if a.Escalate || !b.Escalate || b.BootModeFor("legacy") != playbooks.BootUEFI || b.Source.Line != 4 {
		t.Errorf("two-a escalate %v, two-b escalate %v boot %s line %d", a.Escalate, b.Escalate, b.BootMode, b.Source.Line)
	}
}

func TestGetUnknown(t *testing.T) {
	set, err := playbooks.Load("")
	if err != nil {
		t.Fatal(err)
	}
	_, err = set.Get("hp-dl360g7")
	if !errors.Is(err, playbooks.ErrUnknownPlaybook) {
		t.Fatalf("Get(unknown) = %v, want ErrUnknownPlaybook", err)
	}
	for _, want := range []string{`"hp-dl360g7"`, `did you mean "hp-dl360-g7"`, "known: default, hp-dl360-g7, uefi-generic"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestLoadMissingDir(t *testing.T) {
	_, err := playbooks.Load(filepath.Join(t.TempDir(), "nope"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load(missing dir) = %v, want fs.ErrNotExist", err)
	}
}

func TestValidateReportsUnreadableFiles(t *testing.T) {
	dir := writeFiles(t, map[string]string{"ok.yaml": "name: ok\npaths: [oob]\n", "bad.yaml": "name: bad\npaths: [ob]\n"})
	missing := filepath.Join(dir, "missing.yaml")
	got := playbooks.Validate(filepath.Join(dir, "ok.yaml"), filepath.Join(dir, "bad.yaml"), missing)
	var texts []string
	for _, p := range got {
		texts = append(texts, p.Error())
	}
	if len(got) != 2 ||
		texts[0] != filepath.Join(dir, "bad.yaml")+`:2: playbook bad: paths[0]: "ob" is not one of oob, inband (did you mean "oob"?)` ||
		texts[1] != missing+": cannot read: no such file or directory" {
		t.Fatalf("Validate = %q", texts)
	}
	if got := playbooks.Validate(filepath.Join(dir, "ok.yaml")); got != nil {
		t.Fatalf("Validate(ok) = %v", got)
	}
}

func TestCloneIsIndependent(t *testing.T) {
	dir := writeFiles(t, map[string]string{"p.yaml": "paths: [oob, inband]\npre_hooks: [{run: [echo, a]}]\n"})
	set, err := playbooks.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := set.Get("p")
	c := p.Clone()
	c.Paths[0] = playbooks.PathInband
	c.PreHooks[0].Argv[1] = "b"
	again, _ := set.Get("p")
	if again.Paths[0] != playbooks.PathOOB || again.PreHooks[0].Argv[1] != "a" {
		t.Fatalf("changing a clone changed the set: %+v", again)
	}
}

func TestJSON(t *testing.T) {
	dir := writeFiles(t, map[string]string{"p.yaml": "name: p\nextends: hp-dl360-g7\npre_hooks: [{name: drain, run: [scontrol, drain], timeout: 90s}]\n"})
	set, err := playbooks.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := set.Get("p")
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	to := got["timeouts"].(map[string]any)
	hooks := got["pre_hooks"].([]any)
	if to["wait_landing"] != "20m" || to["oob_boot"] != "1m" || got["source"] != filepath.Join(dir, "p.yaml")+":1" ||
		got["extends"] != "hp-dl360-g7" || len(hooks) != 1 || hooks[0].(map[string]any)["timeout"] != "1m30s" {
		t.Errorf("JSON = %s", b)
	}
}
