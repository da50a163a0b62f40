package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/reprov/reprov/agent/audit"
	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/lab/ipmibmc"
	"github.com/reprov/reprov/lab/labtool"
	"github.com/reprov/reprov/lab/redfishbmc"
)

// bmcFleet is a small fleet of go-ipmi reference BMCs on loopback with an
// inventory for them: web-01 and web-02 in rack r1 (web-01 initially on),
// db-01 in rack r2, and bad-01 in rack r2 whose inventory password is wrong.
type bmcFleet struct {
	cli      *cli
	inv      string
	bmcs     map[string]*ipmibmc.BMC
	secrets  []string
	stateDir string
}

const testBMCPassword = "ipmi-lab-Secret-42"

func newBMCFleet(t *testing.T) *bmcFleet {
	t.Helper()
	c := newCLI(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	f := &bmcFleet{cli: c, bmcs: map[string]*ipmibmc.BMC{}, stateDir: c.env["REPROV_STATE_DIR"],
		secrets: []string{testBMCPassword, "wrong-Secret-17"}}
	good := c.write("secrets/bmc", testBMCPassword+"\n")
	wrong := c.write("secrets/wrong", "wrong-Secret-17\n")

	var b strings.Builder
	fmt.Fprintf(&b, "defaults:\n  bmc: {username: admin, password: \"file:%s\"}\nnodes:\n", good)
	for _, n := range []struct {
		name, rack  string
		on, wrongPW bool
	}{
		{"web-01", "r1", true, false},
		{"web-02", "r1", false, false},
		{"db-01", "r2", false, false},
		{"bad-01", "r2", false, true},
	} {
		bm, err := ipmibmc.Start(ctx, ipmibmc.Config{Password: testBMCPassword, InitiallyOn: n.on})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = bm.Close() })
		f.bmcs[n.name] = bm
		fmt.Fprintf(&b, "  - name: %s\n    rack: %s\n    bmc:\n      address: \"ipmi://%s\"\n", n.name, n.rack, bm.Addr())
		if n.wrongPW {
			fmt.Fprintf(&b, "      password: \"file:%s\"\n", wrong)
		}
	}
	f.inv = c.write("fleet.yaml", b.String())
	return f
}

// run runs reprov with the fleet's inventory, registering the BMC
// commands on the root if root.go does not (yet).
func (f *bmcFleet) run(args ...string) (int, string, string) {
	f.cli.t.Helper()
	return runWithBMCCmds(context.Background(), f.cli, append([]string{"--inventory", f.inv}, args...)...)
}

func runWithBMCCmds(ctx context.Context, c *cli, args ...string) (int, string, string) {
	// Progress and logs both write stderr from several goroutines, as
	// they do to os.Stderr in production: the buffer must be safe for that.
	var out bytes.Buffer
	var errb syncBuffer
	a := newApp(strings.NewReader(""), &out, &errb, c.getenv)
	root := newRootCmd(a)
	have := map[string]bool{}
	for _, sub := range root.Commands() {
		have[sub.Name()] = true
	}
	for _, sub := range []*cobra.Command{newPowerCmd(a), newBootdevCmd(a), newBMCCmd(a)} {
		if !have[sub.Name()] {
			root.AddCommand(sub)
		}
	}
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errb)
	err := root.ExecuteContext(ctx)
	if err != nil && err != errSomeFailed {
		fmt.Fprintf(&errb, "reprov: %v\n", err)
	}
	return exitCode(ctx, err), out.String(), errb.String()
}

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// noSecrets fails the test when any output or the audit log holds a password.
func (f *bmcFleet) noSecrets(t *testing.T, outputs ...string) {
	t.Helper()
	if b, err := os.ReadFile(filepath.Join(f.stateDir, "audit.jsonl")); err == nil {
		outputs = append(outputs, string(b))
	}
	for _, o := range outputs {
		for _, s := range f.secrets {
			if strings.Contains(o, s) {
				t.Errorf("a password appears in the output:\n%s", o)
			}
		}
	}
}

// rows parses a table's lines into fields by node name (first column).
func rows(out string) map[string][]string {
	m := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		fs := strings.Fields(line)
		if len(fs) > 0 {
			m[fs[0]] = fs
		}
	}
	return m
}

