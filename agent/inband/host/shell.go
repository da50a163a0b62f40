package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Executor runs one POSIX shell command line on the node with the given
// standard input and returns its standard output. A command that exits
// non-zero is reported as an *ExitError. Privilege (sudo) is the
// Executor's business.
type Executor interface {
	Exec(ctx context.Context, cmd string, stdin io.Reader) ([]byte, error)
}

// Shell is a Host reached only through POSIX shell commands (the
// "commands" agent mode, for sites that forbid copying a binary onto the
// node): cat and ls for sysfs, dd for sectors, ipmitool and efibootmgr for
// the boot override, a detached shell for the reboot. It needs nothing on
// the node beyond a POSIX shell with cat, ls, dd and sync (busybox works);
// ipmitool, efibootmgr, setsid and blockdev are used where present.
type Shell struct {
	exec   Executor
	layout *Layout
	// Trace, when set, is called with every command line before it runs.
	Trace func(cmd string)

	// cache holds the output of read-only path commands (sysfs, procfs)
	// until the next command with an effect or Forget: one SSH round trip
	// per read adds up over a slow link.
	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	out []byte
	err error
}

// Forget drops every cached read, so the next check reads the node again
// (the steps' last check before a write).
func (s *Shell) Forget() {
	s.mu.Lock()
	s.cache = nil
	s.mu.Unlock()
}

// read runs a read-only command, answering repeats from the cache.
func (s *Shell) read(ctx context.Context, cmd string) ([]byte, error) {
	s.mu.Lock()
	c, ok := s.cache[cmd]
	s.mu.Unlock()
	if ok {
		return c.out, c.err
	}
	out, err := s.run(ctx, cmd, nil)
	var ee *ExitError
	if err == nil || errors.Is(err, fs.ErrNotExist) || errors.As(err, &ee) {
		s.mu.Lock()
		if s.cache == nil {
			s.cache = map[string]cached{}
		}
		s.cache[cmd] = cached{out: out, err: err}
		s.mu.Unlock()
	}
	return out, err
}

// NewShell returns a Shell host running its commands through e. A non-nil
// layout makes it a lab or test stand-in (see Layout); the controller
// passes nil for real nodes.
func NewShell(e Executor, layout *Layout) (*Shell, error) {
	if layout != nil {
		if err := layout.Validate(); err != nil {
			return nil, err
		}
	}
	return &Shell{exec: e, layout: layout}, nil
}

// Exit statuses the Shell's own command lines use to report conditions.
const (
	exitNotExist = 66
	exitNotBlock = 67
)

// shellEnv is put in front of every command line: a PATH that reaches
// sbin tools under sudo's secure_path, and untranslated tool output.
const shellEnv = "PATH=\"$PATH:/usr/local/sbin:/usr/sbin:/sbin\"; export PATH; LC_ALL=C; export LC_ALL; "

// Describe implements Host.
func (s *Shell) Describe() string {
	if s.layout != nil {
		return "ssh commands (lab layout " + s.layout.Root + ")"
	}
	return "ssh commands"
}

// act runs a command with an effect on the node: the cache is dropped.
func (s *Shell) act(ctx context.Context, cmd string, stdin []byte) ([]byte, error) {
	s.Forget()
	return s.run(ctx, cmd, stdin)
}

func (s *Shell) run(ctx context.Context, cmd string, stdin []byte) ([]byte, error) {
	if s.Trace != nil {
		s.Trace(cmd)
	}
	var in io.Reader
	if stdin != nil {
		in = bytes.NewReader(stdin)
	}
	out, err := s.exec.Exec(ctx, shellEnv+cmd, in)
	if err != nil {
		var ee *ExitError
		if errors.As(err, &ee) {
			ee.Command = cmd
			switch ee.Status {
			case exitNotExist:
				return out, fmt.Errorf("%w (%s)", fs.ErrNotExist, cmd)
			}
		}
		return out, err
	}
	return out, nil
}

// path maps a node path through the layout.
func (s *Shell) path(p string) string {
	if s.layout == nil {
		return p
	}
	return s.layout.Map(p)
}

// Quote quotes s for a POSIX shell.
func Quote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@,+%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func existsOr66(p string) string {
	return fmt.Sprintf("[ -e %s ] || [ -h %s ] || exit %d; ", Quote(p), Quote(p), exitNotExist)
}

// ReadFile implements Host with cat.
func (s *Shell) ReadFile(ctx context.Context, p string) ([]byte, error) {
	q := s.path(p)
	return s.read(ctx, existsOr66(q)+"cat -- "+Quote(q))
}

// ReadDir implements Host with ls.
func (s *Shell) ReadDir(ctx context.Context, p string) ([]string, error) {
	q := s.path(p)
	out, err := s.read(ctx, existsOr66(q)+"ls -1A -- "+Quote(q))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, l := range strings.Split(string(out), "\n") {
		if l != "" {
			names = append(names, l)
		}
	}
	sort.Strings(names)
	return names, nil
}

