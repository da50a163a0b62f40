package rig

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/reprov/reprov/lab/labtool"
)

// chassisDir is a node directory with chassis.sh and a stand-in for
// qemu-start.sh that records its -boot argument and runs a sleep as "QEMU".
func chassisDir(t *testing.T, board Board) string {
	t.Helper()
	labtool.RequireTool(t, "flock")
	dir := t.TempDir()
	files := map[string]string{
		"chassis.sh": chassisScript,
		"qemu-start.sh": `#!/bin/sh
dir=$(dirname "$0")
printf '%s\n' "$1" >> "$dir/starts"
sleep 600 >/dev/null 2>&1 &
echo $! > "$dir/qemu.pid"
`,
		"board": string(board) + "\n", "boot": "none\n", "powerons": "0\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if b, err := os.ReadFile(filepath.Join(dir, "qemu.pid")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	return dir
}

func chassis(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(dir, "chassis.sh"), append([]string{dir}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("chassis.sh %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func starts(t *testing.T, dir string) []string {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(dir, "starts"))
	return strings.Fields(string(b))
}

// A board that honours the override boots the network once; one that
// ignores it boots its disk. Either way the boot consumes the device.
func TestChassisBoards(t *testing.T) {
	for _, tc := range []struct {
		board Board
		want  string
	}{
		{HonoursPXE, "once=n,order=cn"},
		{IgnoresPXE, "order=cn"},
	} {
		t.Run(string(tc.board), func(t *testing.T) {
			dir := chassisDir(t, tc.board)
			if got := chassis(t, dir, "get", "power"); got != "power:0" {
				t.Fatalf("a new machine reads %q, want power:0", got)
			}
			chassis(t, dir, "set", "boot", "pxe")
			if got := chassis(t, dir, "get", "boot"); got != "boot:pxe" {
				t.Fatalf("boot device reads %q after set boot pxe", got)
			}
			chassis(t, dir, "set", "power", "1")
			if got := chassis(t, dir, "get", "power"); got != "power:1" {
				t.Fatalf("after power on: %q", got)
			}
			if got := chassis(t, dir, "get", "boot"); got != "boot:none" {
				t.Errorf("the boot did not consume the device: %q", got)
			}
			chassis(t, dir, "set", "power", "1") // already on: no second start
			if got := starts(t, dir); len(got) != 1 || got[0] != tc.want {
				t.Errorf("QEMU started with -boot %q, want once with %q", got, tc.want)
			}
			// A plain power-on afterwards boots the disk first.
			chassis(t, dir, "set", "power", "0")
			if got := chassis(t, dir, "get", "power"); got != "power:0" {
				t.Fatalf("after power off: %q", got)
			}
			chassis(t, dir, "set", "power", "1")
			if got := starts(t, dir); len(got) != 2 || got[1] != "order=cn" {
				t.Errorf("second start with -boot %q, want order=cn", got)
			}
			log, _ := os.ReadFile(filepath.Join(dir, "chassis.log"))
			if !strings.Contains(string(log), "set boot pxe") {
				t.Errorf("chassis.log does not record the boot device:\n%s", log)
			}
		})
	}
}

func TestChassisRejectsUnknownValues(t *testing.T) {
	dir := chassisDir(t, HonoursPXE)
	cmd := exec.Command(filepath.Join(dir, "chassis.sh"), dir, "set", "boot", "floppy")
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("set boot floppy succeeded: %s", out)
	}
}
