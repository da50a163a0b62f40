package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// docFence is one fenced block of a doc.
type docFence struct {
	file  string
	info  string // what follows the opening ```: "sh test", "sh", "yaml", ""
	lines []docLine
}

// docFences returns every fenced block of README.md, docs/*.md and
// docs/runbooks/*.md.
func docFences(t *testing.T) []docFence {
	t.Helper()
	files := []string{"../../README.md"}
	for _, g := range []string{"../../docs/*.md", "../../docs/runbooks/*.md"} {
		m, _ := filepath.Glob(g)
		files = append(files, m...)
	}
	var out []docFence
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		var cur *docFence
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			switch {
			case cur == nil && strings.HasPrefix(line, "```"):
				cur = &docFence{file: strings.TrimPrefix(f, "../../"), info: strings.TrimSpace(strings.TrimPrefix(line, "```"))}
			case cur != nil && line == "```":
				out = append(out, *cur)
				cur = nil
			case cur != nil && line != "":
				cur.lines = append(cur.lines, docLine{n, line})
			}
		}
		fh.Close()
	}
	return out
}

// docWords splits a shown command line as a shell would, up to an
// unquoted comment, pipe or redirection; quoted reports per word whether
// it had quotes.
func docWords(s string) (words []string, quoted []bool) {
	var w strings.Builder
	in, q := false, false
	var quote rune
	flush := func() {
		if in {
			words, quoted = append(words, w.String()), append(quoted, q)
		}
		w.Reset()
		in, q = false, false
	}
	for _, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				w.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, in, q = r, true, true
		case r == ' ' || r == '\t':
			flush()
		case (r == '#' || r == '|' || r == '>') && !in:
			flush()
			return words, quoted
		default:
			w.WriteRune(r)
			in = true
		}
	}
	flush()
	return words, quoted
}

// synopsisWord reports whether an unquoted word is synopsis notation:
// [optional], a|b alternatives, … repetition.
func synopsisWord(w string) bool {
	return strings.ContainsAny(w, "[]|") || strings.Contains(w, "…") || strings.Contains(w, "...")
}

// checkInvocation checks that a reprov command line shown in the docs is
// one the command tree accepts: a known subcommand, known flags with
// values of the right type, the positional arguments it takes. A synopsis
// (`reprov power on|off SELECTION [--dry-run]`) is checked for its
// subcommand (the first alternative) and its flag names.
func checkInvocation(line string) error {
	words, quoted := docWords(strings.TrimPrefix(line, "$ "))
	if len(words) == 0 || words[0] != "reprov" {
		return fmt.Errorf("not a reprov command")
	}
	synopsis := false
	var args []string
	for i, w := range words[1:] {
		if quoted[i+1] || !synopsisWord(w) {
			args = append(args, w)
			continue
		}
		synopsis = true
		w = strings.TrimLeft(w, "[")
		w = strings.TrimRight(w, "]")
		w, _, _ = strings.Cut(w, "|")
		w = strings.TrimSuffix(strings.TrimSuffix(w, "..."), "…")
		if w != "" {
			args = append(args, w)
		}
	}
	root := newRootCmd(newApp(strings.NewReader(""), io.Discard, io.Discard, func(string) string { return "" }))
	root.InitDefaultHelpFlag()
	root.InitDefaultVersionFlag()
	cmd, rest, err := root.Find(args)
	if err != nil {
		return err
	}
	cmd.InitDefaultHelpFlag()
	asks := slices.ContainsFunc(rest, func(a string) bool { return a == "--version" || a == "--help" || a == "-h" })
	if cmd.HasSubCommands() && !cmd.Runnable() && !asks {
		return fmt.Errorf("%q is a command group: name one of its subcommands", cmd.CommandPath())
	}
	if synopsis {
		for _, a := range rest {
			if !strings.HasPrefix(a, "-") || a == "-" {
				continue
			}
			name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
			var found bool
			if strings.HasPrefix(a, "--") {
				found = cmd.Flags().Lookup(name) != nil || cmd.InheritedFlags().Lookup(name) != nil
			} else {
				found = cmd.Flags().ShorthandLookup(name[:1]) != nil || cmd.InheritedFlags().ShorthandLookup(name[:1]) != nil
			}
			if !found {
				return fmt.Errorf("%s: unknown flag %s", cmd.CommandPath(), a)
			}
		}
		return nil
	}
	if err := cmd.ParseFlags(rest); err != nil {
		return fmt.Errorf("%s: %w", cmd.CommandPath(), err)
	}
	if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
		return fmt.Errorf("%s: %w", cmd.CommandPath(), err)
	}
	return nil
}

// isCommandWord: a word that can follow "reprov" in a command line (a
// diagram's arrow cannot).
func isCommandWord(w string) bool {
	c := w[0]
	return c == '-' || c >= 'a' && c <= 'z'
}

// makeTargets are the targets of the Makefile and what it includes.
func makeTargets(t *testing.T) map[string]bool {
	t.Helper()
	targets := map[string]bool{}
	re := regexp.MustCompile(`(?m)^([a-zA-Z0-9_.-]+):`)
	for _, f := range []string{"../../Makefile", "../../e2e/e2e.mk"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			targets[m[1]] = true
		}
	}
	return targets
}

