package udpproxy_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/reprov/reprov/lab/udpproxy"
)

// echo starts a UDP echo server.
func echo(t *testing.T) string {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, addr, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = c.WriteTo(buf[:n], addr)
		}
	}()
	return c.LocalAddr().String()
}

func start(t *testing.T) (*udpproxy.Proxy, net.Conn) {
	t.Helper()
	p, err := udpproxy.Start(context.Background(), udpproxy.Config{Target: echo(t), Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	c, err := net.Dial("udp4", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return p, c
}

// roundTrip sends msg and reports whether the echo came back within d.
func roundTrip(t *testing.T, c net.Conn, msg string, d time.Duration) bool {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 2048)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return false
		}
		if string(buf[:n]) == msg {
			return true
		}
	}
}

func TestForwardsAndCounts(t *testing.T) {
	p, c := start(t)
	for i := 0; i < 3; i++ {
		if !roundTrip(t, c, "ping", time.Second) {
			t.Fatalf("round trip %d through a healthy proxy failed", i)
		}
	}
	s := p.Stats()
	if s.RequestsForwarded != 3 || s.ResponsesForwarded != 3 || s.RequestsDropped != 0 {
		t.Errorf("stats %+v, want 3 each way, nothing dropped", s)
	}
}

func TestDropNextAndLoss(t *testing.T) {
	p, c := start(t)
	p.DropNext(udpproxy.Requests, 1)
	if roundTrip(t, c, "a", 200*time.Millisecond) {
		t.Fatal("the first request should have been dropped")
	}
	if !roundTrip(t, c, "b", time.Second) {
		t.Fatal("the second request should pass")
	}
	p.DropNext(udpproxy.Responses, 1)
	if roundTrip(t, c, "c", 200*time.Millisecond) {
		t.Fatal("the response should have been dropped")
	}
	if s := p.Stats(); s.RequestsDropped != 1 || s.ResponsesDropped != 1 || s.RequestsReceived != 3 {
		t.Errorf("stats %+v", s)
	}
	p.SetLoss(udpproxy.Both, 1)
	if roundTrip(t, c, "d", 200*time.Millisecond) {
		t.Fatal("total loss let a datagram through")
	}
	p.Heal()
	if !roundTrip(t, c, "e", time.Second) {
		t.Fatal("healed proxy does not forward")
	}
}

func TestDelay(t *testing.T) {
	p, c := start(t)
	p.SetDelay(150 * time.Millisecond)
	if roundTrip(t, c, "slow", 100*time.Millisecond) {
		t.Fatal("answer came back before the added delay")
	}
	if !roundTrip(t, c, "slow2", 2*time.Second) {
		t.Fatal("delayed answer never came")
	}
}

func TestFilter(t *testing.T) {
	p, c := start(t)
	p.SetFilter(func(dir udpproxy.Direction, pkt []byte) bool {
		return dir == udpproxy.Requests && string(pkt) == "drop me"
	})
	if roundTrip(t, c, "drop me", 200*time.Millisecond) {
		t.Fatal("filtered datagram passed")
	}
	if !roundTrip(t, c, "keep me", time.Second) {
		t.Fatal("unfiltered datagram dropped")
	}
}
