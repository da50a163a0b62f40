// Package sshd runs a throwaway OpenSSH sshd for tests: on 127.0.0.1 at a
// free port, with its own host key, authorized key and configuration in a
// temporary directory, stopped when the test ends. The node behind it is
// the machine the test runs on, so what the test runs there must not touch
// this machine's disks (see agent/inband/host/fixture).
package sshd

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

// Server is a running sshd.
type Server struct {
	// Host and Port are where it listens; Addr is "127.0.0.1:PORT".
	Host string
	Port int
	Addr string
	// User is the account tests log in as (the current user).
	User string
	// HostKey is the server's public host key.
	HostKey ssh.PublicKey
	// ClientKeyFile is an OpenSSH private key file (unencrypted) whose
	// public key is authorized; ClientSigner is the same key.
	ClientKeyFile string
	ClientSigner  ssh.Signer
	// Dir holds the server's files.
	Dir string

	cmd    *exec.Cmd
	mu     sync.Mutex
	stderr bytes.Buffer
	done   chan struct{}
}

// Options tune Start.
type Options struct {
	// AuthorizedKeys are authorized in addition to the generated client key.
	AuthorizedKeys []ssh.PublicKey
	// Config lines go first in the generated sshd_config, so they win
	// over its defaults (sshd takes the first value of a keyword).
	Config []string
}

// Start starts sshd for the test and stops it in t.Cleanup. It skips the
// test (fails under CI=true) when sshd is not installed.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	labtool.RequireTool(t, "sshd")
	bin := "/usr/sbin/sshd"
	if p, err := exec.LookPath("sshd"); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			bin = abs
		}
	}
	// Debian's sshd insists on its privilege separation directory.
	if _, err := os.Stat("/run/sshd"); os.IsNotExist(err) && os.Geteuid() == 0 {
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatalf("sshd: create /run/sshd: %v", err)
		}
	}
	u, err := user.Current()
	if err != nil {
		t.Fatalf("sshd: current user: %v", err)
	}
	s := &Server{Host: "127.0.0.1", User: u.Username, Dir: t.TempDir(), done: make(chan struct{})}

	hostPriv := writeKey(t, filepath.Join(s.Dir, "host_ed25519"), "reprov-test-host")
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	s.HostKey = hostSigner.PublicKey()

	s.ClientKeyFile = filepath.Join(s.Dir, "client_ed25519")
	clientPriv := writeKey(t, s.ClientKeyFile, "reprov-test-client")
	if s.ClientSigner, err = ssh.NewSignerFromKey(clientPriv); err != nil {
		t.Fatal(err)
	}
	var ak bytes.Buffer
	ak.Write(ssh.MarshalAuthorizedKey(s.ClientSigner.PublicKey()))
	for _, k := range opts.AuthorizedKeys {
		ak.Write(ssh.MarshalAuthorizedKey(k))
	}
	akFile := filepath.Join(s.Dir, "authorized_keys")
	if err := os.WriteFile(akFile, ak.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}

	var lastErr error
	for range 5 {
		s.Port = labtool.FreeTCPPort(t, s.Host)
		s.Addr = net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
		// sshd takes the first value of a keyword: the test's lines win.
		cfg := append([]string(nil), opts.Config...)
		cfg = append(cfg,
			"Port "+strconv.Itoa(s.Port),
			"ListenAddress "+s.Host,
			"HostKey "+filepath.Join(s.Dir, "host_ed25519"),
			"PidFile none",
			"StrictModes no",
			"UsePAM no",
			"AuthorizedKeysFile "+akFile,
			"PasswordAuthentication no",
			"KbdInteractiveAuthentication no",
			"PermitRootLogin prohibit-password",
			"AllowTcpForwarding yes",
			"MaxStartups 100:30:200",
			"MaxSessions 100",
			"LogLevel ERROR",
		)
		cfgFile := filepath.Join(s.Dir, "sshd_config")
		if err := os.WriteFile(cfgFile, []byte(strings.Join(cfg, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if lastErr = s.start(t, bin, cfgFile); lastErr == nil {
			return s
		}
	}
	t.Fatalf("sshd did not start: %v", lastErr)
	return nil
}

func (s *Server) start(t testing.TB, bin, cfgFile string) error {
	s.mu.Lock()
	s.stderr.Reset()
	s.mu.Unlock()
	cmd := exec.Command(bin, "-D", "-e", "-f", cfgFile)
	cmd.Stdout = &lockedWriter{s: s}
	cmd.Stderr = &lockedWriter{s: s}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-done:
			return fmt.Errorf("sshd exited: %s", s.Log())
		default:
		}
		if ready(s.Addr) {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-done
			return fmt.Errorf("sshd not ready on %s after 10s: %s", s.Addr, s.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.cmd, s.done = cmd, done
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("sshd log:\n%s", s.Log())
		}
	})
	return nil
}

// ready reports whether an SSH server banner comes from addr.
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

// Log returns what sshd wrote so far.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.String()
}

// Stop kills the server (established sessions live on in their own
// processes until they end).
func (s *Server) Stop() {
	if s.cmd != nil {
		s.cmd.Process.Kill()
		<-s.done
	}
}

// KnownHostsLine is the known_hosts line for this server's host key.
func (s *Server) KnownHostsLine() string {
	return knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, s.HostKey)
}

// WriteKnownHosts writes a known_hosts file holding this server's key and
// returns its path.
func (s *Server) WriteKnownHosts(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(p, []byte(s.KnownHostsLine()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Dial connects as User with the client key, checking the host key.
func (s *Server) Dial(t testing.TB) *ssh.Client {
	t.Helper()
	c, err := ssh.Dial("tcp", s.Addr, &ssh.ClientConfig{
		User:            s.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(s.ClientSigner)},
		HostKeyCallback: ssh.FixedHostKey(s.HostKey),
		Timeout:         10 * time.Second,
	})
	if err != nil {
		t.Fatalf("dial sshd %s: %v", s.Addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// writeKey generates an ed25519 key, writes it as an OpenSSH private key
// file (0600) and returns it.
func writeKey(t testing.TB, path, comment string) ed25519.PrivateKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	blk, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
	return priv
}

// NewKey returns a fresh ed25519 signer (for a host key that is not the
// server's, or an unauthorized client key).
func NewKey(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// WriteKeyFile writes a fresh, unauthorized ed25519 private key file (an
// OpenSSH key, 0600) and returns its signer.
func WriteKeyFile(t testing.TB, path string) ssh.Signer {
	t.Helper()
	s, err := ssh.NewSignerFromKey(writeKey(t, path, "reprov-test-other"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}
