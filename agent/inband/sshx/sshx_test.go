package sshx_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/reprov/reprov/agent/inband/host"
	"github.com/reprov/reprov/agent/inband/sshx"
	"github.com/reprov/reprov/inventory"
	"github.com/reprov/reprov/lab/sshd"
)

func config(srv *sshd.Server, knownHosts string) sshx.Config {
	return sshx.Config{Node: "web-014", Address: srv.Addr, User: srv.User,
		IdentityFiles: []string{srv.ClientKeyFile}, KnownHosts: knownHosts}
}

func dial(t *testing.T, cfg sshx.Config) (*sshx.Client, error) {
	t.Helper()
	c, err := sshx.Dial(context.Background(), cfg)
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

func TestRunsCommands(t *testing.T) {
	srv := sshd.Start(t, sshd.Options{})
	c, err := dial(t, config(srv, srv.WriteKnownHosts(t)))
	if err != nil {
		t.Fatal(err)
	}
	if !c.IsRoot() && os.Geteuid() == 0 {
		t.Fatal("root not detected")
	}
	out, err := c.Exec(context.Background(), "cat; echo; printf done", strings.NewReader("from stdin"))
	if err != nil || string(out) != "from stdin\ndone" {
		t.Fatalf("out %q, err %v", out, err)
	}
	_, err = c.Exec(context.Background(), "echo partial; echo 'it broke' >&2; exit 3", nil)
	var ee *host.ExitError
	if !errors.As(err, &ee) || ee.Status != 3 || ee.Stderr != "it broke" {
		t.Fatalf("err %#v, want exit 3 with stderr", err)
	}
}

func TestChangedHostKeyIsRefused(t *testing.T) {
	srv := sshd.Start(t, sshd.Options{})
	other := sshd.NewKey(t).PublicKey()
	kh := filepath.Join(t.TempDir(), "known_hosts")
	line := strings.Replace(srv.KnownHostsLine(), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(srv.HostKey))), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(other))), 1)
	if err := os.WriteFile(kh, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, policy := range []string{sshx.PolicyStrict, sshx.PolicyAcceptNew} {
		cfg := config(srv, kh)
		cfg.HostKeyPolicy = policy
		_, err := dial(t, cfg)
		var hke *sshx.HostKeyError
		if !errors.Is(err, sshx.ErrHostKey) || !errors.As(err, &hke) || !hke.Changed() {
			t.Fatalf("%s: err %v, want a changed host key", policy, err)
		}
		for _, want := range []string{"web-014", ssh.FingerprintSHA256(srv.HostKey), ssh.FingerprintSHA256(other), "CHANGED"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %q does not name %s", policy, err, want)
			}
		}
	}
	b, _ := os.ReadFile(kh)
	if string(b) != line+"\n" {
		t.Fatal("a changed key was written to known_hosts")
	}
}

func TestUnknownHostKey(t *testing.T) {
	srv := sshd.Start(t, sshd.Options{})
	kh := filepath.Join(t.TempDir(), "ssh", "known_hosts") // does not exist yet

	_, err := dial(t, config(srv, kh))
	var hke *sshx.HostKeyError
	if !errors.As(err, &hke) || hke.Changed() || !strings.Contains(err.Error(), ssh.FingerprintSHA256(srv.HostKey)) {
		t.Fatalf("strict, unknown host: %v", err)
	}
	if _, err := os.Stat(kh); !os.IsNotExist(err) {
		t.Fatal("strict policy wrote known_hosts")
	}

	cfg := config(srv, kh)
	cfg.HostKeyPolicy = sshx.PolicyAcceptNew
	if _, err := dial(t, cfg); err != nil {
		t.Fatalf("accept-new: %v", err)
	}
	b, err := os.ReadFile(kh)
	if err != nil || strings.TrimSpace(string(b)) != srv.KnownHostsLine() {
		t.Fatalf("known_hosts %q, want the recorded key %q", b, srv.KnownHostsLine())
	}
	// Recorded: strict now accepts it.
	if _, err := dial(t, config(srv, kh)); err != nil {
		t.Fatalf("strict after accept-new: %v", err)
	}
}

