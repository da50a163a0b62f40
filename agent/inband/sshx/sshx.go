// Package sshx is reprov's SSH client for the in-band step: keys from files
// and from ssh-agent, password authentication only when configured, host
// keys checked against known_hosts (strict by default, or accept-new, which
// records an unknown key), a jump host, timeouts on dial, authentication
// and every command, and sudo -n for a user that is not root.
package sshx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/reprov/reprov/agent/inband/host"
	"github.com/reprov/reprov/inventory"
)

// Errors callers branch on.
var (
	// ErrHostKey: the host key is unknown (strict policy), changed or
	// revoked. The error is a *HostKeyError naming the fingerprints when
	// the key is unknown or changed.
	ErrHostKey = errors.New("host key check failed")
	// ErrHostKeyChanged: known_hosts has another key for the address
	// (matched together with ErrHostKey): the node was reinstalled, or
	// something else answers at its address. Never accepted.
	ErrHostKeyChanged = errors.New("host key changed")
	// ErrAuth: the server refused every credential offered.
	ErrAuth = errors.New("ssh authentication failed")
	// ErrUnreachable: nothing answered SSH at the address — connection
	// refused, no route, or a timeout before the SSH handshake completed.
	// See Unreachable.
	ErrUnreachable = errors.New("ssh unreachable")
	// ErrNoCredentials: nothing to authenticate with.
	ErrNoCredentials = errors.New("no ssh credentials")
	// ErrSudoPassword: the user is not root and sudo wants a password.
	ErrSudoPassword = errors.New("sudo needs a password")
	// ErrConnectionLost: the connection dropped (during a reboot: expected).
	ErrConnectionLost = errors.New("ssh connection lost")
	// ErrTimeout: dial, authentication or a command took too long.
	ErrTimeout = errors.New("ssh timeout")
	// ErrOutputTooLarge: a command wrote more standard output than
	// Config.MaxOutput; it was killed and its output dropped.
	ErrOutputTooLarge = errors.New("command output over the cap")
)

// Host key policies.
const (
	PolicyStrict    = "strict"
	PolicyAcceptNew = "accept-new"
)

// Default timeouts.
const (
	DefaultDialTimeout    = 10 * time.Second
	DefaultAuthTimeout    = 20 * time.Second
	DefaultCommandTimeout = 2 * time.Minute
	DefaultKeepAlive      = 15 * time.Second
	// DefaultMaxOutput bounds a command's standard output kept in memory:
	// the largest legitimate output is the read-back of the pushed agent
	// binary on a node without sha256sum.
	DefaultMaxOutput = 64 << 20
)

// Config is how to reach one node.
type Config struct {
	// Node names the node in errors.
	Node string
	// Address is host or host:port; Port is used when Address has none
	// (default 22).
	Address string
	Port    int
	// User to log in as (default root).
	User string
	// IdentityFiles are private key files (unencrypted: encrypted keys
	// belong in ssh-agent).
	IdentityFiles []string
	// AgentSocket is the ssh-agent socket (SSH_AUTH_SOCK); "" for none.
	AgentSocket string
	// Password enables password authentication when non-empty. It is
	// never printed or logged.
	Password string
	// KnownHosts is the known_hosts file (default ~/.ssh/known_hosts).
	KnownHosts string
	// KnownHostsCache, when set, keeps known_hosts parsed across dials
	// (one per controller); nil parses the file at every dial.
	KnownHostsCache *KnownHosts
	// HostKeyPolicy is strict (default) or accept-new.
	HostKeyPolicy string
	// JumpHost is [user@]host[:port] of a bastion; the same credentials,
	// known_hosts and policy apply to it.
	JumpHost string
	// Timeouts; zero means the default.
	DialTimeout    time.Duration
	AuthTimeout    time.Duration
	CommandTimeout time.Duration
	// KeepAlive is the interval of keepalive requests; a connection that
	// misses one is closed (a hung link fails commands instead of hanging).
	KeepAlive time.Duration
	// NoRecord, for plan and dry runs, leaves known_hosts alone: under
	// accept-new an unknown key is accepted for this connection only and
	// not written. A changed key is refused as always.
	NoRecord bool
	// MaxOutput bounds what Run keeps of a command's standard output
	// (default DefaultMaxOutput); a command writing more fails with
	// ErrOutputTooLarge and is killed.
	MaxOutput int64
	Logger    *slog.Logger
}

