package steps

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/reprov/reprov/agent/inband/host"
)

// Range is a byte range of a disk.
type Range struct {
	Offset int64  `json:"offset"`
	Length int64  `json:"length"`
	What   string `json:"what"`
}

// End is the first byte after the range.
func (r Range) End() int64 { return r.Offset + r.Length }

// SavedRange is a range with the bytes it held.
type SavedRange struct {
	Range
	// Data is the bytes (base64 in JSON).
	Data   []byte `json:"data"`
	SHA256 string `json:"sha256"`
}

// SavedSectors is what a wipe zeroes, saved before it does: the undo.
type SavedSectors struct {
	Version       int    `json:"version"`
	Node          string `json:"node,omitempty"`
	Run           string `json:"run,omitempty"`
	Disk          string `json:"disk"`
	DiskName      string `json:"disk_name,omitempty"`
	DiskDev       string `json:"disk_dev,omitempty"`
	DiskSizeBytes int64  `json:"disk_size_bytes"`
	// DiskWWID and DiskSerial identify the physical disk the bytes came
	// from (when sysfs had them); restore requires the same disk.
	DiskWWID   string       `json:"disk_wwid,omitempty"`
	DiskSerial string       `json:"disk_serial,omitempty"`
	SectorSize int          `json:"logical_sector_size"`
	Table      string       `json:"partition_table"`
	SavedAt    time.Time    `json:"saved_at"`
	Ranges     []SavedRange `json:"ranges"`
	// SHA256 covers the data of every range, in order.
	SHA256 string `json:"sha256"`
}

// WipePlan is what a wipe will zero, and why.
type WipePlan struct {
	Version int       `json:"version"`
	Disk    *DiskInfo `json:"disk"`
	// Table is "mbr", "gpt" or "none"; TableReason says how it was told.
	Table       string  `json:"partition_table"`
	TableReason string  `json:"partition_table_reason"`
	Ranges      []Range `json:"ranges"`
	Bytes       int64   `json:"bytes"`
	// SavedSHA256 is the checksum of the bytes that will be zeroed.
	SavedSHA256 string `json:"saved_sha256"`
}

// gptEntryBytes is the space the GPT partition entry array takes (128
// entries of 128 bytes), the size every partitioner uses.
const gptEntryBytes = 16384

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

// Wipe scopes (playbook wipe.boot_sector).
const (
	// ScopeMBRGPT (the default, also "" and "auto") zeroes LBA 0 and, on a
	// GPT disk, the primary GPT (LBA 1..33) and the backup GPT (the last
	// 33 sectors).
	ScopeMBRGPT = "mbr+gpt"
	// ScopeMBR zeroes LBA 0 only, whatever the table.
	ScopeMBR = "mbr"
)

// ValidScope reports whether s is a wipe scope.
func ValidScope(s string) bool {
	return s == "" || s == "auto" || s == ScopeMBR || s == ScopeMBRGPT
}

