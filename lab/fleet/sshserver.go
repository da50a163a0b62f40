package fleet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// sshServer is the SSH server of one boot of a node's OS: it listens on
// the node's address while the OS is up, accepts the lab's controller key
// for root, and runs exec requests through the node's shell. Closing it
// (the OS going down) closes the listener and every connection.
type sshServer struct {
	n   *Node
	ctx context.Context
	ln  net.Listener
	cfg *ssh.ServerConfig

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// startSSH opens the node's SSH listener; ctx is the boot's.
func (n *Node) startSSH(ctx context.Context) (*sshServer, error) {
	ln, err := net.Listen("tcp4", n.SSHAddr())
	if err != nil {
		return nil, err
	}
	l := n.lab
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if n.hasFault(FaultSSHRefusesAuth) {
				return nil, errors.New("public key refused (fault " + string(FaultSSHRefusesAuth) + ")")
			}
			if meta.User() == sshUser && bytes.Equal(key.Marshal(), l.clientPub.Marshal()) {
				return nil, nil
			}
			return nil, errors.New("unknown public key")
		},
		ServerVersion: "SSH-2.0-OpenSSH_9.2p1 reprov-lab",
	}
	cfg.AddHostKey(n.hostKey)
	s := &sshServer{n: n, ctx: ctx, ln: ln, cfg: cfg, conns: map[net.Conn]struct{}{}}
	go s.accept()
	return s, nil
}

func (s *sshServer) accept() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		go s.serve(c)
	}
}

// close takes the OS down: no more connections, and the open ones drop.
func (s *sshServer) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
}

func (s *sshServer) forget(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
}

func (s *sshServer) serve(c net.Conn) {
	defer s.forget(c)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	sc, chans, reqs, err := ssh.NewServerConn(c, s.cfg)
	if err != nil {
		s.n.lab.log.Debug("ssh handshake failed", "node", s.n.name, "remote", c.RemoteAddr(), "err", err)
		return
	}
	defer sc.Close()
	_ = c.SetDeadline(time.Time{})
	go ssh.DiscardRequests(reqs)
	var wg sync.WaitGroup
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "only session channels")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.session(ch, creqs)
		}()
	}
	wg.Wait()
}

// session serves one session channel: one exec request.
func (s *sshServer) session(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer func() {
		ch.Close()
		go ssh.DiscardRequests(reqs)
	}()
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	done := make(chan struct{})
	started := false
	for {
		var req *ssh.Request
		var ok bool
		select {
		case req, ok = <-reqs:
		case <-done:
			return
		}
		if !ok {
			// The client closed the channel: stop the command.
			cancel()
			if started {
				<-done
			}
			return
		}
		switch req.Type {
		case "exec":
			var p struct{ Command string }
			if started || ssh.Unmarshal(req.Payload, &p) != nil {
				_ = req.Reply(false, nil)
				continue
			}
			_ = req.Reply(true, nil)
			started = true
			go func() {
				defer close(done)
				status := s.exec(ctx, p.Command, ch)
				_ = ch.CloseWrite()
				_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(status)}))
			}()
		case "signal":
			cancel()
			if req.WantReply {
				_ = req.Reply(true, nil)
			}
		case "env":
			_ = req.Reply(true, nil)
		default:
			// No pty, shell or subsystem: the lab's OS runs commands only.
			_ = req.Reply(false, nil)
		}
	}
}

// exec runs one command line after the configured latency.
func (s *sshServer) exec(ctx context.Context, cmd string, ch ssh.Channel) int {
	if d := s.n.lab.cfg.Latency; d > 0 {
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return 130
		case <-t.C:
		}
	}
	s.n.lab.log.Debug("ssh exec", "node", s.n.name, "command", truncateCmd(cmd))
	return s.n.runShell(ctx, cmd, ch, ch, ch.Stderr())
}

func truncateCmd(s string) string {
	if len(s) > 200 {
		return fmt.Sprintf("%s… (%d bytes)", s[:200], len(s))
	}
	return s
}
