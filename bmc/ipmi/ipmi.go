// Package ipmi is reprov's IPMI implementation of bmc.Client, on go-ipmi's
// client over RMCP+ (IPMI v2.0 "lanplus").
//
// Security: only the cipher suites configured (default 17, then 3) are
// tried, each explicitly and in order — never go-ipmi's suite discovery.
// Suite 0 (no authentication, integrity or confidentiality) is refused with
// bmc.ErrInsecureRefused before any packet is sent unless the node opts in
// (AllowInsecureIPMI, logged as a warning); suites other than 0, 3 and 17
// are refused (suite 2's session setup is broken in go-ipmi). IPMI v1.5
// sessions are never used.
//
// Exchanges: each exchange is bounded by Options.Timeout (default 5 s);
// within it the request is sent again every tenth of the timeout (or twice
// the longest round trip seen on the connection, when that is more) until it
// is answered, so that a session opens through a link losing 30 % each way
// (docs/reliability.md). Whole operations are retried by bmc's wrappers,
// which retry errors marked
// bmc.Temporary: no answer, and the completion codes that mean busy (C0h,
// C3h, C4h, CEh, D0h–D2h). Power cycle and reset are sent once: a
// retransmitted cycle could cycle the machine twice and lose the one-time
// boot override.
//
// Sessions: Close always closes the session, with a fresh short context
// when the caller's is done, and is safe to call twice. A session setup that
// fails half-way releases the BMC's session slot where the protocol allows:
// RAKP Message 3 with an error status after an answered Open Session, Close
// Session after an answered RAKP Message 4.
package ipmi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/command/chassis"
	"github.com/bougou/go-ipmi/pkg/types"

	"github.com/reprov/reprov/bmc"
)

// Defaults.
const (
	// DefaultPort is the RMCP port.
	DefaultPort = 623
	// DefaultTimeout bounds one exchange.
	DefaultTimeout = 5 * time.Second
	// closeTimeout bounds Close when the caller's context is already done.
	closeTimeout = 3 * time.Second
)

// DefaultCipherSuites are tried in this order when a node configures none.
func DefaultCipherSuites() []int { return []int{17, 3} }

// Protocol is what Client.Protocol and Identity.Protocol report.
const Protocol = "ipmi"

// Client is an open RMCP+ session with one BMC. Its methods are safe for
// concurrent use; they run one at a time.
type Client struct {
	name    string // host:port, for errors and logs
	log     *slog.Logger
	timeout time.Duration
	verify  bmc.VerifyLevel
	keepBFT bool
	suite   int

	mu     sync.Mutex
	c      *client.Client
	conn   *wireConn
	closed bool
}

var _ bmc.Client = (*Client)(nil)

// settings are an endpoint's resolved options.
type settings struct {
	host      string
	port      int
	name      string
	suites    []int
	privilege types.PrivilegeLevel
	timeout   time.Duration
	verify    bmc.VerifyLevel
	keepBFT   bool
}

func resolve(ep bmc.Endpoint) (settings, error) {
	s := settings{host: ep.Host, port: ep.Port, timeout: ep.Options.Timeout, keepBFT: ep.Options.KeepBootFlagTimeout}
	if s.port == 0 {
		s.port = DefaultPort
	}
	s.name = net.JoinHostPort(s.host, strconv.Itoa(s.port))
	if s.host == "" {
		return s, errors.New("no BMC host")
	}
	if s.timeout <= 0 {
		s.timeout = DefaultTimeout
	}
	s.suites = ep.Options.CipherSuites
	if len(s.suites) == 0 {
		s.suites = DefaultCipherSuites()
	}
	for _, id := range s.suites {
		switch id {
		case 17, 3:
		case 0:
			if !ep.Options.AllowInsecureIPMI {
				return s, fmt.Errorf("%w: cipher suite 0 (no authentication, integrity or encryption) needs allow_insecure_ipmi", bmc.ErrInsecureRefused)
			}
		default:
			return s, fmt.Errorf("cipher suite %d: %w (reprov speaks 17, 3, and 0 with allow_insecure_ipmi)", id, bmc.ErrUnsupported)
		}
	}
	switch strings.ToLower(ep.Options.Privilege) {
	case "", "administrator", "admin":
		s.privilege = types.PrivilegeLevelAdministrator
	case "operator":
		s.privilege = types.PrivilegeLevelOperator
	case "user":
		s.privilege = types.PrivilegeLevelUser
	default:
		return s, fmt.Errorf("unknown IPMI privilege %q (user, operator, administrator)", ep.Options.Privilege)
	}
	switch ep.Options.Verify {
	case "":
		s.verify = bmc.VerifyFull
	case bmc.VerifyFull, bmc.VerifyDeviceOnly, bmc.VerifyOff:
		s.verify = ep.Options.Verify
	default:
		return s, fmt.Errorf("unknown verify level %q (full, device-only, off)", ep.Options.Verify)
	}
	return s, nil
}