// resolveScript resolves every link of $p with POSIX tools only (no
// readlink or realpath, which busybox-less or old systems may lack).
const resolveScript = `n=0
while [ -h "$p" ]; do
  n=$((n+1)); [ $n -le 40 ] || { echo "too many links: $p" >&2; exit 1; }
  l=$(ls -ld -- "$p"); t=${l#* -> }
  case $t in /*) p=$t ;; *) p=$(dirname -- "$p")/$t ;; esac
  d=$(cd -P -- "$(dirname -- "$p")" 2>/dev/null && pwd -P) || exit 66
  p=${d%/}/$(basename -- "$p")
done
d=$(cd -P -- "$(dirname -- "$p")" 2>/dev/null && pwd -P) || exit 66
b=$(basename -- "$p")
[ -e "$p" ] || exit 66
if [ -d "$p" ]; then (cd -P -- "$p" && pwd -P); else printf '%s/%s\n' "${d%/}" "$b"; fi`

// EvalSymlinks implements Host with ls -ld and cd -P.
func (s *Shell) EvalSymlinks(ctx context.Context, p string) (string, error) {
	q := s.path(p)
	out, err := s.read(ctx, "p="+Quote(q)+"\n"+resolveScript)
	if err != nil {
		return "", err
	}
	r := strings.TrimRight(string(out), "\n")
	if r == "" {
		return "", fmt.Errorf("resolve %s: no output", p)
	}
	if s.layout != nil {
		if s.layout.DeviceByImage(r) != nil {
			return r, nil
		}
		root, err := s.EvalRoot(ctx)
		if err != nil {
			return "", err
		}
		if rest, ok := strings.CutPrefix(r, root+"/"); ok {
			return "/" + rest, nil
		}
		return s.layout.Unmap(r)
	}
	return r, nil
}

// EvalRoot returns the layout root with its own links resolved.
func (s *Shell) EvalRoot(ctx context.Context) (string, error) {
	out, err := s.read(ctx, "cd -P -- "+Quote(s.layout.Root)+" && pwd -P")
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(out), "\n"), nil
}

// Stat implements Host with ls -lLd.
func (s *Shell) Stat(ctx context.Context, p string) (FileInfo, error) {
	q := s.path(p)
	out, err := s.read(ctx, existsOr66(q)+"ls -lLd -- "+Quote(q))
	if err != nil {
		return FileInfo{}, err
	}
	fi, err := parseLsLong(string(out))
	if err != nil {
		return FileInfo{}, fmt.Errorf("stat %s: %w", p, err)
	}
	if s.layout != nil {
		if d := s.layout.DeviceByImage(p); d != nil && fi.Mode.IsRegular() {
			return FileInfo{Mode: fs.ModeDevice, Dev: d.Dev}, nil
		}
	}
	return fi, nil
}

// parseLsLong parses one line of `ls -lLd`.
func parseLsLong(line string) (FileInfo, error) {
	f := strings.Fields(line)
	if len(f) < 5 || len(f[0]) < 1 {
		return FileInfo{}, fmt.Errorf("unexpected ls output %q", strings.TrimSpace(line))
	}
	var fi FileInfo
	switch f[0][0] {
	case 'b':
		fi.Mode = fs.ModeDevice
	case 'c':
		fi.Mode = fs.ModeDevice | fs.ModeCharDevice
	case 'd':
		fi.Mode = fs.ModeDir
	case '-':
	case 'p':
		fi.Mode = fs.ModeNamedPipe
	case 's':
		fi.Mode = fs.ModeSocket
	default:
		fi.Mode = fs.ModeIrregular
	}
	if fi.Mode&fs.ModeDevice != 0 {
		// "brw-rw---- 1 root disk 8, 0 Jan 1 00:00 /dev/sda" or "8,0".
		rest := strings.Join(f[4:], " ")
		maj, after, ok := strings.Cut(rest, ",")
		if !ok {
			return FileInfo{}, fmt.Errorf("no device number in %q", strings.TrimSpace(line))
		}
		minF := strings.Fields(after)
		if len(minF) == 0 {
			return FileInfo{}, fmt.Errorf("no minor number in %q", strings.TrimSpace(line))
		}
		ma, err1 := strconv.Atoi(strings.TrimSpace(maj))
		mi, err2 := strconv.Atoi(minF[0])
		if err1 != nil || err2 != nil {
			return FileInfo{}, fmt.Errorf("bad device number in %q", strings.TrimSpace(line))
		}
		fi.Dev = fmt.Sprintf("%d:%d", ma, mi)
		return fi, nil
	}
	n, err := strconv.ParseInt(f[4], 10, 64)
	if err != nil {
		return FileInfo{}, fmt.Errorf("bad size in %q", strings.TrimSpace(line))
	}
	fi.Size = n
	return fi, nil
}

