package fleet

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
	"sync"

	"github.com/reprov/reprov/agent/inband/host"
)

// The virtual boot disk: 16 GiB of 512-byte sectors, stored sparsely.
const (
	sectorSize  = 512
	diskSectors = 16 << 21 // 16 GiB
	diskBytes   = int64(diskSectors) * sectorSize
)

// diskImage is the initial content of a virtual disk: a few sectors, the
// rest zero. It is shared by every node of a model and never written.
type diskImage map[int64][]byte

// vdisk is a node's boot disk: sectors it wrote over the shared image.
// 10,000 nodes cost a few hundred bytes each until they write.
type vdisk struct {
	base diskImage

	mu  sync.Mutex
	own map[int64][]byte
}

func newVDisk(base diskImage) *vdisk { return &vdisk{base: base} }

var errDiskRange = errors.New("outside the disk")

func (d *vdisk) sectorLocked(lba int64) []byte {
	if s, ok := d.own[lba]; ok {
		return s
	}
	return d.base[lba] // nil: zeroes
}

// readAt reads len(p) bytes at off.
func (d *vdisk) readAt(p []byte, off int64) error {
	if off < 0 || off+int64(len(p)) > diskBytes {
		return fmt.Errorf("read %d bytes at %d: %w", len(p), off, errDiskRange)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for done := 0; done < len(p); {
		pos := off + int64(done)
		lba, in := pos/sectorSize, int(pos%sectorSize)
		n := min(sectorSize-in, len(p)-done)
		if s := d.sectorLocked(lba); s != nil {
			copy(p[done:done+n], s[in:in+n])
		} else {
			clear(p[done : done+n])
		}
		done += n
	}
	return nil
}

// writeAt writes p at off.
func (d *vdisk) writeAt(p []byte, off int64) error {
	if off < 0 || off+int64(len(p)) > diskBytes {
		return fmt.Errorf("write %d bytes at %d: %w", len(p), off, errDiskRange)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.own == nil {
		d.own = map[int64][]byte{}
	}
	for done := 0; done < len(p); {
		pos := off + int64(done)
		lba, in := pos/sectorSize, int(pos%sectorSize)
		n := min(sectorSize-in, len(p)-done)
		s, ok := d.own[lba]
		if !ok {
			s = make([]byte, sectorSize)
			copy(s, d.base[lba])
			d.own[lba] = s
		}
		copy(s[in:in+n], p[done:done+n])
		done += n
	}
	return nil
}

// sector returns a copy of sector lba.
func (d *vdisk) sector(lba int64) []byte {
	b := make([]byte, sectorSize)
	_ = d.readAt(b, lba*sectorSize)
	return b
}

// legacyBootable reports whether a BIOS would boot the disk: the 55AA
// signature at 510 and boot code in the first 446 bytes.
func (d *vdisk) legacyBootable() bool { return legacyBootable(d.sector(0)) }

func legacyBootable(s0 []byte) bool {
	if len(s0) < sectorSize || s0[510] != 0x55 || s0[511] != 0xaa {
		return false
	}
	return nonZero(s0[:446])
}

func nonZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return true
		}
	}
	return false
}

// uefiBootable reports whether UEFI firmware finds the disk's boot entry:
// a primary or a backup GPT header.
func (d *vdisk) uefiBootable() bool {
	return bytes.HasPrefix(d.sector(1), []byte("EFI PART")) || bytes.HasPrefix(d.sector(diskSectors-1), []byte("EFI PART"))
}

// openDisk is the host.Disk of an opened vdisk.
type openDisk struct {
	d     *vdisk
	write bool
	// refuse fails every write with an I/O error (FaultDiskRefusesWrite).
	refuse bool
}

// errDiskIO is the error of a disk that refuses writes.
var errDiskIO = errors.New("input/output error (EIO)")

func (o *openDisk) ReadAt(ctx context.Context, p []byte, off int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return o.d.readAt(p, off)
}

