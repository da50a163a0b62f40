package sshx

import (
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// KnownHosts caches parsed known_hosts files for the dials of one
// controller (Config.KnownHostsCache): a file is parsed again only when its
// size or modification time changed (recording a new key changes both).
// Without it every dial parses the whole file, which at fleet scale is
// work proportional to the fleet per dial and one parsed copy of the file
// per connection in flight (docs/performance.md). It is safe for
// concurrent use; the zero value is not: use NewKnownHosts.
type KnownHosts struct {
	mu    sync.Mutex
	files map[string]knownHostsFile
}

type knownHostsFile struct {
	size int64
	mod  time.Time
	cb   ssh.HostKeyCallback
}

// NewKnownHosts returns an empty cache.
func NewKnownHosts() *KnownHosts {
	return &KnownHosts{files: make(map[string]knownHostsFile)}
}

// load returns the callback of path, parsed at most once per version of
// the file; a missing file is an empty one (not cached).
func (k *KnownHosts) load(path string) (ssh.HostKeyCallback, error) {
	fi, err := os.Stat(path)
	if os.IsNotExist(err) {
		return knownhosts.New()
	}
	if err != nil {
		return nil, fmt.Errorf("known_hosts %s: %w", path, err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if f, ok := k.files[path]; ok && f.size == fi.Size() && f.mod.Equal(fi.ModTime()) {
		return f.cb, nil
	}
	// Parsed under the lock: the dials that find the file changed wait
	// for one parse instead of each doing its own.
	cb, err := parseKnownHosts(path)
	if err != nil {
		return nil, err
	}
	k.files[path] = knownHostsFile{size: fi.Size(), mod: fi.ModTime(), cb: cb}
	return cb, nil
}
