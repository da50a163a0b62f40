package sshx

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// A cached known_hosts sees a key recorded after it was first parsed, and
// still refuses a key that differs from the one on file.
func TestKnownHostsCacheSeesNewKeys(t *testing.T) {
	newKey := func() ssh.PublicKey {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		k, err := ssh.NewPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	path := filepath.Join(t.TempDir(), "known_hosts")
	a, b, other := newKey(), newKey(), newKey()
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 22}
	cache := NewKnownHosts()

	if err := appendKnownHost(path, "127.0.0.5:22", a); err != nil {
		t.Fatal(err)
	}
	cb, err := cache.load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := cb("127.0.0.5:22", remote, a); err != nil {
		t.Fatalf("known key refused: %v", err)
	}
	if err := appendKnownHost(path, "127.0.0.6:22", b); err != nil {
		t.Fatal(err)
	}
	cb, err = cache.load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := cb("127.0.0.6:22", remote, b); err != nil {
		t.Fatalf("a key recorded after the first parse is refused: %v", err)
	}
	var ke *knownhosts.KeyError
	if err := cb("127.0.0.5:22", remote, other); !errors.As(err, &ke) || len(ke.Want) != 1 {
		t.Fatalf("a changed key: %v, want a KeyError naming the key on file", err)
	}
}
