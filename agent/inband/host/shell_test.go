package host

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// localExec runs command lines with this machine's /bin/sh (dash on
// Debian: a strict POSIX shell). Tests use it only with a Layout, whose
// Shell opens nothing but the test's image files.
type localExec struct{ cmds []string }

func (l *localExec) Exec(ctx context.Context, cmd string, stdin io.Reader) ([]byte, error) {
	l.cmds = append(l.cmds, cmd)
	c := exec.CommandContext(ctx, "/bin/sh", "-c", cmd)
	c.Stdin = stdin
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out, &ExitError{Command: cmd, Status: ee.ExitCode(), Stderr: strings.TrimSpace(stderr.String())}
	}
	return out, err
}

func TestParseLsLong(t *testing.T) {
	for _, tc := range []struct {
		line string
		want FileInfo
	}{
		{"brw-rw---- 1 root disk 8, 0 Nov 26 13:00 /dev/sda", FileInfo{Mode: fs.ModeDevice, Dev: "8:0"}},
		{"brw-rw----    1 root     disk     253,   1 Nov 26 13:00 /dev/dm-1", FileInfo{Mode: fs.ModeDevice, Dev: "253:1"}},
		{"crw-rw-rw- 1 root root 1, 3 Nov 26 13:00 /dev/null", FileInfo{Mode: fs.ModeDevice | fs.ModeCharDevice, Dev: "1:3"}},
		{"-rw-r--r-- 1 root root 4194304 Nov 26 13:00 /tmp/disk.img", FileInfo{Size: 4194304}},
		{"drwxr-xr-x 2 root root 0 Nov 26 13:00 /sys/firmware/efi", FileInfo{Mode: fs.ModeDir}},
	} {
		got, err := parseLsLong(tc.line)
		if err != nil || got != tc.want {
			t.Errorf("%q: %+v, %v; want %+v", tc.line, got, err, tc.want)
		}
	}
	if _, err := parseLsLong("garbage"); err == nil {
		t.Error("garbage parsed")
	}
}

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/dev/sda": "/dev/sda", "": "''", "a b": "'a b'", "it's": `'it'\''s'`, "$(reboot)": "'$(reboot)'",
		"/dev/disk/by-path/pci-0000:03:00.0-scsi-0:0:0:0": "/dev/disk/by-path/pci-0000:03:00.0-scsi-0:0:0:0",
	} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %s, want %s", in, got, want)
		}
		out, err := exec.Command("/bin/sh", "-c", "printf %s "+Quote(in)).Output()
		if err != nil || string(out) != in {
			t.Errorf("sh sees %q for Quote(%q)", out, in)
		}
	}
}

// TestShellScriptsParse checks the generated shell programs are valid
// POSIX sh without running them (sh -n).
func TestShellScriptsParse(t *testing.T) {
	for name, script := range map[string]string{
		"reboot":  RebootShellCommand(2 * time.Second),
		"inner":   RebootCommand(2 * time.Second),
		"resolve": "p=/x\n" + resolveScript,
		"kill":    killSSHSession,
		"flush":   FlushCommand("/dev/sda"),
	} {
		if out, err := exec.Command("/bin/sh", "-n", "-c", script).CombinedOutput(); err != nil {
			t.Errorf("%s: %v: %s", name, err, out)
		}
	}
	if !strings.Contains(RebootCommand(3*time.Second), "sleep 3; sync; ") {
		t.Error("the reboot does not wait and sync first")
	}
}

