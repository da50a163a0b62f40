package fleet

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"runtime"
)

// WriteAgentStub writes a minimal Linux ELF header for this machine's
// architecture: what the controller pushes as "reprov-agent" to the
// simulated nodes, whose OS runs the agent's steps itself on whatever was
// pushed. It is never run on a real machine.
func WriteAgentStub(path string) error {
	machine := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "386": elf.EM_386,
		"arm": elf.EM_ARM, "riscv64": elf.EM_RISCV, "ppc64le": elf.EM_PPC64, "s390x": elf.EM_S390}[runtime.GOARCH]
	var h elf.Header64
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	h.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	h.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	h.Type = uint16(elf.ET_EXEC)
	h.Machine = uint16(machine)
	h.Version = uint32(elf.EV_CURRENT)
	h.Ehsize = 64
	var b bytes.Buffer
	if err := binary.Write(&b, binary.LittleEndian, h); err != nil {
		return err
	}
	b.WriteString("reprov lab agent stand-in: the simulated node runs the agent steps itself\n")
	return os.WriteFile(path, b.Bytes(), 0o755)
}