// ConfigFor builds the Config of a node from the inventory. getenv reads
// SSH_AUTH_SOCK (nil: os.Getenv). The password secret is resolved here.
func ConfigFor(n inventory.Node, getenv func(string) string) (Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	s := n.SSH
	cfg := Config{Node: n.Name, Address: s.Address, Port: s.Port, User: s.User, KnownHosts: s.KnownHosts,
		HostKeyPolicy: s.HostKeyPolicy, JumpHost: s.JumpHost, AgentSocket: getenv("SSH_AUTH_SOCK")}
	if cfg.Address == "" {
		return Config{}, fmt.Errorf("node %s: no ssh address", n.Name)
	}
	if s.Identity != "" {
		cfg.IdentityFiles = []string{expandHome(s.Identity)}
	}
	cfg.KnownHosts = expandHome(cfg.KnownHosts)
	if !s.Password.IsZero() {
		pw, err := s.Password.Resolve()
		if err != nil {
			return Config{}, fmt.Errorf("node %s: ssh password: %w", n.Name, err)
		}
		cfg.Password = pw
	}
	switch cfg.HostKeyPolicy {
	case "", PolicyStrict, PolicyAcceptNew:
	default:
		return Config{}, fmt.Errorf("node %s: ssh host_key_policy %q: want strict or accept-new", n.Name, cfg.HostKeyPolicy)
	}
	return cfg, nil
}

func expandHome(p string) string {
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, rest)
		}
	}
	return p
}