// Open opens an RMCP+ session with the BMC at ep, trying its cipher suites
// in order. Errors are *bmc.OpError wrapping bmc.ErrInsecureRefused,
// bmc.ErrUnsupported (a suite reprov refuses), bmc.ErrCipherSuite (the BMC
// offers none of them), bmc.ErrAuthentication, bmc.ErrNoAnswer or
// bmc.ErrBusy (both temporary), or the context's error.
func Open(ctx context.Context, ep bmc.Endpoint, log *slog.Logger) (bmc.Client, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s, err := resolve(ep)
	if err != nil {
		return nil, &bmc.OpError{Op: "connect", BMC: s.name, Err: err}
	}
	if err := ctx.Err(); err != nil {
		return nil, &bmc.OpError{Op: "connect", BMC: s.name, Err: err}
	}
	var refused []string
	for _, suite := range s.suites {
		if suite == 0 {
			log.Warn("IPMI cipher suite 0 allowed by configuration: no authentication, integrity or encryption", "bmc", s.name)
		}
		c, conn, kind, err := connect(ctx, s, ep.Username, ep.Password, suite)
		if err == nil {
			log.Debug("IPMI session open", "bmc", s.name, "cipher_suite", suite)
			return &Client{
				name:    s.name,
				log:     log,
				timeout: s.timeout,
				verify:  s.verify,
				keepBFT: s.keepBFT,
				suite:   suite,
				c:       c,
				conn:    conn,
			}, nil
		}
		if kind == setupSuiteRefused {
			log.Debug("IPMI cipher suite refused", "bmc", s.name, "cipher_suite", suite, "err", err)
			refused = append(refused, fmt.Sprintf("%d (%v)", suite, err))
			continue
		}
		return nil, &bmc.OpError{Op: fmt.Sprintf("connect (cipher suite %d)", suite), BMC: s.name, Err: err}
	}
	return nil, &bmc.OpError{Op: "connect", BMC: s.name,
		Err: fmt.Errorf("%w: tried %s", bmc.ErrCipherSuite, strings.Join(refused, ", "))}
}

// connect sets up one session with one cipher suite. On failure nothing is
// left open: the socket is closed and the BMC's session slot released where
// the handshake got far enough to name it.
func connect(ctx context.Context, s settings, user, pass string, suite int) (*client.Client, *wireConn, setupFailure, error) {
	c, err := client.NewClient(s.host, s.port, user, pass)
	if err != nil {
		return nil, nil, setupOther, fmt.Errorf("%w: %v", bmc.ErrAuthentication, err)
	}
	// One attempt per exchange as go-ipmi sees it: wireConn sends the
	// request again within it.
	d := &dialer{timeout: s.timeout}
	c.WithUDPProxy(d).
		WithTimeout(s.timeout).
		WithRetry(0).
		WithCipherSuiteID(types.CipherSuiteID(suite)).
		WithMaxPrivilegeLevel(s.privilege)

	stop := abortOnDone(ctx, func() {
		if w := d.get(); w != nil {
			w.abort()
		}
	})
	err = c.Connect(ctx)
	stop()
	w := d.get()
	if err == nil {
		w.releaseExtraSessions()
		return c, w, 0, nil
	}
	if w == nil {
		kind, cerr := classifySetup(ctx, err, handshake{openStatus: -1, rakp2Status: -1, rakp4Status: -1}, suite)
		return nil, nil, kind, cerr
	}
	kind, cerr := classifySetup(ctx, err, w.handshake(), suite)
	cleanupFailedSetup(c, w, s.timeout)
	return nil, nil, kind, cerr
}

