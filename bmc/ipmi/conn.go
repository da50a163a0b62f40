package ipmi

import (
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"time"
)

// RMCP+ payload types seen on the wire (IPMI v2.0 Table 13-16).
const (
	payloadIPMI                = 0x00
	payloadOpenSessionRequest  = 0x10
	payloadOpenSessionResponse = 0x11
	payloadRAKP1               = 0x12
	payloadRAKP2               = 0x13
	payloadRAKP3               = 0x14
	payloadRAKP4               = 0x15
)

// Resends.
const (
	// minResendInterval is the shortest wait before a request is sent again.
	minResendInterval = 20 * time.Millisecond
	// maxOpenSessionSends bounds the sends of one Open Session Request.
	maxOpenSessionSends = 3
)

// wireConn is the UDP socket under go-ipmi's client. It exists for what
// go-ipmi does not offer:
//
//   - Retransmission within one exchange. go-ipmi sends a request and reads
//     until its deadline; wireConn sends it again every resend interval
//     until an answer arrives or the exchange's deadline passes (a lossy
//     link gets many tries within Options.Timeout, a slow one is not
//     flooded). The interval is a tenth of the exchange timeout, or twice
//     the longest round trip measured on this connection when that is more.
//     A power cycle or reset is never sent again (sendOnce).
//   - Telling the answers to retransmitted handshake messages apart (each
//     send carries its own message tag, restored before go-ipmi sees the
//     answer): the BMC draws a new random number for every RAKP Message 1
//     it receives, so only the answer to the latest one is taken and the
//     wait before each further RAKP Message 1 grows. Every Open Session
//     Request opens a session: it is sent at most three times, at doubling
//     intervals, and a session whose answer was not taken is released.
//   - Dropping datagrams that cannot answer the request outstanding (a late
//     answer to an earlier message), which go-ipmi would otherwise take.
//   - Aborting a read that a cancelled context left running (go-ipmi's
//     exchange goroutine holds the socket until its read deadline).
//   - Noticing how far a failed session handshake got, so that the
//     half-open session can be released.
type wireConn struct {
	*net.UDPConn

	// base is the resend interval before any round trip was measured.
	base time.Duration

	mu       sync.Mutex
	aborted  bool
	deadline time.Time // the reader's deadline (SetReadDeadline)
	out      request   // the request awaiting its answer
	once     bool      // send requests once, without resends
	rtt      time.Duration
	hs       handshake
	// extra holds the BMC session IDs of Open Session Responses that were
	// not taken (answers to a retransmitted request): sessions to release.
	extra []uint32
}

// request is the datagram last written, with its sends.
type request struct {
	pkt      []byte // nil: none
	kind     int    // RMCP+ payload type, payloadIPMI for IPMI messages
	tagged   bool   // handshake message: each send gets its own tag
	tag0     byte   // go-ipmi's message tag
	sent     []time.Time
	resend   bool
	limit    int // most sends (0: until the deadline)
	interval time.Duration
	next     time.Time
	answered bool
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
	// bmcSessionID is the managed system session ID of the Open Session
	// Response taken (0: none).
	bmcSessionID uint32
	// sends is how many times the last datagram was sent.
	sends int
	// rakp1Sends is how many times RAKP Message 1 was sent. After more
	// than one, the BMC may have kept the random number of another send
	// than the one whose answer was taken (it may handle them out of
	// order), and reject RAKP Message 3 although the credentials are right.
	rakp1Sends int
}

// dialer hands go-ipmi our wireConn (client.WithUDPProxy).
type dialer struct {
	timeout time.Duration // one exchange's bound

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
	w := &wireConn{
		UDPConn: c,
		base:    max(d.timeout/10, minResendInterval),
		hs:      handshake{openStatus: -1, rakp2Status: -1, rakp4Status: -1},
	}
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

// SetReadDeadline records the reader's deadline; Read waits up to it,
// sending the request again on the way.
func (w *wireConn) SetReadDeadline(t time.Time) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.deadline = t
	if w.aborted {
		t = time.Unix(1, 0)
	}
	return w.UDPConn.SetReadDeadline(t)
}

// abort makes a pending and any further read return at once, until resume.
func (w *wireConn) abort() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.aborted = true
	_ = w.UDPConn.SetReadDeadline(time.Unix(1, 0))
}

// resume undoes abort for the next operation.
func (w *wireConn) resume() {
	w.mu.Lock()
	w.aborted = false
	w.mu.Unlock()
}

// sendOnce(true) makes the requests written from now on go out once,
// without resends, until sendOnce(false): for a request that must not be
// executed twice.
func (w *wireConn) sendOnce(once bool) {
	w.mu.Lock()
	w.once = once
	w.mu.Unlock()
}

// payloadKind is an RMCP packet's RMCP+ payload type, payloadIPMI for an
// IPMI message (RMCP+ or IPMI v1.5), -1 when it is no IPMI packet.
func payloadKind(p []byte) int {
	if len(p) < 6 || p[0] != 0x06 || p[3]&0x1f != 0x07 {
		return -1
	}
	if p[4] != 0x06 {
		return payloadIPMI // IPMI v1.5 session header
	}
	return int(p[5] & 0x3f)
}

// handshakeTag is where a session setup message carries its message tag:
// RMCP header (4), auth type, payload type, session ID (4), sequence (4),
// payload length (2), then the payload, whose first byte is the tag.
const handshakeTag = 16