func TestPowerStatus(t *testing.T) {
	f := newBMCFleet(t)
	code, out, errOut := f.run("power", "status", "web-*", "db-01")
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	r := rows(out)
	for node, want := range map[string]string{"web-01": "on", "web-02": "off", "db-01": "off"} {
		row := r[node]
		if len(row) < 5 || row[2] != "ok" || row[3] != want || row[4] != "ipmi" {
			t.Errorf("%s row %q, want ok, power %s, ipmi\n%s", node, row, want, out)
		}
	}
	if _, ok := r["bad-01"]; ok {
		t.Errorf("an unselected node is in the output:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(f.stateDir, "audit.jsonl")); err == nil {
		t.Errorf("a read-only power status wrote the audit log")
	}
	f.noSecrets(t, out, errOut)
}

func TestPowerCycleAudited(t *testing.T) {
	f := newBMCFleet(t)
	web1 := f.bmcs["web-01"].Machine()
	before := web1.PowerOns()
	code, out, errOut := f.run("power", "cycle", "web-01")
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if row := rows(out)["web-01"]; len(row) < 3 || row[2] != "ok" {
		t.Errorf("web-01 row %q:\n%s", row, out)
	}
	labtool.Eventually(t, 20*time.Second, "web-01 to power off and on again", func() bool { return web1.PowerOns() > before && web1.Powered() })

	recs, err := audit.Read(filepath.Join(f.stateDir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].Phase != audit.PhaseIntent || recs[1].Phase != audit.PhaseOutcome ||
		recs[0].ID != recs[1].ID || recs[0].Node != "web-01" || recs[0].Action != "power cycle" ||
		recs[1].Result != audit.ResultOK {
		t.Errorf("audit log %+v: want the intent of web-01's power cycle, then its ok outcome", recs)
	}
	f.noSecrets(t, out, errOut)
}

func TestPowerWrongPasswordFailsThatNode(t *testing.T) {
	f := newBMCFleet(t)
	code, out, errOut := f.run("power", "on", "--rack", "r2")
	if code != exitFailed {
		t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	r := rows(out)
	if row := r["bad-01"]; len(row) < 3 || row[2] != "failed" || !strings.Contains(strings.Join(row, " "), "BMC refused the credentials") {
		t.Errorf("bad-01 row %q: want failed, BMC refused the credentials\n%s", row, out)
	}
	if !strings.Contains(errOut, "node bad-01: ") {
		t.Errorf("stderr does not give bad-01's full error:\n%s", errOut)
	}
	if row := r["db-01"]; len(row) < 3 || row[2] != "ok" {
		t.Errorf("db-01 row %q: one node's bad password must not fail the others\n%s", row, out)
	}
	labtool.Eventually(t, 20*time.Second, "db-01 powered on", f.bmcs["db-01"].Machine().Powered)
	if f.bmcs["bad-01"].Machine().Powered() {
		t.Error("bad-01 was powered on with a wrong password")
	}
	f.noSecrets(t, out, errOut)
}

func TestPowerDryRun(t *testing.T) {
	f := newBMCFleet(t)
	code, out, errOut := f.run("power", "off", "--dry-run", "web-01")
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if row := rows(out)["web-01"]; len(row) < 3 || row[2] != "skipped" || !strings.Contains(out, "dry run") {
		t.Errorf("web-01 row %q: want skipped (dry run)\n%s", row, out)
	}
	if !f.bmcs["web-01"].Machine().Powered() {
		t.Error("a dry run powered web-01 off")
	}
	recs, err := audit.Read(filepath.Join(f.stateDir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[1].Result != audit.ResultSkipped {
		t.Errorf("audit log %+v: want an intent and a skipped outcome", recs)
	}
}

func TestBootdevPXE(t *testing.T) {
	f := newBMCFleet(t)
	code, out, errOut := f.run("-o", "json", "bootdev", "pxe", "--legacy", "--rack", "r1", "--yes")
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	var res []struct {
		Node   string `json:"node"`
		Status string `json:"status"`
		Detail struct {
			Requested bmc.BootOverride `json:"requested"`
			Result    *bmc.BootResult  `json:"result"`
		} `json:"detail"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("JSON output does not parse: %v\n%s", err, out)
	}
	if len(res) != 2 {
		t.Fatalf("%d rows, want web-01 and web-02:\n%s", len(res), out)
	}
	for _, r := range res {
		if r.Status != "ok" || r.Detail.Result == nil || r.Detail.Result.ReadBack.Device != bmc.BootPXE {
			t.Errorf("%s: %+v, want ok with pxe read back", r.Node, r)
		}
		if got := f.bmcs[r.Node].Machine().BootDevice(); got != bmc.BootPXE {
			t.Errorf("%s's BMC holds boot device %q, want pxe", r.Node, got)
		}
		if fl := f.bmcs[r.Node].Machine().BootFlags(); fl.Persistent || fl.EFI {
			t.Errorf("%s's BMC holds %+v, want one-time legacy", r.Node, fl)
		}
	}
	if got := f.bmcs["db-01"].Machine().BootDevice(); got != bmc.BootNone {
		t.Errorf("unselected db-01 got boot device %q", got)
	}
	recs, err := audit.Read(filepath.Join(f.stateDir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	intents := map[string]int{}
	for i, r := range recs {
		switch r.Phase {
		case audit.PhaseIntent:
			intents[r.ID] = i
		case audit.PhaseOutcome:
			if at, ok := intents[r.ID]; !ok || at > i {
				t.Errorf("outcome %+v has no earlier intent", r)
			}
		}
	}
	if len(recs) != 4 || len(audit.Unsettled(recs)) != 0 {
		t.Errorf("audit log %+v: want 2 intents with their outcomes", recs)
	}
	f.noSecrets(t, out, errOut)
}

func TestBMCInfoDetectsRedfishAndIPMI(t *testing.T) {
	f := newBMCFleet(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	rf, err := redfishbmc.Start(ctx, redfishbmc.Config{Password: testBMCPassword, SerialNumber: "CZJ1234ABC", Powered: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rf.Close() })
	// Add a Redfish node with a bare address (protocol detected).
	inv, err := os.ReadFile(f.inv)
	if err != nil {
		t.Fatal(err)
	}
	inv = fmt.Appendf(inv, "  - name: rf-01\n    rack: r3\n    bmc:\n      address: \"%s:%d\"\n      options: {ca_file: \"%s\"}\n",
		rf.Host(), rf.Port(), rf.CAFile())
	f.inv = f.cli.write("fleet.yaml", string(inv))

	code, out, errOut := f.run("-o", "json", "bmc", "info", "rf-01", "web-01")
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	var res []struct {
		Node   string `json:"node"`
		Status string `json:"status"`
		Detail struct {
			Protocol string `json:"protocol"`
			Serial   string `json:"serial"`
			Power    string `json:"power"`
			Detected struct {
				Auto bool   `json:"auto"`
				How  string `json:"how"`
			} `json:"detected"`
		} `json:"detail"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("JSON output does not parse: %v\n%s", err, out)
	}
	by := map[string]int{}
	for i, r := range res {
		by[r.Node] = i
	}
	rfRow, web := res[by["rf-01"]], res[by["web-01"]]
	if rfRow.Status != "ok" || rfRow.Detail.Protocol != "redfish" || !rfRow.Detail.Detected.Auto ||
		rfRow.Detail.Serial != "CZJ1234ABC" || rfRow.Detail.Power != "on" {
		t.Errorf("rf-01: %+v, want redfish (detected), serial CZJ1234ABC, on", rfRow)
	}
	if web.Status != "ok" || web.Detail.Protocol != "ipmi" || web.Detail.Detected.Auto || web.Detail.Power != "on" {
		t.Errorf("web-01: %+v, want ipmi (configured), on", web)
	}
	f.noSecrets(t, out, errOut)
}

func TestPowerInterrupted(t *testing.T) {
	f := newBMCFleet(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // Ctrl-C before anything started
	code, out, errOut := runWithBMCCmds(ctx, f.cli, "--inventory", f.inv, "power", "off", "--all", "--yes")
	if code != exitInterrupted {
		t.Fatalf("exit %d, want 3\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for node, row := range rows(out) {
		if len(row) < 3 || row[2] != "interrupted" {
			t.Errorf("%s row %q, want interrupted", node, row)
		}
	}
	if !f.bmcs["web-01"].Machine().Powered() {
		t.Error("web-01 was powered off after the interruption")
	}
}

func TestBMCCommandsUsage(t *testing.T) {
	f := newBMCFleet(t)
	for _, args := range [][]string{
		{"bootdev", "pxe", "--uefi", "--legacy", "web-01"},
		{"power", "cycle"}, // nothing selected
		{"power", "status", "--max-failures", "-1", "web-01"},
	} {
		if code, out, errOut := f.run(args...); code != exitUsage {
			t.Errorf("reprov %v: exit %d, want 2\nstdout:\n%s\nstderr:\n%s", args, code, out, errOut)
		}
	}
}