// abortOnDone runs abort when ctx is done; the returned stop waits for an
// abort already under way, so that none lands after the next operation
// started.
func abortOnDone(ctx context.Context, abort func()) (stop func()) {
	done := make(chan struct{})
	stopAfter := context.AfterFunc(ctx, func() {
		defer close(done)
		abort()
	})
	return func() {
		if !stopAfter() {
			<-done
		}
	}
}

// cleanupFailedSetup releases what a failed handshake left at the BMC and
// closes the socket.
func cleanupFailedSetup(c *client.Client, w *wireConn, timeout time.Duration) {
	w.resume()
	w.releaseExtraSessions()
	hs := w.handshake()
	switch {
	case hs.rakp4Status == 0:
		// The BMC activated the session (e.g. Set Session Privilege Level
		// failed afterwards): close it properly. go-ipmi's Close also
		// closes the socket.
		ctx, cancel := context.WithTimeout(context.Background(), min(timeout, closeTimeout))
		defer cancel()
		c.WithRetry(0)
		_ = c.Close(ctx)
	case hs.openStatus == 0 && hs.bmcSessionID != 0:
		w.abandonHandshake(hs.bmcSessionID)
	}
	_ = w.Close()
}

// Protocol is "ipmi".
func (cl *Client) Protocol() string { return Protocol }

// CipherSuite is the suite the session uses.
func (cl *Client) CipherSuite() int { return cl.suite }

// op runs fn with the session held, ctx honoured (an abandoned read is
// aborted on cancellation) and its error classified and wrapped.
func (cl *Client) op(ctx context.Context, name string, fn func(ctx context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return &bmc.OpError{Op: name, BMC: cl.name, Err: err}
	}
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.closed {
		return &bmc.OpError{Op: name, BMC: cl.name, Err: errors.New("session closed")}
	}
	if err := ctx.Err(); err != nil {
		return &bmc.OpError{Op: name, BMC: cl.name, Err: err}
	}
	cl.conn.resume()
	stop := abortOnDone(ctx, cl.conn.abort)
	err := fn(ctx)
	stop()
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
			err = fmt.Errorf("%w: %v", ctxErr, err)
		} else if !errors.Is(err, bmc.ErrNoAnswer) && isNoAnswer(err) {
			err = noAnswer(err, cl.conn.handshake().sends)
		}
		return &bmc.OpError{Op: name, BMC: cl.name, Err: classify(err)}
	}
	return nil
}

// PowerState reads the chassis power state (Get Chassis Status).
func (cl *Client) PowerState(ctx context.Context) (bmc.PowerState, error) {
	state := bmc.PowerUnknown
	err := cl.op(ctx, "power state", func(ctx context.Context) error {
		on, err := cl.powerOn(ctx)
		if err == nil {
			state = bmc.PowerOff
			if on {
				state = bmc.PowerOn
			}
		}
		return err
	})
	return state, err
}

func (cl *Client) powerOn(ctx context.Context) (bool, error) {
	st, err := cl.c.GetChassisStatus(ctx)
	if err != nil {
		return false, err
	}
	return st.PowerIsOn, nil
}

