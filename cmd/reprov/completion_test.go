package main

import (
	"strings"
	"testing"
)

// complete runs cobra's hidden __complete command, as the shell scripts
// of `reprov completion` do, and returns the offered words.
func (c *cli) complete(t *testing.T, args ...string) []string {
	t.Helper()
	code, out, errOut := c.run(append([]string{"__complete"}, args...)...)
	if code != exitOK {
		t.Fatalf("__complete %v: exit %d: %s", args, code, errOut)
	}
	var words []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" || strings.HasPrefix(line, ":") {
			continue
		}
		words = append(words, strings.SplitN(line, "\t", 2)[0])
	}
	return words
}

// TestCompletionOffersNames: node names, racks, labels and playbooks are
// completed from the inventory and the playbooks, through cobra's
// __complete (what bash, zsh and fish call).
func TestCompletionOffersNames(t *testing.T) {
	c := newCLI(t)
	c.env["REPROV_INVENTORY"] = c.write("fleet.yaml", smallFleet)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"power", "status", "web-"}, "web-011 web-012"},
		{[]string{"reinstall", "web-011", ""}, "web-012 db-001"},
		{[]string{"jobs", "show", "d"}, "db-001"},
		{[]string{"power", "cycle", "--rack", "r1"}, "r12 r13"},
		{[]string{"power", "cycle", "--rack", "r12,"}, "r12,r12 r12,r13"},
		{[]string{"plan", "--selector", "role=w"}, "role=web"},
		{[]string{"playbooks", "show", "hp"}, "hp-dl360-g7"},
	} {
		if got := strings.Join(c.complete(t, tc.args...), " "); got != tc.want {
			t.Errorf("complete %q = %q, want %q", tc.args, got, tc.want)
		}
	}
}

// TestRackTakesACommaList: --rack r12,r13 selects both racks, as
// documented.
func TestRackTakesACommaList(t *testing.T) {
	c := newCLI(t)
	inv := c.write("fleet.yaml", smallFleet)
	code, out, errOut := c.run("inventory", "list", "--inventory", inv, "--rack", "r12,r13", "--no-headers")
	if code != exitOK || len(strings.Split(strings.TrimSpace(out), "\n")) != 3 {
		t.Errorf("--rack r12,r13: exit %d, want the 3 nodes:\n%s%s", code, out, errOut)
	}
}