// DeviceNode implements Host.
func (s *Shell) DeviceNode(ctx context.Context, name, dev string) (string, error) {
	if s.layout != nil {
		d := s.layout.DeviceByDev(dev)
		if d == nil {
			return "", fmt.Errorf("%w: no image stands in for %s (%s)", ErrNotAllowed, name, dev)
		}
		return d.Image, nil
	}
	// Kernel names use "!" for "/" (cciss!c0d0 is /dev/cciss/c0d0).
	p := "/dev/" + strings.ReplaceAll(name, "!", "/")
	fi, err := s.Stat(ctx, p)
	if err != nil {
		return "", fmt.Errorf("device node of %s (%s): %w", name, dev, err)
	}
	if !fi.IsBlockDevice() || fi.Dev != dev {
		return "", fmt.Errorf("device node %s is not block device %s (found %s)", p, dev, fi.Dev)
	}
	return p, nil
}

// OpenDisk implements Host. Sector I/O runs as dd commands.
func (s *Shell) OpenDisk(ctx context.Context, p string, write bool) (Disk, error) {
	if s.layout != nil {
		if s.layout.DeviceByImage(p) == nil {
			return nil, fmt.Errorf("%w: %s is not one of the layout's images", ErrNotAllowed, p)
		}
		if _, err := s.run(ctx, "[ -f "+Quote(p)+" ] || exit "+strconv.Itoa(exitNotBlock), nil); err != nil {
			return nil, fmt.Errorf("open %s: %w", p, err)
		}
	} else {
		if _, err := s.run(ctx, "[ -b "+Quote(p)+" ] || exit "+strconv.Itoa(exitNotBlock), nil); err != nil {
			var ee *ExitError
			if errors.As(err, &ee) && ee.Status == exitNotBlock {
				return nil, fmt.Errorf("%s is not a block device", p)
			}
			return nil, fmt.Errorf("open %s: %w", p, err)
		}
	}
	return &shellDisk{s: s, path: p, write: write}, nil
}

// shellDisk is sector I/O through dd.
type shellDisk struct {
	s     *Shell
	path  string
	write bool
}

func sectorArgs(off, n int64) (skip, count int64, err error) {
	if off%512 != 0 || n%512 != 0 {
		return 0, 0, fmt.Errorf("range %d+%d is not a multiple of 512 bytes", off, n)
	}
	return off / 512, n / 512, nil
}

// ReadCommand is the dd command line that reads n bytes at off.
func ReadCommand(path string, off, n int64) string {
	return fmt.Sprintf("dd if=%s bs=512 skip=%d count=%d 2>/dev/null", Quote(path), off/512, n/512)
}

// ZeroCommand is the dd command line that zeroes n bytes at off.
func ZeroCommand(path string, off, n int64) string {
	return fmt.Sprintf("dd if=/dev/zero of=%s bs=512 seek=%d count=%d conv=notrunc", Quote(path), off/512, n/512)
}

// WriteCommand is the dd command line that writes n bytes from its
// standard input at off. bs=1 makes every read a whole block, so short
// reads from the SSH pipe cannot lose bytes.
func WriteCommand(path string, off, n int64) string {
	return fmt.Sprintf("dd of=%s bs=1 seek=%d count=%d conv=notrunc", Quote(path), off, n)
}

// FlushCommand is the command line that makes writes to path durable.
func FlushCommand(path string) string {
	return "sync; if [ -b " + Quote(path) + " ] && command -v blockdev >/dev/null 2>&1; then blockdev --flushbufs " + Quote(path) + "; fi"
}

func (d *shellDisk) ReadAt(ctx context.Context, p []byte, off int64) error {
	if _, _, err := sectorArgs(off, int64(len(p))); err != nil {
		return err
	}
	out, err := d.s.run(ctx, ReadCommand(d.path, off, int64(len(p))), nil)
	if err != nil {
		return fmt.Errorf("read %s: %w", d.path, err)
	}
	if len(out) != len(p) {
		return fmt.Errorf("read %s at %d: got %d bytes, want %d", d.path, off, len(out), len(p))
	}
	copy(p, out)
	return nil
}

func (d *shellDisk) WriteAt(ctx context.Context, p []byte, off int64) error {
	if !d.write {
		return fmt.Errorf("%s is open read-only", d.path)
	}
	if _, err := d.s.act(ctx, WriteCommand(d.path, off, int64(len(p))), p); err != nil {
		return fmt.Errorf("write %s: %w", d.path, err)
	}
	return nil
}

