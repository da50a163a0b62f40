package main

import (
	"os/exec"
	"strings"
	"testing"
)

// goList runs `go list` with args and returns its output lines.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	out, err := exec.Command(goBin, append([]string{"list"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("go list %v: %v\n%s", args, err, out)
	}
	return strings.Fields(string(out))
}

const (
	self        = "github.com/reprov/reprov/cmd/reprov-agent"
	fixturePkg  = "github.com/reprov/reprov/agent/inband/host/fixture"
	agentcmdPkg = "github.com/reprov/reprov/agent/inband/agentcmd"
)

// TestSlimAndReal: a normal build of reprov-agent has no fixture host, no
// job store, no lab, no Redfish; only the reprov_fixture test tag brings in
// the fixture (so the check can fail).
func TestSlimAndReal(t *testing.T) {
	deps := goList(t, "-deps", self)
	for _, d := range deps {
		for _, banned := range []string{
			fixturePkg,
			"github.com/reprov/reprov/lab",
			"github.com/reprov/reprov/agent/store",
			"github.com/reprov/reprov/agent/fleet",
			"github.com/reprov/reprov/bmc",
			"github.com/stmcginnis/gofish",
			"github.com/riverqueue/",
			"modernc.org/sqlite",
			"github.com/jackc/pgx",
			"github.com/spf13/viper",
		} {
			if d == banned || strings.HasPrefix(d, banned+"/") || strings.HasPrefix(d, banned) && strings.HasSuffix(banned, "/") {
				t.Errorf("reprov-agent depends on %s", d)
			}
		}
	}
	files := goList(t, "-f", "{{join .GoFiles \" \"}}", agentcmdPkg)
	for _, f := range files {
		if strings.Contains(f, "fixture") {
			t.Errorf("a normal build of agentcmd compiles %s", f)
		}
	}
	tagged := goList(t, "-tags", "reprov_fixture", "-deps", self)
	found := false
	for _, d := range tagged {
		found = found || d == fixturePkg
	}
	if !found {
		t.Fatal("the reprov_fixture build has no fixture either: this test checks nothing")
	}
}
