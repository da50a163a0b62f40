// Package dropbear runs a throwaway dropbear SSH server (Debian's
// dropbear-bin, the server of most initramfs and embedded images) for
// tests: on 127.0.0.1 at a free port, with only an ed25519 host key —
// the setup in which dropbear 2022.83 still advertises rsa-sha2-256 and
// drops a client that picks it (docs/inband.md) — stopped when the test
// ends.
//
// dropbear reads authorized keys from the login user's home only. As
// root, the server runs in a private mount namespace (unshare -m) with a
// temporary directory bind-mounted over the user's home, so the generated
// client key logs in and nothing of this machine's home is touched
// (CanLogin is then true). Otherwise logins are refused and only the
// handshake and host key can be tested.
package dropbear

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/reprov/reprov/lab/labtool"
)

// Server is a running dropbear.
type Server struct {
	// Addr is "127.0.0.1:PORT".
	Addr string
	// User is the account tests log in as (the current user).
	User string
	// HostKey is the server's ed25519 host key.
	HostKey ssh.PublicKey
	// ClientKeyFile is an unencrypted OpenSSH private key whose public key
	// is authorized (when CanLogin).
	ClientKeyFile string
	// CanLogin reports whether the client key logs in (see the package
	// documentation).
	CanLogin bool

	mu     sync.Mutex
	stderr bytes.Buffer
}

// Start starts dropbear for the test and stops it in t.Cleanup. It skips
// the test (fails under CI=true) when dropbear is not installed.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := labtool.RequireTool(t, "dropbear")
	keygen := labtool.RequireTool(t, "dropbearkey")
	u, err := user.Current()
	if err != nil {
		t.Fatalf("dropbear: current user: %v", err)
	}
	dir := t.TempDir()
	s := &Server{User: u.Username}

	hostKey := filepath.Join(dir, "host_ed25519")
	if out, err := exec.Command(keygen, "-t", "ed25519", "-f", hostKey).CombinedOutput(); err != nil {
		t.Fatalf("dropbearkey: %v\n%s", err, out)
	}
	out, err := exec.Command(keygen, "-y", "-f", hostKey).Output()
	if err != nil {
		t.Fatalf("dropbearkey -y: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "ssh-") {
			if s.HostKey, _, _, _, err = ssh.ParseAuthorizedKey([]byte(line)); err != nil {
				t.Fatalf("dropbear host key %q: %v", line, err)
			}
		}
	}
	if s.HostKey == nil {
		t.Fatalf("dropbearkey -y printed no public key:\n%s", out)
	}

	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	s.ClientKeyFile = filepath.Join(dir, "client_ed25519")
	pub := writeKey(t, s.ClientKeyFile)
	if err := os.WriteFile(filepath.Join(home, ".ssh", "authorized_keys"), ssh.MarshalAuthorizedKey(pub), 0o600); err != nil {
		t.Fatal(err)
	}

	var lastErr error
	for range 5 {
		port := labtool.FreeTCPPort(t, "127.0.0.1")
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		args := []string{"-F", "-E", "-s", "-p", s.Addr, "-r", hostKey, "-P", filepath.Join(dir, "dropbear.pid")}
		var cmd *exec.Cmd
		unshare, uerr := exec.LookPath("unshare")
		if os.Geteuid() == 0 && uerr == nil && u.HomeDir != "" {
			script := `mount --bind "$1" "$2" && shift 2 && exec "$@"`
			cmd = exec.Command(unshare, append([]string{"-m", "--propagation", "private", "--", "sh", "-c", script, "sh", home, u.HomeDir, bin}, args...)...)
			s.CanLogin = true
		} else {
			cmd = exec.Command(bin, args...)
			s.CanLogin = false
		}
		if lastErr = s.start(t, cmd); lastErr == nil {
			return s
		}
	}
	t.Fatalf("dropbear did not start: %v", lastErr)
	return nil
}

func (s *Server) start(t testing.TB, cmd *exec.Cmd) error {
	s.mu.Lock()
	s.stderr.Reset()
	s.mu.Unlock()
	cmd.Stdout, cmd.Stderr = &lockedWriter{s: s}, &lockedWriter{s: s}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for !ready(s.Addr) {
		select {
		case <-done:
			return fmt.Errorf("dropbear exited: %s", s.Log())
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-done
			return fmt.Errorf("dropbear not ready on %s after 10s: %s", s.Addr, s.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("dropbear log:\n%s", s.Log())
		}
	})
	return nil
}

// ready reports whether an SSH banner comes from addr.
func ready(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "SSH-2.0-")
}

type lockedWriter struct{ s *Server }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	return w.s.stderr.Write(p)
}

// Log returns what dropbear wrote so far.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.String()
}

// KnownHostsLine is the known_hosts line for this server's host key.
func (s *Server) KnownHostsLine() string {
	return knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, s.HostKey)
}

func writeKey(t testing.TB, path string) ssh.PublicKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	blk, err := ssh.MarshalPrivateKey(priv, "reprov-test-client")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return signer.PublicKey()
}
