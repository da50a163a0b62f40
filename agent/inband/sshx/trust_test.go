package sshx_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/reprov/reprov/agent/inband/sshx"
	"github.com/reprov/reprov/lab/dropbear"
	"github.com/reprov/reprov/lab/sshd"
)

// TestDropbearFirstContact: dropbear 2022.83 with only an ed25519 host key
// advertises rsa-sha2-256 and drops a client that picks it. On first
// contact under accept-new reprov must get through the handshake, record
// the ed25519 key, and log in.
func TestDropbearFirstContact(t *testing.T) {
	srv := dropbear.Start(t)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	cfg := sshx.Config{Node: "initramfs-01", Address: srv.Addr, User: srv.User, IdentityFiles: []string{srv.ClientKeyFile},
		KnownHosts: kh, HostKeyPolicy: sshx.PolicyAcceptNew, DialTimeout: 5 * time.Second, AuthTimeout: 10 * time.Second}
	c, err := sshx.Dial(context.Background(), cfg)
	if srv.CanLogin {
		if err != nil {
			t.Fatalf("first contact with dropbear: %v", err)
		}
		defer c.Close()
		if out, err := c.Run(context.Background(), "echo dropbear-ok", nil); err != nil || string(out) != "dropbear-ok\n" {
			t.Fatalf("command over dropbear: %q %v", out, err)
		}
	} else if !errors.Is(err, sshx.ErrAuth) {
		// Not root: logins are refused, but the handshake must have passed.
		t.Fatalf("first contact with dropbear: %v, want past the handshake (ErrAuth without a login)", err)
	}
	b, err := os.ReadFile(kh)
	if err != nil || strings.TrimSpace(string(b)) != srv.KnownHostsLine() {
		t.Fatalf("known_hosts %q (%v), want dropbear's ed25519 key %q", b, err, srv.KnownHostsLine())
	}
	// Known now: strict accepts it.
	cfg.HostKeyPolicy = sshx.PolicyStrict
	c2, err := sshx.Dial(context.Background(), cfg)
	if srv.CanLogin && err != nil || !srv.CanLogin && !errors.Is(err, sshx.ErrAuth) {
		t.Fatalf("second contact: %v", err)
	}
	if c2 != nil {
		c2.Close()
	}
}

// TestErrorClasses: only "nothing answers" is Unreachable; a changed host
// key, refused credentials and an unknown key are not.
func TestErrorClasses(t *testing.T) {
	srv := sshd.Start(t, sshd.Options{})

	// Connection refused: a port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := l.Addr().String()
	l.Close()
	cfg := config(srv, srv.WriteKnownHosts(t))
	cfg.Address = refused
	_, err = dial(t, cfg)
	if !sshx.Unreachable(err) || !strings.Contains(err.Error(), "web-014") {
		t.Errorf("connection refused: %v, want Unreachable naming the node", err)
	}

	// Accepts, never speaks: a timeout before the handshake.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	var conns sync.WaitGroup
	conns.Go(func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	})
	cfg = config(srv, srv.WriteKnownHosts(t))
	cfg.Address = silent.Addr().String()
	cfg.AuthTimeout = 300 * time.Millisecond
	if _, err = dial(t, cfg); !sshx.Unreachable(err) || !errors.Is(err, sshx.ErrTimeout) {
		t.Errorf("silent server: %v, want Unreachable and ErrTimeout", err)
	}

	// Changed host key.
	kh := filepath.Join(t.TempDir(), "known_hosts")
	other := sshd.NewKey(t).PublicKey()
	line := strings.Replace(srv.KnownHostsLine(), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(srv.HostKey))), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(other))), 1)
	if err := os.WriteFile(kh, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg = config(srv, kh)
	cfg.HostKeyPolicy = sshx.PolicyAcceptNew
	_, err = dial(t, cfg)
	if sshx.Unreachable(err) || !errors.Is(err, sshx.ErrHostKeyChanged) || !errors.Is(err, sshx.ErrHostKey) {
		t.Errorf("changed host key: %v, want ErrHostKeyChanged, not Unreachable", err)
	}

	// Unknown key under strict: ErrHostKey, not changed, not unreachable.
	cfg = config(srv, filepath.Join(t.TempDir(), "none"))
	_, err = dial(t, cfg)
	if sshx.Unreachable(err) || !errors.Is(err, sshx.ErrHostKey) || errors.Is(err, sshx.ErrHostKeyChanged) {
		t.Errorf("unknown host key: %v, want ErrHostKey only", err)
	}

	// Refused credentials.
	cfg = config(srv, srv.WriteKnownHosts(t))
	wrong := filepath.Join(t.TempDir(), "wrong")
	sshd.WriteKeyFile(t, wrong)
	cfg.IdentityFiles = []string{wrong}
	if _, err = dial(t, cfg); sshx.Unreachable(err) || !errors.Is(err, sshx.ErrAuth) {
		t.Errorf("wrong key: %v, want ErrAuth, not Unreachable", err)
	}

	// A server that drops the connection during the handshake (twice).
	dropper, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dropper.Close() })
	var accepted atomic.Int32
	go func() {
		for {
			c, err := dropper.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Write([]byte("SSH-2.0-dropper\r\n"))
			c.Close()
		}
	}()
	cfg = config(srv, filepath.Join(t.TempDir(), "kh"))
	cfg.Address = dropper.Addr().String()
	cfg.HostKeyPolicy = sshx.PolicyAcceptNew
	if _, err = dial(t, cfg); sshx.Unreachable(err) || err == nil {
		t.Errorf("dropping server: %v, want an error that is not Unreachable", err)
	}
	if n := accepted.Load(); n != 2 {
		t.Errorf("dropping server: %d connections, want 2 (one retry with the other host key family): %v", n, err)
	}
}

