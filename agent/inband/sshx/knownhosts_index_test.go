package sshx

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	crand "crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// keyPool is the keys the generated known_hosts files and checks use: two
// ed25519, one ECDSA, and a host certificate of the first ed25519 key.
type keyPool struct {
	keys []ssh.PublicKey
	cert *ssh.Certificate
}

func newKeyPool(t testing.TB) keyPool {
	t.Helper()
	var p keyPool
	var signer ssh.Signer
	for i := range 2 {
		priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{byte(i + 1)}, ed25519.SeedSize))
		s, err := ssh.NewSignerFromKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		signer = s
		p.keys = append(p.keys, s.PublicKey())
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(&ec.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	p.keys = append(p.keys, k)
	p.cert = &ssh.Certificate{Key: p.keys[0], CertType: ssh.HostCert,
		ValidPrincipals: []string{"127.0.0.1", "node1"}, ValidBefore: ssh.CertTimeInfinity}
	if err := p.cert.SignCert(crand.Reader, signer); err != nil {
		t.Fatal(err)
	}
	return p
}

// Patterns known_hosts lines name hosts with: plain ones the index
// answers, and the others that leave the file to knownhosts.
var (
	plainPatterns = []string{"127.0.0.1", "127.0.0.2", "[127.0.0.1]:2222", "127.0.0.1:22", "[127.0.0.1]:22",
		"node1", "NODE1", "node1:2222", "::1", "[::1]:22", "[::1]:2222", ""}
	otherPatterns = []string{"*", "127.0.0.*", "!node1", "node1,!node1", "127.0.0.1,!127.0.0.1", "node?", "[::1]", "[node1:22",
		knownhosts.HashHostname("127.0.0.1"), knownhosts.HashHostname("[127.0.0.1]:2222")}
)

// Kinds of generated known_hosts files.
const (
	genPlain    = iota // plain lines, comments and blank lines
	genPatterns        // and patterns that are not plain: hashed names, wildcards, negations
	genAny             // and markers, and lines knownhosts cannot read
	genKinds
)

// genKnownHosts writes a known_hosts file of up to 12 lines of a kind.
func genKnownHosts(r *rand.Rand, keys keyPool, kind int) string {
	var b strings.Builder
	sep := func() string { return []string{" ", "\t", "  ", " \t "}[r.IntN(4)] }
	blob := func() (string, string) {
		k := keys.keys[r.IntN(len(keys.keys))]
		return k.Type(), base64.StdEncoding.EncodeToString(k.Marshal())
	}
	for range r.IntN(13) {
		switch c := r.IntN(10); {
		case c == 0:
			b.WriteString([]string{"# a comment", "", "   ", "\t#x"}[r.IntN(4)])
		case c <= 6 || kind != genAny:
			var pats []string
			for range 1 + r.IntN(3) {
				pats = append(pats, plainPatterns[r.IntN(len(plainPatterns))])
			}
			if kind != genPlain && r.IntN(3) == 0 {
				pats[r.IntN(len(pats))] = otherPatterns[r.IntN(len(otherPatterns))]
			}
			hosts := strings.Join(pats, ",")
			if strings.Trim(hosts, ",") == "" {
				hosts += "node1" // a line names at least one host
			}
			typ, k := blob()
			b.WriteString([]string{"", " ", "\t"}[r.IntN(3)] + hosts + sep() + typ + sep() + k)
			if r.IntN(4) == 0 {
				b.WriteString(sep() + "a comment")
			}
		case c == 7:
			typ, k := blob()
			b.WriteString([]string{"@revoked", "@cert-authority", "@bogus"}[r.IntN(3)] + " " +
				plainPatterns[r.IntN(len(plainPatterns)-1)] + " " + typ + " " + k)
		default:
			typ, k := blob()
			b.WriteString([]string{"node1", "node1 " + typ, "node1 " + typ + " !!!", "node1 ssh-rsa " + k,
				"node1 " + typ + " " + k[:len(k)/2]}[r.IntN(5)])
		}
		b.WriteString([]string{"\n", "\r\n"}[r.IntN(2)])
	}
	return b.String()
}

// sameOutcome describes how two host key decisions differ ("" when they
// do not): both accept, or both refuse with the same keys on file, the same
// revoked key, or the same message.
func sameOutcome(got, want error) string {
	var gk, wk *knownhosts.KeyError
	var gr, wr *knownhosts.RevokedError
	switch {
	case got == nil && want == nil:
		return ""
	case got == nil || want == nil:
		return fmt.Sprintf("got %v, want %v", got, want)
	case errors.As(want, &wk):
		if !errors.As(got, &gk) {
			return fmt.Sprintf("got %v, want a KeyError", got)
		}
		if len(gk.Want) != len(wk.Want) {
			return fmt.Sprintf("got %d keys on file, want %d", len(gk.Want), len(wk.Want))
		}
		for i := range wk.Want {
			g, w := gk.Want[i], wk.Want[i]
			if g.Filename != w.Filename || g.Line != w.Line || !bytes.Equal(g.Key.Marshal(), w.Key.Marshal()) {
				return fmt.Sprintf("key on file %d: got %s, want %s", i, g.String(), w.String())
			}
		}
		return ""
	case errors.As(want, &wr):
		if !errors.As(got, &gr) || gr.Revoked.Line != wr.Revoked.Line {
			return fmt.Sprintf("got %v, want %v", got, want)
		}
		return ""
	case got.Error() != want.Error():
		return fmt.Sprintf("got %q, want %q", got, want)
	}
	return ""
}

