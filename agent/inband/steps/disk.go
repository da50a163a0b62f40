package steps

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"

	"github.com/reprov/reprov/agent/inband/host"
)

// MinDiskBytes is the smallest device reprov will wipe: anything smaller
// is not a boot disk (a card reader slot, a virtual stub).
const MinDiskBytes = 1 << 20

// DiskInfo is the result of resolve-disk: the whole disk the wipe targets
// and why.
type DiskInfo struct {
	Version int `json:"version"`
	// Path is the device node to open (/dev/sda).
	Path string `json:"path"`
	// Name is the kernel name (sda) and Dev its number (8:0).
	Name string `json:"name"`
	Dev  string `json:"dev"`
	// SizeBytes and SectorSize (logical) describe the disk.
	SizeBytes  int64  `json:"size_bytes"`
	SectorSize int    `json:"logical_sector_size"`
	Model      string `json:"model,omitempty"`
	// WWID and Serial identify the physical disk when sysfs has them
	// (SCSI/SATA device/wwid, NVMe wwid and serial, virtio serial): the
	// saved boot sector records them and restore requires the same.
	WWID   string `json:"wwid,omitempty"`
	Serial string `json:"serial,omitempty"`
	// Configured is the inventory's boot.disk as given ("" when resolved
	// from the mounts).
	Configured string `json:"configured,omitempty"`
	// Reason says how the disk was chosen.
	Reason string `json:"reason"`
	// Checks are the safety checks it passed (or the one it failed).
	Checks []Check `json:"checks"`
}

// DiskRefusedError says why a device may not be wiped. It matches
// ErrDiskRefused.
type DiskRefusedError struct {
	Device string
	Reason string
	// Info is what was resolved before the refusal, if anything.
	Info *DiskInfo
}

// Error implements error.
func (e *DiskRefusedError) Error() string {
	return fmt.Sprintf("%v: %s: %s", ErrDiskRefused, e.Device, e.Reason)
}

// Unwrap returns ErrDiskRefused.
func (e *DiskRefusedError) Unwrap() error { return ErrDiskRefused }

func refuse(dev, format string, args ...any) error {
	return &DiskRefusedError{Device: dev, Reason: fmt.Sprintf(format, args...)}
}

// ResolveDisk finds the disk to wipe: configured (a /dev path, by-path or
// by-id link) or, when empty, the disk holding /boot, else /. It refuses a
// partition, a loop, device-mapper or md device, an md member, a removable,
// read-only or tiny (< 1 MiB) device, with the reason.
func ResolveDisk(ctx context.Context, h host.Host, configured string) (*DiskInfo, error) {
	info := &DiskInfo{Version: ProtocolVersion, Configured: configured}
	var sys string // the whole disk's sysfs directory
	if configured != "" {
		if !path.IsAbs(configured) {
			return nil, refuse(configured, "not an absolute path")
		}
		real, err := h.EvalSymlinks(ctx, configured)
		if err != nil {
			return nil, refuse(configured, "cannot resolve: %v", err)
		}
		fi, err := h.Stat(ctx, real)
		if err != nil {
			return nil, refuse(configured, "cannot stat %s: %v", real, err)
		}
		if !fi.IsBlockDevice() {
			return nil, refuse(configured, "%s is not a block device", real)
		}
		s, err := h.EvalSymlinks(ctx, "/sys/dev/block/"+fi.Dev)
		if err != nil {
			return nil, refuse(configured, "no sysfs entry for %s (%s): %v", real, fi.Dev, err)
		}
		if isPartition(ctx, h, s) {
			parent := path.Base(path.Dir(s))
			return nil, refuse(configured, "%s is a partition (%s of disk %s): configure the whole disk", real, path.Base(s), parent)
		}
		sys = s
		info.Reason = "configured boot.disk " + configured
		if real != configured {
			info.Reason += " → " + real
		}
	} else {
		s, why, err := bootDiskFromMounts(ctx, h)
		if err != nil {
			return nil, err
		}
		sys, info.Reason = s, why
	}
	if err := checkWholeDisk(ctx, h, sys, info); err != nil {
		var re *DiskRefusedError
		if errors.As(err, &re) {
			re.Info = info
			if configured != "" {
				re.Device = configured
			}
		}
		return nil, err
	}
	p, err := h.DeviceNode(ctx, info.Name, info.Dev)
	if err != nil {
		return nil, refuse(info.Name, "%v", err)
	}
	info.Path = p
	return info, nil
}

func isPartition(ctx context.Context, h host.Host, sys string) bool {
	_, err := h.ReadFile(ctx, sys+"/partition")
	return err == nil
}

func readTrim(ctx context.Context, h host.Host, p string) (string, error) {
	b, err := h.ReadFile(ctx, p)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	dev, mountPoint, fsType, source string
}