func (c *Config) defaults() {
	if c.User == "" {
		c.User = "root"
	}
	if c.Port == 0 {
		c.Port = 22
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.AuthTimeout == 0 {
		c.AuthTimeout = DefaultAuthTimeout
	}
	if c.CommandTimeout == 0 {
		c.CommandTimeout = DefaultCommandTimeout
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = DefaultKeepAlive
	}
	if c.MaxOutput <= 0 {
		c.MaxOutput = DefaultMaxOutput
	}
	if c.HostKeyPolicy == "" {
		c.HostKeyPolicy = PolicyStrict
	}
	if c.KnownHosts == "" {
		if home, err := os.UserHomeDir(); err == nil {
			c.KnownHosts = filepath.Join(home, ".ssh", "known_hosts")
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// addr returns host:port of the node.
func (c *Config) addr() string {
	if _, _, err := net.SplitHostPort(c.Address); err == nil {
		return c.Address
	}
	return net.JoinHostPort(strings.Trim(c.Address, "[]"), strconv.Itoa(c.Port))
}

// Client is a connection to one node.
type Client struct {
	cfg    Config
	addr   string
	client *ssh.Client
	jump   *ssh.Client
	agent  net.Conn
	root   bool

	mu     sync.Mutex
	lost   bool
	closed bool
	stop   chan struct{}
}

// Dial connects to the node (through the jump host, if any), checks its
// host key, authenticates, and finds out whether the user is root (and,
// if not, that sudo -n works).
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	cfg.defaults()
	addr := cfg.addr()
	auth, agentConn, err := authMethods(&cfg)
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, addr: addr, agent: agentConn, stop: make(chan struct{})}
	fail := func(err error) (*Client, error) {
		c.Close()
		return nil, err
	}
	dial := directDial(cfg, addr)
	if cfg.JumpHost != "" {
		jcfg, err := jumpConfig(cfg)
		if err != nil {
			return fail(err)
		}
		jc, err := handshake(ctx, jcfg, jcfg.addr(), auth, directDial(jcfg, jcfg.addr()))
		if err != nil {
			return fail(fmt.Errorf("jump host %s: %w", cfg.JumpHost, err))
		}
		c.jump = jc
		dial = func(ctx context.Context) (net.Conn, error) {
			dctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
			defer cancel()
			conn, err := jc.DialContext(dctx, "tcp", addr)
			if err != nil {
				return nil, fmt.Errorf("node %s: dial %s through jump host %s: %w", cfg.Node, addr, cfg.JumpHost, dialErr(err))
			}
			return conn, nil
		}
	}
	cl, err := handshake(ctx, cfg, addr, auth, dial)
	if err != nil {
		return fail(err)
	}
	c.client = cl
	go c.watch()
	go c.keepAlive()

	out, err := c.Run(ctx, "id -u", nil)
	if err != nil {
		return fail(fmt.Errorf("node %s: id -u: %w", cfg.Node, err))
	}
	c.root = strings.TrimSpace(string(out)) == "0"
	if !c.root {
		if _, err := c.Run(ctx, "sudo -n true", nil); err != nil {
			return fail(sudoError(cfg, err))
		}
	}
	return c, nil
}

func sudoError(cfg Config, err error) error {
	var ee *host.ExitError
	if errors.As(err, &ee) {
		msg := strings.ToLower(ee.Stderr)
		switch {
		case strings.Contains(msg, "password") || strings.Contains(msg, "terminal is required") || strings.Contains(msg, "askpass"):
			return fmt.Errorf("node %s: %w for user %s: reprov runs sudo -n and never types a password; allow this user NOPASSWD sudo or log in as root", cfg.Node, ErrSudoPassword, cfg.User)
		case ee.Status == 127 || strings.Contains(msg, "not found"):
			return fmt.Errorf("node %s: user %s is not root and the node has no sudo", cfg.Node, cfg.User)
		}
		return fmt.Errorf("node %s: sudo -n true as %s: %w", cfg.Node, cfg.User, err)
	}
	return fmt.Errorf("node %s: sudo -n true: %w", cfg.Node, err)
}

func jumpConfig(cfg Config) (Config, error) {
	j := cfg
	j.JumpHost = ""
	hostport := cfg.JumpHost
	if u, h, ok := strings.Cut(hostport, "@"); ok {
		j.User, hostport = u, h
	}
	if hostport == "" {
		return Config{}, fmt.Errorf("node %s: jump host %q has no host", cfg.Node, cfg.JumpHost)
	}
	j.Address, j.Port = hostport, 22
	j.Node = cfg.Node + " (jump host " + hostport + ")"
	return j, nil
}

// Unreachable reports whether err, from Dial, means that nothing answered
// SSH at the node's address: connection refused, no route to the host or
// network, or a timeout before the SSH handshake completed (the node is
// down, booting or cut off). Everything else — a changed or unknown host
// key (ErrHostKey, ErrHostKeyChanged), refused credentials (ErrAuth), a
// server dropping the connection, a name that does not resolve, a
// cancelled context — means something answered, or the configuration is
// wrong, and must not be taken for "the node is down".
func Unreachable(err error) bool {
	return errors.Is(err, ErrUnreachable)
}

// dialErr marks the errors of opening a connection that mean nothing
// answers: refused, no route, timeouts.
func dialErr(err error) error {
	var oce *ssh.OpenChannelError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH),
		errors.Is(err, syscall.EHOSTDOWN), errors.Is(err, syscall.ETIMEDOUT):
		return fmt.Errorf("%w: %w", ErrUnreachable, err)
	case errors.As(err, &oce) && oce.Reason == ssh.ConnectionFailed:
		// The jump host could not connect to the node.
		return fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w: %w", ErrUnreachable, ErrTimeout, err)
	}
	return err
}

// directDial connects to addr over TCP.
func directDial(cfg Config, addr string) func(ctx context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		d := net.Dialer{Timeout: cfg.DialTimeout}
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, fmt.Errorf("node %s: dial %s: %w", cfg.Node, addr, ctx.Err())
			}
			return nil, fmt.Errorf("node %s: dial %s: %w", cfg.Node, addr, dialErr(err))
		}
		return conn, nil
	}
}

