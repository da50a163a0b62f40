package sshx

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// parseKnownHosts reads the known_hosts file at path into a host key
// callback; a missing file is an empty one.
//
// x/crypto's knownhosts decides a key by reading every line of the file,
// which at fleet scale is a search through the whole fleet on every dial
// (and the controller dials a rebooting node every second:
// docs/performance.md). A file whose every line is plain (no marker, no
// hashed name, no wildcard or negated pattern: what reprov's accept-new
// writes and what most fleets keep) is read here into an index by address
// instead, which gives the same answer as knownhosts without the search.
// Any other file is left to knownhosts whole, so the index never has to
// know what hashing, wildcards, @revoked or @cert-authority mean.
func parseKnownHosts(path string) (ssh.HostKeyCallback, error) {
	v, err := readKnownHosts(path)
	return v.cb, err
}

// knownHostsVersion is one version of a known_hosts file as read.
type knownHostsVersion struct {
	cb ssh.HostKeyCallback
	// When the file is indexed: the index, the bytes it read and their
	// SHA-256, and their lines; what extending it to the same file with
	// lines appended needs (extend).
	idx   *knownHostsIndex
	size  int64
	sum   [sha256.Size]byte
	lines int
}

// readKnownHosts reads path whole (parseKnownHosts); a missing file is an
// empty one.
func readKnownHosts(path string) (knownHostsVersion, error) {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		cb, err := knownhosts.New()
		return knownHostsVersion{cb: cb}, err
	}
	if err != nil {
		return knownHostsVersion{}, fmt.Errorf("known_hosts %s: %w", path, err)
	}
	idx := &knownHostsIndex{keys: make(map[hostPort][]indexedKey)}
	if lines, ok := idx.add(data, path, 0); ok {
		return knownHostsVersion{cb: idx.callback(), idx: idx, size: int64(len(data)), sum: sha256.Sum256(data), lines: lines}, nil
	}
	kh, err := knownhosts.New(path)
	if err != nil {
		return knownHostsVersion{}, fmt.Errorf("known_hosts %s: %w", path, err)
	}
	return knownHostsVersion{cb: kh}, nil
}

// extend returns the version of the file at path that is v with lines
// appended, reading only those lines; ok is false when the file is not v
// with whole plain lines appended (rewritten, shortened, not indexed, a
// line that is not plain), and it must be read whole.
func (v knownHostsVersion) extend(path string) (next knownHostsVersion, ok bool) {
	if v.idx == nil || v.size == 0 {
		return next, false
	}
	data, err := os.ReadFile(path)
	if err != nil || int64(len(data)) <= v.size || data[v.size-1] != '\n' {
		return next, false
	}
	h := sha256.New()
	h.Write(data[:v.size])
	if !bytes.Equal(h.Sum(nil), v.sum[:]) {
		return next, false
	}
	idx := &knownHostsIndex{keys: maps.Clone(v.idx.keys)}
	lines, ok := idx.add(data[v.size:], path, v.lines)
	if !ok {
		return next, false
	}
	next = knownHostsVersion{cb: idx.callback(), idx: idx, size: int64(len(data)), lines: lines}
	h.Write(data[v.size:])
	h.Sum(next.sum[:0])
	return next, true
}

// hostPort is an address as known_hosts matches it.
type hostPort struct{ host, port string }

// knownHostsIndex is a known_hosts file of plain lines, by address.
type knownHostsIndex struct {
	// keys are the keys on file for an address, in the file's order.
	keys map[hostPort][]indexedKey
}

type indexedKey struct {
	known knownhosts.KnownKey
	blob  []byte // known.Key.Marshal()
}

// indexKnownHosts indexes data (the file at path) when every line is
// blank, a comment or plain; ok is false otherwise, and for anything
// knownhosts would report as an error (an unreadable line, an overlong
// line), which knownhosts then reports.
func indexKnownHosts(data []byte, path string) (idx *knownHostsIndex, ok bool) {
	idx = &knownHostsIndex{keys: make(map[hostPort][]indexedKey)}
	if _, ok := idx.add(data, path, 0); !ok {
		return nil, false
	}
	return idx, true
}

