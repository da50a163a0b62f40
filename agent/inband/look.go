package inband

import (
	"bytes"
	"context"
	"fmt"

	"github.com/reprov/reprov/agent/inband/steps"
)

// SectorState is what a read-only look at a disk's first sector found,
// compared with the copy saved before a wipe.
type SectorState string

// Sector states.
const (
	// SectorIntact: LBA 0 holds the saved bytes: the wipe did not happen.
	SectorIntact SectorState = "intact"
	// SectorZero: LBA 0 is zero: the wipe happened.
	SectorZero SectorState = "zero"
	// SectorOther: LBA 0 is neither: something else wrote it.
	SectorOther SectorState = "other"
)

// LookAtBootSector reads LBA 0 of the saved copy's disk, without writing
// anything, and compares it with the copy: how a controller settles a wipe
// whose outcome was never recorded (docs/architecture.md, "Settling by
// looking").
func (s *Session) LookAtBootSector(ctx context.Context, saved *steps.SavedSectors) (SectorState, error) {
	if saved == nil || len(saved.Ranges) == 0 || saved.SectorSize <= 0 {
		return "", fmt.Errorf("node %s: the saved boot sector has no data to compare", s.node.Name)
	}
	first := saved.Ranges[0]
	if first.Offset != 0 || len(first.Data) < saved.SectorSize {
		return "", fmt.Errorf("node %s: the saved copy does not start at LBA 0", s.node.Name)
	}
	_, cur, err := s.steps.planWipe(ctx, saved.Disk, steps.ScopeMBR)
	if err != nil {
		return "", fmt.Errorf("node %s: read LBA 0 of %s: %w", s.node.Name, saved.Disk, err)
	}
	if cur == nil || len(cur.Ranges) == 0 || len(cur.Ranges[0].Data) < saved.SectorSize {
		return "", fmt.Errorf("node %s: read LBA 0 of %s: no data", s.node.Name, saved.Disk)
	}
	now := cur.Ranges[0].Data[:saved.SectorSize]
	was := first.Data[:saved.SectorSize]
	switch {
	case bytes.Equal(now, was) && !allZeroBytes(was):
		return SectorIntact, nil
	case allZeroBytes(now):
		return SectorZero, nil
	}
	return SectorOther, nil
}

func allZeroBytes(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
