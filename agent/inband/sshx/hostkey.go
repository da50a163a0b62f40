package sshx

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/gofrs/flock"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// HostKeyError is a host key that was not accepted: unknown under the
// strict policy, or different from the one known_hosts has (which is never
// accepted). It names the node and every fingerprint, and matches
// ErrHostKey.
type HostKeyError struct {
	Node       string
	Address    string
	KnownHosts string
	// Presented is the fingerprint (SHA256:…) of the key the host showed.
	Presented     string
	PresentedType string
	// Known are the fingerprints known_hosts has for the address; empty
	// when the host is unknown.
	Known []string
}

// Changed reports whether known_hosts has another key for the address.
func (e *HostKeyError) Changed() bool { return len(e.Known) > 0 }

// Error implements error.
func (e *HostKeyError) Error() string {
	if e.Changed() {
		return fmt.Sprintf("node %s: %v: host key of %s CHANGED: %s has %s, the host presented %s (%s). "+
			"If the node was reinstalled, remove the old key (ssh-keygen -R %s -f %s); otherwise something is answering in its place",
			e.Node, ErrHostKey, e.Address, e.KnownHosts, strings.Join(e.Known, ", "), e.Presented, e.PresentedType,
			knownhosts.Normalize(e.Address), e.KnownHosts)
	}
	return fmt.Sprintf("node %s: %v: host key of %s is not in %s (it presented %s, %s); add it, or set ssh.host_key_policy: accept-new",
		e.Node, ErrHostKey, e.Address, e.KnownHosts, e.Presented, e.PresentedType)
}

// Unwrap returns ErrHostKey, and ErrHostKeyChanged when known_hosts has
// another key for the address.
func (e *HostKeyError) Unwrap() []error {
	if e.Changed() {
		return []error{ErrHostKey, ErrHostKeyChanged}
	}
	return []error{ErrHostKey}
}

// hostKeyCheck returns the host key callback for addr and the host key
// algorithms to ask for: those known_hosts has a key of, so a host with
// several keys is checked against the one on file; nil when it has none
// (the caller offers firstContactAlgorithms).
func hostKeyCheck(cfg Config, addr string) (ssh.HostKeyCallback, []string, error) {
	path := cfg.KnownHosts
	if path == "" {
		return nil, nil, fmt.Errorf("node %s: no known_hosts file (set ssh.known_hosts)", cfg.Node)
	}
	var kh ssh.HostKeyCallback
	var err error
	if cfg.KnownHostsCache != nil {
		kh, err = cfg.KnownHostsCache.load(path)
	} else {
		kh, err = parseKnownHosts(path)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("node %s: %w", cfg.Node, err)
	}
	algos := knownAlgorithms(kh, addr)
	cb := func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := kh(hostname, remote, key)
		if err == nil {
			return nil
		}
		var ke *knownhosts.KeyError
		if !errors.As(err, &ke) {
			var re *knownhosts.RevokedError
			if errors.As(err, &re) {
				return fmt.Errorf("node %s: %w: host key %s of %s is revoked in %s", cfg.Node, ErrHostKey, ssh.FingerprintSHA256(key), addr, path)
			}
			return fmt.Errorf("node %s: %w: %v", cfg.Node, ErrHostKey, err)
		}
		hke := &HostKeyError{Node: cfg.Node, Address: addr, KnownHosts: path,
			Presented: ssh.FingerprintSHA256(key), PresentedType: key.Type()}
		for _, w := range ke.Want {
			hke.Known = append(hke.Known, ssh.FingerprintSHA256(w.Key)+" ("+w.Key.Type()+")")
		}
		if hke.Changed() || cfg.HostKeyPolicy != PolicyAcceptNew {
			return hke
		}
		if cfg.NoRecord {
			cfg.Logger.Info("new host key accepted for this connection only, not recorded (plan mode)", "node", cfg.Node, "address", addr, "fingerprint", hke.Presented)
			return nil
		}
		if err := appendKnownHost(path, addr, key); err != nil {
			return fmt.Errorf("node %s: record new host key %s of %s: %w", cfg.Node, hke.Presented, addr, err)
		}
		cfg.Logger.Info("recorded new host key", "node", cfg.Node, "address", addr, "fingerprint", hke.Presented, "known_hosts", path)
		return nil
	}
	return cb, algos, nil
}

// Host key algorithm families, in the order offered to a host known_hosts
// has no key for. Modern first: dropbear 2022.83 advertises rsa-sha2-256
// even without an RSA host key and drops a client that picks it, and
// x/crypto/ssh's own order puts rsa-sha2-256 early (docs/inband.md).
var (
	modernHostKeyAlgos = []string{ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521}
	rsaHostKeyAlgos    = []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
)

// firstContactAlgorithms is the offer to a host without a key on file:
// try 0 puts ed25519/ECDSA before RSA, try 1 (after the host dropped the
// connection during key exchange) the other family first.
func firstContactAlgorithms(try int) []string {
	if try == 0 {
		return append(append([]string(nil), modernHostKeyAlgos...), rsaHostKeyAlgos...)
	}
	return append(append([]string(nil), rsaHostKeyAlgos...), modernHostKeyAlgos...)
}

// knownAlgorithms lists the host key algorithms of the keys known_hosts
// has for addr (nil when it has none).
func knownAlgorithms(kh ssh.HostKeyCallback, addr string) []string {
	probe, err := ssh.NewPublicKey(ed25519.PublicKey(make([]byte, ed25519.PublicKeySize)))
	if err != nil {
		return nil
	}
	err = kh(addr, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, probe)
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	add := func(a ...string) {
		for _, x := range a {
			if !seen[x] {
				seen[x] = true
				out = append(out, x)
			}
		}
	}
	for _, w := range ke.Want {
		switch t := w.Key.Type(); t {
		case ssh.KeyAlgoRSA:
			add(ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		default:
			add(t)
		}
	}
	return out
}

// appendKnownHost records key for addr (accept-new).
func appendKnownHost(path, addr string, key ssh.PublicKey) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	// Several nodes may learn their keys at once, in several processes.
	lock := flock.New(path + ".lock")
	if err := lock.Lock(); err != nil {
		return fmt.Errorf("lock %s: %w", path, err)
	}
	defer lock.Unlock()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(knownhosts.Line([]string{knownhosts.Normalize(addr)}, key) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
