package fleet

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/reprov/reprov/agent/inband/host"
)

// vhost is a node's host.Host: its virtual /sys, /proc and /dev, its
// disk, its BMC's in-band interface, efibootmgr on UEFI nodes, and a
// reboot through its firmware. Nothing of the machine the lab runs on is
// ever read, written or run.
type vhost struct{ n *Node }

var _ host.Host = (*vhost)(nil)

func (h *vhost) Describe() string { return "reprov lab node " + h.n.name + " (virtual)" }

func (h *vhost) ReadFile(ctx context.Context, p string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	e, _, err := h.n.fs.resolve(h.n, p, true)
	if err != nil {
		return nil, withOp(err, "open")
	}
	switch e.kind {
	case vFile:
		return []byte(e.content(h.n)), nil
	case vDir:
		return nil, &fs.PathError{Op: "read", Path: p, Err: errors.New("is a directory")}
	}
	return nil, &fs.PathError{Op: "read", Path: p, Err: host.ErrNotAllowed}
}

func withOp(err error, op string) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return &fs.PathError{Op: op, Path: pe.Path, Err: pe.Err}
	}
	return err
}

func (h *vhost) ReadDir(ctx context.Context, p string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	e, _, err := h.n.fs.resolve(h.n, p, true)
	if err != nil {
		return nil, withOp(err, "open")
	}
	if e.kind != vDir {
		return nil, &fs.PathError{Op: "readdirent", Path: p, Err: errors.New("not a directory")}
	}
	return e.readDir(h.n), nil
}

func (h *vhost) EvalSymlinks(ctx context.Context, p string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	_, real, err := h.n.fs.resolve(h.n, p, true)
	if err != nil {
		return "", withOp(err, "lstat")
	}
	return real, nil
}

func (h *vhost) Stat(ctx context.Context, p string) (host.FileInfo, error) {
	if err := ctx.Err(); err != nil {
		return host.FileInfo{}, err
	}
	e, _, err := h.n.fs.resolve(h.n, p, true)
	if err != nil {
		return host.FileInfo{}, err
	}
	switch e.kind {
	case vDir:
		return host.FileInfo{Mode: fs.ModeDir}, nil
	case vBlock:
		return host.FileInfo{Mode: fs.ModeDevice, Dev: e.dev}, nil
	case vChar:
		return host.FileInfo{Mode: fs.ModeDevice | fs.ModeCharDevice, Dev: e.dev}, nil
	}
	return host.FileInfo{Size: int64(len(e.content(h.n)))}, nil
}

func (h *vhost) DeviceNode(ctx context.Context, name, dev string) (string, error) {
	p := "/dev/" + name
	fi, err := h.Stat(ctx, p)
	if err != nil || !fi.IsBlockDevice() || fi.Dev != dev {
		return "", fmt.Errorf("no device node for %s (%s)", name, dev)
	}
	return p, nil
}

func (h *vhost) OpenDisk(ctx context.Context, p string, write bool) (host.Disk, error) {
	fi, err := h.Stat(ctx, p)
	if err != nil {
		return nil, err
	}
	if !fi.IsBlockDevice() {
		return nil, fmt.Errorf("open %s: %w: not a block device", p, host.ErrNotAllowed)
	}
	if fi.Dev != devDisk {
		return nil, fmt.Errorf("open %s (%s): %w: the lab opens only the whole disk /dev/sda", p, fi.Dev, host.ErrNotAllowed)
	}
	return &openDisk{d: h.n.disk, write: write, refuse: h.n.hasFault(FaultDiskRefusesWrite)}, nil
}

func (h *vhost) IPMI(ctx context.Context) (host.IPMI, error) {
	if !h.n.ipmiDeviceLoaded() {
		return nil, &fs.PathError{Op: "open", Path: "/dev/ipmi0", Err: fs.ErrNotExist}
	}
	return h.n.be.inBand(ctx)
}

func (h *vhost) Modprobe(ctx context.Context, module string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	switch module {
	case "ipmi_si", "ipmi_msghandler":
		return nil
	case "ipmi_devintf":
		n := h.n
		n.mu.Lock()
		n.ipmiLoaded = true
		n.notifyLocked()
		n.mu.Unlock()
		return nil
	}
	return &host.ExitError{Command: "modprobe " + module, Status: 1,
		Stderr: "modprobe: FATAL: Module " + module + " not found in directory /lib/modules/6.1.0-lab"}
}