// planRanges reads the disk's first, second and last sector, tells MBR
// from GPT and returns the ranges a wipe of scope zeroes.
func planRanges(ctx context.Context, d host.Disk, info *DiskInfo, scope string) (table, reason string, ranges []Range, err error) {
	ss := int64(info.SectorSize)
	size := info.SizeBytes - info.SizeBytes%ss
	lba0 := make([]byte, ss)
	lba1 := make([]byte, ss)
	last := make([]byte, ss)
	if err := d.ReadAt(ctx, lba0, 0); err != nil {
		return "", "", nil, fmt.Errorf("read LBA 0 of %s: %w", info.Path, err)
	}
	if err := d.ReadAt(ctx, lba1, ss); err != nil {
		return "", "", nil, fmt.Errorf("read LBA 1 of %s: %w", info.Path, err)
	}
	if err := d.ReadAt(ctx, last, size-ss); err != nil {
		return "", "", nil, fmt.Errorf("read last LBA of %s: %w", info.Path, err)
	}
	mbrSig := lba0[510] == 0x55 && lba0[511] == 0xaa
	protective := false
	if mbrSig {
		for i := range 4 {
			if lba0[446+16*i+4] == 0xee {
				protective = true
			}
		}
	}
	primary := bytes.HasPrefix(lba1, []byte("EFI PART"))
	backup := bytes.HasPrefix(last, []byte("EFI PART"))

	entrySectors := ceilDiv(gptEntryBytes, ss)
	if primary {
		// A header asking for a bigger entry array right after it gets it all zeroed.
		entriesLBA := int64(binary.LittleEndian.Uint64(lba1[72:80]))
		n := int64(binary.LittleEndian.Uint32(lba1[80:84])) * int64(binary.LittleEndian.Uint32(lba1[84:88]))
		if entriesLBA == 2 && n > gptEntryBytes && n <= 1<<20 {
			entrySectors = ceilDiv(n, ss)
		}
	}
	switch {
	case primary || backup || protective:
		table = "gpt"
		switch {
		case primary:
			reason = "GPT: \"EFI PART\" at LBA 1"
		case backup:
			reason = "GPT: backup header (\"EFI PART\") at the last LBA, primary already gone"
		default:
			reason = "GPT: protective MBR (partition type 0xEE)"
		}
		ranges = []Range{
			{Offset: 0, Length: (2 + entrySectors) * ss, What: fmt.Sprintf("protective MBR, primary GPT header and entries (LBA 0..%d)", 1+entrySectors)},
			{Offset: size - (1+entrySectors)*ss, Length: (1 + entrySectors) * ss, What: fmt.Sprintf("backup GPT entries and header (last %d sectors)", 1+entrySectors)},
		}
	case mbrSig:
		table, reason = "mbr", "MBR: boot signature 55AA at LBA 0, no GPT header"
		ranges = []Range{{Offset: 0, Length: ss, What: "MBR (LBA 0)"}}
	default:
		table, reason = "none", "no boot signature and no GPT header at LBA 0/1"
		ranges = []Range{{Offset: 0, Length: ss, What: "LBA 0"}}
	}
	if scope == ScopeMBR && table == "gpt" {
		reason += "; wipe scope mbr: LBA 0 only"
		ranges = []Range{{Offset: 0, Length: ss, What: "protective MBR (LBA 0)"}}
	}
	return table, reason, ranges, nil
}

func readRanges(ctx context.Context, d host.Disk, ranges []Range) ([]SavedRange, string, error) {
	all := sha256.New()
	out := make([]SavedRange, 0, len(ranges))
	for _, r := range ranges {
		b := make([]byte, r.Length)
		if err := d.ReadAt(ctx, b, r.Offset); err != nil {
			return nil, "", fmt.Errorf("read %d bytes at %d: %w", r.Length, r.Offset, err)
		}
		sum := sha256.Sum256(b)
		all.Write(b)
		out = append(out, SavedRange{Range: r, Data: b, SHA256: hex.EncodeToString(sum[:])})
	}
	return out, hex.EncodeToString(all.Sum(nil)), nil
}

// PlanWipe resolves the disk (with every check), reads what a wipe of
// scope ("" for the default, ScopeMBRGPT) would zero and returns the plan
// with the bytes to save. It writes nothing.
func PlanWipe(ctx context.Context, h host.Host, disk, scope string) (*WipePlan, *SavedSectors, error) {
	if disk == "" {
		return nil, nil, fmt.Errorf("%w: no disk given", ErrDiskRefused)
	}
	if !ValidScope(scope) {
		return nil, nil, fmt.Errorf("wipe scope %q: want mbr or mbr+gpt", scope)
	}
	info, err := ResolveDisk(ctx, h, disk)
	if err != nil {
		return nil, nil, err
	}
	d, err := h.OpenDisk(ctx, info.Path, false)
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", info.Path, err)
	}
	defer d.Close()
	table, reason, ranges, err := planRanges(ctx, d, info, scope)
	if err != nil {
		return nil, nil, err
	}
	saved, sum, err := readRanges(ctx, d, ranges)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", info.Path, err)
	}
	plan := &WipePlan{Version: ProtocolVersion, Disk: info, Table: table, TableReason: reason, Ranges: ranges, SavedSHA256: sum}
	for _, r := range ranges {
		plan.Bytes += r.Length
	}
	s := &SavedSectors{Version: ProtocolVersion, Disk: info.Path, DiskName: info.Name, DiskDev: info.Dev,
		DiskSizeBytes: info.SizeBytes, DiskWWID: info.WWID, DiskSerial: info.Serial, SectorSize: info.SectorSize, Table: table, SavedAt: time.Now().UTC(),
		Ranges: saved, SHA256: sum}
	return plan, s, nil
}