// TestDocsCommandsAreChecked: no command shown in README.md, docs/ or
// docs/runbooks goes unchecked. ```sh test blocks are run against a lab
// (TestDocsCommandsRun), docs/api.md's sh blocks with curl against an API
// (agent/api TestAPIDocExamples); every other reprov command line shown in
// any block — commands that need a real datacenter, synopses — must be an
// invocation the command tree accepts, and the other commands of sh blocks
// must name make targets and Go packages that exist.
func TestDocsCommandsAreChecked(t *testing.T) {
	targets := makeTargets(t)
	var shBlocks, ran, apiRan, checked, reprovLines int
	for _, b := range docFences(t) {
		isSh := b.info == "sh" || strings.HasPrefix(b.info, "sh ")
		if isSh {
			shBlocks++
		}
		switch {
		case b.info == "sh test":
			ran++
			continue
		case isSh && b.file == "docs/api.md":
			apiRan++
			continue
		}
		blockChecked := false
		for _, l := range b.lines {
			where := fmt.Sprintf("%s:%d", b.file, l.line)
			text := strings.TrimPrefix(l.text, "$ ")
			words, _ := docWords(text)
			switch {
			case len(words) == 0:
			case words[0] == "reprov" && (len(words) == 1 || isCommandWord(words[1])):
				reprovLines++
				blockChecked = true
				if err := checkInvocation(text); err != nil {
					t.Errorf("%s: %s\n  is not a valid reprov invocation: %v", where, l.text, err)
				}
			case !isSh:
				// Output, config and file listings in untagged blocks.
			case words[0] == "make" || (words[0] == "sudo" && len(words) > 1 && words[1] == "make"):
				blockChecked = true
				for _, w := range words[1:] {
					if w == "make" || w == "sudo" || strings.Contains(w, "=") || strings.HasPrefix(w, "-") {
						continue
					}
					if !targets[w] {
						t.Errorf("%s: %s\n  make target %q does not exist", where, l.text, w)
					}
				}
			case words[0] == "go" && len(words) > 2 && (words[1] == "install" || words[1] == "run" || words[1] == "build"):
				blockChecked = true
				for _, w := range words[2:] {
					pkg, _, _ := strings.Cut(w, "@")
					pkg = strings.TrimPrefix(pkg, "github.com/reprov/reprov/")
					if strings.HasPrefix(w, "-") || !(strings.HasPrefix(pkg, "./") || strings.HasPrefix(w, "github.com/reprov/reprov/")) {
						continue
					}
					if fi, err := os.Stat(filepath.Join("../..", pkg)); err != nil || !fi.IsDir() {
						t.Errorf("%s: %s\n  package %s does not exist", where, l.text, w)
					}
				}
			case words[0] == "curl" || words[0] == "wget" || strings.HasPrefix(words[0], "arg()"):
				// The installer's callback on the node (docs/netboot.md): not
				// a controller command.
				blockChecked = true
			default:
				t.Errorf("%s: %s\n  a shell block command the docs test does not know how to check", where, l.text)
			}
		}
		if isSh && blockChecked {
			checked++
		}
		if isSh && !blockChecked {
			t.Errorf("%s: a ```%s block with no command that is run or checked", b.file, b.info)
		}
	}
	t.Logf("%d sh blocks: %d run against a lab (```sh test), %d run against an API (docs/api.md), %d checked; %d reprov command lines outside sh test blocks checked against the command tree",
		shBlocks, ran, apiRan, checked, reprovLines)
	if ran == 0 || reprovLines == 0 {
		t.Fatalf("found %d sh test blocks and %d reprov lines: the docs test would check nothing", ran, reprovLines)
	}
}

// TestCheckInvocation: the check refuses what the command tree refuses.
func TestCheckInvocation(t *testing.T) {
	for line, ok := range map[string]bool{
		"reprov plan --rack r12 --offline":                                  true,
		"reprov reinstall --rack r12 --max-parallel 8 --per-rack 4":         true,
		"reprov power on|off|cycle|reset SELECTION [--dry-run]":             true,
		"reprov power status [NODE-GLOB...] [--rack R[,R…]] [--selector L]": true,
		"reprov power cycle 'web-[3-1]'":                                    true,
		"reprov --version":                                                  true,
		"reprov audit web-014 --job 812 -o json | jq -c '{at, action}'":     true,
		"reprov plan --rack r12 --ofline":                                   false,
		"reprov reinstall --rack r12 --max-parallel eight":                  false,
		"reprov replan web-014":                                             false,
		"reprov power on|off SELECTION [--dryrun]":                          false,
		"reprov jobs": false,
		"reprov inventory import --from ansible hosts.yml > fleet.yaml":      true,
		"reprov version extra-arg-it-does-not-take another-one and-one-more": false,
	} {
		if err := checkInvocation(line); (err == nil) != ok {
			t.Errorf("checkInvocation(%q) = %v, want ok %t", line, err, ok)
		}
	}
}

// TestSecurityDocNamesRealTests: every test docs/security.md names as the
// cover of a defence exists, so the threat model's table cannot point at
// a test that was renamed or removed.
func TestSecurityDocNamesRealTests(t *testing.T) {
	doc, err := os.ReadFile("../../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	named := regexp.MustCompile("`(Test[A-Za-z0-9_]+)`").FindAllStringSubmatch(string(doc), -1)
	if len(named) < 10 {
		t.Fatalf("docs/security.md names %d tests; want the adversarial suite's", len(named))
	}
	defined := map[string]bool{}
	re := regexp.MustCompile(`(?m)^func (Test[A-Za-z0-9_]+)\(`)
	err = filepath.WalkDir("../..", func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if strings.HasSuffix(p, "_test.go") {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for _, m := range re.FindAllStringSubmatch(string(b), -1) {
				defined[m[1]] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range named {
		if !defined[m[1]] {
			t.Errorf("docs/security.md names %s, which no test defines", m[1])
		}
	}
}
