package steps_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/reprov/reprov/agent/inband/host"
	"github.com/reprov/reprov/agent/inband/host/fixture"
	"github.com/reprov/reprov/agent/inband/steps"
	"github.com/reprov/reprov/lab/labtool"
)

const imageSize = 4 << 20

// newImage makes a partitioned image ("dos" or "gpt") in a temp dir.
func newImage(t *testing.T, label string) string {
	t.Helper()
	labtool.RequireTool(t, "sfdisk")
	p := filepath.Join(t.TempDir(), "disk-"+label+".img")
	if err := fixture.MakeImage(p, imageSize, label); err != nil {
		t.Fatal(err)
	}
	return p
}

// node is a fixture node with one disk (the image) holding /boot.
func node(image string) fixture.Node {
	return fixture.Node{
		Serial: "CZJ1234ABC",
		NICs: []fixture.NIC{
			{Name: "eth0", MAC: "3c:4a:92:11:22:33"},
			{Name: "docker0", MAC: "02:42:ac:11:00:01", Virtual: true},
			{Name: "lo", MAC: "00:00:00:00:00:00", Virtual: true},
		},
		BootID:     "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
		IPMIDevice: true,
		Disks: []fixture.Disk{{Name: "sda", Dev: "8:0", Image: image, Model: "LOGICAL VOLUME",
			Partitions: []fixture.Partition{{Name: "sda1", Dev: "8:1"}, {Name: "sda2", Dev: "8:2"}}}},
		Mounts: []fixture.Mount{
			{Dev: "8:2", MountPoint: "/", FSType: "ext4", Source: "/dev/sda2"},
			{Dev: "8:1", MountPoint: "/boot", FSType: "ext4", Source: "/dev/sda1"},
		},
	}
}

func build(t *testing.T, n fixture.Node) (*fixture.Host, *host.Layout) {
	t.Helper()
	l, err := fixture.Build(filepath.Join(t.TempDir(), "root"), n)
	if err != nil {
		t.Fatal(err)
	}
	h, err := fixture.New(l)
	if err != nil {
		t.Fatal(err)
	}
	return h, l
}

