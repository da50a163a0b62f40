// Package host is the boundary between reprov's in-band steps and the node
// they run on. Every side effect of a step — reading sysfs and procfs,
// sector I/O on a block device, the in-band IPMI device, loading kernel
// modules, running a node tool such as ipmitool or efibootmgr, rebooting —
// goes through a Host, so one implementation of each step serves the real
// node (Local, inside the pushed agent), a node reached only with POSIX
// commands over SSH (Shell), the lab, and tests (package fixture).
//
// A Host does what it is told; the checks (which disk, which bytes, is this
// the right node) live in package steps.
package host

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/bougou/go-ipmi/pkg/types"
)

// ErrNotSupported is returned by a Host that cannot do what was asked (a
// Shell host has no in-band IPMI device of its own, for example).
var ErrNotSupported = errors.New("not supported by this host")

// ErrNotFound is returned by LookPath when a command is not on the node.
var ErrNotFound = errors.New("command not found on node")

// ErrNotAllowed is returned when a Host refuses a path it must never touch
// (a lab or fixture Host asked to open anything but its image files).
var ErrNotAllowed = errors.New("path not allowed on this host")

// Host is everything an in-band step may touch on a node.
type Host interface {
	// Describe names the host for messages ("local", "ssh commands", "fixture").
	Describe() string
	// ReadFile returns a file's contents (sysfs, procfs, DMI). Missing
	// files report an error matching fs.ErrNotExist.
	ReadFile(ctx context.Context, path string) ([]byte, error)
	// ReadDir returns the entry names of a directory, sorted.
	ReadDir(ctx context.Context, path string) ([]string, error)
	// EvalSymlinks returns path with every symbolic link resolved.
	EvalSymlinks(ctx context.Context, path string) (string, error)
	// Stat describes path, following symbolic links.
	Stat(ctx context.Context, path string) (FileInfo, error)
	// DeviceNode returns the device node of the block device whose kernel
	// name is name and whose number is dev ("8:0").
	DeviceNode(ctx context.Context, name, dev string) (string, error)
	// OpenDisk opens a block device for sector I/O; write false opens it
	// read-only.
	OpenDisk(ctx context.Context, path string, write bool) (Disk, error)
	// IPMI connects to the node's own BMC through the in-band interface
	// (/dev/ipmi0). The caller closes it.
	IPMI(ctx context.Context) (IPMI, error)
	// Modprobe loads a kernel module.
	Modprobe(ctx context.Context, module string) error
	// LookPath reports where a node command is, or ErrNotFound.
	LookPath(ctx context.Context, name string) (string, error)
	// Run runs a node command (no shell) and returns its standard output.
	// A non-zero exit is an *ExitError.
	Run(ctx context.Context, name string, args ...string) ([]byte, error)
	// Reboot arranges for the node to reboot after delay and returns
	// before it goes down: systemctl reboot, then reboot -f, then sysrq b.
	Reboot(ctx context.Context, delay time.Duration) (RebootInfo, error)
}

// FileInfo is what Stat reports.
type FileInfo struct {
	// Mode carries the type bits (fs.ModeDevice, fs.ModeDir, ...).
	Mode fs.FileMode
	// Dev is "major:minor" of a device file.
	Dev string
	// Size is the size of a regular file in bytes.
	Size int64
}

// IsBlockDevice reports whether the file is a block device.
func (fi FileInfo) IsBlockDevice() bool {
	return fi.Mode&fs.ModeDevice != 0 && fi.Mode&fs.ModeCharDevice == 0
}

// Disk is an open block device.
type Disk interface {
	// ReadAt reads len(p) bytes at off.
	ReadAt(ctx context.Context, p []byte, off int64) error
	// WriteAt writes p at off.
	WriteAt(ctx context.Context, p []byte, off int64) error
	// Zero writes n zero bytes at off.
	Zero(ctx context.Context, off, n int64) error
	// Flush makes the writes durable and drops the kernel's cached copy
	// (fsync, then BLKFLSBUF), so a following read comes from the disk.
	Flush(ctx context.Context) error
	// Close releases the device.
	Close() error
}

// IPMI is the part of go-ipmi's client the steps use; *client.Client
// satisfies it.
type IPMI interface {
	GetLanConfigParamFor(ctx context.Context, channelNumber uint8, param types.LanConfigParameter) error
	SetSystemBootOptionsParamFor(ctx context.Context, param types.BootOptionParameter) error
	GetSystemBootOptionsParamFor(ctx context.Context, param types.BootOptionParameter) error
	Close(ctx context.Context) error
}

// RebootInfo says how a reboot was arranged.
type RebootInfo struct {
	// Method is the command sequence that will run.
	Method string `json:"method"`
	// Delay is how long after the call the reboot starts.
	Delay time.Duration `json:"delay_ns"`
}

// ExitError is a node command that ran and exited non-zero.
type ExitError struct {
	Command string
	Status  int
	Stderr  string
}

// Error implements error.
func (e *ExitError) Error() string {
	msg := fmt.Sprintf("%s: exit status %d", e.Command, e.Status)
	if e.Stderr != "" {
		msg += ": " + e.Stderr
	}
	return msg
}

// RebootCommand is the shell program every real reboot runs, detached:
// an orderly systemd reboot, then a forced one, then the kernel's sysrq
// 'b' (after sysrq 's' to sync) as the last resort. A watchdog forces the
// reboot if an orderly shutdown hangs for 5 minutes.
func RebootCommand(delay time.Duration) string {
	secs := int(delay.Round(time.Second) / time.Second)
	return fmt.Sprintf("sleep %d; sync; "+
		"if command -v systemctl >/dev/null 2>&1 && systemctl reboot; then sleep 300; fi; "+
		"reboot -f; sleep 10; "+
		"echo 1 > /proc/sys/kernel/sysrq; echo s > /proc/sysrq-trigger; sleep 2; echo b > /proc/sysrq-trigger", secs)
}

// closeOnce wraps an IPMI client whose Close must not run twice (go-ipmi's
// panics on a second Close).
type closeOnce struct {
	IPMI
	closed bool
}

// OnceCloser returns c with a Close that is safe to call more than once.
func OnceCloser(c IPMI) IPMI { return &closeOnce{IPMI: c} }

func (c *closeOnce) Close(ctx context.Context) error {
	if c.closed {
		return nil
	}
	c.closed = true
	return c.IPMI.Close(ctx)
}
