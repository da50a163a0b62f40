package sshx

import (
	"fmt"
	"os"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// KnownHosts caches parsed known_hosts files for the dials of one
// controller (Config.KnownHostsCache): a file is read again only when it
// was replaced (ssh-keygen -R writes a new file) or its size or
// modification time changed (recording a new key changes both), and only
// its new lines when lines were appended.
// Without it every dial parses the whole file, which at fleet scale is
// work proportional to the fleet per dial and one parsed copy of the file
// per connection in flight (docs/performance.md). It is safe for
// concurrent use; the zero value is not: use NewKnownHosts.
type KnownHosts struct {
	mu    sync.Mutex
	files map[string]knownHostsFile
	// extended counts the versions read by extending the one before
	// (tests).
	extended int
}

type knownHostsFile struct {
	fi os.FileInfo // when it was read
	v  knownHostsVersion
}

// same reports whether fi is the file as it was read: the same file (a
// rewrite that replaces it, as ssh-keygen -R does, is another), size and
// modification time.
func (f knownHostsFile) same(fi os.FileInfo) bool {
	return f.fi != nil && os.SameFile(f.fi, fi) && f.fi.Size() == fi.Size() && f.fi.ModTime().Equal(fi.ModTime())
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
	f, ok := k.files[path]
	if ok && f.same(fi) {
		return f.v.cb, nil
	}
	// Read under the lock: the dials that find the file changed wait for
	// one read instead of each doing its own. A file that only had lines
	// appended (accept-new recording a key, here or in another process)
	// is read from where the last version ended: a fleet's first contact
	// appends a line per node, and reading the whole file each time made
	// it quadratic in the fleet (docs/performance.md).
	v, extended := f.v.extend(path)
	if extended {
		k.extended++
	} else if v, err = readKnownHosts(path); err != nil {
		return nil, err
	}
	k.files[path] = knownHostsFile{fi: fi, v: v}
	return v.cb, nil
}
