//go:build !linux

package host

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"time"
)

// Local is the real node the agent runs on. The in-band steps need Linux;
// on other systems every call fails with ErrNotSupported.
type Local struct{}

// NewLocal returns the Host of the machine the process runs on.
func NewLocal() *Local { return &Local{} }

func notLinux() error {
	return fmt.Errorf("%w: in-band steps need Linux, not %s", ErrNotSupported, runtime.GOOS)
}

// Describe implements Host.
func (*Local) Describe() string { return "local" }

// ReadFile implements Host.
func (*Local) ReadFile(context.Context, string) ([]byte, error) { return nil, notLinux() }

// ReadDir implements Host.
func (*Local) ReadDir(context.Context, string) ([]string, error) { return nil, notLinux() }

// EvalSymlinks implements Host.
func (*Local) EvalSymlinks(context.Context, string) (string, error) { return "", notLinux() }

// Stat implements Host.
func (*Local) Stat(context.Context, string) (FileInfo, error) { return FileInfo{}, notLinux() }

// DeviceNode implements Host.
func (*Local) DeviceNode(context.Context, string, string) (string, error) { return "", notLinux() }

// OpenDisk implements Host.
func (*Local) OpenDisk(context.Context, string, bool) (Disk, error) { return nil, notLinux() }

// IPMI implements Host.
func (*Local) IPMI(context.Context) (IPMI, error) { return nil, notLinux() }

// Modprobe implements Host.
func (*Local) Modprobe(context.Context, string) error { return notLinux() }

// LookPath implements Host.
func (*Local) LookPath(context.Context, string) (string, error) { return "", notLinux() }

// Run implements Host.
func (*Local) Run(context.Context, string, ...string) ([]byte, error) { return nil, notLinux() }

// Reboot implements Host.
func (*Local) Reboot(context.Context, time.Duration) (RebootInfo, error) {
	return RebootInfo{}, notLinux()
}

func flushBuffers(*os.File) error { return notLinux() }