func TestShellHostOnALayout(t *testing.T) {
	root := t.TempDir()
	img := filepath.Join(t.TempDir(), "disk.img")
	orig := bytes.Repeat([]byte{0xab}, 8192)
	if err := os.WriteFile(img, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"sys/devices/pci/block/sda", "sys/dev/block", "dev/disk/by-id", "sys/class/net"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	os.WriteFile(filepath.Join(root, "sys/devices/pci/block/sda/size"), []byte("16\n"), 0o644)
	os.Symlink("../../devices/pci/block/sda", filepath.Join(root, "sys/dev/block/8:0"))
	os.Symlink(img, filepath.Join(root, "dev/disk/by-id/ata-DISK"))
	os.Symlink("ata-DISK", filepath.Join(root, "dev/disk/by-id/wwn-0x1"))
	l := &Layout{Root: root, RebootMarker: filepath.Join(root, "marker"), Devices: []Device{{Image: img, Dev: "8:0"}}}
	ex := &localExec{}
	s, err := NewShell(ex, l)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	for in, want := range map[string]string{
		"/sys/dev/block/8:0":         "/sys/devices/pci/block/sda",
		"/dev/disk/by-id/wwn-0x1":    img,
		"/dev/disk/by-id/ata-DISK":   img,
		"/sys/devices/pci/block/sda": "/sys/devices/pci/block/sda",
	} {
		got, err := s.EvalSymlinks(ctx, in)
		if err != nil || got != want {
			t.Errorf("EvalSymlinks(%s) = %q, %v; want %s", in, got, err, want)
		}
	}
	if _, err := s.EvalSymlinks(ctx, "/nope"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing path: %v", err)
	}
	if b, err := s.ReadFile(ctx, "/sys/devices/pci/block/sda/size"); err != nil || string(b) != "16\n" {
		t.Errorf("ReadFile: %q %v", b, err)
	}
	if _, err := s.ReadFile(ctx, "/sys/nothing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadFile of a missing file: %v", err)
	}
	if fi, err := s.Stat(ctx, img); err != nil || !fi.IsBlockDevice() || fi.Dev != "8:0" {
		t.Errorf("Stat(image) = %+v, %v", fi, err)
	}
	if names, err := s.ReadDir(ctx, "/sys/devices/pci/block/sda"); err != nil || strings.Join(names, ",") != "size" {
		t.Errorf("ReadDir = %v, %v", names, err)
	}

	// Only the image opens; dd touches exactly the asked sectors.
	if _, err := s.OpenDisk(ctx, "/dev/sda", true); !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("OpenDisk(/dev/sda) on a layout: %v, want ErrNotAllowed", err)
	}
	d, err := s.OpenDisk(ctx, img, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Zero(ctx, 1024, 512); err != nil {
		t.Fatal(err)
	}
	data := []byte(strings.Repeat("restored", 64))
	if err := d.WriteAt(ctx, data, 4096); err != nil {
		t.Fatal(err)
	}
	if err := d.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	want := append([]byte(nil), orig...)
	copy(want[1024:1536], make([]byte, 512))
	copy(want[4096:], data)
	got, _ := os.ReadFile(img)
	if !bytes.Equal(got, want) {
		t.Fatal("dd wrote other bytes than asked")
	}
	buf := make([]byte, 1024)
	if err := d.ReadAt(ctx, buf, 4096); err != nil || !bytes.Equal(buf[:512], data) {
		t.Fatalf("ReadAt: %v", err)
	}

	// Reads are cached until a command with an effect.
	s.ReadFile(ctx, "/sys/devices/pci/block/sda/size")
	n := len(ex.cmds)
	s.ReadFile(ctx, "/sys/devices/pci/block/sda/size")
	if len(ex.cmds) != n {
		t.Error("a repeated read ran a command")
	}
	s.Forget()
	s.ReadFile(ctx, "/sys/devices/pci/block/sda/size")
	if len(ex.cmds) != n+1 {
		t.Error("Forget did not drop the cache")
	}

	if _, err := s.Reboot(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(l.RebootMarker); err != nil {
		t.Fatal("no reboot marker")
	}
}

// TestShellHostRealPathsReadOnly runs the real-node Shell (no layout) on
// read-only commands only.
func TestShellHostRealPathsReadOnly(t *testing.T) {
	s, err := NewShell(&localExec{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := s.Stat(context.Background(), "/dev/null")
	if err != nil || fi.Mode&fs.ModeCharDevice == 0 || fi.Dev != "1:3" {
		t.Fatalf("Stat(/dev/null) = %+v, %v", fi, err)
	}
	if _, err := s.OpenDisk(context.Background(), "/dev/null", false); err == nil {
		t.Fatal("a character device opened as a disk")
	}
	if p, err := s.LookPath(context.Background(), "sh"); err != nil || !strings.HasSuffix(p, "/sh") {
		t.Fatalf("LookPath(sh) = %q, %v", p, err)
	}
	if _, err := s.LookPath(context.Background(), "reprov-no-such-tool"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("LookPath of a missing tool: %v", err)
	}
}