// WipeOptions are the inputs of WipeBootSector.
type WipeOptions struct {
	// Disk is the disk to wipe (checked again by ResolveDisk).
	Disk string
	// Scope is what to zero: ScopeMBRGPT (default) or ScopeMBR.
	Scope string
	// DryRun plans only.
	DryRun bool
	// Save stores the bytes before anything is written; a wipe without
	// Save needs ExpectSHA256.
	Save func(context.Context, *SavedSectors) error
	// ExpectSHA256 is the checksum of a copy the caller saved already
	// (from PlanWipe): the wipe refuses if the bytes differ now.
	ExpectSHA256 string
	// BeforeWrite runs after every check and the save, right before the
	// first write (record the audit intent there); an error stops the wipe.
	BeforeWrite func(*WipePlan) error
}

// WipeResult is the result of wipe-boot-sector.
type WipeResult struct {
	Version     int       `json:"version"`
	DryRun      bool      `json:"dry_run,omitempty"`
	Disk        *DiskInfo `json:"disk"`
	Table       string    `json:"partition_table"`
	TableReason string    `json:"partition_table_reason"`
	Ranges      []Range   `json:"ranges"`
	BytesZeroed int64     `json:"bytes_zeroed"`
	SavedSHA256 string    `json:"saved_sha256"`
	// AlreadyZero is set when the ranges held only zeroes before the wipe.
	AlreadyZero bool `json:"already_zero,omitempty"`
	// Verified is set when a read-back after the flush showed only zeroes.
	Verified bool `json:"verified"`
}