// handshake connects with dial, checks the host key and logs in. For a
// host known_hosts has no key for, a connection the host closes during key
// exchange is tried once more with the other host key algorithm family
// (docs/inband.md: dropbear).
func handshake(ctx context.Context, cfg Config, addr string, auth []ssh.AuthMethod, dial func(context.Context) (net.Conn, error)) (*ssh.Client, error) {
	hk, known, err := hostKeyCheck(cfg, addr)
	if err != nil {
		return nil, err
	}
	for try := 0; ; try++ {
		algos := known
		if len(known) == 0 {
			algos = firstContactAlgorithms(try)
		}
		cl, err := handshakeOnce(ctx, cfg, addr, auth, dial, hk, algos)
		if err == nil || len(known) > 0 || try == 1 || !errors.Is(err, errDropped) {
			return cl, err
		}
		cfg.Logger.Info("ssh: the host closed the connection during the handshake; retrying once with the other host key algorithm family",
			"node", cfg.Node, "address", addr, "offered", algos[0], "err", err)
	}
}

// errDropped marks a handshake the server ended by closing the connection.
var errDropped = errors.New("the server closed the connection during the handshake")

func handshakeOnce(ctx context.Context, cfg Config, addr string, auth []ssh.AuthMethod, dial func(context.Context) (net.Conn, error),
	hk ssh.HostKeyCallback, algos []string) (*ssh.Client, error) {
	conn, err := dial(ctx)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(cfg.AuthTimeout))
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	sc, chans, reqs, err := ssh.NewClientConn(conn, addr, &ssh.ClientConfig{
		User:              cfg.User,
		Auth:              auth,
		HostKeyCallback:   hk,
		HostKeyAlgorithms: algos,
		Timeout:           cfg.DialTimeout,
	})
	stopped := stop()
	if err != nil {
		conn.Close()
		var hke *HostKeyError
		var ne net.Error
		switch {
		case errors.As(err, &hke):
			return nil, hke
		case errors.Is(err, ErrHostKey):
			return nil, err
		case !stopped && errors.Is(ctx.Err(), context.DeadlineExceeded):
			return nil, fmt.Errorf("node %s: ssh handshake with %s: %w: %w: %w", cfg.Node, addr, ErrUnreachable, ErrTimeout, ctx.Err())
		case !stopped:
			return nil, fmt.Errorf("node %s: ssh handshake with %s: %w", cfg.Node, addr, ctx.Err())
		case strings.Contains(err.Error(), "unable to authenticate"):
			return nil, fmt.Errorf("node %s: %w as %s on %s (%s)", cfg.Node, ErrAuth, cfg.User, addr, strings.TrimPrefix(err.Error(), "ssh: handshake failed: "))
		case errors.As(err, &ne) && ne.Timeout():
			return nil, fmt.Errorf("node %s: ssh handshake with %s: %w: %w: no SSH handshake within %s", cfg.Node, addr, ErrUnreachable, ErrTimeout, cfg.AuthTimeout)
		case errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed):
			// net.ErrClosed: x/crypto closes the connection when a write to
			// a peer that hung up fails, and the read then reports that.
			return nil, fmt.Errorf("node %s: ssh handshake with %s (host key algorithms offered: %s): %w: %w", cfg.Node, addr, strings.Join(algos, ","), errDropped, err)
		}
		return nil, fmt.Errorf("node %s: ssh handshake with %s: %w", cfg.Node, addr, err)
	}
	conn.SetDeadline(time.Time{})
	return ssh.NewClient(sc, chans, reqs), nil
}

