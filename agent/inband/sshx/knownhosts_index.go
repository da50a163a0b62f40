package sshx

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"net"
	"os"
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
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return knownhosts.New()
	}
	if err != nil {
		return nil, fmt.Errorf("known_hosts %s: %w", path, err)
	}
	if idx, ok := indexKnownHosts(data, path); ok {
		return idx.callback(), nil
	}
	kh, err := knownhosts.New(path)
	if err != nil {
		return nil, fmt.Errorf("known_hosts %s: %w", path, err)
	}
	return kh, nil
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
	// Lines are split and trimmed as knownhosts does, so line numbers
	// and fields agree.
	sc := bufio.NewScanner(bytes.NewReader(data))
	n := 0
	for sc.Scan() {
		n++
		line := bytes.Trim(sc.Bytes(), " \t")
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		addrs, key, ok := plainLine(line)
		if !ok {
			return nil, false
		}
		ik := indexedKey{known: knownhosts.KnownKey{Key: key, Filename: path, Line: n}, blob: key.Marshal()}
		for i, a := range addrs {
			if !containsAddr(addrs[:i], a) { // one line is one key, however many patterns name the address
				idx.keys[a] = append(idx.keys[a], ik)
			}
		}
	}
	if sc.Err() != nil {
		return nil, false
	}
	return idx, true
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