func (w *wireConn) Write(b []byte) (int, error) {
	w.mu.Lock()
	kind := payloadKind(b)
	r := request{pkt: append([]byte(nil), b...), kind: kind, resend: !w.once && kind >= 0}
	switch kind {
	case payloadOpenSessionRequest, payloadRAKP1, payloadRAKP3:
		if len(b) > handshakeTag {
			r.tagged, r.tag0 = true, b[handshakeTag]
		}
	}
	if kind == payloadOpenSessionRequest {
		// Every Open Session Request the BMC receives takes a slot of its
		// session table (often four), and a full table evicts the oldest
		// pending session: the one whose answer would be taken.
		r.limit = maxOpenSessionSends
	}
	r.interval = max(w.base, 2*w.rtt)
	w.out = r
	w.hs.awaiting = true
	w.hs.lastSent = 0
	if kind > 0 {
		w.hs.lastSent = byte(kind)
	}
	n, err := w.sendLocked()
	w.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return n, nil
}

// sendLocked sends the outstanding request once more (w.mu held).
func (w *wireConn) sendLocked() (int, error) {
	r := &w.out
	k := len(r.sent)
	if r.tagged {
		r.pkt[handshakeTag] = r.tag0 + byte(k)
	}
	now := time.Now()
	r.sent = append(r.sent, now)
	switch {
	case k == 0:
	case r.kind == payloadOpenSessionRequest:
		r.interval *= 2
	case r.kind == payloadRAKP1:
		// Every RAKP Message 1 replaces the BMC's random number: wait
		// longer each time, so that a slow answer is not made stale by
		// the next send forever.
		r.interval += r.interval / 4
	}
	r.next = now.Add(r.interval)
	if r.kind == payloadRAKP1 {
		w.hs.rakp1Sends = len(r.sent)
	}
	return w.UDPConn.Write(r.pkt)
}

// Read returns the next datagram that can answer the outstanding request,
// sending the request again each resend interval until then or until the
// reader's deadline.
func (w *wireConn) Read(b []byte) (int, error) {
	for {
		w.mu.Lock()
		wake := w.deadline
		r := &w.out
		resend := r.resend && r.pkt != nil && !r.answered && (r.limit == 0 || len(r.sent) < r.limit) &&
			(wake.IsZero() || r.next.Before(wake))
		if resend {
			wake = r.next
		}
		if w.aborted {
			wake = time.Unix(1, 0)
		}
		_ = w.UDPConn.SetReadDeadline(wake)
		w.mu.Unlock()

		n, err := w.UDPConn.Read(b)
		if n > 0 && w.accept(b[:n]) {
			return n, err
		}
		if err == nil || n > 0 {
			continue
		}
		var ne net.Error
		if !resend || !errors.As(err, &ne) || !ne.Timeout() {
			return n, err
		}
		w.mu.Lock()
		if w.aborted || !time.Now().Before(w.deadline) && !w.deadline.IsZero() {
			w.mu.Unlock()
			return n, err
		}
		if time.Now().Before(w.out.next) {
			w.mu.Unlock()
			continue
		}
		_, werr := w.sendLocked()
		w.mu.Unlock()
		if werr != nil {
			return 0, werr
		}
	}
}

// accept says whether datagram p can answer the outstanding request, and
// notes what it shows: handshake progress, the round trip, an Open Session
// Response that was not taken.
func (w *wireConn) accept(p []byte) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := &w.out
	kind := payloadKind(p)
	if kind == payloadOpenSessionResponse && (r.kind != payloadOpenSessionRequest || r.answered) {
		w.noteExtraSession(p)
		return false
	}
	if r.pkt == nil || kind < 0 {
		return false
	}
	switch r.kind {
	case payloadOpenSessionRequest, payloadRAKP1, payloadRAKP3:
		if kind != r.kind+1 {
			return false
		}
	default:
		if kind != payloadIPMI {
			return false
		}
	}
	k := len(r.sent) - 1 // the send this answers, when it cannot be told
	if r.tagged {
		if len(p) <= handshakeTag {
			return false
		}
		k = int(p[handshakeTag] - r.tag0)
		if k >= len(r.sent) || r.kind == payloadRAKP1 && k != len(r.sent)-1 {
			return false // not ours, or answering a RAKP Message 1 since replaced
		}
		p[handshakeTag] = r.tag0
	}
	if r.tagged || len(r.sent) == 1 {
		w.rtt = max(w.rtt, time.Since(r.sent[k]))
	}
	if r.tagged {
		r.answered = true
	}
	w.hs.awaiting = false
	w.observe(p)
	return true
}

// observe notes handshake progress from an inbound RMCP+ packet (w.mu held).
func (w *wireConn) observe(p []byte) {
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

// noteExtraSession remembers the session an Open Session Response not taken
// opened, for releaseExtraSessions (w.mu held).
func (w *wireConn) noteExtraSession(p []byte) {
	if len(p) < 28 || p[4] != 0x06 || p[17] != 0 {
		return
	}
	if id := binary.LittleEndian.Uint32(p[24:28]); id != 0 && id != w.hs.bmcSessionID {
		w.extra = append(w.extra, id)
	}
}

// releaseExtraSessions releases the pending sessions that answers not
// taken opened (see abandonHandshake).
func (w *wireConn) releaseExtraSessions() {
	w.mu.Lock()
	extra := w.extra
	w.extra = nil
	w.mu.Unlock()
	for _, id := range extra {
		w.abandonHandshake(id)
	}
}

func (w *wireConn) handshake() handshake {
	w.mu.Lock()
	defer w.mu.Unlock()
	hs := w.hs
	hs.sends = len(w.out.sent)
	return hs
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
