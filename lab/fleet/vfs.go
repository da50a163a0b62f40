package fleet

import (
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// vkind is the type of a virtual file.
type vkind uint8

const (
	vDir vkind = iota
	vFile
	vLink
	vBlock
	vChar
)

// vent is one entry of a node's virtual /sys, /proc and /dev. The tree is
// built once per lab and shared by its nodes: node-specific content comes
// from functions of the node, so a node costs nothing here.
type vent struct {
	kind    vkind
	sub     map[string]*vent
	target  string // symbolic link target
	dev     string // device number of a device file
	content func(*Node) string
	// when, if set, says whether the entry exists on this node now.
	when func(*Node) bool
}

func (e *vent) present(n *Node) bool { return e.when == nil || e.when(n) }

// vfs is the tree.
type vfs struct{ root *vent }

func newVFS() *vfs { return &vfs{root: &vent{kind: vDir, sub: map[string]*vent{}}} }

// add puts e at p, creating the directories on the way.
func (v *vfs) add(p string, e *vent) *vent {
	dir := v.mkdir(path.Dir(p))
	if e.kind == vDir && e.sub == nil {
		e.sub = map[string]*vent{}
	}
	dir.sub[path.Base(p)] = e
	return e
}

func (v *vfs) mkdir(p string) *vent {
	cur := v.root
	for _, c := range splitPath(p) {
		next := cur.sub[c]
		if next == nil {
			next = &vent{kind: vDir, sub: map[string]*vent{}}
			cur.sub[c] = next
		}
		cur = next
	}
	return cur
}

func (v *vfs) file(p string, content func(*Node) string) {
	v.add(p, &vent{kind: vFile, content: content})
}

func (v *vfs) text(p, s string) { v.file(p, func(*Node) string { return s }) }

func (v *vfs) link(p, target string) { v.add(p, &vent{kind: vLink, target: target}) }

func splitPath(p string) []string {
	var out []string
	for c := range strings.SplitSeq(p, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}

// resolve walks p on node n, following symbolic links (the last one only
// when followLast), and returns the entry and its canonical path.
func (v *vfs) resolve(n *Node, p string, followLast bool) (*vent, string, error) {
	comps := splitPath(path.Clean("/" + p))
	cur, curPath := v.root, "/"
	hops := 0
	for i := 0; i < len(comps); i++ {
		c := comps[i]
		if c == ".." {
			comps, i = append(splitPath(path.Dir(curPath)), comps[i+1:]...), -1
			cur, curPath = v.root, "/"
			continue
		}
		if cur.kind != vDir {
			return nil, "", &fs.PathError{Op: "stat", Path: p, Err: syscall.ENOTDIR}
		}
		child := cur.sub[c]
		if child == nil || !child.present(n) {
			return nil, "", &fs.PathError{Op: "stat", Path: p, Err: fs.ErrNotExist}
		}
		if child.kind == vLink && (i < len(comps)-1 || followLast) {
			hops++
			if hops > 40 {
				return nil, "", &fs.PathError{Op: "stat", Path: p, Err: syscall.ELOOP}
			}
			target := child.target
			if !path.IsAbs(target) {
				target = path.Join(curPath, target)
			}
			comps, i = append(splitPath(path.Clean(target)), comps[i+1:]...), -1
			cur, curPath = v.root, "/"
			continue
		}
		cur, curPath = child, path.Join(curPath, c)
	}
	return cur, curPath, nil
}

// readDir lists the entries of a directory present on n, sorted.
func (e *vent) readDir(n *Node) []string {
	names := make([]string, 0, len(e.sub))
	for name, c := range e.sub {
		if c.present(n) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// Device numbers of the virtual disk and the IPMI device.
const (
	devDisk  = "8:0"
	devIPMI0 = "244:0"
)

// Where the virtual node's devices live in sysfs.
const (
	sysNIC  = "/sys/devices/pci0000:00/0000:00:03.0/net/eth0"
	sysSCSI = "/sys/devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0"
	sysDisk = sysSCSI + "/block/sda"
	// byPath is the by-path link of the boot disk (inventory boot.disk).
	byPath = "/dev/disk/by-path/pci-0000:00:1f.2-ata-1"
)

// buildVFS builds the tree of a legacy (uefi false) or a UEFI node: the
// DMI identity, one NIC, one disk with its partitions (/ on sda1, or /
// on sda2 and the ESP on sda1 for UEFI), the boot id, the mounts, the
// IPMI device once ipmi_devintf is loaded, and /sys/firmware/efi on UEFI.
func buildVFS(uefi bool) *vfs {
	v := newVFS()
	v.file("/sys/class/dmi/id/product_serial", func(n *Node) string { return n.inbandSerial + "\n" })
	v.file("/sys/class/dmi/id/sys_vendor", func(n *Node) string { return n.vendor() + "\n" })
	v.file("/sys/class/dmi/id/product_name", func(n *Node) string { return n.productName() + "\n" })
	v.link("/sys/class/net/eth0", "../../devices/pci0000:00/0000:00:03.0/net/eth0")
	v.link("/sys/class/net/lo", "../../devices/virtual/net/lo")
	v.file(sysNIC+"/address", func(n *Node) string { return n.mac + "\n" })
	v.text(sysNIC+"/operstate", "up\n")
	v.text("/sys/devices/virtual/net/lo/address", "00:00:00:00:00:00\n")
	v.file("/proc/sys/kernel/random/boot_id", func(n *Node) string { return n.currentBootID() + "\n" })

	v.text(sysSCSI+"/model", "LAB VIRTUAL DISK\n")
	v.text(sysSCSI+"/vendor", "ATA\n")
	v.text(sysDisk+"/dev", devDisk+"\n")
	v.text(sysDisk+"/size", strconv.Itoa(diskSectors)+"\n")
	v.text(sysDisk+"/removable", "0\n")
	v.text(sysDisk+"/ro", "0\n")
	v.text(sysDisk+"/queue/logical_block_size", "512\n")
	v.text(sysDisk+"/queue/physical_block_size", "512\n")
	v.link(sysDisk+"/device", "../../../0:0:0:0")
	v.mkdir(sysDisk + "/holders")
	v.link("/sys/dev/block/"+devDisk, "../../devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda")
	v.add("/dev/sda", &vent{kind: vBlock, dev: devDisk})
	v.link(byPath, "../../sda")

	parts := []struct{ num, start, size int64 }{{1, 2048, diskSectors - 2048}}
	mountinfo := "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro\n"
	if uefi {
		parts = []struct{ num, start, size int64 }{{1, 2048, 1048576}, {2, 1050624, diskSectors - 1050624 - 34}}
		mountinfo = "22 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw,errors=remount-ro\n" +
			"31 22 8:1 / /boot/efi rw,relatime shared:17 - vfat /dev/sda1 rw,fmask=0077,dmask=0077\n"
		v.mkdir("/sys/firmware/efi/efivars")
		v.text("/sys/firmware/efi/fw_platform_size", "64\n")
	}
	for _, p := range parts {
		name := "sda" + strconv.FormatInt(p.num, 10)
		dev := "8:" + strconv.FormatInt(p.num, 10)
		v.text(sysDisk+"/"+name+"/partition", strconv.FormatInt(p.num, 10)+"\n")
		v.text(sysDisk+"/"+name+"/dev", dev+"\n")
		v.text(sysDisk+"/"+name+"/start", strconv.FormatInt(p.start, 10)+"\n")
		v.text(sysDisk+"/"+name+"/size", strconv.FormatInt(p.size, 10)+"\n")
		v.mkdir(sysDisk + "/" + name + "/holders")
		v.link("/sys/dev/block/"+dev, "../../devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda/"+name)
		v.add("/dev/"+name, &vent{kind: vBlock, dev: dev})
	}
	v.text("/proc/self/mountinfo", mountinfo)
	v.add("/dev/ipmi0", &vent{kind: vChar, dev: devIPMI0, when: func(n *Node) bool { return n.ipmiDeviceLoaded() }})
	for _, d := range []string{"/tmp", "/var/tmp", "/dev/shm", "/run"} {
		v.mkdir(d)
	}
	return v
}
