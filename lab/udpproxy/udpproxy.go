// Package udpproxy is a UDP proxy for tests: it sits between clients and one
// UDP server on loopback, forwards datagrams both ways and injects faults —
// random loss, dropping the next N datagrams, dropping everything, added
// delay — while counting the datagrams each way, so a test can make a BMC
// lossy or slow and count the exchanges a client needed.
//
// Each client address gets its own upstream socket, so the server sees one
// peer per client, as it would without the proxy.
package udpproxy

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Direction selects which datagrams a fault applies to.
type Direction int

// Directions.
const (
	// Both applies to requests and responses.
	Both Direction = iota
	// Requests are datagrams from a client to the target.
	Requests
	// Responses are datagrams from the target back to a client.
	Responses
)

// Config configures a Proxy.
type Config struct {
	// Listen is the address clients send to; default "127.0.0.1:0".
	Listen string
	// Target is the server's address (host:port).
	Target string
	// Seed seeds the loss generator, for reproducible loss patterns; 0 picks
	// a random seed.
	Seed uint64
	// IdleTimeout closes a client's upstream socket after this long without
	// traffic; default 30 s.
	IdleTimeout time.Duration
}

// Stats counts datagrams. Received counts what arrived at the proxy,
// Forwarded what it passed on, Dropped what a fault discarded.
type Stats struct {
	RequestsReceived   uint64
	RequestsForwarded  uint64
	RequestsDropped    uint64
	ResponsesReceived  uint64
	ResponsesForwarded uint64
	ResponsesDropped   uint64
}

// Sub returns s minus an earlier snapshot o.
func (s Stats) Sub(o Stats) Stats {
	return Stats{
		RequestsReceived:   s.RequestsReceived - o.RequestsReceived,
		RequestsForwarded:  s.RequestsForwarded - o.RequestsForwarded,
		RequestsDropped:    s.RequestsDropped - o.RequestsDropped,
		ResponsesReceived:  s.ResponsesReceived - o.ResponsesReceived,
		ResponsesForwarded: s.ResponsesForwarded - o.ResponsesForwarded,
		ResponsesDropped:   s.ResponsesDropped - o.ResponsesDropped,
	}
}

// Proxy forwards UDP datagrams between clients and one target with faults.
type Proxy struct {
	listen *net.UDPConn
	target *net.UDPAddr
	idle   time.Duration

	mu        sync.Mutex
	rng       *rand.Rand
	lossReq   float64
	lossResp  float64
	dropReq   int
	dropResp  int
	delay     time.Duration
	filter    func(dir Direction, pkt []byte) bool
	upstreams map[string]*upstream
	closed    bool

	reqRecv, reqFwd, reqDrop    atomic.Uint64
	respRecv, respFwd, respDrop atomic.Uint64

	wg sync.WaitGroup
}

type upstream struct {
	conn   *net.UDPConn
	client *net.UDPAddr
}

// Start listens on cfg.Listen and forwards to cfg.Target until Close or
// until ctx is done.
func Start(ctx context.Context, cfg Config) (*Proxy, error) {
	if cfg.Target == "" {
		return nil, errors.New("udpproxy: no target address")
	}
	target, err := net.ResolveUDPAddr("udp", cfg.Target)
	if err != nil {
		return nil, fmt.Errorf("udpproxy: resolve target %q: %w", cfg.Target, err)
	}
	listenAddr := cfg.Listen
	if listenAddr == "" {
		listenAddr = "127.0.0.1:0"
	}
	la, err := net.ResolveUDPAddr("udp", listenAddr)
	if err != nil {
		return nil, fmt.Errorf("udpproxy: resolve listen address %q: %w", listenAddr, err)
	}
	l, err := net.ListenUDP("udp", la)
	if err != nil {
		return nil, fmt.Errorf("udpproxy: listen %s: %w", listenAddr, err)
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	idle := cfg.IdleTimeout
	if idle <= 0 {
		idle = 30 * time.Second
	}
	p := &Proxy{
		listen:    l,
		target:    target,
		idle:      idle,
		rng:       rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		upstreams: make(map[string]*upstream),
	}
	p.wg.Add(1)
	go p.serve()
	context.AfterFunc(ctx, func() { _ = p.Close() })
	return p, nil
}

// Addr is the address clients send to (host:port).
func (p *Proxy) Addr() string { return p.listen.LocalAddr().String() }

// Host is the IP clients send to.
func (p *Proxy) Host() string { return p.listen.LocalAddr().(*net.UDPAddr).IP.String() }

// Port is the UDP port clients send to.
func (p *Proxy) Port() int { return p.listen.LocalAddr().(*net.UDPAddr).Port }

// SetLoss makes each datagram in direction dir be dropped with probability
// prob (0 = no loss, 1 = total loss).
func (p *Proxy) SetLoss(dir Direction, prob float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if dir == Both || dir == Requests {
		p.lossReq = prob
	}
	if dir == Both || dir == Responses {
		p.lossResp = prob
	}
}

// DropNext drops the next n datagrams in direction dir (with Both, the next
// n requests and the next n responses).
func (p *Proxy) DropNext(dir Direction, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if dir == Both || dir == Requests {
		p.dropReq = n
	}
	if dir == Both || dir == Responses {
		p.dropResp = n
	}
}

// SetDelay delays every forwarded datagram (both directions) by d.
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = d
}