// checkAgainstKnownhosts checks every pool key and the certificate, for a
// range of names dialled, with cb and with knownhosts.New on the same file.
func checkAgainstKnownhosts(t *testing.T, path, content string, cb ssh.HostKeyCallback, keys keyPool) {
	t.Helper()
	want, err := knownhosts.New(path)
	if err != nil {
		t.Fatalf("knownhosts refused a file the index read: %v\n%s", err, content)
	}
	got, wanted := decisions(cb, keys), decisions(want, keys)
	for i := range wanted {
		if d := sameOutcome(got[i].err, wanted[i].err); d != "" {
			t.Fatalf("%s: %s\nknown_hosts:\n%s", got[i].what, d, content)
		}
	}
}

type decision struct {
	what string
	err  error
}

// decisions is cb's decision on every pool key and the certificate, for a
// range of names dialled.
func decisions(cb ssh.HostKeyCallback, keys keyPool) []decision {
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 22}
	addrs := []string{""}
	for _, h := range []string{"127.0.0.1", "127.0.0.2", "node1", "NODE1", "::1", "node2"} {
		for _, p := range []string{"22", "2222"} {
			addrs = append(addrs, net.JoinHostPort(h, p))
		}
	}
	presented := append(append([]ssh.PublicKey(nil), keys.keys...), keys.cert)
	var out []decision
	for _, a := range addrs {
		for i, k := range presented {
			out = append(out, decision{fmt.Sprintf("dialling %q, key %d", a, i), cb(a, remote, k)})
		}
	}
	return out
}

// The index decides every key as x/crypto's knownhosts does, on files of
// plain lines (which it indexes) and on any other file (which it leaves to
// knownhosts): the same acceptance, and the same keys on file, lines and
// order when it refuses.
func TestKnownHostsIndexAgreesWithKnownhosts(t *testing.T) {
	keys := newKeyPool(t)
	dir := t.TempDir()
	indexed := 0
	const files = 3000
	for i := range files {
		r := rand.New(rand.NewPCG(uint64(i), 7))
		content := genKnownHosts(r, keys, i%genKinds)
		path := filepath.Join(dir, fmt.Sprintf("known_hosts.%d", i))
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if idx, ok := indexKnownHosts([]byte(content), path); ok {
			indexed++
			checkAgainstKnownhosts(t, path, content, idx.callback(), keys)
		} else if i%genKinds == genPlain {
			t.Fatalf("a file of plain lines was not indexed:\n%s", content)
		}
		cb, err := parseKnownHosts(path)
		if _, werr := knownhosts.New(path); (err == nil) != (werr == nil) {
			t.Fatalf("parseKnownHosts: %v, knownhosts: %v\n%s", err, werr, content)
		}
		if err == nil {
			checkAgainstKnownhosts(t, path, content, cb, keys)
		}
	}
	// A third of the files are plain by construction; some of the others
	// happen to be too. Both paths were compared.
	if indexed < files/genKinds || indexed == files {
		t.Fatalf("%d of %d files indexed, want at least %d and not all", indexed, files, files/genKinds)
	}
}

// FuzzKnownHostsIndex: for any file content the index accepts, the index
// and knownhosts agree on every check.
func FuzzKnownHostsIndex(f *testing.F) {
	keys := newKeyPool(f)
	for i := range 20 {
		f.Add(genKnownHosts(rand.New(rand.NewPCG(uint64(i), 11)), keys, i%genKinds))
	}
	f.Fuzz(func(t *testing.T, content string) {
		path := filepath.Join(t.TempDir(), "known_hosts")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		idx, ok := indexKnownHosts([]byte(content), path)
		if !ok {
			return
		}
		checkAgainstKnownhosts(t, path, content, idx.callback(), keys)
	})
}

// BenchmarkKnownHostsCheck10k: one dial's host key decisions (the
// algorithms on file, then the key presented) against a fleet's
// known_hosts of 10,000 plain lines, by x/crypto's knownhosts and by the
// index (docs/performance.md).
func BenchmarkKnownHostsCheck10k(b *testing.B) {
	keys := newKeyPool(b)
	var content strings.Builder
	for i := range 10000 {
		content.WriteString(knownhosts.Line([]string{fmt.Sprintf("127.%d.%d.%d:22", 100+i>>16, i>>8&0xff, i&0xff)}, keys.keys[i%2]) + "\n")
	}
	path := filepath.Join(b.TempDir(), "known_hosts")
	if err := os.WriteFile(path, []byte(content.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	full, err := knownhosts.New(path)
	if err != nil {
		b.Fatal(err)
	}
	indexed, err := parseKnownHosts(path)
	if err != nil {
		b.Fatal(err)
	}
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 22}
	for _, c := range []struct {
		name string
		cb   ssh.HostKeyCallback
	}{{"knownhosts", full}, {"index", indexed}} {
		b.Run(c.name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				addr := fmt.Sprintf("127.%d.%d.%d:22", 100+i>>16, i>>8&0xff, i&0xff)
				if knownAlgorithms(c.cb, addr) == nil {
					b.Fatalf("%s: no algorithms on file", addr)
				}
				if err := c.cb(addr, remote, keys.keys[i%2]); err != nil {
					b.Fatal(err)
				}
				i = (i + 7919) % 10000
			}
		})
	}
}

