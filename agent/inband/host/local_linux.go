//go:build linux

package host

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/bougou/go-ipmi/pkg/client"
	"golang.org/x/sys/unix"
)

// Local is the real node the agent runs on: the real /sys, /proc and /dev,
// the kernel's IPMI device driver, the node's own commands and a real
// reboot. It is the only Host a normal build of the agent uses.
type Local struct{}

// NewLocal returns the Host of the machine the process runs on.
func NewLocal() *Local { return &Local{} }

// Describe implements Host.
func (*Local) Describe() string { return "local" }

// ReadFile implements Host.
func (*Local) ReadFile(_ context.Context, path string) ([]byte, error) { return os.ReadFile(path) }

// ReadDir implements Host.
func (*Local) ReadDir(_ context.Context, path string) ([]string, error) {
	ents, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names, nil
}

// EvalSymlinks implements Host.
func (*Local) EvalSymlinks(_ context.Context, path string) (string, error) {
	return filepath.EvalSymlinks(path)
}

// Stat implements Host.
func (*Local) Stat(_ context.Context, path string) (FileInfo, error) {
	return statLocal(path)
}

func statLocal(path string) (FileInfo, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return FileInfo{}, err
	}
	out := FileInfo{Mode: fi.Mode().Type(), Size: fi.Size()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && fi.Mode()&fs.ModeDevice != 0 {
		out.Dev = fmt.Sprintf("%d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)))
		out.Size = 0
	}
	return out, nil
}

// DeviceNode implements Host: /dev/NAME, checked to be that block device.
func (*Local) DeviceNode(_ context.Context, name, dev string) (string, error) {
	// Kernel names use "!" for "/" (cciss!c0d0 is /dev/cciss/c0d0).
	p := "/dev/" + strings.ReplaceAll(name, "!", "/")
	fi, err := statLocal(p)
	if err != nil {
		return "", fmt.Errorf("device node of %s (%s): %w", name, dev, err)
	}
	if !fi.IsBlockDevice() || fi.Dev != dev {
		return "", fmt.Errorf("device node %s is not block device %s (found %s %s)", p, dev, fi.Mode.Type(), fi.Dev)
	}
	return p, nil
}

// OpenDisk implements Host. It opens only block devices.
func (*Local) OpenDisk(_ context.Context, path string, write bool) (Disk, error) {
	flag := os.O_RDONLY
	if write {
		flag = os.O_RDWR
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if fi.Mode()&fs.ModeDevice == 0 || fi.Mode()&fs.ModeCharDevice != 0 {
		f.Close()
		return nil, fmt.Errorf("%s is not a block device", path)
	}
	return &fileDisk{f: f, blockDevice: true}, nil
}

// IPMI implements Host with go-ipmi's open interface on /dev/ipmi0.
func (*Local) IPMI(ctx context.Context) (IPMI, error) {
	c, err := client.NewOpenClient()
	if err != nil {
		return nil, err
	}
	c.WithTimeout(10 * time.Second)
	if err := c.Connect(ctx); err != nil {
		return nil, fmt.Errorf("in-band IPMI device: %w", err)
	}
	return OnceCloser(c), nil
}

// systemPath is searched for node commands, so that sudo's or a login's
// narrow PATH still finds sbin tools.
const systemPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

func lookPathLocal(name string) (string, error) {
	if strings.Contains(name, "/") {
		return "", fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	dirs := filepath.SplitList(os.Getenv("PATH"))
	dirs = append(dirs, filepath.SplitList(systemPath)...)
	for _, d := range dirs {
		if d == "" || !filepath.IsAbs(d) {
			continue
		}
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: %s", ErrNotFound, name)
}

// Modprobe implements Host.
func (l *Local) Modprobe(ctx context.Context, module string) error {
	_, err := l.Run(ctx, "modprobe", module)
	return err
}

// LookPath implements Host.
func (*Local) LookPath(_ context.Context, name string) (string, error) { return lookPathLocal(name) }

// Run implements Host.
func (*Local) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	p, err := lookPathLocal(name)
	if err != nil {
		return nil, err
	}
	return runLocal(ctx, p, name, args)
}

func runLocal(ctx context.Context, path, name string, args []string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return out, &ExitError{Command: strings.Join(append([]string{name}, args...), " "),
				Status: ee.ExitCode(), Stderr: strings.TrimSpace(stderr.String())}
		}
		return out, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// Reboot implements Host: a detached shell (its own session, no terminal,
// stdio on /dev/null) runs RebootCommand, so the caller returns — and its
// SSH session closes — before the link drops.
func (*Local) Reboot(_ context.Context, delay time.Duration) (RebootInfo, error) {
	script := RebootCommand(delay)
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Env = []string{"PATH=" + systemPath}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return RebootInfo{}, fmt.Errorf("start reboot: %w", err)
	}
	if err := cmd.Process.Release(); err != nil {
		return RebootInfo{}, err
	}
	return RebootInfo{Method: "detached: " + script, Delay: delay}, nil
}

func flushBuffers(f *os.File) error {
	return unix.IoctlSetInt(int(f.Fd()), unix.BLKFLSBUF, 0)
}
