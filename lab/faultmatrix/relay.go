package faultmatrix

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// relay is a TCP relay on the lab's landing address in front of the
// controllers' landing endpoint. Its outage closes the listener and every
// connection, and rebinds the address after a while: from the nodes' side,
// the landing endpoint restarted.
type relay struct {
	ctx    context.Context
	addr   string // the lab's landing address (what nodes connect to)
	target string // where the controllers' landing endpoint listens

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func startRelay(ctx context.Context, addr, _ string) (*relay, error) {
	free, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultmatrix: pick the landing endpoint's port: %w", err)
	}
	target := free.Addr().String()
	free.Close()
	r := &relay{ctx: ctx, addr: addr, target: target, conns: map[net.Conn]struct{}{}}
	if err := r.listen(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *relay) listen() error {
	ln, err := net.Listen("tcp4", r.addr)
	if err != nil {
		return fmt.Errorf("faultmatrix: landing relay on %s: %w", r.addr, err)
	}
	r.mu.Lock()
	r.ln = ln
	r.mu.Unlock()
	r.wg.Add(1)
	go r.accept(ln)
	return nil
}

func (r *relay) accept(ln net.Listener) {
	defer r.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		r.conns[c] = struct{}{}
		r.mu.Unlock()
		go r.pipe(c)
	}
}

func (r *relay) pipe(c net.Conn) {
	defer func() {
		r.mu.Lock()
		delete(r.conns, c)
		r.mu.Unlock()
		c.Close()
	}()
	var d net.Dialer
	up, err := d.DialContext(r.ctx, "tcp4", r.target)
	if err != nil {
		return
	}
	r.mu.Lock()
	r.conns[up] = struct{}{}
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.conns, up)
		r.mu.Unlock()
		up.Close()
	}()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
}

// down closes the listener and every connection.
func (r *relay) down() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ln != nil {
		r.ln.Close()
		r.ln = nil
	}
	for c := range r.conns {
		c.Close()
	}
}

// outage takes the address away for d, then rebinds it (in the
// background).
func (r *relay) outage(d time.Duration) {
	r.down()
	go func() {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		}
		for r.ctx.Err() == nil {
			if err := r.listen(); err == nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
}

func (r *relay) close() {
	r.down()
	r.wg.Wait()
}
