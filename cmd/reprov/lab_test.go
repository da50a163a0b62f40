package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/reprov/reprov/agent"
	"github.com/reprov/reprov/lab/fleet"
)

// runWithLabCmd runs reprov with the lab command registered (if root.go
// does not register it yet).
func runWithLabCmd(ctx context.Context, c *cli, stdout, stderr *syncBuffer, args ...string) int {
	a := newApp(strings.NewReader(""), stdout, stderr, c.getenv)
	root := newRootCmd(a)
	have := map[string]bool{}
	for _, sub := range root.Commands() {
		have[sub.Name()] = true
	}
	for _, sub := range []*cobra.Command{newLabCmd(a), newPowerCmd(a)} {
		if !have[sub.Name()] {
			root.AddCommand(sub)
		}
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err != nil && err != errSomeFailed {
		fmt.Fprintf(stderr, "reprov: %v\n", err)
	}
	return exitCode(ctx, err)
}

func TestLabUpWritesAnInventoryReprovCommandsUse(t *testing.T) {
	c := newCLI(t)
	dir := filepath.Join(c.dir, "lab")
	inv := filepath.Join(dir, "fleet.yaml")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var labOut, labErr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- runWithLabCmd(ctx, c, &labOut, &labErr, "lab", "up", "--write-inventory", inv,
			"--mix", "ipmi=3,hp-dl360-g7=2,redfish=1,uefi=1", "--boot-delay", "10ms", "--os-boot-time", "0s",
			"--fault", "ssh-refuses-auth=1")
	}()
	cfgPath := filepath.Join(dir, "reprov.yaml")
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(labOut.String(), "Ctrl-C") {
		select {
		case code := <-done:
			t.Fatalf("lab up exited %d early\nstdout:\n%s\nstderr:\n%s", code, labOut.String(), labErr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("lab up did not print its summary within 30 s\nstderr:\n%s", labErr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	summary := labOut.String()
	t.Logf("lab up:\n%s", summary)
	for _, want := range []string{"7 nodes", inv, cfgPath, "hp-dl360-g7", "default ×1, hp-dl360-g7 ×1", "reprov power status --all --config " + cfgPath,
		"fault ssh-refuses-auth: ipmi-001"} {
		if !strings.Contains(summary, want) {
			t.Errorf("summary lacks %q:\n%s", want, summary)
		}
	}

	code, out, errOut := c.run("inventory", "validate", inv)
	if code != exitOK {
		t.Fatalf("inventory validate: exit %d\n%s\n%s", code, out, errOut)
	}

	var pout, perr syncBuffer
	code = runWithLabCmd(context.Background(), c, &pout, &perr, "power", "status", "--all", "--config", cfgPath, "-o", "json")
	if code != exitOK {
		t.Fatalf("power status --all: exit %d\nstdout:\n%s\nstderr:\n%s", code, pout.String(), perr.String())
	}
	var rows []struct {
		Node   string `json:"node"`
		Status string `json:"status"`
		Detail struct {
			Power    string `json:"power"`
			Protocol string `json:"protocol"`
		} `json:"detail"`
	}
	if err := json.Unmarshal([]byte(pout.String()), &rows); err != nil {
		t.Fatalf("power status JSON: %v\n%s", err, pout.String())
	}
	protocols := map[string]int{}
	for _, r := range rows {
		if r.Detail.Power != "on" {
			t.Errorf("node %s: power %q (status %s)", r.Node, r.Detail.Power, r.Status)
		}
		protocols[r.Detail.Protocol]++
	}
	t.Logf("power status:\n%s", pout.String())
	if len(rows) != 7 || protocols["ipmi"] != 6 || protocols["redfish"] != 1 {
		t.Errorf("power status rows %+v; want 7 nodes, 6 ipmi and 1 redfish", rows)
	}

	// reinstall --all --yes with the lab's own reprov.yaml lands every node
	// (the lab pushes nothing real: any agent binary will do).
	stub := filepath.Join(c.dir, "reprov-agent")
	if err := fleet.WriteAgentStub(stub); err != nil {
		t.Fatal(err)
	}
	c.env["REPROV_INBAND_AGENT_BINARY"] = stub
	// ipmi-001's sshd refuses the controller (--fault ssh-refuses-auth):
	// it stops at precheck untouched, so the run exits 1.
	code, out, errOut = c.run("reinstall", "--all", "--yes", "--config", cfgPath, "-o", "json")
	if code != exitFailed {
		t.Fatalf("reinstall --all --yes against the lab: exit %d, want 1 (one node refuses SSH)\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	var report struct {
		Results []struct {
			Node   string `json:"node"`
			Status string `json:"status"`
			Reason string `json:"reason"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(out), &report); err != nil || len(report.Results) != 7 {
		t.Fatalf("reinstall JSON (%v): %s", err, out)
	}
	for _, r := range report.Results {
		switch {
		case r.Node == "ipmi-001":
			if r.Status != "failed" || r.Reason != agent.ReasonSSHAuth {
				t.Errorf("node %s: %s (%s), want failed %q", r.Node, r.Status, r.Reason, agent.ReasonSSHAuth)
			}
		case r.Status != "ok":
			t.Errorf("node %s: %s, want landed", r.Node, r.Status)
		}
	}

	// No secret in anything the lab wrote or printed but the password file.
	pw, err := os.ReadFile(filepath.Join(dir, fleet.FileBMCPassword))
	if err != nil {
		t.Fatal(err)
	}
	secret := bytes.TrimSpace(pw)
	for name, b := range map[string][]byte{"summary": []byte(summary), "lab stderr": []byte(labErr.String()), "power output": []byte(pout.String() + perr.String())} {
		if bytes.Contains(b, secret) {
			t.Errorf("the BMC password appears in the %s", name)
		}
	}
	for _, f := range []string{inv, cfgPath} {
		b, _ := os.ReadFile(f)
		if bytes.Contains(b, secret) {
			t.Errorf("the BMC password appears in %s", f)
		}
	}

	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("lab up after Ctrl-C: exit %d\n%s", code, labErr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("lab up did not stop within 30 s of its context")
	}
	if !strings.Contains(labErr.String(), "stopped") {
		t.Errorf("no stop message:\n%s", labErr.String())
	}
}

func TestLabUpUsageErrors(t *testing.T) {
	c := newCLI(t)
	for _, args := range [][]string{
		{"lab", "up"},
		{"lab", "up", "--write-inventory", filepath.Join(c.dir, "x.yaml"), "--mix", "vax=2"},
		{"lab", "up", "--write-inventory", filepath.Join(c.dir, "x.yaml"), "--nodes", "-1"},
		{"lab", "up", "--write-inventory", filepath.Join(c.dir, "x.yaml"), "--max-os-up", "-1"},
		{"lab", "up", "--write-inventory", filepath.Join(c.dir, "x.yaml"), "--fault", "gremlins=1"},
		{"lab", "up", "--write-inventory", filepath.Join(c.dir, "x.yaml"), "--mix", "ipmi=1", "--fault", "loss10=2"},
	} {
		var out, errb syncBuffer
		if code := runWithLabCmd(context.Background(), c, &out, &errb, args...); code != exitUsage {
			t.Errorf("reprov %v: exit %d, want %d\n%s", args, code, exitUsage, errb.String())
		}
	}
}
