package inband

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"time"
)

// AgentFiles keeps the agent binaries that sessions push, each read once
// per version of its file (size and modification time) and shared
// read-only: a controller pushing the agent to 500 nodes at once holds
// one copy of it, not 500 (and hashes it once). Safe for concurrent use.
type AgentFiles struct {
	mu    sync.Mutex
	files map[string]*agentFile
}

// agentFile is one version of an agent binary, as read.
type agentFile struct {
	size    int64
	mod     time.Time
	bin     []byte
	sha     string
	machine elf.Machine
}

// NewAgentFiles returns an empty cache of agent binaries.
func NewAgentFiles() *AgentFiles { return &AgentFiles{files: map[string]*agentFile{}} }

// read returns the binary at path, its SHA-256 (hex) and ELF machine,
// from the cache when the file has not changed since it was read (a nil
// AgentFiles reads every time). bin must not be modified.
func (a *AgentFiles) read(path string) (bin []byte, sum string, machine elf.Machine, err error) {
	if a == nil {
		f, err := readAgentFile(path, nil)
		if err != nil {
			return nil, "", elf.EM_NONE, err
		}
		return f.bin, f.sha, f.machine, nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, "", elf.EM_NONE, fmt.Errorf("read agent binary: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if f, ok := a.files[path]; ok && f.size == fi.Size() && f.mod.Equal(fi.ModTime()) {
		return f.bin, f.sha, f.machine, nil
	}
	f, err := readAgentFile(path, fi)
	if err != nil {
		return nil, "", elf.EM_NONE, err
	}
	a.files[path] = f
	return f.bin, f.sha, f.machine, nil
}

// readAgentFile reads and checks one agent binary; fi, when known, is its
// file's before the read.
func readAgentFile(path string, fi os.FileInfo) (*agentFile, error) {
	bin, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read agent binary: %w", err)
	}
	ef, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return nil, fmt.Errorf("agent binary %s is not a Linux ELF executable: %w", path, err)
	}
	sum := sha256.Sum256(bin)
	f := &agentFile{bin: bin, sha: hex.EncodeToString(sum[:]), machine: ef.Machine}
	if fi != nil {
		f.size, f.mod = fi.Size(), fi.ModTime()
		if int64(len(bin)) != fi.Size() {
			// Changed while being read: not kept (the next read looks again).
			f.size = -1
		}
	}
	return f, nil
}