// TestNoRecordLeavesKnownHostsAlone: plan mode under accept-new connects
// without writing known_hosts.
func TestNoRecordLeavesKnownHostsAlone(t *testing.T) {
	srv := sshd.Start(t, sshd.Options{})
	kh := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(kh, []byte("# operator's file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config(srv, kh)
	cfg.HostKeyPolicy = sshx.PolicyAcceptNew
	cfg.NoRecord = true
	if _, err := dial(t, cfg); err != nil {
		t.Fatalf("accept-new, no record: %v", err)
	}
	if b, _ := os.ReadFile(kh); string(b) != "# operator's file\n" {
		t.Fatalf("known_hosts changed in plan mode: %q", b)
	}
	if _, err := os.Stat(kh + ".lock"); !os.IsNotExist(err) {
		t.Errorf("plan mode created %s.lock", kh)
	}
}

// TestHugeStdoutIsCapped: a node writing 1 GB to standard output fails
// the command with an error naming the node and the cap, and the
// controller's heap stays near the cap.
func TestHugeStdoutIsCapped(t *testing.T) {
	srv := sshd.Start(t, sshd.Options{})
	cfg := config(srv, srv.WriteKnownHosts(t))
	const limit = 8 << 20
	cfg.MaxOutput = limit
	c, err := dial(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Under the cap: all of it.
	out, err := c.Run(context.Background(), "head -c 1000000 /dev/zero", nil)
	if err != nil || len(out) != 1000000 {
		t.Fatalf("1 MB of output: %d bytes, %v", len(out), err)
	}

	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	heap := func() uint64 { metrics.Read(sample); return sample[0].Value.Uint64() }
	base := heap()
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			if h := heap(); h > peak.Load() {
				peak.Store(h)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	out, err = c.Run(context.Background(), "head -c 1073741824 /dev/zero", nil)
	close(stop)
	wg.Wait()
	if !errors.Is(err, sshx.ErrOutputTooLarge) || out != nil {
		t.Fatalf("1 GB of output: %d bytes, %v; want ErrOutputTooLarge and no output", len(out), err)
	}
	for _, want := range []string{"web-014", "8388608 bytes"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if grew := int64(peak.Load()) - int64(base); grew > 4*limit {
		t.Errorf("heap grew by %d bytes for a %d-byte cap", grew, limit)
	}
	// The connection is still usable.
	if out, err := c.Run(context.Background(), "echo still-here", nil); err != nil || string(out) != "still-here\n" {
		t.Errorf("after the capped command: %q %v", out, err)
	}
}