func (h *vhost) LookPath(ctx context.Context, name string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if name == "efibootmgr" && h.n.efi != nil {
		return "/usr/bin/efibootmgr", nil
	}
	return "", fmt.Errorf("%w: %s", host.ErrNotFound, name)
}

func (h *vhost) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	if _, err := h.LookPath(ctx, name); err != nil {
		return nil, err
	}
	n := h.n
	n.mu.Lock()
	out, errOut, status := n.efi.efibootmgr(args)
	n.mu.Unlock()
	if status != 0 {
		return []byte(out), &host.ExitError{Command: strings.Join(append([]string{name}, args...), " "), Status: status, Stderr: strings.TrimSpace(errOut)}
	}
	return []byte(out), nil
}

func (h *vhost) Reboot(_ context.Context, delay time.Duration) (host.RebootInfo, error) {
	if err := h.n.reboot(delay); err != nil {
		return host.RebootInfo{}, err
	}
	return host.RebootInfo{Method: fmt.Sprintf("lab: warm reboot through the firmware in %s", delay), Delay: delay}, nil
}

// tmpFiles are the files a session puts on the node (the pushed agent,
// saved sectors): in memory, forgotten at the next boot. Content is kept
// up to maxKeptFile bytes; larger files keep only their size and sha256.
type tmpFiles struct {
	mu    sync.Mutex
	dirs  map[string]bool
	files map[string]*tmpFile
}

type tmpFile struct {
	sha256 [32]byte
	size   int64
	data   []byte // nil when larger than maxKeptFile
	exec   bool
}

const maxKeptFile = 1 << 20

// isTmpRoot reports whether d is one of the directories where sessions
// may create files.
func isTmpRoot(d string) bool {
	switch d {
	case "/tmp", "/var/tmp", "/dev/shm", "/run", "/root":
		return true
	}
	return false
}

func newTmpFiles() *tmpFiles { return &tmpFiles{} }

func (t *tmpFiles) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.dirs, t.files = nil, nil
}

// dirExistsLocked reports whether files may be created in d.
func (t *tmpFiles) dirExistsLocked(d string) bool {
	d = path.Clean(d)
	return isTmpRoot(d) || t.dirs[d]
}

func (t *tmpFiles) mkdir(d string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	d = path.Clean(d)
	if t.dirExistsLocked(d) || t.files[d] != nil {
		return fs.ErrExist
	}
	if !t.dirExistsLocked(path.Dir(d)) {
		return fs.ErrNotExist
	}
	if t.dirs == nil {
		t.dirs = map[string]bool{}
	}
	t.dirs[d] = true
	return nil
}

func (t *tmpFiles) put(p string, f *tmpFile) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	p = path.Clean(p)
	if !t.dirExistsLocked(path.Dir(p)) {
		return fs.ErrNotExist
	}
	if t.dirExistsLocked(p) {
		return errors.New("is a directory")
	}
	if old := t.files[p]; old != nil {
		f.exec = old.exec
	}
	if t.files == nil {
		t.files = map[string]*tmpFile{}
	}
	t.files[p] = f
	return nil
}

func (t *tmpFiles) get(p string) *tmpFile {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.files[path.Clean(p)]
}

func (t *tmpFiles) isDir(p string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.dirExistsLocked(p)
}

func (t *tmpFiles) chmod(p string, exec bool) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	p = path.Clean(p)
	if f := t.files[p]; f != nil {
		f.exec = exec
		return true
	}
	return t.dirExistsLocked(p)
}

// remove removes p and everything under it; it reports whether anything
// was there.
func (t *tmpFiles) remove(p string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	p = path.Clean(p)
	found := false
	for k := range t.files {
		if k == p || strings.HasPrefix(k, p+"/") {
			delete(t.files, k)
			found = true
		}
	}
	for k := range t.dirs {
		if k == p || strings.HasPrefix(k, p+"/") {
			delete(t.dirs, k)
			found = true
		}
	}
	return found
}