// SetPower changes power. Cycle and reset are sent as they are, without
// reading the power state first: one exchange in the common case. A BMC
// that refuses them with a completion code (many answer D5h, "not
// supported in present state", for a machine that is off) gets one Get
// Chassis Status; when it reports the machine off, the error wraps
// bmc.ErrPoweredOff and nothing was changed: the caller powers on instead.
func (cl *Client) SetPower(ctx context.Context, action bmc.PowerAction) error {
	return cl.op(ctx, "power "+string(action), func(ctx context.Context) error {
		switch action {
		case bmc.ActionOn:
			return cl.chassisControl(ctx, chassis.ChassisControlPowerUp, true)
		case bmc.ActionOff:
			return cl.chassisControl(ctx, chassis.ChassisControlPowerDown, true)
		case bmc.ActionCycle, bmc.ActionReset:
			ctl := chassis.ChassisControlPowerCycle
			if action == bmc.ActionReset {
				ctl = chassis.ChassisControlHardReset
			}
			err := cl.chassisControl(ctx, ctl, false)
			cc, refused := completionCode(err)
			if !refused || isBusyCode(cc) {
				return err
			}
			on, serr := cl.powerOn(ctx)
			if serr != nil || on {
				return err
			}
			cl.log.Debug("power action refused: the machine is off", "bmc", cl.name, "action", action,
				"completion_code", fmt.Sprintf("%#02x", uint8(cc)))
			return fmt.Errorf("%w: the BMC refused %s with completion code %#02x (%s)", bmc.ErrPoweredOff, action, uint8(cc), cc)
		}
		return fmt.Errorf("%w: power action %q", bmc.ErrUnsupported, action)
	})
}

// chassisControl sends Chassis Control; a non-idempotent action is sent
// once, and no answer is then not retryable (it may have been executed).
func (cl *Client) chassisControl(ctx context.Context, ctl chassis.ChassisControl, idempotent bool) error {
	if !idempotent {
		cl.conn.sendOnce(true)
		defer cl.conn.sendOnce(false)
	}
	_, err := cl.c.ChassisControl(ctx, ctl)
	if err != nil && !idempotent && isNoAnswer(err) {
		// Not temporary: the BMC may have executed it.
		return fmt.Errorf("%w (the command may have been executed; not retried): %v", bmc.ErrNoAnswer, err)
	}
	return err
}

// Identity reads Get Device ID and the BMC's LAN address (Get LAN
// Configuration Parameters, where the BMC answers).
func (cl *Client) Identity(ctx context.Context) (bmc.Identity, error) {
	id := bmc.Identity{
		Protocol:     Protocol,
		CipherSuite:  cl.suite,
		PowerActions: []string{string(bmc.ActionOn), string(bmc.ActionOff), string(bmc.ActionCycle), string(bmc.ActionReset)},
	}
	err := cl.op(ctx, "identity", func(ctx context.Context) error {
		dev, err := cl.c.GetDeviceID(ctx)
		if err != nil {
			return err
		}
		id.Vendor = vendorName(dev.ManufacturerID)
		id.Model = fmt.Sprintf("product 0x%04x", dev.ProductID)
		id.Firmware = fmt.Sprintf("%d.%02d", dev.MajorFirmwareRevision, dev.MinorFirmwareRevision)
		for _, ch := range []uint8{types.ChannelNumberSelf, 1} {
			ip := &types.LanConfigParam_IP{}
			if err := cl.c.GetLanConfigParamFor(ctx, ch, ip); err != nil {
				if ctx.Err() != nil {
					return err
				}
				continue
			}
			if ip.IP != nil && !ip.IP.IsUnspecified() {
				id.BMCIP = ip.IP.String()
			}
			mac := &types.LanConfigParam_MAC{}
			if err := cl.c.GetLanConfigParamFor(ctx, ch, mac); err == nil && len(mac.MAC) == 6 {
				id.BMCMAC = mac.MAC.String()
			} else if ctx.Err() != nil {
				return ctx.Err()
			}
			break
		}
		return nil
	})
	return id, err
}

func vendorName(mfr uint32) string {
	if name := types.OEM(mfr).String(); name != "Unknown" {
		return name
	}
	return fmt.Sprintf("IANA %d", mfr)
}

// Close closes the session (Close Session) and the socket. It is safe to
// call more than once; after the first call it returns nil. When ctx is
// already done, a fresh context of a few seconds is used: a session must
// not be left open on the BMC.
func (cl *Client) Close(ctx context.Context) error {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.closed {
		return nil
	}
	cl.closed = true
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), min(cl.timeout, closeTimeout))
		defer cancel()
	}
	cl.conn.resume()
	cl.conn.releaseExtraSessions()
	stop := abortOnDone(ctx, cl.conn.abort)
	defer stop()
	if err := cl.c.Close(ctx); err != nil {
		_ = cl.conn.Close()
		return &bmc.OpError{Op: "close session", BMC: cl.name, Err: classify(err)}
	}
	return nil
}
