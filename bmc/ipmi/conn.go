package ipmi

import (
	"encoding/binary"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// RMCP+ payload types seen on the wire (IPMI v2.0 Table 13-16).
const (
	payloadOpenSessionResponse = 0x11
	payloadRAKP1               = 0x12
	payloadRAKP2               = 0x13
	payloadRAKP3               = 0x14
	payloadRAKP4               = 0x15
)

// wireConn is the UDP socket under go-ipmi's client. It exists for three
// things go-ipmi does not offer: aborting a read that a cancelled context
// left running (go-ipmi's exchange goroutine holds the socket until its
// read deadline), and noticing how far a failed session handshake got (so the
// half-open session can be released).
type wireConn struct {
	*net.UDPConn

	aborted atomic.Bool

	mu sync.Mutex
	hs handshake
}

// handshake is what the wire showed of a session setup.
type handshake struct {
	// lastSent is the RMCP+ payload type of the last datagram sent (0 for
	// an IPMI message).
	lastSent byte
	// awaiting: nothing arrived since the last datagram was sent.
	awaiting bool
	// Status codes of the Open Session Response and RAKP Messages 2 and 4
	// (-1: not seen).
	openStatus, rakp2Status, rakp4Status int
	// bmcSessionID is the managed system session ID of the last successful
	// Open Session Response (0: none).
	bmcSessionID uint32
}

// dialer hands go-ipmi our wireConn (client.WithUDPProxy).
type dialer struct {
	mu   sync.Mutex
	conn *wireConn
}

func (d *dialer) Dial(network, addr string) (net.Conn, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	c, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		return nil, err
	}
	w := &wireConn{UDPConn: c, hs: handshake{openStatus: -1, rakp2Status: -1, rakp4Status: -1}}
	d.mu.Lock()
	d.conn = w
	d.mu.Unlock()
	return w, nil
}

// get returns the socket dialled so far, or nil.
func (d *dialer) get() *wireConn {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conn
}

// SetReadDeadline keeps an aborted socket's deadline in the past.
func (w *wireConn) SetReadDeadline(t time.Time) error {
	if w.aborted.Load() {
		t = time.Unix(1, 0)
	}
	return w.UDPConn.SetReadDeadline(t)
}

// abort makes a pending and any further read return at once, until resume.
func (w *wireConn) abort() {
	w.aborted.Store(true)
	_ = w.UDPConn.SetReadDeadline(time.Unix(1, 0))
}

// resume undoes abort for the next operation.
func (w *wireConn) resume() { w.aborted.Store(false) }

func (w *wireConn) Read(b []byte) (int, error) {
	n, err := w.UDPConn.Read(b)
	if n > 0 {
		w.observe(b[:n])
	}
	return n, err
}

func (w *wireConn) Write(b []byte) (int, error) {
	w.mu.Lock()
	w.hs.awaiting = true
	w.hs.lastSent = 0
	if len(b) >= 6 && b[0] == 0x06 && b[3]&0x1f == 0x07 && b[4] == 0x06 {
		w.hs.lastSent = b[5] & 0x3f
	}
	w.mu.Unlock()
	return w.UDPConn.Write(b)
}

// observe notes handshake progress from an inbound RMCP+ packet.
func (w *wireConn) observe(p []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.hs.awaiting = false
	// RMCP header (4), auth type 06h, payload type, session ID (4),
	// sequence (4), payload length (2), payload: tag, status, ...
	if len(p) < 18 || p[0] != 0x06 || p[3]&0x1f != 0x07 || p[4] != 0x06 {
		return
	}
	payload := p[16:]
	status := int(payload[1])
	switch p[5] & 0x3f {
	case payloadOpenSessionResponse:
		w.hs.openStatus, w.hs.rakp2Status, w.hs.rakp4Status = status, -1, -1
		// ..., max privilege, reserved, console ID (4), BMC ID (4).
		if status == 0 && len(payload) >= 12 {
			w.hs.bmcSessionID = binary.LittleEndian.Uint32(payload[8:12])
		}
	case payloadRAKP2:
		w.hs.rakp2Status = status
	case payloadRAKP4:
		w.hs.rakp4Status = status
	}
}

func (w *wireConn) handshake() handshake {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.hs
}

// abandonHandshake tells the BMC to discard a pending session: RAKP Message
// 3 with a non-zero status ("invalid integrity check value", as ipmitool
// sends when RAKP Message 2 does not verify) makes the BMC free the slot
// (IPMI v2.0 §13.20–13.22). Sent twice, without waiting for an answer.
func (w *wireConn) abandonHandshake(bmcSessionID uint32) {
	pkt := []byte{
		0x06, 0x00, 0xff, 0x07, // RMCP: version, reserved, seq (no ACK), class IPMI
		0x06, payloadRAKP3, // RMCP+ auth type, payload type
		0, 0, 0, 0, // session ID
		0, 0, 0, 0, // session sequence
		8, 0, // payload length
		0x00, 0x0f, 0x00, 0x00, // tag, status 0Fh, reserved
		0, 0, 0, 0, // managed system session ID
	}
	binary.LittleEndian.PutUint32(pkt[20:24], bmcSessionID)
	_, _ = w.UDPConn.Write(pkt)
	_, _ = w.UDPConn.Write(pkt)
}