// SetFilter installs fn to choose datagrams to drop by content: it is called
// for each datagram (dir is Requests or Responses) that the other faults let
// through, and a true result drops it. nil removes the filter. fn must not
// keep pkt.
func (p *Proxy) SetFilter(fn func(dir Direction, pkt []byte) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.filter = fn
}

// Heal removes every fault: no loss, nothing pending to drop, no delay.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lossReq, p.lossResp, p.dropReq, p.dropResp, p.delay = 0, 0, 0, 0, 0
	p.filter = nil
}

// Stats returns the datagram counters.
func (p *Proxy) Stats() Stats {
	return Stats{
		RequestsReceived:   p.reqRecv.Load(),
		RequestsForwarded:  p.reqFwd.Load(),
		RequestsDropped:    p.reqDrop.Load(),
		ResponsesReceived:  p.respRecv.Load(),
		ResponsesForwarded: p.respFwd.Load(),
		ResponsesDropped:   p.respDrop.Load(),
	}
}

// Close stops the proxy and closes every socket. It is safe to call twice.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	ups := p.upstreams
	p.upstreams = map[string]*upstream{}
	p.mu.Unlock()
	err := p.listen.Close()
	for _, u := range ups {
		_ = u.conn.Close()
	}
	p.wg.Wait()
	return err
}

// decide reports whether to forward a datagram in one direction, and the
// delay to apply.
func (p *Proxy) decide(req bool, pkt []byte) (forward bool, delay time.Duration) {
	p.mu.Lock()
	filter := p.filter
	forward, delay = p.decideLocked(req)
	p.mu.Unlock()
	if forward && filter != nil {
		dir := Responses
		if req {
			dir = Requests
		}
		if filter(dir, pkt) {
			return false, 0
		}
	}
	return forward, delay
}

func (p *Proxy) decideLocked(req bool) (forward bool, delay time.Duration) {
	drop := &p.dropResp
	loss := p.lossResp
	if req {
		drop = &p.dropReq
		loss = p.lossReq
	}
	if *drop > 0 {
		*drop--
		return false, 0
	}
	if loss > 0 && p.rng.Float64() < loss {
		return false, 0
	}
	return true, p.delay
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	buf := make([]byte, 64*1024)
	for {
		n, client, err := p.listen.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		p.reqRecv.Add(1)
		pkt := append([]byte(nil), buf[:n]...)
		up, err := p.upstreamFor(client)
		if err != nil {
			p.reqDrop.Add(1)
			continue
		}
		forward, delay := p.decide(true, pkt)
		if !forward {
			p.reqDrop.Add(1)
			continue
		}
		p.send(delay, func() {
			if _, err := up.conn.Write(pkt); err == nil {
				p.reqFwd.Add(1)
			}
		})
	}
}

func (p *Proxy) send(delay time.Duration, fn func()) {
	if delay <= 0 {
		fn()
		return
	}
	time.AfterFunc(delay, fn)
}

func (p *Proxy) upstreamFor(client *net.UDPAddr) (*upstream, error) {
	key := client.String()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, net.ErrClosed
	}
	if u, ok := p.upstreams[key]; ok {
		return u, nil
	}
	conn, err := net.DialUDP("udp", nil, p.target)
	if err != nil {
		return nil, err
	}
	u := &upstream{conn: conn, client: client}
	p.upstreams[key] = u
	p.wg.Add(1)
	go p.relayResponses(key, u)
	return u, nil
}

func (p *Proxy) relayResponses(key string, u *upstream) {
	defer p.wg.Done()
	buf := make([]byte, 64*1024)
	for {
		_ = u.conn.SetReadDeadline(time.Now().Add(p.idle))
		n, err := u.conn.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Idle: retire this client's upstream socket.
				p.mu.Lock()
				if p.upstreams[key] == u {
					delete(p.upstreams, key)
				}
				p.mu.Unlock()
				_ = u.conn.Close()
				return
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// ICMP port unreachable and the like: keep relaying.
			continue
		}
		p.respRecv.Add(1)
		pkt := append([]byte(nil), buf[:n]...)
		forward, delay := p.decide(false, pkt)
		if !forward {
			p.respDrop.Add(1)
			continue
		}
		p.send(delay, func() {
			if _, err := p.listen.WriteToUDP(pkt, u.client); err == nil {
				p.respFwd.Add(1)
			}
		})
	}
}
