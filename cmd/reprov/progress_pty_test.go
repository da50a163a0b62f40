package main

import (
	"bytes"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/reprov/reprov/lab/fleet"
)

// TestReinstallProgressOnATerminal runs reinstall with stderr on a
// pseudo-terminal: the run's bar (counter and tally) is drawn and redrawn
// in place, the nodes in flight show their step, log lines and failed
// nodes are printed above the bars, and no plain "[n/N]" lines appear.
func TestReinstallProgressOnATerminal(t *testing.T) {
	c := newLabCLI(t, []fleet.ModelCount{{Model: fleet.ModelIPMI, Count: 2}, {Model: fleet.ModelDL360G7, Count: 1},
		{Model: fleet.ModelDeadBMC, Count: 1}}, 300*time.Millisecond)
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatalf("open a pseudo-terminal: %v", err)
	}
	defer ptmx.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: 160}); err != nil {
		t.Fatal(err)
	}
	var screen bytes.Buffer
	var mu sync.Mutex
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			mu.Lock()
			screen.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	var out bytes.Buffer
	code := runAllCmds(ctxFor(t, 2*time.Minute), []string{"--config", c.config, "reinstall", "--all", "--yes"},
		strings.NewReader(""), &out, tty, c.getenv)
	tty.Close()
	select {
	case <-copied:
	case <-time.After(10 * time.Second):
	}
	mu.Lock()
	got := screen.String()
	mu.Unlock()
	if code != exitFailed {
		t.Fatalf("exit %d, want 1 (the dead BMC fails)\nstdout:\n%s\nterminal:\n%q", code, out.String(), got)
	}
	for _, want := range []string{
		"reinstall",
		"4/4",                   // the run's counter, complete
		"ok 3, failed 1",        // the tally
		"\x1b[",                 // redrawn in place (cursor movement)
		"deadbmc-001: failed (", // a failed node above the bars
		"ipmi-001: ",            // a node in flight with its step
		"level=INFO msg=\"reinstall run started\"", // a log line, not torn by the bars
	} {
		if !strings.Contains(got, want) {
			t.Errorf("terminal output lacks %q:\n%q", want, got)
		}
	}
	if !regexp.MustCompile(`  ipmi-00[12]: [a-z_-]+ \(\d+s\)`).MatchString(got) {
		t.Errorf("no line for a node in flight with its step:\n%q", got)
	}
	if strings.Contains(got, "[1/4] reinstall") {
		t.Errorf("plain progress lines on a terminal:\n%q", got)
	}
	if !strings.Contains(out.String(), "NODE") {
		t.Errorf("the results table is missing from stdout:\n%s", out.String())
	}
}

// TestReinstallProgressPlainWithoutTerminal: without a terminal, one plain
// line per finished node and no escape sequence.
func TestReinstallProgressPlainWithoutTerminal(t *testing.T) {
	c := newLabCLI(t, []fleet.ModelCount{{Model: fleet.ModelIPMI, Count: 2}}, 0)
	code, out, errOut := c.run(ctxFor(t, 2*time.Minute), "reinstall", "--all", "--yes")
	if code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "[2/2] reinstall") || strings.Contains(errOut, "\x1b[") {
		t.Errorf("stderr without a terminal: want plain [n/N] lines, no escapes:\n%q", errOut)
	}
}
