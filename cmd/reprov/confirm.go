package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/mattn/go-isatty"

	"github.com/reprov/reprov/inventory"
)

// maxListedNames is how many selected names a confirmation lists one by
// one; above it, it gives the count per rack.
const maxListedNames = 20

// errNotConfirmed is returned when the operator answers anything but "yes":
// the command ran (it asked) and did nothing, exit 1.
var errNotConfirmed = failedError(errors.New("not confirmed: nothing done"))

// confirmation is one question before a command that changes nodes.
type confirmation struct {
	// Verb is what is about to happen, for "About to VERB N node(s)" and
	// "refusing to VERB without confirmation": "reinstall", "power cycle".
	Verb string
	// Nodes are the selected nodes, listed by name.
	Nodes []inventory.Node
	// Detail is more text shown after the names (may be empty; ends in a
	// newline when not).
	Detail string
}

// stdinIsTerminal reports whether the app's stdin is a terminal.
func (a *app) stdinIsTerminal() bool {
	f, ok := a.stdin.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// confirm shows the selected nodes and asks, on the terminal, for the word
// "yes". Without a terminal it refuses with a usage error (exit 2) telling
// to pass --yes; any answer but "yes" is errNotConfirmed (exit 1).
func (a *app) confirm(c confirmation) error {
	text := c.describe()
	if !a.stdinIsTerminal() {
		return usagef("refusing to %s without confirmation: stdin is not a terminal (pass --yes)\n%s", c.Verb, text)
	}
	fmt.Fprint(a.stderr, text)
	fmt.Fprintf(a.stderr, "Type \"yes\" to %s them: ", c.Verb)
	line, err := bufio.NewReader(a.stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return usagef("reading the confirmation: %w", err)
	}
	if !strings.EqualFold(strings.TrimSpace(line), "yes") {
		fmt.Fprintln(a.stderr)
		return errNotConfirmed
	}
	return nil
}

// describe lists the selection: every name up to maxListedNames, else the
// count per rack, then the detail.
func (c confirmation) describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "About to %s %d node(s):\n", c.Verb, len(c.Nodes))
	if len(c.Nodes) <= maxListedNames {
		for _, n := range c.Nodes {
			if n.Rack != "" {
				fmt.Fprintf(&b, "  %s (rack %s)\n", n.Name, n.Rack)
			} else {
				fmt.Fprintf(&b, "  %s\n", n.Name)
			}
		}
	} else {
		racks := map[string]int{}
		for _, n := range c.Nodes {
			r := n.Rack
			if r == "" {
				r = "(no rack)"
			}
			racks[r]++
		}
		names := make([]string, 0, len(racks))
		for r := range racks {
			names = append(names, r)
		}
		sort.Strings(names)
		fmt.Fprintf(&b, "  %d racks:\n", len(names))
		for _, r := range names {
			fmt.Fprintf(&b, "  %-12s %d node(s)\n", r, racks[r])
		}
		fmt.Fprintf(&b, "  (names: %s; reprov inventory list with the same selection lists them all)\n", shortList(nodeNames(c.Nodes), 5))
	}
	b.WriteString(c.Detail)
	return b.String()
}

func nodeNames(nodes []inventory.Node) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.Name
	}
	return out
}