func (d *shellDisk) Zero(ctx context.Context, off, n int64) error {
	if !d.write {
		return fmt.Errorf("%s is open read-only", d.path)
	}
	if _, _, err := sectorArgs(off, n); err != nil {
		return err
	}
	if _, err := d.s.act(ctx, ZeroCommand(d.path, off, n), nil); err != nil {
		return fmt.Errorf("zero %s: %w", d.path, err)
	}
	return nil
}

func (d *shellDisk) Flush(ctx context.Context) error {
	if _, err := d.s.act(ctx, FlushCommand(d.path), nil); err != nil {
		return fmt.Errorf("flush %s: %w", d.path, err)
	}
	return nil
}

func (d *shellDisk) Close() error { return nil }

// IPMI implements Host: the commands path has no IPMI device of its own;
// it uses the node's ipmitool through Run.
func (s *Shell) IPMI(context.Context) (IPMI, error) {
	return nil, fmt.Errorf("%w: the commands path uses the node's ipmitool", ErrNotSupported)
}

// Modprobe implements Host.
func (s *Shell) Modprobe(ctx context.Context, module string) error {
	if s.layout != nil {
		cmd := "echo " + Quote(module) + " >> " + Quote(s.layoutModprobeLog())
		if module == "ipmi_devintf" {
			dev := filepath.Join(s.layout.Root, "dev")
			cmd += "; mkdir -p " + Quote(dev) + " && : > " + Quote(filepath.Join(dev, "ipmi0"))
		}
		_, err := s.act(ctx, cmd, nil)
		return err
	}
	_, err := s.act(ctx, "modprobe -- "+Quote(module), nil)
	return err
}

func (s *Shell) layoutModprobeLog() string {
	if s.layout.ModprobeLog != "" {
		return s.layout.ModprobeLog
	}
	return filepath.Join(s.layout.Root, "modprobe.log")
}

// LookPath implements Host with command -v.
func (s *Shell) LookPath(ctx context.Context, name string) (string, error) {
	if s.layout != nil {
		t, ok := s.layout.Tools[name]
		if !ok {
			return "", fmt.Errorf("%w: %s", ErrNotFound, name)
		}
		if _, err := s.read(ctx, "[ -x "+Quote(t)+" ]"); err != nil {
			return "", fmt.Errorf("%w: %s", ErrNotFound, name)
		}
		return t, nil
	}
	out, err := s.read(ctx, "command -v "+Quote(name))
	p := strings.TrimSpace(string(out))
	if err != nil || p == "" {
		return "", fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	return p, nil
}

// RunCommand is the command line Run uses for name and args.
func (s *Shell) RunCommand(name string, args ...string) string {
	exe := name
	if s.layout != nil {
		if t, ok := s.layout.Tools[name]; ok {
			exe = t
		}
	}
	parts := []string{Quote(exe)}
	for _, a := range args {
		parts = append(parts, Quote(a))
	}
	return strings.Join(parts, " ")
}

// Run implements Host.
func (s *Shell) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	if s.layout != nil {
		if _, ok := s.layout.Tools[name]; !ok {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
		}
	}
	return s.act(ctx, s.RunCommand(name, args...), nil)
}

// RebootShellCommand is the command line the Shell host runs to reboot:
// RebootCommand detached with setsid (where present) and nohup, every
// stream on /dev/null so the SSH session can close.
func RebootShellCommand(delay time.Duration) string {
	script := Quote(RebootCommand(delay))
	return "if command -v setsid >/dev/null 2>&1; then setsid nohup sh -c " + script +
		" >/dev/null 2>&1 </dev/null & else nohup sh -c " + script + " >/dev/null 2>&1 </dev/null & fi"
}

// killSSHSession kills the nearest sshd ancestor of the shell: a link drop.
const killSSHSession = `p=$$
while [ "$p" -gt 1 ]; do
  c=$(cat /proc/$p/comm 2>/dev/null)
  case $c in sshd*) kill -9 "$p"; exit 0 ;; esac
  p=$(sed -e 's/^.*) //' /proc/$p/stat | cut -d' ' -f2)
done`

// Reboot implements Host.
func (s *Shell) Reboot(ctx context.Context, delay time.Duration) (RebootInfo, error) {
	if s.layout != nil {
		cmd := "printf 'reboot delay=%s\\n' " + Quote(delay.String()) + " > " + Quote(s.layout.RebootMarker)
		if s.layout.RebootDropsLink {
			cmd += "\n" + killSSHSession
		}
		if _, err := s.act(ctx, cmd, nil); err != nil {
			return RebootInfo{}, err
		}
		return RebootInfo{Method: "lab marker " + s.layout.RebootMarker, Delay: delay}, nil
	}
	cmd := RebootShellCommand(delay)
	if _, err := s.act(ctx, cmd, nil); err != nil {
		return RebootInfo{}, fmt.Errorf("schedule reboot: %w", err)
	}
	return RebootInfo{Method: "detached: " + RebootCommand(delay), Delay: delay}, nil
}
