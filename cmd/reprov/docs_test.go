package main

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/reprov/reprov/lab/labtool"
)

// docsMarker opens a shell block of the docs that TestDocsCommandsRun
// executes: ```sh test
const docsMarker = "```sh test"

// docBlock is one marked block of a doc.
type docBlock struct {
	file  string
	line  int // of the first command
	lines []docLine
}

type docLine struct {
	line int
	text string
}

// docBlocks returns the marked shell blocks of README.md, docs/*.md and
// docs/runbooks/*.md.
func docBlocks(t *testing.T) []docBlock {
	t.Helper()
	files := []string{"../../README.md"}
	for _, g := range []string{"../../docs/*.md", "../../docs/runbooks/*.md"} {
		m, _ := filepath.Glob(g)
		files = append(files, m...)
	}
	var blocks []docBlock
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		var cur *docBlock
		for n := 1; sc.Scan(); n++ {
			line := sc.Text()
			switch {
			case cur == nil && strings.TrimSpace(line) == docsMarker:
				cur = &docBlock{file: strings.TrimPrefix(f, "../../"), line: n + 1}
			case cur != nil && strings.HasPrefix(strings.TrimSpace(line), "```"):
				blocks = append(blocks, *cur)
				cur = nil
			case cur != nil && strings.TrimSpace(line) != "" && !strings.HasPrefix(strings.TrimSpace(line), "#"):
				cur.lines = append(cur.lines, docLine{n, line})
			}
		}
		fh.Close()
	}
	return blocks
}

var wantExit = regexp.MustCompile(`#.*\bexit (\d)\b`)

// parseDocLine splits a doc command into its words, the redirect target
// (> FILE) and the exit code its comment announces ("# … exit 1"; else 0).
func parseDocLine(s string) (words []string, redirect string, exit int) {
	if m := wantExit.FindStringSubmatch(s); m != nil {
		exit, _ = strconv.Atoi(m[1])
	}
	if i := strings.Index(s, " #"); i >= 0 {
		s = s[:i]
	}
	fields := strings.Fields(s)
	for i := 0; i < len(fields); i++ {
		w := strings.Trim(fields[i], `'"`)
		if w == ">" && i+1 < len(fields) {
			redirect = fields[i+1]
			i++
			continue
		}
		words = append(words, w)
	}
	return words, redirect, exit
}

// TestDocsCommandsRun runs every command of the docs' marked shell blocks
// (```sh test) against a lab this test starts: `reprov lab up` lines start
// it (with fast lab timings added), /tmp/lab is the test's directory, and
// each other line must exit as its comment says (0 unless "exit N").
// Blocks of one file share its lab. A block may hold only reprov commands.
func TestDocsCommandsRun(t *testing.T) {
	blocks := docBlocks(t)
	if len(blocks) == 0 {
		t.Fatalf("no %q block in README.md or docs/: the docs test would test nothing", docsMarker)
	}
	byFile := map[string][]docBlock{}
	var order []string
	for _, b := range blocks {
		if _, ok := byFile[b.file]; !ok {
			order = append(order, b.file)
		}
		byFile[b.file] = append(byFile[b.file], b)
	}
	for _, file := range order {
		t.Run(strings.ReplaceAll(file, "/", "_"), func(t *testing.T) {
			c := newCLI(t)
			labDir := filepath.Join(c.dir, "lab")
			if err := os.MkdirAll(labDir, 0o755); err != nil {
				t.Fatal(err)
			}
			delete(c.env, "REPROV_STATE_DIR") // the lab's reprov.yaml names its own
			t.Chdir(labDir)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			for _, b := range byFile[file] {
				for _, l := range b.lines {
					words, redirect, exit := parseDocLine(strings.ReplaceAll(l.text, "/tmp/lab", labDir))
					where := file + ":" + strconv.Itoa(l.line)
					if len(words) == 0 || words[0] != "reprov" {
						t.Fatalf("%s: a %s block holds only reprov commands: %q", where, docsMarker, l.text)
					}
					args := words[1:]
					if len(args) >= 2 && args[0] == "lab" && args[1] == "up" {
						startDocLab(ctx, t, c, where, append(args, "--boot-delay", "10ms", "--os-boot-time", "0s"))
						continue
					}
					cctx, ccancel := context.WithTimeout(ctx, 3*time.Minute)
					var out, errb syncBuffer
					code := run(cctx, args, strings.NewReader(""), &out, &errb, c.getenv)
					ccancel()
					if code != exit {
						t.Errorf("%s: %s\nexit %d, the doc says %d\nstdout:\n%s\nstderr:\n%s", where, l.text, code, exit, out.String(), errb.String())
					}
					if redirect != "" {
						if err := os.WriteFile(redirect, []byte(out.String()), 0o644); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
		})
	}
}

// startDocLab starts `reprov lab up …` in the background until the test
// ends, and waits for its summary.
func startDocLab(ctx context.Context, t *testing.T, c *cli, where string, args []string) {
	t.Helper()
	labCtx, stop := context.WithCancel(ctx)
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(labCtx, args, strings.NewReader(""), &out, &errb, c.getenv) }()
	t.Cleanup(func() {
		stop()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Errorf("%s: lab up did not stop within 30 s of its cancellation", where)
		}
	})
	labtool.Eventually(t, 90*time.Second, where+": lab up prints its summary", func() bool {
		select {
		case code := <-done:
			t.Fatalf("%s: lab up exited %d early\n%s\n%s", where, code, out.String(), errb.String())
		default:
		}
		return strings.Contains(out.String(), "Ctrl-C")
	})
}