// authMethods returns the configured credentials: key files, ssh-agent,
// and the password only when one is set.
func authMethods(cfg *Config) ([]ssh.AuthMethod, net.Conn, error) {
	var signers []ssh.Signer
	var notes []string
	for _, f := range cfg.IdentityFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			notes = append(notes, fmt.Sprintf("identity %s: %v", f, err))
			continue
		}
		s, err := ssh.ParsePrivateKey(b)
		if err != nil {
			var pm *ssh.PassphraseMissingError
			if errors.As(err, &pm) {
				notes = append(notes, fmt.Sprintf("identity %s is passphrase-protected: load it into ssh-agent", f))
			} else {
				notes = append(notes, fmt.Sprintf("identity %s: not a private key", f))
			}
			continue
		}
		signers = append(signers, s)
	}
	var methods []ssh.AuthMethod
	if len(signers) > 0 {
		methods = append(methods, ssh.PublicKeys(signers...))
	}
	var agentConn net.Conn
	if cfg.AgentSocket != "" {
		c, err := net.Dial("unix", cfg.AgentSocket)
		if err != nil {
			notes = append(notes, fmt.Sprintf("ssh-agent %s: %v", cfg.AgentSocket, err))
		} else {
			agentConn = c
			methods = append(methods, ssh.PublicKeysCallback(agent.NewClient(c).Signers))
		}
	}
	if cfg.Password != "" {
		pw := cfg.Password
		methods = append(methods, ssh.Password(pw),
			ssh.KeyboardInteractive(func(_, _ string, questions []string, echos []bool) ([]string, error) {
				answers := make([]string, len(questions))
				for i := range questions {
					if !echos[i] {
						answers[i] = pw
					}
				}
				return answers, nil
			}))
	}
	if len(methods) == 0 {
		msg := "set ssh.identity, run an ssh-agent (SSH_AUTH_SOCK) or configure ssh.password"
		if len(notes) > 0 {
			msg = strings.Join(notes, "; ") + "; " + msg
		}
		return nil, nil, fmt.Errorf("node %s: %w: %s", cfg.Node, ErrNoCredentials, msg)
	}
	for _, n := range notes {
		cfg.Logger.Warn("ssh credentials", "node", cfg.Node, "note", n)
	}
	return methods, agentConn, nil
}

// watch notices the connection closing.
func (c *Client) watch() {
	c.client.Wait()
	c.mu.Lock()
	if !c.closed {
		c.lost = true
	}
	c.mu.Unlock()
}

// keepAlive closes a connection that stops answering.
func (c *Client) keepAlive() {
	t := time.NewTicker(c.cfg.KeepAlive)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		done := make(chan error, 1)
		go func() {
			_, _, err := c.client.SendRequest("keepalive@openssh.com", true, nil)
			done <- err
		}()
		select {
		case <-c.stop:
			return
		case err := <-done:
			if err != nil {
				return
			}
		case <-time.After(c.cfg.KeepAlive):
			c.cfg.Logger.Warn("ssh keepalive unanswered: closing", "node", c.cfg.Node)
			c.client.Close()
			return
		}
	}
}

// IsRoot reports whether the login user is root (uid 0).
func (c *Client) IsRoot() bool { return c.root }

// User is the login user.
func (c *Client) User() string { return c.cfg.User }

// Node is the node name.
func (c *Client) Node() string { return c.cfg.Node }

// Lost reports whether the connection dropped.
func (c *Client) Lost() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lost
}

// maxStderr bounds what is kept of a command's standard error.
const maxStderr = 64 << 10