// A cached known_hosts that grows, is rewritten, or gains a line the index
// does not take decides as knownhosts does on the file as it is now, after
// every change; lines appended to an indexed file are read from where the
// last version ended, and only then.
func TestKnownHostsCacheFollowsChanges(t *testing.T) {
	keys := newKeyPool(t)
	dir := t.TempDir()
	cache := NewKnownHosts()
	full := 0
	for i := range 200 {
		r := rand.New(rand.NewPCG(uint64(i), 13))
		path := filepath.Join(dir, fmt.Sprintf("known_hosts.%d", i))
		content := genKnownHosts(r, keys, genPlain)
		var prev ssh.HostKeyCallback
		var prevDecisions []decision
		for step := range 10 {
			switch c := r.IntN(10); {
			case step == 0:
			case c < 6: // accept-new: whole lines appended
				content += genKnownHosts(r, keys, genPlain)
			case c == 6: // lines the index does not take
				content += genKnownHosts(r, keys, genAny)
			case c == 7: // a last line without its newline, continued later
				line := knownhosts.Line([]string{"127.0.0.1"}, keys.keys[r.IntN(len(keys.keys))])
				content += line[:len(line)-r.IntN(3)]
			case c == 8 && content != "": // ssh-keygen -R: a line removed
				_, rest, _ := strings.Cut(content, "\n")
				content = rest
			default: // a line added in front (or replacing the first): another version, not an append
				if r.IntN(2) == 0 {
					_, content, _ = strings.Cut(content, "\n")
				}
				content = knownhosts.Line([]string{"node1", "127.0.0.2", "[127.0.0.1]:2222"}, keys.keys[r.IntN(len(keys.keys))]) + "\n" + content
			}
			tmp := path + ".tmp"
			if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, path); err != nil {
				t.Fatal(err)
			}
			before := cache.extended
			cb, err := cache.load(path)
			if _, werr := knownhosts.New(path); (err == nil) != (werr == nil) {
				t.Fatalf("cache: %v, knownhosts: %v\n%s", err, werr, content)
			}
			if err != nil {
				continue
			}
			if cache.extended == before {
				full++
			}
			checkAgainstKnownhosts(t, path, content, cb, keys)
			// The version before, which dials may still hold, is unchanged.
			if prev != nil {
				for j, d := range decisions(prev, keys) {
					if diff := sameOutcome(d.err, prevDecisions[j].err); diff != "" {
						t.Fatalf("the version before, after the file changed: %s: %s", d.what, diff)
					}
				}
			}
			prev, prevDecisions = cb, decisions(cb, keys)
		}
	}
	if cache.extended < 200 || full < 200 {
		t.Fatalf("%d versions read by extending the one before, %d read whole: want both paths taken at least 200 times", cache.extended, full)
	}
}

// BenchmarkKnownHostsRecordedKey10k: the next dial's read of a 10,000-line
// known_hosts after a key was appended to it (accept-new), by reading the
// file whole and by reading the appended line only (docs/performance.md).
func BenchmarkKnownHostsRecordedKey10k(b *testing.B) {
	keys := newKeyPool(b)
	line := func(i int) string {
		return knownhosts.Line([]string{fmt.Sprintf("127.%d.%d.%d:22", 100+i>>16, i>>8&0xff, i&0xff)}, keys.keys[i%2]) + "\n"
	}
	for _, extend := range []bool{false, true} {
		name := map[bool]string{false: "whole", true: "appended"}[extend]
		b.Run(name, func(b *testing.B) {
			var content strings.Builder
			for i := range 10000 {
				content.WriteString(line(i))
			}
			path := filepath.Join(b.TempDir(), "known_hosts")
			if err := os.WriteFile(path, []byte(content.String()), 0o600); err != nil {
				b.Fatal(err)
			}
			v, err := readKnownHosts(path)
			if err != nil {
				b.Fatal(err)
			}
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			i := 10000
			for b.Loop() {
				if _, err := f.WriteString(line(i)); err != nil {
					b.Fatal(err)
				}
				i++
				var next knownHostsVersion
				if extend {
					var ok bool
					if next, ok = v.extend(path); !ok {
						b.Fatal("not extended")
					}
				} else {
					next, err = readKnownHosts(path)
				}
				if err != nil || next.idx == nil {
					b.Fatalf("not indexed: %v", err)
				}
				v = next
			}
		})
	}
}