// WipeBootSector saves, then zeroes the boot sector of the disk — LBA 0 of
// an MBR disk; on GPT also the primary header and entries and the backup
// GPT at the end — flushes, and reads back to verify the zeroes.
func WipeBootSector(ctx context.Context, h host.Host, opts WipeOptions) (*WipeResult, error) {
	plan, saved, err := PlanWipe(ctx, h, opts.Disk, opts.Scope)
	if err != nil {
		return nil, err
	}
	res := &WipeResult{Version: ProtocolVersion, DryRun: opts.DryRun, Disk: plan.Disk, Table: plan.Table,
		TableReason: plan.TableReason, Ranges: plan.Ranges, SavedSHA256: plan.SavedSHA256, AlreadyZero: allZero(saved)}
	if opts.DryRun {
		return res, nil
	}
	if opts.ExpectSHA256 != "" && opts.ExpectSHA256 != saved.SHA256 {
		return nil, fmt.Errorf("%w: %s: the saved copy has sha256 %s, the disk now %s; plan again", ErrChangedSinceSaved, plan.Disk.Path, opts.ExpectSHA256, saved.SHA256)
	}
	if opts.Save != nil {
		if err := opts.Save(ctx, saved); err != nil {
			return nil, fmt.Errorf("save sectors of %s: %w", plan.Disk.Path, err)
		}
	} else if opts.ExpectSHA256 == "" {
		return nil, ErrNotSaved
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if opts.BeforeWrite != nil {
		if err := opts.BeforeWrite(plan); err != nil {
			return nil, err
		}
	}
	d, err := h.OpenDisk(ctx, plan.Disk.Path, true)
	if err != nil {
		return nil, fmt.Errorf("open %s for writing: %w", plan.Disk.Path, err)
	}
	defer d.Close()
	for _, r := range plan.Ranges {
		if err := d.Zero(ctx, r.Offset, r.Length); err != nil {
			return nil, fmt.Errorf("zero %s bytes %d..%d: %w", plan.Disk.Path, r.Offset, r.End()-1, err)
		}
		res.BytesZeroed += r.Length
	}
	if err := d.Flush(ctx); err != nil {
		return nil, err
	}
	back, _, err := readRanges(ctx, d, plan.Ranges)
	if err != nil {
		return nil, fmt.Errorf("read back %s: %w", plan.Disk.Path, err)
	}
	for _, b := range back {
		if !isZero(b.Data) {
			return nil, fmt.Errorf("%w: %s bytes %d..%d are not zero after the wipe", ErrVerifyFailed, plan.Disk.Path, b.Offset, b.End()-1)
		}
	}
	res.Verified = true
	return res, nil
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func allZero(s *SavedSectors) bool {
	for _, r := range s.Ranges {
		if !isZero(r.Data) {
			return false
		}
	}
	return true
}

// Verify checks the saved copy against its checksums.
func (s *SavedSectors) Verify() error {
	if s.Version != ProtocolVersion {
		return fmt.Errorf("saved sectors version %d, want %d", s.Version, ProtocolVersion)
	}
	if len(s.Ranges) == 0 {
		return fmt.Errorf("saved sectors of %s hold no range", s.Disk)
	}
	all := sha256.New()
	for _, r := range s.Ranges {
		if int64(len(r.Data)) != r.Length {
			return fmt.Errorf("saved range at %d holds %d bytes, want %d", r.Offset, len(r.Data), r.Length)
		}
		sum := sha256.Sum256(r.Data)
		if hex.EncodeToString(sum[:]) != r.SHA256 {
			return fmt.Errorf("saved range at %d: checksum mismatch (file damaged)", r.Offset)
		}
		all.Write(r.Data)
	}
	if hex.EncodeToString(all.Sum(nil)) != s.SHA256 {
		return fmt.Errorf("saved sectors of %s: checksum mismatch (file damaged)", s.Disk)
	}
	return nil
}

// WriteSavedFile writes s as JSON to path, durably (temp file, fsync,
// rename, fsync of the directory), mode 0600.
func WriteSavedFile(path string, s *SavedSectors) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".saved-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// ReadSavedFile reads and verifies a saved-sectors file.
func ReadSavedFile(path string) (*SavedSectors, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseSaved(b)
}

// ParseSaved parses and verifies saved sectors.
func ParseSaved(b []byte) (*SavedSectors, error) {
	var s SavedSectors
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("saved sectors: %w", err)
	}
	if err := s.Verify(); err != nil {
		return nil, err
	}
	return &s, nil
}

// RestoreOptions are the inputs of RestoreBootSector.
type RestoreOptions struct {
	Saved *SavedSectors
	// Disk overrides the saved disk path (the same disk under another
	// name); it must still have the saved size and sector size.
	Disk string
	// Force writes even over bytes that are neither zero nor the saved ones.
	Force  bool
	DryRun bool
	// BeforeWrite runs right before the first write.
	BeforeWrite func(*RestoreResult) error
}

// RestoreResult is the result of restore-boot-sector.
type RestoreResult struct {
	Version int       `json:"version"`
	DryRun  bool      `json:"dry_run,omitempty"`
	Disk    *DiskInfo `json:"disk"`
	Ranges  []Range   `json:"ranges"`
	// State before the restore: "zero" (as the wipe left it), "restored"
	// (already the saved bytes), "partial" (some ranges zero, the others
	// saved: an interrupted wipe or restore) or "changed" (something else;
	// needs Force).
	Before         string `json:"before"`
	BytesWritten   int64  `json:"bytes_written"`
	RestoredSHA256 string `json:"restored_sha256"`
	Verified       bool   `json:"verified"`
}

// ErrOtherDisk is wrapped (with ErrRestoreRefused) when the disk to
// restore is not the one the bytes were saved from: its WWID or serial
// differ, or cannot be read although the saved copy has them.
var ErrOtherDisk = errors.New("not the disk the boot sector was saved from")

// sameDisk checks the disk's identifiers against the saved copy's. Force
// does not override it.
func sameDisk(s *SavedSectors, info *DiskInfo) error {
	for _, id := range []struct{ what, saved, now string }{
		{"WWID", s.DiskWWID, info.WWID},
		{"serial", s.DiskSerial, info.Serial},
	} {
		if id.saved == "" || id.saved == id.now {
			continue
		}
		now := fmt.Sprintf("%q", id.now)
		if id.now == "" {
			now = "none readable"
		}
		return fmt.Errorf("%w: %w: %s has %s %s, the saved copy is of %s %q",
			ErrRestoreRefused, ErrOtherDisk, info.Path, id.what, now, id.what, id.saved)
	}
	return nil
}

// AllZero reports whether every saved byte is zero: a copy taken after an
// earlier wipe, which restores nothing.
func (s *SavedSectors) AllZero() bool {
	for _, r := range s.Ranges {
		if !isZero(r.Data) {
			return false
		}
	}
	return true
}

// RestoreBootSector puts saved sectors back and verifies them. It refuses
// a disk of another size and, unless forced, a disk whose ranges hold
// something other than zeroes (the wipe) or the saved bytes.
func RestoreBootSector(ctx context.Context, h host.Host, opts RestoreOptions) (*RestoreResult, error) {
	s := opts.Saved
	if s == nil {
		return nil, fmt.Errorf("%w: nothing saved to restore", ErrRestoreRefused)
	}
	if err := s.Verify(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRestoreRefused, err)
	}
	disk := opts.Disk
	if disk == "" {
		disk = s.Disk
	}
	info, err := ResolveDisk(ctx, h, disk)
	if err != nil {
		return nil, err
	}
	if err := sameDisk(s, info); err != nil {
		return nil, err
	}
	if info.SizeBytes != s.DiskSizeBytes || info.SectorSize != s.SectorSize {
		return nil, fmt.Errorf("%w: %s is %d bytes with %d-byte sectors, the saved copy is of a disk of %d bytes with %d-byte sectors",
			ErrRestoreRefused, info.Path, info.SizeBytes, info.SectorSize, s.DiskSizeBytes, s.SectorSize)
	}
	res := &RestoreResult{Version: ProtocolVersion, DryRun: opts.DryRun, Disk: info, RestoredSHA256: s.SHA256}
	var ranges []Range
	for _, r := range s.Ranges {
		if r.Offset < 0 || r.End() > info.SizeBytes || r.Offset%512 != 0 || r.Length%512 != 0 {
			return nil, fmt.Errorf("%w: saved range %d+%d does not fit %s", ErrRestoreRefused, r.Offset, r.Length, info.Path)
		}
		ranges = append(ranges, r.Range)
	}
	res.Ranges = ranges
	d, err := h.OpenDisk(ctx, info.Path, !opts.DryRun)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", info.Path, err)
	}
	defer d.Close()
	cur, _, err := readRanges(ctx, d, ranges)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", info.Path, err)
	}
	allSaved, allZero, changed := true, true, false
	for i, c := range cur {
		eqSaved := bytes.Equal(c.Data, s.Ranges[i].Data)
		z := isZero(c.Data)
		allSaved = allSaved && eqSaved
		allZero = allZero && z
		changed = changed || (!eqSaved && !z)
	}
	switch {
	case allSaved:
		res.Before = "restored"
	case allZero:
		res.Before = "zero"
	case !changed:
		res.Before = "partial"
	default:
		res.Before = "changed"
	}
	if res.Before == "changed" && !opts.Force {
		return nil, fmt.Errorf("%w: %s holds neither zeroes nor the saved bytes in the saved ranges: something wrote a new boot sector since the wipe; force overwrites it", ErrRestoreRefused, info.Path)
	}
	if opts.DryRun {
		return res, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if opts.BeforeWrite != nil {
		if err := opts.BeforeWrite(res); err != nil {
			return nil, err
		}
	}
	for _, r := range s.Ranges {
		if err := d.WriteAt(ctx, r.Data, r.Offset); err != nil {
			return nil, fmt.Errorf("write %s bytes %d..%d: %w", info.Path, r.Offset, r.End()-1, err)
		}
		res.BytesWritten += r.Length
	}
	if err := d.Flush(ctx); err != nil {
		return nil, err
	}
	_, sum, err := readRanges(ctx, d, ranges)
	if err != nil {
		return nil, fmt.Errorf("read back %s: %w", info.Path, err)
	}
	if sum != s.SHA256 {
		return nil, fmt.Errorf("%w: %s: restored ranges read back with sha256 %s, want %s", ErrVerifyFailed, info.Path, sum, s.SHA256)
	}
	res.Verified = true
	return res, nil
}
