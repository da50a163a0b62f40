package playbooks_test

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/reprov/reprov/playbooks"
)

// FuzzLoadPlaybook feeds arbitrary bytes to the loader as an operator file.
// It must never panic, and whatever it accepts must be a complete playbook.
func FuzzLoadPlaybook(f *testing.F) {
	seeds, err := fs.Glob(playbooks.BuiltinFS(), "builtin/*.yaml")
	if err != nil || len(seeds) == 0 {
		f.Fatalf("built-in seeds: %v %v", seeds, err)
	}
	for _, s := range seeds {
		b, err := fs.ReadFile(playbooks.BuiltinFS(), s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		"name: x\nextends: default\npre_hooks: [\"echo hi\", {run: [a, b], timeout: 1s}]\n",
		"name: x\nextends: x\n",
		"a: &a [*a]\n",
		"name: x\npaths: &p [oob]\n---\nname: y\npaths: *p\nwipe: mbr\n",
		"name: default\nextends: default\ninstall: {kernel: \"http://h/k\", initrd: \"http://h/i\", cmdline: toram}\n",
		"<<: {name: x}\n",
		"",
		"---\n---\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		set, err := playbooks.LoadFS(fstest.MapFS{"fuzz.yaml": {Data: data}})
		if err != nil {
			var verr *playbooks.ValidationError
			if !errors.As(err, &verr) || len(verr.Problems) == 0 {
				t.Fatalf("LoadFS error is not a ValidationError with problems: %v", err)
			}
			for _, p := range verr.Problems {
				if p.Pos.File == "" || p.Msg == "" || p.Pos.Builtin {
					t.Fatalf("problem without file or message, or blamed on a built-in: %+v", p)
				}
			}
			return
		}
		if len(set.Names()) < 3 {
			t.Fatalf("built-ins lost: %v", set.Names())
		}
		for _, p := range set.List() {
			if len(p.Paths) == 0 || p.Timeouts.Precheck <= 0 || p.Timeouts.OOBBoot <= 0 || p.Timeouts.Power <= 0 ||
				p.Timeouts.WaitLanding <= 0 || p.Timeouts.Inband <= 0 || p.Timeouts.Reboot <= 0 {
				t.Fatalf("incomplete playbook accepted: %+v", p)
			}
			if p.Escalate && !p.Uses(playbooks.PathInband) {
				t.Fatalf("escalate without in-band accepted: %+v", p)
			}
			for _, h := range append(p.PreHooks, p.PostHooks...) {
				c := h.Command()
				if len(c) == 0 || strings.TrimSpace(c[0]) == "" || h.Timeout <= 0 || h.Name == "" {
					t.Fatalf("bad hook accepted: %+v", h)
				}
			}
			if strings.ContainsAny(p.Install.Kernel+p.Install.Cmdline+strings.Join(p.Install.Initrds, ""), "\n\r") {
				t.Fatalf("install profile with a line break accepted: %+v", p.Install)
			}
		}
	})
}
