package ipmi

import (
	"encoding/binary"
	"net"
	"testing"
	"time"
)

// peer is a scripted BMC end on loopback: the test reads what wireConn sent
// and writes the answers it chooses, in the order it chooses.
type peer struct {
	t    *testing.T
	conn *net.UDPConn
	from *net.UDPAddr
}

func newPeer(t *testing.T) (*peer, *wireConn) {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	d := &dialer{timeout: 2 * time.Second} // a resend every 200 ms
	nc, err := d.Dial("udp", c.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	w := nc.(*wireConn)
	t.Cleanup(func() { _ = w.Close() })
	return &peer{t: t, conn: c}, w
}

// recv reads the next datagram wireConn sent.
func (p *peer) recv() []byte {
	p.t.Helper()
	buf := make([]byte, 512)
	_ = p.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := p.conn.ReadFromUDP(buf)
	if err != nil {
		p.t.Fatalf("peer: nothing sent: %v", err)
	}
	p.from = from
	return buf[:n]
}

func (p *peer) send(pkt []byte) {
	p.t.Helper()
	if _, err := p.conn.WriteToUDP(pkt, p.from); err != nil {
		p.t.Fatal(err)
	}
}

// setupPacket is an RMCP+ session setup message: payload type, then a
// payload of tag, status, reserved (2), and rest.
func setupPacket(payloadType, tag, status byte, rest ...byte) []byte {
	payload := append([]byte{tag, status, 0, 0}, rest...)
	p := []byte{0x06, 0x00, 0xff, 0x07, 0x06, payloadType, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.LittleEndian.PutUint16(p[14:16], uint16(len(payload)))
	return append(p, payload...)
}

// read runs w.Read with a deadline in the background.
func read(w *wireConn, within time.Duration) chan []byte {
	got := make(chan []byte, 1)
	_ = w.SetReadDeadline(time.Now().Add(within))
	go func() {
		buf := make([]byte, 512)
		n, err := w.Read(buf)
		if err != nil {
			got <- nil
			return
		}
		got <- buf[:n]
	}()
	return got
}

// The BMC draws a new random number for every RAKP Message 1 it receives:
// when an answer to the first send arrives after the request was sent
// again, it is stale, and only the answer to the latest send may be taken.
func TestStaleRAKP2IsNotTaken(t *testing.T) {
	p, w := newPeer(t)
	if _, err := w.Write(setupPacket(payloadRAKP1, 0, 0, 1, 2, 3, 4)); err != nil {
		t.Fatal(err)
	}
	got := read(w, 2*time.Second)
	first, again := p.recv(), p.recv()
	if first[handshakeTag] == again[handshakeTag] {
		t.Fatalf("the resent RAKP Message 1 carries the same tag %#x: its answer cannot be told apart", again[handshakeTag])
	}
	p.send(setupPacket(payloadRAKP2, first[handshakeTag], 0, 0xaa)) // stale: random number 0xaa
	p.send(setupPacket(payloadRAKP2, again[handshakeTag], 0, 0xbb))
	ans := <-got
	if ans == nil {
		t.Fatal("no answer taken")
	}
	if ans[20] != 0xbb {
		t.Errorf("took the answer with random number %#x, want the latest send's (0xbb)", ans[20])
	}
	if ans[handshakeTag] != 0 {
		t.Errorf("answer's tag %#x, want go-ipmi's own (0) restored", ans[handshakeTag])
	}
}

// Every Open Session Request opens a session: the answer first received is
// taken, and the session a later answer names is released.
func TestExtraOpenSessionIsReleased(t *testing.T) {
	p, w := newPeer(t)
	if _, err := w.Write(setupPacket(payloadOpenSessionRequest, 0, 0)); err != nil {
		t.Fatal(err)
	}
	got := read(w, 2*time.Second)
	first, again := p.recv(), p.recv()
	open := func(tag byte, id uint32) []byte {
		rest := make([]byte, 8) // console session ID, BMC session ID
		binary.LittleEndian.PutUint32(rest[4:], id)
		return setupPacket(payloadOpenSessionResponse, tag, 0, rest...)
	}
	p.send(open(first[handshakeTag], 0x1111))
	if ans := <-got; ans == nil || binary.LittleEndian.Uint32(ans[24:28]) != 0x1111 {
		t.Fatalf("answer taken %x, want session 0x1111's", ans)
	}
	if hs := w.handshake(); hs.bmcSessionID != 0x1111 {
		t.Errorf("handshake notes session %#x, want 0x1111", hs.bmcSessionID)
	}
	// The next message goes out; the late answer to the second Open
	// Session Request arrives while it waits.
	if _, err := w.Write(setupPacket(payloadRAKP1, 0, 0)); err != nil {
		t.Fatal(err)
	}
	got = read(w, 300*time.Millisecond)
	_ = p.recv()
	p.send(open(again[handshakeTag], 0x2222))
	if ans := <-got; ans != nil && ans[5]&0x3f != payloadRAKP2 {
		t.Fatalf("took %x as the answer to RAKP Message 1", ans)
	}
	w.releaseExtraSessions()
	for {
		pkt := p.recv()
		if pkt[5]&0x3f == payloadRAKP3 && pkt[17] != 0 && binary.LittleEndian.Uint32(pkt[20:24]) == 0x2222 {
			break // RAKP Message 3 with an error status: session 0x2222 released
		}
	}
	if hs := w.handshake(); hs.bmcSessionID != 0x1111 {
		t.Errorf("handshake notes session %#x after the late answer, want 0x1111", hs.bmcSessionID)
	}
}

// A request marked send-once (a power cycle) goes out once however long
// its answer takes.
func TestSendOnceIsNotResent(t *testing.T) {
	p, w := newPeer(t)
	w.sendOnce(true)
	ipmiMsg := []byte{0x06, 0x00, 0xff, 0x07, 0x06, 0xc0, 1, 0, 0, 0, 1, 0, 0, 0, 4, 0, 1, 2, 3, 4}
	if _, err := w.Write(ipmiMsg); err != nil {
		t.Fatal(err)
	}
	got := read(w, 700*time.Millisecond)
	_ = p.recv()
	if ans := <-got; ans != nil {
		t.Fatalf("an answer from nowhere: %x", ans)
	}
	_ = p.conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, _, err := p.conn.ReadFromUDP(make([]byte, 512)); err == nil {
		t.Errorf("the send-once request was sent again (%d bytes)", n)
	}
	// An ordinary request is sent again.
	w.sendOnce(false)
	if _, err := w.Write(ipmiMsg); err != nil {
		t.Fatal(err)
	}
	got = read(w, time.Second)
	_, _ = p.recv(), p.recv()
	<-got
}
