package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/reprov/reprov/lab/faultmatrix"
)

// reprovChild returns a command running this test binary as reprov (see
// TestMain), a real process the fault matrix can SIGKILL.
func reprovChild(t *testing.T, dir string) func(ctx context.Context, args ...string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return func(ctx context.Context, args ...string) *exec.Cmd {
		argv, _ := json.Marshal(args)
		cmd := exec.CommandContext(ctx, exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+string(argv), "HOME="+dir, "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
		return cmd
	}
}

// TestFaultMatrix runs the small fault matrix (docs/reliability.md): a few
// nodes per fault, the controller SIGKILLed at half the nodes started and
// resumed, the landing endpoint's address taken away for a while. Every
// node must end in its expected terminal state and every invariant hold;
// the cases docs/reliability.md lists under "Not yet 100 %" are reported
// and tolerated (knownShort), so that a regression anywhere else fails.
func TestFaultMatrix(t *testing.T) {
	if testing.Short() {
		t.Skip("the fault matrix runs a lab and several controllers")
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var progress strings.Builder
	rep, err := faultmatrix.Run(ctx, faultmatrix.Small(), faultmatrix.Options{Dir: dir, Reprov: reprovChild(t, dir), Progress: &progress})
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	var table strings.Builder
	rep.Table(&table)
	t.Logf("\n%s\n%s", progress.String(), table.String())
	if err := rep.Write(dir); err != nil {
		t.Fatal(err)
	}
	for _, inv := range rep.Invariants {
		if !inv.Held && !knownShort[inv.Name] {
			t.Errorf("invariant %q violated: %v", inv.Name, inv.Violations)
		}
	}
	for _, n := range rep.Results {
		if !n.OK && !knownShort[n.Fault] {
			t.Errorf("%s (%s): %s (reason %q)", n.Node, n.Fault, n.Why, n.Reason)
		}
	}
	if len(rep.Controllers) < 2 || !rep.Controllers[0].Killed {
		t.Errorf("the first controller was not killed mid-run: %+v", rep.Controllers)
	}
}

// knownShort are the faults and invariants docs/reliability.md lists under
// "Not yet 100 %" (engine changes the lead owns).
var knownShort = map[string]bool{}