func read(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// zeroedExactly checks that after equals before with exactly the ranges
// zeroed: the zeroed bytes are zero, and every other byte is unchanged
// (compared by checksum of what lies between the ranges).
func zeroedExactly(t *testing.T, before, after []byte, ranges [][2]int64) {
	t.Helper()
	if len(before) != len(after) {
		t.Fatalf("image size changed: %d → %d", len(before), len(after))
	}
	prev := int64(0)
	check := func(from, to int64) {
		if sha256.Sum256(before[from:to]) != sha256.Sum256(after[from:to]) {
			t.Errorf("bytes %d..%d changed, but are outside the wipe", from, to-1)
		}
	}
	for _, r := range ranges {
		check(prev, r[0])
		if !bytes.Equal(after[r[0]:r[1]], make([]byte, r[1]-r[0])) {
			t.Errorf("bytes %d..%d are not all zero", r[0], r[1]-1)
		}
		if bytes.Equal(before[r[0]:r[1]], make([]byte, r[1]-r[0])) {
			t.Errorf("bytes %d..%d were zero before: the test proves nothing", r[0], r[1]-1)
		}
		prev = r[1]
	}
	check(prev, int64(len(after)))
}

func TestWipeMBRZeroesLBA0Only(t *testing.T) {
	img := newImage(t, "dos")
	h, _ := build(t, node(img))
	before := read(t, img)
	var saved *steps.SavedSectors
	var planned *steps.WipePlan
	res, err := steps.WipeBootSector(context.Background(), h, steps.WipeOptions{Disk: img,
		Save:        func(_ context.Context, s *steps.SavedSectors) error { saved = s; return nil },
		BeforeWrite: func(p *steps.WipePlan) error { planned = p; return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if res.Table != "mbr" || !res.Verified || res.BytesZeroed != 512 {
		t.Fatalf("result %+v, want mbr, verified, 512 bytes", res)
	}
	if planned == nil || saved == nil {
		t.Fatal("wipe did not save and announce before writing")
	}
	zeroedExactly(t, before, read(t, img), [][2]int64{{0, 512}})
	if !bytes.Equal(saved.Ranges[0].Data, before[:512]) {
		t.Fatal("saved bytes are not the original LBA 0")
	}
}

func TestWipeGPTZeroesBothHeaders(t *testing.T) {
	img := newImage(t, "gpt")
	h, _ := build(t, node(img))
	before := read(t, img)
	var saved *steps.SavedSectors
	res, err := steps.WipeBootSector(context.Background(), h, steps.WipeOptions{Disk: img,
		Save: func(_ context.Context, s *steps.SavedSectors) error { saved = s; return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if res.Table != "gpt" || !res.Verified {
		t.Fatalf("result %+v, want gpt, verified", res)
	}
	want := [][2]int64{{0, 34 * 512}, {imageSize - 33*512, imageSize}}
	zeroedExactly(t, before, read(t, img), want)
	if len(res.Ranges) != 2 || res.Ranges[0].Length != 34*512 || res.Ranges[1].Offset != imageSize-33*512 {
		t.Fatalf("ranges %+v, want LBA 0..33 and the last 33 sectors", res.Ranges)
	}

	// Restore puts every byte back.
	r, err := steps.RestoreBootSector(context.Background(), h, steps.RestoreOptions{Saved: saved})
	if err != nil {
		t.Fatal(err)
	}
	if r.Before != "zero" || !r.Verified {
		t.Fatalf("restore %+v, want before=zero, verified", r)
	}
	if !bytes.Equal(read(t, img), before) {
		t.Fatal("image after restore differs from the original")
	}
	// A second restore finds the bytes already there.
	r, err = steps.RestoreBootSector(context.Background(), h, steps.RestoreOptions{Saved: saved})
	if err != nil || r.Before != "restored" {
		t.Fatalf("second restore: %+v, %v; want before=restored", r, err)
	}
}

func TestWipeScopeMBROnGPT(t *testing.T) {
	img := newImage(t, "gpt")
	h, _ := build(t, node(img))
	before := read(t, img)
	res, err := steps.WipeBootSector(context.Background(), h, steps.WipeOptions{Disk: img, Scope: steps.ScopeMBR,
		Save: func(context.Context, *steps.SavedSectors) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if res.Table != "gpt" || res.BytesZeroed != 512 {
		t.Fatalf("result %+v, want the GPT disk's LBA 0 only", res)
	}
	zeroedExactly(t, before, read(t, img), [][2]int64{{0, 512}})
	if _, _, err := steps.PlanWipe(context.Background(), h, img, "everything"); err == nil {
		t.Fatal("an unknown scope was accepted")
	}
}

func TestRestoreRefusesAChangedDisk(t *testing.T) {
	img := newImage(t, "dos")
	h, _ := build(t, node(img))
	var saved *steps.SavedSectors
	if _, err := steps.WipeBootSector(context.Background(), h, steps.WipeOptions{Disk: img,
		Save: func(_ context.Context, s *steps.SavedSectors) error { saved = s; return nil }}); err != nil {
		t.Fatal(err)
	}
	// A new OS writes its own boot sector.
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("NEW BOOT CODE"), 0)
	f.Close()
	after := read(t, img)
	_, err = steps.RestoreBootSector(context.Background(), h, steps.RestoreOptions{Saved: saved})
	if !errors.Is(err, steps.ErrRestoreRefused) {
		t.Fatalf("restore over a new boot sector: %v, want ErrRestoreRefused", err)
	}
	if !bytes.Equal(read(t, img), after) {
		t.Fatal("a refused restore wrote to the disk")
	}
	if _, err := steps.RestoreBootSector(context.Background(), h, steps.RestoreOptions{Saved: saved, Force: true}); err != nil {
		t.Fatalf("forced restore: %v", err)
	}
}

func TestWipeRefusesWhenBytesChangedSinceSaved(t *testing.T) {
	img := newImage(t, "dos")
	h, _ := build(t, node(img))
	_, saved, err := steps.PlanWipe(context.Background(), h, img, "")
	if err != nil {
		t.Fatal(err)
	}
	f, _ := os.OpenFile(img, os.O_WRONLY, 0)
	f.WriteAt([]byte{0xEE}, 100)
	f.Close()
	before := read(t, img)
	_, err = steps.WipeBootSector(context.Background(), h, steps.WipeOptions{Disk: img, ExpectSHA256: saved.SHA256})
	if !errors.Is(err, steps.ErrChangedSinceSaved) {
		t.Fatalf("err %v, want ErrChangedSinceSaved", err)
	}
	if !bytes.Equal(read(t, img), before) {
		t.Fatal("the refused wipe wrote")
	}
	if _, err := steps.WipeBootSector(context.Background(), h, steps.WipeOptions{Disk: img}); !errors.Is(err, steps.ErrNotSaved) {
		t.Fatalf("wipe without a save: %v, want ErrNotSaved", err)
	}
}

func TestResolveDisk(t *testing.T) {
	img := newImage(t, "dos")
	dir := t.TempDir()
	small := filepath.Join(dir, "small.img")
	if err := os.WriteFile(small, make([]byte, 64<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	other := func(name string) string {
		p := filepath.Join(dir, name+".img")
		if err := os.WriteFile(p, bytes.Repeat([]byte{1}, 2<<20), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	part, loop, dm, removable, ro, member, md, mounted := other("part"), other("loop"), other("dm"), other("usb"), other("ro"), other("member"), other("md"), other("mounted")
	n := node(img)
	n.Disks[0].Partitions[0].Image = part
	n.Disks = append(n.Disks,
		fixture.Disk{Name: "loop0", Dev: "7:0", Image: loop, Virtual: true},
		fixture.Disk{Name: "dm-0", Dev: "253:0", Image: dm, Virtual: true, Slaves: []string{"sda2"}},
		fixture.Disk{Name: "sdb", Dev: "8:16", Image: removable, Removable: true},
		fixture.Disk{Name: "sdc", Dev: "8:32", Image: ro, ReadOnly: true},
		fixture.Disk{Name: "sdd", Dev: "8:48", Image: small},
		fixture.Disk{Name: "sde", Dev: "8:64", Image: member, Partitions: []fixture.Partition{{Name: "sde1", Dev: "8:65", Holders: []string{"md0"}}}},
		fixture.Disk{Name: "sdf", Dev: "8:80", Image: md, Holders: []string{"md1"}},
		fixture.Disk{Name: "sdg", Dev: "8:96", Image: mounted},
	)
	n.Mounts = append(n.Mounts, fixture.Mount{Dev: "8:96", MountPoint: "/data", FSType: "xfs", Source: "/dev/sdg"})
	h, l := build(t, n)
	if err := os.MkdirAll(filepath.Join(l.Root, "dev/disk/by-path"), 0o755); err != nil {
		t.Fatal(err)
	}
	byPath := "/dev/disk/by-path/pci-0000:03:00.0-scsi-0:0:0:0"
	if err := os.Symlink(img, filepath.Join(l.Root, byPath)); err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	for _, tc := range []struct {
		name, disk, wantPath, refusal string
	}{
		{"configured image", img, img, ""},
		{"by-path link", byPath, img, ""},
		{"boot disk from mounts", "", img, ""},
		{"partition", part, "", "is a partition (sda1 of disk sda)"},
		{"loop", loop, "", "loop device"},
		{"device mapper", dm, "", "device-mapper device"},
		{"removable", removable, "", "removable"},
		{"read-only", ro, "", "read-only"},
		{"tiny", small, "", "too small"},
		{"md member partition", member, "", "member of software RAID md0"},
		{"whole-disk md member", md, "", "in use by md1"},
		{"mounted whole disk", mounted, "", "the whole disk sdg is mounted at /data (xfs on the raw disk"},
		{"not absolute", "sda", "", "not an absolute path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info, err := steps.ResolveDisk(ctx, h, tc.disk)
			if tc.refusal != "" {
				var re *steps.DiskRefusedError
				if !errors.As(err, &re) || !errors.Is(err, steps.ErrDiskRefused) {
					t.Fatalf("err %v, want a DiskRefusedError", err)
				}
				if !strings.Contains(err.Error(), tc.refusal) {
					t.Fatalf("refusal %q does not say %q", err, tc.refusal)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if info.Path != tc.wantPath || info.Name != "sda" || info.Dev != "8:0" || info.SizeBytes != imageSize || info.SectorSize != 512 {
				t.Fatalf("resolved %+v", info)
			}
			if info.Reason == "" || len(info.Checks) == 0 {
				t.Fatalf("no reason or checks: %+v", info)
			}
		})
	}

	// / on LVM (dm-0 on sda2) resolves through the slave to sda.
	n2 := node(img)
	n2.Disks = append(n2.Disks, fixture.Disk{Name: "dm-0", Dev: "253:0", Virtual: true, Slaves: []string{"sda2"}})
	n2.Mounts = []fixture.Mount{{Dev: "253:0", MountPoint: "/", FSType: "xfs", Source: "/dev/mapper/vg-root"}}
	h2, _ := build(t, n2)
	info, err := steps.ResolveDisk(ctx, h2, "")
	if err != nil || info.Path != img {
		t.Fatalf("LVM root: %+v, %v; want %s", info, err, img)
	}
	if !strings.Contains(info.Reason, "dm-0 sits on sda2") {
		t.Fatalf("reason %q does not explain the dm layer", info.Reason)
	}

	// A wipe of a refused device writes nothing.
	before := read(t, part)
	_, err = steps.WipeBootSector(ctx, h, steps.WipeOptions{Disk: part, Save: func(context.Context, *steps.SavedSectors) error { return nil }})
	if !errors.Is(err, steps.ErrDiskRefused) || !bytes.Equal(read(t, part), before) {
		t.Fatalf("wipe of a partition: %v", err)
	}
}

func TestIdentifyAndCompare(t *testing.T) {
	img := newImage(t, "dos")
	n := node(img)
	n.NICs = append(n.NICs, fixture.NIC{Name: "eth1", MAC: "3c:4a:92:11:22:44", PermanentMAC: "3c:4a:92:11:22:55"})
	h, _ := build(t, n)
	id, err := steps.Identify(context.Background(), h, steps.IdentifyOptions{NoModprobe: true})
	if err != nil {
		t.Fatal(err)
	}
	if id.Serial != "CZJ1234ABC" || id.BootID != n.BootID || id.Firmware != "legacy" {
		t.Fatalf("identity %+v", id)
	}
	if got := strings.Join(id.MACs(), ","); got != "3c:4a:92:11:22:33,3c:4a:92:11:22:44,3c:4a:92:11:22:55" {
		t.Fatalf("MACs %s: want the physical NICs only, with the permanent address", got)
	}
	id.BMC = steps.BMCAddress{Address: "10.1.12.14", Via: "open"}

	for _, tc := range []struct {
		name   string
		exp    steps.Expected
		ok     bool
		target error
		says   []string
	}{
		{"all match", steps.Expected{Serial: "czj1234abc", MACs: []string{"3C-4A-92-11-22-33"}, BMCAddresses: []string{"10.1.12.14"}}, true, nil, nil},
		{"one MAC of several", steps.Expected{MACs: []string{"aa:bb:cc:dd:ee:ff", "3c:4a:92:11:22:55"}}, true, nil, nil},
		{"wrong serial", steps.Expected{Serial: "CZJ9999999", MACs: []string{"3c:4a:92:11:22:33"}}, false, steps.ErrIdentityMismatch,
			[]string{"serial expected CZJ9999999, found CZJ1234ABC"}},
		{"wrong MAC", steps.Expected{Serial: "CZJ1234ABC", MACs: []string{"aa:bb:cc:dd:ee:ff"}}, false, steps.ErrIdentityMismatch,
			[]string{"mac expected aa:bb:cc:dd:ee:ff, found 3c:4a:92:11:22:33"}},
		{"wrong BMC", steps.Expected{Serial: "CZJ1234ABC", BMCAddresses: []string{"10.1.12.15"}}, false, steps.ErrIdentityMismatch,
			[]string{"bmc_address expected 10.1.12.15, found 10.1.12.14"}},
		{"nothing to compare", steps.Expected{}, false, steps.ErrNothingToCompare, []string{"nothing to compare"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.exp.Node = "web-014"
			c := steps.CompareIdentity(tc.exp, id)
			err := c.Err()
			if tc.ok {
				if err != nil || c.Matched == 0 {
					t.Fatalf("check failed: %v (%+v)", err, c)
				}
				return
			}
			if !errors.Is(err, tc.target) {
				t.Fatalf("err %v, want %v", err, tc.target)
			}
			for _, s := range append(tc.says, "node web-014") {
				if !strings.Contains(err.Error(), s) {
					t.Fatalf("error %q does not say %q", err, s)
				}
			}
		})
	}

	// Facts the node cannot tell are skipped, not mismatches.
	unknown := &steps.Identity{Version: 1, SerialUnknown: "placeholder", BMC: steps.BMCAddress{Address: "0.0.0.0"},
		NICs: []steps.NIC{{Name: "eth0", MAC: "3c:4a:92:11:22:33"}}}
	c := steps.CompareIdentity(steps.Expected{Node: "n", Serial: "X", MACs: []string{"3c:4a:92:11:22:33"}, BMCAddresses: []string{"10.0.0.1"}}, unknown)
	if !c.OK || c.Matched != 1 {
		t.Fatalf("check with unknown serial and 0.0.0.0 BMC: %+v", c)
	}
	c = steps.CompareIdentity(steps.Expected{Node: "n", Serial: "X", BMCAddresses: []string{"10.0.0.1"}}, unknown)
	if !errors.Is(c.Err(), steps.ErrNothingToCompare) {
		t.Fatalf("only unknown facts: %v, want nothing to compare", c.Err())
	}
}

func TestPlaceholderSerials(t *testing.T) {
	for _, s := range []string{"", "  ", "To Be Filled By O.E.M.", "Not Specified", "0000000000", "System Serial Number", "Default string"} {
		if !steps.IsPlaceholderSerial(s) {
			t.Errorf("%q is a placeholder", s)
		}
	}
	for _, s := range []string{"CZJ1234ABC", "VMware-56 4d", "J30A8B1"} {
		if steps.IsPlaceholderSerial(s) {
			t.Errorf("%q is a real serial", s)
		}
	}
}

func TestParseEFIBootMgr(t *testing.T) {
	out := `BootCurrent: 0001
Timeout: 1 seconds
BootOrder: 0001,0003,0002,0004
Boot0000* UiApp	FvVol(7cb8bdc9-f8eb-4f34-aaea-3ee4af6516a1)/FvFile(462caa21-7614-4503-836e-8ab6f4662331)
Boot0001* debian	HD(1,GPT,2c4b5d3e-0000-0000-0000-000000000000,0x800,0x100000)/File(\EFI\debian\shimx64.efi)
Boot0002* UEFI PXEv4 (MAC:525400AABBCC)	PciRoot(0x0)/Pci(0x3,0x0)/MAC(525400aabbcc,1)/IPv4(0.0.0.00.0.0.0,0,0)N.....YM....R,Y.
Boot0003* UEFI HTTPv4 (MAC:3C4A92112233)	PciRoot(0x0)/Pci(0x4,0x0)/MAC(3c4a92112233,1)/IPv4(0.0.0.00.0.0.0,0,0)/Uri()N.....YM....R,Y.
Boot0004* UEFI PXEv4 (MAC:3C4A92112233) PciRoot(0x0)/Pci(0x4,0x0)/MAC(3c4a92112233,1)/IPv4(0.0.0.00.0.0.0,0,0)N.....YM....R,Y.
Boot0005* UEFI PXEv6 (MAC:3C4A92112233)	PciRoot(0x0)/Pci(0x4,0x0)/MAC(3c4a92112233,1)/IPv6([::]:<->[::]:,0,0)N.....YM....R,Y.
`
	l := steps.ParseEFIBootMgr(out)
	if l.BootCurrent != "0001" || len(l.Entries) != 6 || strings.Join(l.BootOrder, ",") != "0001,0003,0002,0004" {
		t.Fatalf("parsed %+v", l)
	}
	e, ok := l.NetworkEntry([]string{"3c:4a:92:11:22:33"})
	if !ok || e.Num != "0004" {
		t.Fatalf("entry %+v: want Boot0004 (IPv4 PXE on the inventory's NIC, not HTTP, not IPv6)", e)
	}
	e, ok = l.NetworkEntry(nil)
	if !ok || e.Num != "0002" {
		t.Fatalf("entry %+v without MACs: want Boot0002 (IPv4 PXE, first in BootOrder)", e)
	}
	if _, ok := steps.ParseEFIBootMgr("BootOrder: 0001\nBoot0001* debian\tHD(1)/File(x)\n").NetworkEntry(nil); ok {
		t.Fatal("a disk-only list has no network entry")
	}
}

// TestUnreadableDiskFactsRefuse: holders, removable and ro that cannot be
// read (here: of the wrong file type, which fails for root too) refuse the
// disk with the read error; only a missing file means absent.
func TestUnreadableDiskFactsRefuse(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		file     string
		asDir    bool
		refusal  string
		readable bool
	}{
		{file: "holders", asDir: false, refusal: "cannot read holders of sda"},
		{file: "removable", asDir: true, refusal: "cannot read removable of sda"},
		{file: "ro", asDir: true, refusal: "cannot read ro of sda"},
		{file: "sda1/partition", asDir: true, refusal: "cannot read sda1/partition of sda"},
		{file: "sda1/holders", asDir: false, refusal: "cannot read sda1/holders of sda"},
		// Missing files mean absent: the disk is accepted.
		{file: "removable", readable: true},
		{file: "ro", readable: true},
		{file: "holders", readable: true},
	} {
		name := tc.file
		if tc.readable {
			name += " missing"
		}
		t.Run(name, func(t *testing.T) {
			img := newImage(t, "dos")
			h, l := build(t, node(img))
			p := filepath.Join(l.Root, "sys/devices/pci0000:00/0000:00:1f.2/host0/block/sda", tc.file)
			if err := os.RemoveAll(p); err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.readable:
			case tc.asDir:
				if err := os.Mkdir(p, 0o755); err != nil {
					t.Fatal(err)
				}
			default:
				if err := os.WriteFile(p, nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			info, err := steps.ResolveDisk(ctx, h, img)
			if tc.readable {
				if err != nil || info.Name != "sda" {
					t.Fatalf("%s missing: %+v %v, want the disk accepted", tc.file, info, err)
				}
				return
			}
			if !errors.Is(err, steps.ErrDiskRefused) || !strings.Contains(err.Error(), tc.refusal) {
				t.Fatalf("unreadable %s: %v, want a refusal saying %q", tc.file, err, tc.refusal)
			}
			before := read(t, img)
			if _, err := steps.WipeBootSector(ctx, h, steps.WipeOptions{Disk: img}); err == nil {
				t.Fatal("the wipe went ahead on a disk whose facts cannot be read")
			}
			if !bytes.Equal(before, read(t, img)) {
				t.Fatal("the disk was written")
			}
		})
	}
}

// TestRestoreRefusesAnotherDisk: the saved copy records the disk's WWID and
// serial; a disk with others (or none readable) is refused, even forced.
func TestRestoreRefusesAnotherDisk(t *testing.T) {
	ctx := context.Background()
	img := newImage(t, "dos")
	n := node(img)
	n.Disks[0].WWID, n.Disks[0].Serial = "naa.600508b1001c5e6f", "PBKTF0BRH8S0XY"
	h, _ := build(t, n)
	var saved *steps.SavedSectors
	if _, err := steps.WipeBootSector(ctx, h, steps.WipeOptions{Disk: img,
		Save: func(_ context.Context, s *steps.SavedSectors) error { saved = s; return nil }}); err != nil {
		t.Fatal(err)
	}
	if saved.DiskWWID != "naa.600508b1001c5e6f" || saved.DiskSerial != "PBKTF0BRH8S0XY" {
		t.Fatalf("saved copy identifies the disk as WWID %q serial %q", saved.DiskWWID, saved.DiskSerial)
	}
	zeroed := read(t, img)
	for _, tc := range []struct {
		name, wwid, serial, want string
	}{
		{"other WWID", "naa.600508b1001c0000", "PBKTF0BRH8S0XY", `WWID "naa.600508b1001c0000", the saved copy is of WWID "naa.600508b1001c5e6f"`},
		{"other serial", "naa.600508b1001c5e6f", "OTHER", `serial "OTHER"`},
		{"no WWID readable", "", "PBKTF0BRH8S0XY", "has WWID none readable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n2 := node(img)
			n2.Disks[0].WWID, n2.Disks[0].Serial = tc.wwid, tc.serial
			h2, _ := build(t, n2)
			_, err := steps.RestoreBootSector(ctx, h2, steps.RestoreOptions{Saved: saved, Force: true})
			if !errors.Is(err, steps.ErrOtherDisk) || !errors.Is(err, steps.ErrRestoreRefused) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("restore to %s: %v, want ErrOtherDisk saying %q", tc.name, err, tc.want)
			}
			if !bytes.Equal(read(t, img), zeroed) {
				t.Fatal("a refused restore wrote to the disk")
			}
		})
	}
	if _, err := steps.RestoreBootSector(ctx, h, steps.RestoreOptions{Saved: saved}); err != nil {
		t.Fatalf("restore to the same disk: %v", err)
	}
}
