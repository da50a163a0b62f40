package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/reprov/reprov/lab/labtool"
)

// TestVersionFlagAndCommandAgree: `reprov --version` and `reprov version`
// print the same line; -o json has version and Go version.
func TestVersionFlagAndCommandAgree(t *testing.T) {
	c := newCLI(t)
	code, flagOut, errOut := c.run("--version")
	if code != exitOK {
		t.Fatalf("--version: exit %d: %s", code, errOut)
	}
	_, cmdOut, _ := c.run("version")
	if flagOut != cmdOut || !strings.HasPrefix(flagOut, "reprov ") || !strings.Contains(flagOut, "go1.") {
		t.Errorf("--version %q and version %q differ or lack the Go version", flagOut, cmdOut)
	}
	_, out, _ := c.run("version", "-o", "json")
	var v map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil || v["version"] == "" || v["go_version"] == nil {
		t.Errorf("version -o json: %v: %s", err, out)
	}
}

// TestGoInstallAloneReinstallsTheLab is "go install works": reprov built
// with `go install` from the module alone (GOPROXY=off: nothing fetched,
// every requirement in go.mod and go.sum) into an empty directory — no
// reprov-agent next to it — reinstalls a lab rack, the DL360 G7 nodes
// through the in-band path with reprov itself pushed as the agent. The
// same binary writes the man pages `make install` installs.
func TestGoInstallAloneReinstallsTheLab(t *testing.T) {
	goBin := labtool.RequireTool(t, "go")
	gobin := t.TempDir()
	install := exec.Command(goBin, "install", "./cmd/reprov")
	install.Dir = "../.."
	install.Env = append(os.Environ(), "GOBIN="+gobin, "GOPROXY=off", "GOFLAGS=-mod=readonly")
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("GOPROXY=off go install ./cmd/reprov: %v\n%s", err, out)
	}
	entries, _ := os.ReadDir(gobin)
	if len(entries) != 1 || entries[0].Name() != "reprov" {
		t.Fatalf("go install wrote %v, want reprov alone", entries)
	}
	reprov := filepath.Join(gobin, "reprov")

	dir := t.TempDir()
	env := []string{"HOME=" + dir, "XDG_CONFIG_HOME=" + filepath.Join(dir, "config"), "PATH=" + os.Getenv("PATH")}
	runBin := func(args ...string) (int, string, string) {
		t.Helper()
		cmd := exec.Command(reprov, args...)
		cmd.Env, cmd.Dir = env, dir
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), out.String(), errb.String()
		} else if err != nil {
			t.Fatal(err)
		}
		return 0, out.String(), errb.String()
	}
	if code, out, errOut := runBin("--version"); code != 0 || !strings.HasPrefix(out, "reprov ") {
		t.Errorf("--version: exit %d: %s%s", code, out, errOut)
	}
	man := filepath.Join(dir, "man")
	if code, _, errOut := runBin("man-pages", man); code != 0 {
		t.Errorf("man-pages: exit %d: %s", code, errOut)
	}
	for _, page := range []string{"reprov.1", "reprov-reinstall.1", "reprov-power.1"} {
		if b, err := os.ReadFile(filepath.Join(man, page)); err != nil || !bytes.Contains(b, []byte(".TH ")) {
			t.Errorf("man page %s: %v", page, err)
		}
	}

	labDir := filepath.Join(dir, "lab")
	lab := exec.Command(reprov, "lab", "up", "--write-inventory", filepath.Join(labDir, "fleet.yaml"),
		"--mix", "ipmi=2,hp-dl360-g7=2,redfish=1", "--boot-delay", "10ms", "--os-boot-time", "0s")
	lab.Env, lab.Dir = env, dir
	var labOut, labErr syncBuffer
	lab.Stdout, lab.Stderr = &labOut, &labErr
	if err := lab.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		lab.Process.Signal(syscall.SIGINT)
		done := make(chan error, 1)
		go func() { done <- lab.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			lab.Process.Kill()
		}
	})
	labtool.Eventually(t, 60*time.Second, "lab up prints its summary", func() bool {
		return strings.Contains(labOut.String(), "Ctrl-C")
	})

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, reprov, "reinstall", "--all", "--yes", "--config", filepath.Join(labDir, "reprov.yaml"), "-o", "json")
	cmd.Env, cmd.Dir = env, dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("reinstall with the go-installed reprov alone: %v\nstdout:\n%s\nstderr:\n%s\nlab:\n%s", err, out.String(), errb.String(), labErr.String())
	}
	var report struct {
		Results []struct {
			Node   string `json:"node"`
			Status string `json:"status"`
			Detail struct {
				Path string `json:"path"`
			} `json:"detail"`
		} `json:"results"`
	}
	if err := json.Unmarshal(out.Bytes(), &report); err != nil || len(report.Results) != 5 {
		t.Fatalf("reinstall JSON (%v): %s", err, out.String())
	}
	inband := 0
	for _, r := range report.Results {
		if r.Status != "ok" {
			t.Errorf("node %s: %s, want landed", r.Node, r.Status)
		}
		if strings.Contains(r.Detail.Path, "inband") || strings.Contains(r.Detail.Path, "in-band") {
			inband++
		}
	}
	if inband < 2 {
		t.Errorf("%d nodes landed in-band, want the 2 DL360 G7 (reprov pushed as its own agent):\n%s", inband, out.String())
	}
}
