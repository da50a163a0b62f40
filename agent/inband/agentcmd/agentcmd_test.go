package agentcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/reprov/reprov/agent/audit"
	"github.com/reprov/reprov/agent/inband/host"
	"github.com/reprov/reprov/agent/inband/host/fixture"
	"github.com/reprov/reprov/agent/inband/steps"
)

// agent is the command tree over a fixture node with one MBR image disk.
type agent struct {
	t      *testing.T
	h      *fixture.Host
	layout *host.Layout
	image  string
	orig   []byte
}

func newAgent(t *testing.T) *agent {
	t.Helper()
	if _, err := exec.LookPath("sfdisk"); err != nil {
		// This package may not import lab/labtool; same rule by hand.
		if os.Getenv("CI") == "true" {
			t.Fatalf("sfdisk (Debian fdisk) missing: %v", err)
		}
		t.Skipf("sfdisk (Debian fdisk) missing: %v", err)
	}
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := fixture.MakeImage(img, 4<<20, "dos"); err != nil {
		t.Fatal(err)
	}
	part := filepath.Join(t.TempDir(), "part.img")
	os.WriteFile(part, bytes.Repeat([]byte{9}, 2<<20), 0o600)
	l, err := fixture.Build(filepath.Join(t.TempDir(), "root"), fixture.Node{
		Serial: "CZJ1234ABC", BootID: "b00t", NICs: []fixture.NIC{{Name: "eth0", MAC: "3c:4a:92:11:22:33"}},
		Disks: []fixture.Disk{{Name: "sda", Dev: "8:0", Image: img,
			Partitions: []fixture.Partition{{Name: "sda1", Dev: "8:1", Image: part}}}},
		Mounts: []fixture.Mount{{Dev: "8:1", MountPoint: "/", FSType: "ext4", Source: "/dev/sda1"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	h, err := fixture.New(l)
	if err != nil {
		t.Fatal(err)
	}
	orig, _ := os.ReadFile(img)
	return &agent{t: t, h: h, layout: l, image: img, orig: orig}
}

// run runs the tree and returns stdout and the exit code.
func (a *agent) run(args ...string) (string, int) {
	a.t.Helper()
	cmd := newTree(Options{Use: "reprov-agent", Version: "test"}, func() (host.Host, error) { return a.h, nil })
	var out, errb bytes.Buffer
	code := Main(context.Background(), cmd, args, strings.NewReader(""), &out, &errb)
	return out.String(), code
}

func TestIdentifyJSON(t *testing.T) {
	a := newAgent(t)
	out, code := a.run("identify", "-o", "json", "--no-modprobe")
	var id steps.Identity
	if code != 0 || json.Unmarshal([]byte(out), &id) != nil || id.Version != 1 || id.Serial != "CZJ1234ABC" || id.BootID != "b00t" {
		t.Fatalf("exit %d, %s", code, out)
	}
	out, code = a.run("identify", "-o", "json", "--no-modprobe", "--serial", "OTHER", "--node", "web-014")
	var er steps.ErrorResult
	if code != 1 || json.Unmarshal([]byte(out), &er) != nil || er.Code != steps.CodeIdentityMismatch ||
		!strings.Contains(er.Error, "serial expected OTHER, found CZJ1234ABC") {
		t.Fatalf("mismatch: exit %d, %s", code, out)
	}
}

func TestWipeAndRestore(t *testing.T) {
	a := newAgent(t)
	if _, code := a.run("wipe-boot-sector", "--disk", a.image); code != ExitUsage {
		t.Fatalf("wipe without --yes: exit %d, want %d", code, ExitUsage)
	}
	if _, code := a.run("wipe-boot-sector", "--yes"); code != ExitUsage {
		t.Fatalf("wipe without --disk: exit %d", code)
	}
	cur, _ := os.ReadFile(a.image)
	if !bytes.Equal(cur, a.orig) {
		t.Fatal("a refused wipe wrote")
	}

	dir := t.TempDir()
	save, auditLog := filepath.Join(dir, "saved.json"), filepath.Join(dir, "audit.jsonl")
	out, code := a.run("wipe-boot-sector", "--disk", a.image, "--yes", "--save", save, "--audit", auditLog, "--node", "web-014", "-o", "json")
	if code != 0 {
		t.Fatalf("wipe: exit %d: %s", code, out)
	}
	var res wipeOutput
	if err := json.Unmarshal([]byte(out), &res); err != nil || !res.Verified || res.BytesZeroed != 512 || res.SavedFile != save {
		t.Fatalf("wipe result %s (%v)", out, err)
	}
	cur, _ = os.ReadFile(a.image)
	if !bytes.Equal(cur[:512], make([]byte, 512)) || !bytes.Equal(cur[512:], a.orig[512:]) {
		t.Fatal("wipe did not zero exactly LBA 0")
	}
	recs, err := audit.Read(auditLog)
	if err != nil || len(recs) != 2 || recs[0].Phase != audit.PhaseIntent || recs[1].Result != audit.ResultOK ||
		recs[0].Node != "web-014" || recs[0].Action != "wipe-boot-sector" {
		t.Fatalf("audit %+v %v", recs, err)
	}

	// Without --audit, the record goes to the state dir, not the current directory.
	state := t.TempDir()
	t.Setenv("REPROV_STATE_DIR", state)
	out, code = a.run("restore-boot-sector", "--from", save, "--yes", "-o", "json")
	if code != 0 {
		t.Fatalf("restore: exit %d: %s", code, out)
	}
	if recs, err := audit.Read(filepath.Join(state, "reprov-agent-audit.jsonl")); err != nil || len(recs) != 2 {
		t.Errorf("restore without --audit: records in the state dir %+v (%v), want intent and outcome", recs, err)
	}
	cur, _ = os.ReadFile(a.image)
	if !bytes.Equal(cur, a.orig) {
		t.Fatal("restore did not put the sector back")
	}
}

func TestRefusalsAreProtocolErrors(t *testing.T) {
	a := newAgent(t)
	part := a.layout.Devices[1].Image
	out, code := a.run("resolve-disk", "--disk", part, "-o", "json")
	var er steps.ErrorResult
	if code != 1 || json.Unmarshal([]byte(out), &er) != nil || er.Code != steps.CodeDiskRefused || er.Version != 1 {
		t.Fatalf("exit %d, %s", code, out)
	}
	out, code = a.run("resolve-disk", "-o", "json")
	var info steps.DiskInfo
	if code != 0 || json.Unmarshal([]byte(out), &info) != nil || info.Path != a.image {
		t.Fatalf("boot disk: exit %d, %s", code, out)
	}
}

func TestRebootAndVersion(t *testing.T) {
	a := newAgent(t)
	out, code := a.run("reboot", "--dry-run", "-o", "json")
	if code != 0 || !strings.Contains(out, `"dry_run":true`) {
		t.Fatalf("dry run: %d %s", code, out)
	}
	if _, err := os.Stat(a.layout.RebootMarker); err == nil {
		t.Fatal("the dry run rebooted")
	}
	if out, code := a.run("reboot", "--no-audit", "-o", "json"); code != 0 {
		t.Fatalf("reboot: %d %s", code, out)
	}
	if _, err := os.Stat(a.layout.RebootMarker); err != nil {
		t.Fatal("no reboot")
	}
	out, code = a.run("version", "-o", "json")
	var v VersionInfo
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v.Protocol != steps.ProtocolVersion || !strings.HasPrefix(v.Host, "fixture") {
		t.Fatalf("version: %d %s", code, out)
	}
	if _, code := a.run("next-boot", "disk"); code != ExitUsage {
		t.Fatalf("next-boot disk: exit %d, want usage", code)
	}
	if _, code := a.run("identify", "-o", "yaml"); code != ExitUsage {
		t.Fatalf("-o yaml: exit %d, want usage", code)
	}
}

// TestNormalBuildUsesTheRealHost: in a normal build (this test's), New's
// host is the real node, never a fixture.
func TestNormalBuildUsesTheRealHost(t *testing.T) {
	if FixtureBuild {
		t.Skip("this is a reprov_fixture build")
	}
	h, err := defaultHost()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := h.(*host.Local); !ok || h.Describe() != "local" {
		t.Fatalf("default host %T %q, want the local node", h, h.Describe())
	}
}

// TestGivenHostKeepsNoLocalFiles: a tree handed a Host from Go code (the
// lab's SSH server) acts on that Host and refuses to write or read files on
// the machine it runs on.
func TestGivenHostKeepsNoLocalFiles(t *testing.T) {
	a := newAgent(t)
	dir := t.TempDir()
	run := func(args ...string) (string, int) {
		cmd := New(Options{Use: "reprov-agent", Host: func() (host.Host, error) { return a.h, nil }})
		var out, errb bytes.Buffer
		return out.String(), Main(context.Background(), cmd, args, strings.NewReader(""), &out, &errb)
	}
	before, err := os.ReadFile(a.image)
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"wipe-boot-sector", "--disk", a.image, "--yes", "--no-audit", "--save", filepath.Join(dir, "saved.json")},
		{"wipe-boot-sector", "--disk", a.image, "--yes", "--audit", filepath.Join(dir, "audit.jsonl")},
		{"restore-boot-sector", "--from", filepath.Join(dir, "saved.json"), "--yes", "--no-audit"},
	} {
		if _, code := run(args...); code != ExitUsage {
			t.Errorf("%v with a given Host: exit %d, want %d", args, code, ExitUsage)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("the tree wrote local files: %v", entries)
	}
	after, err := os.ReadFile(a.image)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("a refused wipe changed the disk")
	}
	if _, code := run("identify", "-o", "json"); code != ExitOK {
		t.Errorf("identify on the given Host: exit %d", code)
	}
}