// add indexes data, the lines of the file at path after its first n, and
// returns the number of lines read in all; ok is false as for
// indexKnownHosts, and idx is then not to be used. The key lists it
// appends to are copied first: an index may share them with the version
// it was cloned from, which dials may still be reading.
func (idx *knownHostsIndex) add(data []byte, path string, n int) (lines int, ok bool) {
	// Lines are split and trimmed as knownhosts does, so line numbers
	// and fields agree.
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		n++
		line := bytes.Trim(sc.Bytes(), " \t")
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		addrs, key, ok := plainLine(line)
		if !ok {
			return 0, false
		}
		ik := indexedKey{known: knownhosts.KnownKey{Key: key, Filename: path, Line: n}, blob: key.Marshal()}
		for i, a := range addrs {
			if !containsAddr(addrs[:i], a) { // one line is one key, however many patterns name the address
				idx.keys[a] = append(slices.Clip(idx.keys[a]), ik)
			}
		}
	}
	if sc.Err() != nil {
		return 0, false
	}
	return n, true
}

func containsAddr(as []hostPort, a hostPort) bool {
	for _, b := range as {
		if a == b {
			return true
		}
	}
	return false
}

// plainLine parses a line the way knownhosts does, and returns the
// addresses it names; ok is false for a marker, a hashed name, a wildcard
// or negated pattern, and a line knownhosts would not accept.
func plainLine(line []byte) (addrs []hostPort, key ssh.PublicKey, ok bool) {
	field := func(b []byte) (string, []byte) {
		i := bytes.IndexAny(b, "\t ")
		if i < 0 {
			return string(b), nil
		}
		return string(b[:i]), bytes.Trim(b[i:], " \t")
	}
	patterns, rest := field(line)
	if patterns == "" || patterns[0] == '@' || patterns[0] == '|' || len(rest) == 0 {
		return nil, nil, false
	}
	typ, rest := field(rest)
	if len(rest) == 0 {
		return nil, nil, false
	}
	blob, _ := field(rest)
	raw, err := base64.StdEncoding.DecodeString(blob)
	if err != nil {
		return nil, nil, false
	}
	if key, err = ssh.ParsePublicKey(raw); err != nil || key.Type() != typ {
		return nil, nil, false
	}
	for p := range strings.SplitSeq(patterns, ",") {
		if p == "" {
			continue
		}
		if p[0] == '!' || strings.ContainsAny(p, "*?") {
			return nil, nil, false
		}
		host, port, err := net.SplitHostPort(p)
		if err != nil {
			if p[0] == '[' {
				return nil, nil, false
			}
			host, port = p, "22"
		}
		addrs = append(addrs, hostPort{host, port})
	}
	return addrs, key, true
}

// callback is the host key callback knownhosts.New would return for the
// same file: a certificate is checked against the file's authorities (a
// plain file has none), any other key against the keys on file for the
// address, with a *knownhosts.KeyError naming them when it is not one.
func (idx *knownHostsIndex) callback() ssh.HostKeyCallback {
	cc := &ssh.CertChecker{
		IsHostAuthority: func(ssh.PublicKey, string) bool { return false },
		IsRevoked:       func(*ssh.Certificate) bool { return false },
		HostKeyFallback: idx.check,
	}
	return cc.CheckHostKey
}

// check decides a key that is not a certificate, by the name dialled when
// there is one, else by the remote address (as knownhosts does).
func (idx *knownHostsIndex) check(address string, remote net.Addr, key ssh.PublicKey) error {
	host, port, err := net.SplitHostPort(remote.String())
	if err != nil {
		return fmt.Errorf("knownhosts: SplitHostPort(%s): %v", remote, err)
	}
	if address != "" {
		if host, port, err = net.SplitHostPort(address); err != nil {
			return fmt.Errorf("knownhosts: SplitHostPort(%s): %v", address, err)
		}
	}
	keyErr := &knownhosts.KeyError{}
	blob := key.Marshal()
	for _, k := range idx.keys[hostPort{host, port}] {
		keyErr.Want = append(keyErr.Want, k.known)
		if bytes.Equal(k.blob, blob) {
			return nil
		}
	}
	return keyErr
}