func parseMountinfo(s string) []mountEntry {
	var out []mountEntry
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) < 10 {
			continue
		}
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+2 >= len(f) {
			continue
		}
		out = append(out, mountEntry{dev: f[2], mountPoint: unescapeMount(f[4]), fsType: f[sep+1], source: unescapeMount(f[sep+2])})
	}
	return out
}

// unescapeMount undoes the kernel's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// bootDiskFromMounts finds the whole disk under /boot (else /): the
// mount's device, through device-mapper/md layers with a single
// underlying device, to its partition's parent disk.
func bootDiskFromMounts(ctx context.Context, h host.Host) (sys, why string, err error) {
	b, err := h.ReadFile(ctx, "/proc/self/mountinfo")
	if err != nil {
		return "", "", refuse("(boot disk)", "cannot read /proc/self/mountinfo: %v", err)
	}
	mounts := parseMountinfo(string(b))
	var m *mountEntry
	for _, mp := range []string{"/boot", "/"} {
		for i := range mounts {
			if mounts[i].mountPoint == mp {
				m = &mounts[i] // the last mount on a point is the visible one
			}
		}
		if m != nil {
			break
		}
	}
	if m == nil {
		return "", "", refuse("(boot disk)", "neither /boot nor / is in /proc/self/mountinfo: configure boot.disk")
	}
	dev := m.dev
	if strings.HasPrefix(dev, "0:") {
		// btrfs and friends report an anonymous device: use the source.
		if !strings.HasPrefix(m.source, "/dev/") {
			return "", "", refuse("(boot disk)", "%s is %s from %q, not a block device: configure boot.disk", m.mountPoint, m.fsType, m.source)
		}
		fi, err := h.Stat(ctx, m.source)
		if err != nil || !fi.IsBlockDevice() {
			return "", "", refuse("(boot disk)", "%s is mounted from %s, which is not a block device: configure boot.disk", m.mountPoint, m.source)
		}
		dev = fi.Dev
	}
	s, err := h.EvalSymlinks(ctx, "/sys/dev/block/"+dev)
	if err != nil {
		return "", "", refuse("(boot disk)", "no sysfs entry for %s (%s, %s): %v", m.mountPoint, m.source, dev, err)
	}
	chain := []string{fmt.Sprintf("%s is mounted from %s (%s)", m.mountPoint, m.source, dev)}
	for range 8 {
		name := path.Base(s)
		if isPartition(ctx, h, s) {
			disk := path.Dir(s)
			chain = append(chain, fmt.Sprintf("%s is a partition of %s", name, path.Base(disk)))
			return disk, strings.Join(chain, "; "), nil
		}
		slaves, _ := h.ReadDir(ctx, s+"/slaves")
		if len(slaves) == 0 {
			return s, strings.Join(chain, "; "), nil
		}
		if len(slaves) > 1 {
			return "", "", refuse(name, "%s spans %d devices (%s): configure boot.disk", m.mountPoint, len(slaves), strings.Join(slaves, ", "))
		}
		next, err := h.EvalSymlinks(ctx, s+"/slaves/"+slaves[0])
		if err != nil {
			return "", "", refuse(name, "cannot follow %s to %s: %v", name, slaves[0], err)
		}
		chain = append(chain, fmt.Sprintf("%s sits on %s", name, slaves[0]))
		s = next
	}
	return "", "", refuse(path.Base(s), "too many device layers under %s: configure boot.disk", m.mountPoint)
}