func TestSSHAgent(t *testing.T) {
	srv := sshd.Start(t, sshd.Options{})
	raw, err := os.ReadFile(srv.ClientKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ssh.ParseRawPrivateKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := key.(*ed25519.PrivateKey); ok {
		key = *p
	}
	kr := agent.NewKeyring()
	if err := kr.Add(agent.AddedKey{PrivateKey: key}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { agent.ServeAgent(kr, c); c.Close() }()
		}
	}()
	cfg := config(srv, srv.WriteKnownHosts(t))
	cfg.IdentityFiles = nil
	cfg.AgentSocket = sock
	c, err := dial(t, cfg)
	if err != nil {
		t.Fatalf("agent auth: %v", err)
	}
	if out, err := c.Exec(context.Background(), "echo ok", nil); err != nil || string(out) != "ok\n" {
		t.Fatalf("%q %v", out, err)
	}

	// The inventory path: no identity → SSH_AUTH_SOCK.
	n := inventory.Node{Name: "web-014", SSH: inventory.SSH{Address: srv.Host, Port: srv.Port, User: srv.User, KnownHosts: cfg.KnownHosts}}
	nc, err := sshx.ConfigFor(n, func(k string) string { return map[string]string{"SSH_AUTH_SOCK": sock}[k] })
	if err != nil || nc.AgentSocket != sock {
		t.Fatalf("ConfigFor: %+v %v", nc, err)
	}
	if _, err := dial(t, nc); err != nil {
		t.Fatalf("agent via ConfigFor: %v", err)
	}
}

func TestCredentialErrors(t *testing.T) {
	srv := sshd.Start(t, sshd.Options{})
	kh := srv.WriteKnownHosts(t)
	cfg := config(srv, kh)
	cfg.IdentityFiles = nil
	if _, err := dial(t, cfg); !errors.Is(err, sshx.ErrNoCredentials) {
		t.Fatalf("no credentials: %v", err)
	}
	wrong := filepath.Join(t.TempDir(), "wrong")
	sshd.WriteKeyFile(t, wrong)
	cfg.IdentityFiles = []string{wrong}
	cfg.Password = "not-the-password-1234"
	_, err := dial(t, cfg)
	if !errors.Is(err, sshx.ErrAuth) || !strings.Contains(err.Error(), "web-014") {
		t.Fatalf("wrong key: %v", err)
	}
	if strings.Contains(err.Error(), cfg.Password) {
		t.Fatal("the error holds the password")
	}
}

// TestPasswordOnlyWhenConfigured: a server that takes passwords is offered
// one only when the node has ssh.password.
func TestPasswordOnlyWhenConfigured(t *testing.T) {
	srv := sshd.Start(t, sshd.Options{Config: []string{"PasswordAuthentication yes", "PermitRootLogin yes"}})
	cfg := config(srv, srv.WriteKnownHosts(t))
	wrong := filepath.Join(t.TempDir(), "wrong")
	sshd.WriteKeyFile(t, wrong)
	cfg.IdentityFiles = []string{wrong}
	_, err := dial(t, cfg)
	if !errors.Is(err, sshx.ErrAuth) || strings.Contains(err.Error(), "password") {
		t.Fatalf("without ssh.password: %v (no password may be tried)", err)
	}
	cfg.Password = "not-the-password-1234"
	_, err = dial(t, cfg)
	if !errors.Is(err, sshx.ErrAuth) || !strings.Contains(err.Error(), "password") {
		t.Fatalf("with ssh.password: %v (a password must be tried)", err)
	}
	if strings.Contains(err.Error(), cfg.Password) {
		t.Fatal("the error holds the password")
	}
}

func TestJumpHost(t *testing.T) {
	jump := sshd.Start(t, sshd.Options{AuthorizedKeys: nil})
	target := sshd.Start(t, sshd.Options{})
	// One known_hosts for both; the client key of the target is the one
	// offered to both, so the jump host must authorize it too.
	kh := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(kh, []byte(target.KnownHostsLine()+"\n"), 0o600)

	cfg := config(target, kh)
	cfg.JumpHost = jump.User + "@" + jump.Addr
	_, err := dial(t, cfg)
	if !errors.Is(err, sshx.ErrHostKey) || !strings.Contains(err.Error(), "jump host") {
		t.Fatalf("jump host with an unknown key: %v (the jump host must be checked)", err)
	}

	os.WriteFile(kh, []byte(target.KnownHostsLine()+"\n"+jump.KnownHostsLine()+"\n"), 0o600)
	cfg.IdentityFiles = []string{target.ClientKeyFile, jump.ClientKeyFile}
	c, err := dial(t, cfg)
	if err != nil {
		t.Fatalf("through the jump host: %v", err)
	}
	if out, err := c.Exec(context.Background(), "echo via-jump", nil); err != nil || string(out) != "via-jump\n" {
		t.Fatalf("%q %v", out, err)
	}
}