// Run runs cmd as the login user, with stdin, within the command timeout,
// and returns its standard output. A non-zero exit is a *host.ExitError; a
// dropped connection matches ErrConnectionLost.
func (c *Client) Run(ctx context.Context, cmd string, stdin io.Reader) ([]byte, error) {
	timeout := c.cfg.CommandTimeout
	bound := fmt.Sprintf("within %s (ssh command timeout)", timeout)
	if d, ok := ctx.Deadline(); ok && time.Until(d) < timeout {
		// The caller's deadline comes first: name that one when it fires
		// (a step's deadline nearly spent would read "within 0s").
		timeout = time.Until(d)
		bound = fmt.Sprintf("before its step's deadline (%s left when it started)", max(timeout, 0).Round(time.Millisecond))
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	s, err := c.client.NewSession()
	if err != nil {
		if c.Lost() || errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("node %s: %w", c.cfg.Node, ErrConnectionLost)
		}
		return nil, fmt.Errorf("node %s: new session: %w", c.cfg.Node, err)
	}
	defer s.Close()
	stdout := &limitWriter{max: c.cfg.MaxOutput, over: make(chan struct{})}
	stderr := &capWriter{max: maxStderr}
	s.Stdout, s.Stderr = stdout, stderr
	if stdin != nil {
		s.Stdin = stdin
	}
	if err := s.Start(cmd); err != nil {
		return nil, fmt.Errorf("node %s: start command: %w", c.cfg.Node, err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	tooLarge := func() error {
		s.Signal(ssh.SIGKILL)
		s.Close()
		// The copy goroutine may still be discarding: return no output.
		return fmt.Errorf("node %s: %w: %s wrote more than %d bytes to standard output (ssh max output); killed, output dropped",
			c.cfg.Node, ErrOutputTooLarge, firstWord(cmd), c.cfg.MaxOutput)
	}
	select {
	case err = <-done:
		if stdout.exceeded() {
			return nil, tooLarge()
		}
	case <-stdout.over:
		return nil, tooLarge()
	case <-ctx.Done():
		s.Signal(ssh.SIGKILL)
		s.Close()
		// The copy goroutines may still be writing: return no output.
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("node %s: %w: command did not finish %s", c.cfg.Node, ErrTimeout, bound)
		}
		return nil, ctx.Err()
	}
	if err == nil {
		return stdout.buf.Bytes(), nil
	}
	var ee *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case errors.As(err, &ee) && ee.Signal() == "":
		return stdout.buf.Bytes(), &host.ExitError{Command: firstWord(cmd), Status: ee.ExitStatus(), Stderr: strings.TrimSpace(stderr.String())}
	case errors.As(err, &ee):
		return stdout.buf.Bytes(), &host.ExitError{Command: firstWord(cmd), Status: 128, Stderr: "killed by signal " + ee.Signal()}
	case errors.As(err, &missing) || errors.Is(err, io.EOF) || c.Lost():
		return stdout.buf.Bytes(), fmt.Errorf("node %s: %w", c.cfg.Node, ErrConnectionLost)
	}
	return stdout.buf.Bytes(), fmt.Errorf("node %s: %w", c.cfg.Node, err)
}

func firstWord(cmd string) string {
	f := strings.Fields(cmd)
	if len(f) == 0 {
		return cmd
	}
	return f[0]
}

// PrivilegedCommand returns cmd as it runs with root privileges: itself
// for root, else under sudo -n.
func (c *Client) PrivilegedCommand(cmd string) string {
	if c.root {
		return cmd
	}
	return "sudo -n sh -c " + host.Quote(cmd)
}

// Exec runs cmd with root privileges (sudo -n when the user is not root):
// it implements host.Executor.
func (c *Client) Exec(ctx context.Context, cmd string, stdin io.Reader) ([]byte, error) {
	out, err := c.Run(ctx, c.PrivilegedCommand(cmd), stdin)
	var ee *host.ExitError
	if !c.root && errors.As(err, &ee) && ee.Status == 1 && strings.Contains(ee.Stderr, "sudo:") && strings.Contains(ee.Stderr, "password") {
		return out, sudoError(c.cfg, err)
	}
	return out, err
}

// Close closes the connection.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	close(c.stop)
	return c.closeAll()
}

func (c *Client) closeAll() error {
	var err error
	if c.client != nil {
		err = c.client.Close()
	}
	if c.jump != nil {
		c.jump.Close()
	}
	if c.agent != nil {
		c.agent.Close()
	}
	return err
}

// capWriter keeps the first max bytes written.
type capWriter struct {
	buf bytes.Buffer
	max int
}

func (w *capWriter) Write(p []byte) (int, error) {
	if room := w.max - w.buf.Len(); room > 0 {
		if len(p) > room {
			w.buf.Write(p[:room])
		} else {
			w.buf.Write(p)
		}
	}
	return len(p), nil
}

func (w *capWriter) String() string { return w.buf.String() }

// limitWriter keeps up to max bytes; past that it keeps nothing more,
// closes over (once) and discards, so that the SSH channel keeps draining
// while the caller kills the command.
type limitWriter struct {
	buf  bytes.Buffer
	max  int64
	n    int64
	over chan struct{}
}

func (w *limitWriter) Write(p []byte) (int, error) {
	if w.n > w.max {
		return len(p), nil
	}
	w.n += int64(len(p))
	if w.n > w.max {
		close(w.over)
		return len(p), nil
	}
	w.buf.Write(p)
	return len(p), nil
}

// exceeded is called after the writer's goroutine is done.
func (w *limitWriter) exceeded() bool { return w.n > w.max }