func (o *openDisk) WriteAt(ctx context.Context, p []byte, off int64) error {
	if !o.write {
		return fmt.Errorf("write at %d: %w: opened read-only", off, host.ErrNotAllowed)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if o.refuse {
		return fmt.Errorf("write %d bytes at %d: %w", len(p), off, errDiskIO)
	}
	return o.d.writeAt(p, off)
}

func (o *openDisk) Zero(ctx context.Context, off, n int64) error {
	return o.WriteAt(ctx, make([]byte, n), off)
}

func (o *openDisk) Flush(ctx context.Context) error { return ctx.Err() }

func (o *openDisk) Close() error { return nil }

// mbrImage is a legacy disk: an MBR with boot code, one Linux partition
// from LBA 2048, and the 55AA signature.
func mbrImage() diskImage {
	s := make([]byte, sectorSize)
	// cli; xor ax,ax; mov ss,ax; mov sp,0x7c00; ... then a banner, as
	// boot loaders carry.
	code := append([]byte{0xfa, 0x33, 0xc0, 0x8e, 0xd0, 0xbc, 0x00, 0x7c, 0x8e, 0xc0, 0x8e, 0xd8, 0xfb}, "reprov lab boot loader"...)
	copy(s, code)
	binary.LittleEndian.PutUint32(s[440:], 0x1ab5ee1d) // disk signature
	e := s[446:462]
	e[0] = 0x80 // active
	e[1], e[2], e[3] = 0x20, 0x21, 0x00
	e[4] = 0x83 // Linux
	e[5], e[6], e[7] = 0xfe, 0xff, 0xff
	binary.LittleEndian.PutUint32(e[8:], 2048)
	binary.LittleEndian.PutUint32(e[12:], diskSectors-2048)
	s[510], s[511] = 0x55, 0xaa
	return diskImage{0: s}
}

// GPT partition type GUIDs.
const (
	gptTypeESP   = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	gptTypeLinux = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
)

// guidBytes encodes a GUID the way GPT stores it (first three fields
// little-endian).
func guidBytes(s string) []byte {
	h, _ := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	b := make([]byte, 16)
	copy(b, h)
	rev := func(x []byte) {
		for i, j := 0, len(x)-1; i < j; i, j = i+1, j-1 {
			x[i], x[j] = x[j], x[i]
		}
	}
	rev(b[0:4])
	rev(b[4:6])
	rev(b[6:8])
	return b
}

// gptImage is a UEFI disk: a protective MBR, the primary GPT (header at
// LBA 1, 128 entries from LBA 2) and the backup GPT at the end, holding
// an EFI system partition (sda1) and a Linux root (sda2).
func gptImage() diskImage {
	const entries, entrySize = 128, 128
	const entrySectors = entries * entrySize / sectorSize // 32
	last := int64(diskSectors - 1)

	pmbr := make([]byte, sectorSize)
	e := pmbr[446:462]
	e[1], e[2], e[3] = 0x00, 0x02, 0x00
	e[4] = 0xee
	e[5], e[6], e[7] = 0xff, 0xff, 0xff
	binary.LittleEndian.PutUint32(e[8:], 1)
	binary.LittleEndian.PutUint32(e[12:], uint32(min(last, 0xffffffff)))
	pmbr[510], pmbr[511] = 0x55, 0xaa

	arr := make([]byte, entries*entrySize)
	part := func(i int, typ, uniq string, first, lastLBA int64, name string) {
		p := arr[i*entrySize : (i+1)*entrySize]
		copy(p[0:], guidBytes(typ))
		copy(p[16:], guidBytes(uniq))
		binary.LittleEndian.PutUint64(p[32:], uint64(first))
		binary.LittleEndian.PutUint64(p[40:], uint64(lastLBA))
		for j, r := range name {
			binary.LittleEndian.PutUint16(p[56+2*j:], uint16(r))
		}
	}
	part(0, gptTypeESP, "6A2B1C3D-0001-4E5F-8A9B-0C1D2E3F4A5B", 2048, 1050623, "EFI System Partition")
	part(1, gptTypeLinux, "6A2B1C3D-0002-4E5F-8A9B-0C1D2E3F4A5B", 1050624, last-34, "root")
	arrCRC := crc32.ChecksumIEEE(arr)

	header := func(cur, backup, entriesLBA int64) []byte {
		h := make([]byte, sectorSize)
		copy(h, "EFI PART")
		binary.LittleEndian.PutUint32(h[8:], 0x00010000)
		binary.LittleEndian.PutUint32(h[12:], 92)
		binary.LittleEndian.PutUint64(h[24:], uint64(cur))
		binary.LittleEndian.PutUint64(h[32:], uint64(backup))
		binary.LittleEndian.PutUint64(h[40:], 34)
		binary.LittleEndian.PutUint64(h[48:], uint64(last-34))
		copy(h[56:], guidBytes("5EB1AB00-7E57-4A1B-9C0D-1E2F3A4B5C6D"))
		binary.LittleEndian.PutUint64(h[72:], uint64(entriesLBA))
		binary.LittleEndian.PutUint32(h[80:], entries)
		binary.LittleEndian.PutUint32(h[84:], entrySize)
		binary.LittleEndian.PutUint32(h[88:], arrCRC)
		binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:92]))
		return h
	}
	img := diskImage{0: pmbr, 1: header(1, last, 2), last: header(last, 1, last-entrySectors)}
	for i := range int64(entrySectors) {
		s := arr[i*sectorSize : (i+1)*sectorSize]
		if nonZero(s) {
			img[2+i] = s
			img[last-entrySectors+i] = s
		}
	}
	return img
}