func TestTimeouts(t *testing.T) {
	srv := sshd.Start(t, sshd.Options{})
	cfg := config(srv, srv.WriteKnownHosts(t))
	// Long enough for the dial's own `id -u` on a loaded machine, short
	// next to the command it must cut.
	cfg.CommandTimeout = 2 * time.Second
	c, err := dial(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = c.Exec(context.Background(), "sleep 30", nil)
	if !errors.Is(err, sshx.ErrTimeout) || time.Since(start) > 20*time.Second {
		t.Fatalf("command timeout: %v after %v", err, time.Since(start))
	}
	if !strings.Contains(err.Error(), "within 2s") {
		t.Errorf("the timeout error does not name the command timeout: %v", err)
	}
	// A shorter deadline of the caller's is the one the error names.
	cfg2 := cfg
	cfg2.CommandTimeout = time.Minute
	c2, err := dial(t, cfg2)
	if err != nil {
		t.Fatal(err)
	}
	dctx, dcancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer dcancel()
	_, err = c2.Exec(dctx, "sleep 5", nil)
	if !errors.Is(err, sshx.ErrTimeout) || strings.Contains(err.Error(), "1m0s") || !strings.Contains(err.Error(), "step's deadline") {
		t.Errorf("caller's deadline: %v, want a timeout that names the step's deadline, not the 1m command timeout", err)
	}

	// A server that accepts and never speaks: the handshake times out.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	cfg = config(srv, srv.WriteKnownHosts(t))
	cfg.Address = l.Addr().String()
	cfg.AuthTimeout = 300 * time.Millisecond
	start = time.Now()
	_, err = dial(t, cfg)
	if !errors.Is(err, sshx.ErrTimeout) || time.Since(start) > 10*time.Second {
		t.Fatalf("handshake timeout: %v after %v", err, time.Since(start))
	}
}

// TestSudo runs as a non-root user as far as the node's id and sudo say:
// fake id and sudo commands first in the session's PATH.
func TestSudo(t *testing.T) {
	bin := t.TempDir()
	marker := filepath.Join(t.TempDir(), "sudo-ran")
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write("id", `echo 1000`)
	write("sudo", `if [ -f "`+bin+`/needs-password" ]; then echo "sudo: a password is required" >&2; exit 1; fi
[ "$1" = "-n" ] || { echo "sudo: not non-interactive" >&2; exit 1; }
shift; echo "$*" >> `+marker+`; exec "$@"`)
	srv := sshd.Start(t, sshd.Options{Config: []string{"SetEnv PATH=" + bin + ":/usr/bin:/bin"}})
	cfg := config(srv, srv.WriteKnownHosts(t))
	c, err := dial(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c.IsRoot() {
		// OpenSSH ≥ 7.8 applies SetEnv; Debian's does. Never a silent skip in CI.
		if os.Getenv("CI") == "true" {
			t.Fatal("sshd did not apply SetEnv PATH; cannot fake a non-root user")
		}
		t.Skip("sshd did not apply SetEnv PATH; cannot fake a non-root user")
	}
	out, err := c.Exec(context.Background(), "echo privileged", nil)
	if err != nil || string(out) != "privileged\n" {
		t.Fatalf("%q %v", out, err)
	}
	b, _ := os.ReadFile(marker)
	if !strings.Contains(string(b), "sh -c echo privileged") {
		t.Fatalf("command did not go through sudo -n: %q", b)
	}

	os.WriteFile(filepath.Join(bin, "needs-password"), nil, 0o644)
	_, err = dial(t, cfg)
	if !errors.Is(err, sshx.ErrSudoPassword) || !strings.Contains(err.Error(), "web-014") || !strings.Contains(err.Error(), "NOPASSWD") {
		t.Fatalf("sudo wanting a password: %v", err)
	}
}
