package inband

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestAgentFilesReadOnceAndSeeANewBuild: sessions sharing an AgentFiles
// get one copy of the agent binary while the file is unchanged, and the
// new build (its new SHA-256) as soon as the file changes.
func TestAgentFilesReadOnceAndSeeANewBuild(t *testing.T) {
	p := filepath.Join(t.TempDir(), "reprov-agent")
	write := func(pad int, mod time.Time) {
		var h elf.Header64
		copy(h.Ident[:], elf.ELFMAG)
		h.Ident[elf.EI_CLASS], h.Ident[elf.EI_DATA], h.Ident[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)
		h.Type, h.Machine, h.Version, h.Ehsize = uint16(elf.ET_EXEC), uint16(elf.EM_X86_64), uint32(elf.EV_CURRENT), 64
		var b bytes.Buffer
		if err := binary.Write(&b, binary.LittleEndian, h); err != nil {
			t.Fatal(err)
		}
		b.Write(make([]byte, pad))
		if err := os.WriteFile(p, b.Bytes(), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Now().Add(-time.Hour)
	write(0, t0)
	a := NewAgentFiles()
	bin1, sum1, m, err := a.read(p)
	if err != nil || m != elf.EM_X86_64 {
		t.Fatalf("read: machine %v, %v", m, err)
	}
	bin2, sum2, _, err := a.read(p)
	if err != nil || &bin2[0] != &bin1[0] || sum2 != sum1 {
		t.Fatalf("second read of an unchanged file: a copy of its own (%v), or sum %s != %s", err, sum2, sum1)
	}
	write(16, t0.Add(time.Minute))
	bin3, sum3, _, err := a.read(p)
	if err != nil || len(bin3) != len(bin1)+16 || sum3 == sum1 {
		t.Fatalf("after a new build: %d bytes (want %d), sum changed %v, %v", len(bin3), len(bin1)+16, sum3 != sum1, err)
	}
	if _, _, _, err := a.read(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("a missing agent binary read without error")
	}
}