// checkWholeDisk fills info from the disk's sysfs directory and refuses
// anything that is not a whole, fixed, writable disk of some size.
func checkWholeDisk(ctx context.Context, h host.Host, sys string, info *DiskInfo) error {
	name := path.Base(sys)
	info.Name = name
	dev, err := readTrim(ctx, h, sys+"/dev")
	if err != nil {
		return refuse(name, "no device number in sysfs: %v", err)
	}
	info.Dev = dev
	add := func(c Check) { info.Checks = append(info.Checks, c) }

	if strings.Contains(sys, "/devices/virtual/") {
		kind := "virtual block device"
		switch {
		case strings.HasPrefix(name, "loop") || exists(ctx, h, sys+"/loop"):
			kind = "loop device"
		case strings.HasPrefix(name, "dm-") || exists(ctx, h, sys+"/dm"):
			kind = "device-mapper device"
		case strings.HasPrefix(name, "md") || exists(ctx, h, sys+"/md"):
			kind = "md (software RAID) device"
		}
		add(checkf("physical", false, "%s is a %s", name, kind))
		return refuse(name, "%s is a %s, not a physical disk", name, kind)
	}
	add(checkf("physical", true, "%s", strings.TrimPrefix(sys, "/sys")))

	// A read error is never "safe": only a file that does not exist may
	// mean absent (not held, not removable, not read-only).
	unreadable := func(what string, err error) error {
		add(checkf("readable", false, "%s: %v", what, err))
		return refuse(name, "cannot read %s of %s: %v", what, name, err)
	}
	holders, err := h.ReadDir(ctx, sys+"/holders")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return unreadable("holders", err)
	}
	if len(holders) > 0 {
		add(checkf("not_member", false, "held by %s", strings.Join(holders, ", ")))
		return refuse(name, "the whole disk %s is in use by %s (md member or device-mapper)", name, strings.Join(holders, ", "))
	}
	// A filesystem mounted from the whole disk (no partition table) starts
	// at its first sectors: zeroing them would wreck a live filesystem.
	switch mi, err := h.ReadFile(ctx, "/proc/self/mountinfo"); {
	case err == nil:
		for _, m := range parseMountinfo(string(mi)) {
			if m.dev == dev {
				add(checkf("not_mounted", false, "%s is mounted at %s", name, m.mountPoint))
				return refuse(name, "the whole disk %s is mounted at %s (%s on the raw disk, no partition table): its first sectors are the filesystem's", name, m.mountPoint, m.fsType)
			}
		}
		add(checkf("not_mounted", true, "no filesystem is mounted from the whole disk"))
	case !errors.Is(err, fs.ErrNotExist):
		return unreadable("/proc/self/mountinfo", err)
	}
	ents, err := h.ReadDir(ctx, sys)
	if err != nil {
		return unreadable("its sysfs directory", err)
	}
	for _, e := range ents {
		if !strings.HasPrefix(e, name) {
			continue
		}
		if _, err := h.ReadFile(ctx, sys+"/"+e+"/partition"); errors.Is(err, fs.ErrNotExist) {
			continue
		} else if err != nil {
			return unreadable(e+"/partition", err)
		}
		holders, err := h.ReadDir(ctx, sys+"/"+e+"/holders")
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return unreadable(e+"/holders", err)
		}
		for _, hd := range holders {
			if strings.HasPrefix(hd, "md") {
				add(checkf("not_member", false, "partition %s is a member of %s", e, hd))
				return refuse(name, "partition %s of %s is a member of software RAID %s: wiping one member does not stop the node booting from the other", e, name, hd)
			}
		}
	}
	add(checkf("not_member", true, "no md member, whole disk not held"))

	v, err := readTrim(ctx, h, sys+"/removable")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return unreadable("removable", err)
	}
	if v == "1" {
		add(checkf("fixed", false, "removable"))
		return refuse(name, "%s is a removable device", name)
	}
	add(checkf("fixed", true, "not removable"))

	v, err = readTrim(ctx, h, sys+"/ro")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return unreadable("ro", err)
	}
	if v == "1" {
		add(checkf("writable", false, "read-only"))
		return refuse(name, "%s is read-only", name)
	}
	add(checkf("writable", true, "not read-only"))

	sz, err := readTrim(ctx, h, sys+"/size")
	if err != nil {
		return refuse(name, "cannot read size: %v", err)
	}
	sectors, err := strconv.ParseInt(sz, 10, 64)
	if err != nil {
		return refuse(name, "bad size %q", sz)
	}
	info.SizeBytes = sectors * 512
	if info.SizeBytes < MinDiskBytes {
		add(checkf("size", false, "%d bytes", info.SizeBytes))
		return refuse(name, "%s is too small (%d bytes < 1 MiB)", name, info.SizeBytes)
	}
	add(checkf("size", true, "%d bytes", info.SizeBytes))

	info.SectorSize = 512
	if v, err := readTrim(ctx, h, sys+"/queue/logical_block_size"); err == nil {
		if n, err := strconv.Atoi(v); err == nil && n >= 512 && n <= 65536 && n&(n-1) == 0 {
			info.SectorSize = n
		}
	}
	if m, err := readTrim(ctx, h, sys+"/device/model"); err == nil {
		info.Model = m
	}
	info.WWID = firstReadable(ctx, h, sys+"/wwid", sys+"/device/wwid")
	info.Serial = firstReadable(ctx, h, sys+"/serial", sys+"/device/serial")
	return nil
}

// firstReadable returns the first non-empty content among paths ("" when
// none can be read: identifiers are optional facts).
func firstReadable(ctx context.Context, h host.Host, paths ...string) string {
	for _, p := range paths {
		if v, err := readTrim(ctx, h, p); err == nil && v != "" {
			return v
		}
	}
	return ""
}

func exists(ctx context.Context, h host.Host, p string) bool {
	_, err := h.Stat(ctx, p)
	return err == nil || !errors.Is(err, fs.ErrNotExist)
}
