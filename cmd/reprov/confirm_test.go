package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/creack/pty"

	"github.com/reprov/reprov/inventory"
)

// runOnTerminal runs reprov with a pseudo-terminal as stdin, typing answer
// into it, as an operator at a terminal would.
func runOnTerminal(t *testing.T, f *bmcFleet, answer string, args ...string) (int, string, string) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	defer tty.Close()
	// The terminal echoes what is typed: drain it so that nothing blocks.
	go func() { _, _ = io.Copy(io.Discard, ptmx) }()
	if _, err := ptmx.Write([]byte(answer)); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	var errb syncBuffer
	code := run(context.Background(), append([]string{"--inventory", f.inv}, args...), tty, &out, &errb, f.cli.getenv)
	return code, out.String(), errb.String()
}

func TestConfirmPowerOnTerminal(t *testing.T) {
	f := newBMCFleet(t) // web-01 on, web-02 off, both in rack r1
	web1 := f.bmcs["web-01"].Machine()

	code, out, errOut := runOnTerminal(t, f, "y\n", "power", "off", "web-[01-02]")
	if code != exitFailed || !strings.Contains(errOut, "not confirmed: nothing done") {
		t.Errorf(`answer "y": exit %d, want 1 and "nothing done"\nstdout:\n%s\nstderr:\n%s`, code, out, errOut)
	}
	for _, want := range []string{"About to power off 2 node(s):\n", "  web-01 (rack r1)\n", "  web-02 (rack r1)\n", `Type "yes" to power off them: `} {
		if !strings.Contains(errOut, want) {
			t.Errorf("the confirmation lacks %q:\n%s", want, errOut)
		}
	}
	if !web1.Powered() {
		t.Fatal(`web-01 was powered off although the answer was "y"`)
	}

	code, out, errOut = runOnTerminal(t, f, "yes\n", "power", "off", "web-[01-02]")
	if code != exitOK {
		t.Fatalf("answer yes: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if web1.Powered() {
		t.Error("web-01 is still on after a confirmed power off")
	}
}

func TestConfirmRefusedWithoutTerminal(t *testing.T) {
	f := newBMCFleet(t)
	for _, args := range [][]string{
		{"power", "cycle", "--rack", "r1"},
		{"power", "reset", "web-*"},
		{"power", "off", "--all"},
		{"bootdev", "pxe", "web-[01-02]"},
	} {
		code, out, errOut := f.run(args...)
		if code != exitUsage || !strings.Contains(errOut, "stdin is not a terminal (pass --yes)") || !strings.Contains(errOut, "  web-01 (rack r1)") {
			t.Errorf("%v without a terminal: exit %d, want 2 listing the nodes and saying to pass --yes\nstdout:\n%s\nstderr:\n%s", args, code, out, errOut)
		}
	}
	if f.bmcs["web-02"].Machine().Powered() || !f.bmcs["web-01"].Machine().Powered() {
		t.Error("a refused command changed the power of a node")
	}
	// One node, on, status and dry runs do not ask.
	for _, args := range [][]string{
		{"power", "on", "--rack", "r1"},
		{"power", "status", "--all"},
		{"power", "cycle", "--dry-run", "--rack", "r1"},
		{"power", "off", "web-02"},
		{"bootdev", "disk", "web-01"},
	} {
		if code, out, errOut := f.run(args...); strings.Contains(errOut, "pass --yes") || code == exitUsage {
			t.Errorf("%v asked for confirmation: exit %d\nstdout:\n%s\nstderr:\n%s", args, code, out, errOut)
		}
	}
}

func TestConfirmationListsRacksAbove20(t *testing.T) {
	var nodes []inventory.Node
	for i := range 25 {
		nodes = append(nodes, inventory.Node{Name: fmt.Sprintf("n%02d", i), Rack: fmt.Sprintf("r%d", i%3)})
	}
	text := confirmation{Verb: "reinstall", Nodes: nodes}.describe()
	for _, want := range []string{"About to reinstall 25 node(s):", "3 racks:", "r0           9 node(s)", "r2           8 node(s)"} {
		if !strings.Contains(text, want) {
			t.Errorf("confirmation lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "n24") {
		t.Errorf("confirmation of 25 nodes lists every name:\n%s", text)
	}
}
