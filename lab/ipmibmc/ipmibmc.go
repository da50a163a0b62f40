// Package ipmibmc embeds go-ipmi's reference BMC (pkg/server, pkg/bmc) as a
// test peer and a building block of reprov's simulated fleet: an IPMI 2.0
// (RMCP+) BMC on a loopback UDP address whose HAL models a machine — power
// on/off/cycle/reset, the boot override with its 60 s timeout and one-time
// consumption at the next boot, identity (Get Device ID, GUID, Get System
// GUID and FRU 0's product serial) and the BMC's
// LAN configuration (IP, MAC) — plus fault knobs (never answer, answer busy)
// and packet counters.
//
// Many BMCs run in one process (StartMany spreads them over 127.0.x.y).
// Nothing here is global: every BMC owns its socket, state and goroutines
// (two while serving) until Close.
package ipmibmc

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	gobmc "github.com/bougou/go-ipmi/pkg/bmc"
	"github.com/bougou/go-ipmi/pkg/clock"
	"github.com/bougou/go-ipmi/pkg/hal"
	"github.com/bougou/go-ipmi/pkg/handlers"
	"github.com/bougou/go-ipmi/pkg/server"
	"github.com/bougou/go-ipmi/pkg/transport/udp"
	"github.com/bougou/go-ipmi/pkg/types"
)

// Defaults used when a Config field is zero.
const (
	DefaultUsername = "admin"
	DefaultPassword = "password"
	// DefaultManufacturerID is what Get Device ID reports by default:
	// 0x0000 "unspecified".
	DefaultManufacturerID = 0
	// DefaultProductID is what Get Device ID reports by default.
	DefaultProductID = 0x0001
)

// Config configures one simulated BMC.
type Config struct {
	// Addr is the UDP address to serve on: "127.0.0.x:port", or port 0 for
	// a free port; default "127.0.0.1:0".
	Addr string
	// Username and Password of the single administrator account (user 2);
	// defaults DefaultUsername and DefaultPassword.
	Username, Password string
	// MaxSessions is the RMCP+ session table size; default 4 (go-ipmi's and
	// many real BMCs' limit), at most 253.
	MaxSessions int
	// InactivityTimeout closes a session after this long without a valid
	// packet; default 60 s. Eviction runs every 3 s and allows 3 s of
	// tolerance, so a session may live up to InactivityTimeout+6 s.
	InactivityTimeout time.Duration
	// BootFlagTimeout is how long the boot-flags-valid bit stays set unless
	// boot parameter 3 disabled the timeout: default 60 s (the IPMI
	// specification's value); negative: never expires.
	BootFlagTimeout time.Duration
	// BootFlagTimeoutUnsupported makes the BMC answer "parameter not
	// supported" (80h) to boot parameter 3, as some real BMCs do.
	BootFlagTimeoutUnsupported bool
	// CipherSuites the BMC offers; default 3 and 17. Each must be one go-ipmi
	// implements (0, 1, 2, 3, 6, 7, 8, 11, 12, 15, 16, 17).
	CipherSuites []int
	// LANIP and LANMAC are what Get LAN Configuration Parameters reports as
	// the BMC's address; defaults: the IP the BMC serves on, and a locally
	// administered MAC derived from it (02:00:7f:xx:yy:zz).
	LANIP, LANMAC string
	// ManufacturerID, ProductID and FirmwareMajor/FirmwareMinor are what Get
	// Device ID reports (defaults DefaultManufacturerID, DefaultProductID,
	// firmware 1.00).
	ManufacturerID uint32
	ProductID      uint16
	FirmwareMajor  uint8
	FirmwareMinor  uint8
	// GUID is the BMC's GUID (Get Device GUID, and the session
	// handshake's); zero picks a random one.
	GUID [16]byte
	// SystemGUID is the managed system's GUID that Get System GUID
	// reports, in 8-4-4-4-12 text (RFC 4122 order); all zeros reports
	// "not set". Default: GUID's bytes.
	SystemGUID string
	// SystemGUIDRFCOrder sends the system GUID in RFC 4122 byte order
	// instead of the SMBIOS order most BMCs use (first three fields
	// little-endian).
	SystemGUIDRFCOrder bool
	// Serial is the product serial of FRU 0's product info area; empty
	// means the BMC has no FRU inventory (Read FRU Data is refused).
	Serial string
	// InitiallyOn starts the machine powered on (without a boot).
	InitiallyOn bool
	// PowerCycleDelay is how long a power cycle keeps the machine off;
	// default 0 (off and on again before the command is answered).
	PowerCycleDelay time.Duration
	// CycleWhenOffPowersOn makes a power cycle of a machine that is off
	// power it on. By default it is refused with D5h ("not supported in
	// present state"), as many BMCs do.
	CycleWhenOffPowersOn bool
}

// Stats counts UDP datagrams at the BMC's socket.
type Stats struct {
	// Received datagrams, including dropped ones.
	Received uint64
	// Sent datagrams.
	Sent uint64
	// Dropped datagrams (Faults.SetDropAll).
	Dropped uint64
	// SessionsOpened counts RMCP+ Open Session Requests received (the first
	// message of every IPMI 2.0 session setup, retransmissions included):
	// the sessions clients asked for.
	SessionsOpened uint64
}

// BMC is one running simulated BMC.
type BMC struct {
	cfg     Config
	addr    *net.UDPAddr
	machine *Machine
	faults  *Faults
	state   *gobmc.BMC
	srv     *server.Server
	conn    *countingConn
	ident   *identityState

	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
	reboots   atomic.Int64
}

// Start starts a BMC serving on cfg.Addr. It stops when ctx is done or on
// Close.
func Start(ctx context.Context, cfg Config) (*BMC, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	ua, err := net.ResolveUDPAddr("udp4", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("ipmibmc: resolve %q: %w", cfg.Addr, err)
	}
	uc, err := net.ListenUDP("udp4", ua)
	if err != nil {
		return nil, fmt.Errorf("ipmibmc: listen %s: %w", cfg.Addr, err)
	}
	b, err := startOn(ctx, cfg, uc)
	if err != nil {
		_ = uc.Close()
		return nil, err
	}
	return b, nil
}

func startOn(ctx context.Context, cfg Config, uc *net.UDPConn) (*BMC, error) {
	local := uc.LocalAddr().(*net.UDPAddr)
	if cfg.Username == "" {
		cfg.Username = DefaultUsername
	}
	if cfg.Password == "" {
		cfg.Password = DefaultPassword
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = gobmc.MaxSessions
	}
	if cfg.MaxSessions > 253 {
		return nil, fmt.Errorf("ipmibmc: MaxSessions %d above 253", cfg.MaxSessions)
	}
	if cfg.InactivityTimeout <= 0 {
		cfg.InactivityTimeout = gobmc.DefaultInactivityTimeout
	}
	if cfg.ProductID == 0 {
		cfg.ProductID = DefaultProductID
	}
	if cfg.FirmwareMajor == 0 && cfg.FirmwareMinor == 0 {
		cfg.FirmwareMajor = 1
	}
	suites := []types.CipherSuiteID{types.CipherSuiteID3, types.CipherSuiteID17}
	if len(cfg.CipherSuites) > 0 {
		suites = suites[:0]
		for _, s := range cfg.CipherSuites {
			id := types.CipherSuiteID(s)
			if s < 0 || s > 0xff || !gobmc.SupportedCipherSuite(id) {
				return nil, fmt.Errorf("ipmibmc: cipher suite %d not implemented by go-ipmi's server", s)
			}
			suites = append(suites, id)
		}
	}
	ipc, err := lanConfig(cfg, local)
	if err != nil {
		return nil, err
	}
	guid := cfg.GUID
	if guid == ([16]byte{}) {
		if _, err := rand.Read(guid[:]); err != nil {
			return nil, fmt.Errorf("ipmibmc: generate GUID: %w", err)
		}
	}

	cfg.GUID = guid
	si, err := newSystemIdentity(cfg.SystemGUID, guid, cfg.SystemGUIDRFCOrder, cfg.Serial)
	if err != nil {
		return nil, err
	}
	ident := &identityState{}
	ident.cur.Store(si)

	m := newMachine(cfg)
	f := &Faults{}
	h := &machineHAL{chassis: chassisHAL{m: m, faults: f}, network: &networkHAL{cfg: ipc},
		storage: storageHAL{fru: fruStore{s: ident}}}
	info := gobmc.DeviceInfo{
		DeviceID:       0x20,
		DeviceRevision: 1,
		FirmwareMajor:  cfg.FirmwareMajor,
		FirmwareMinor:  cfg.FirmwareMinor,
		// BCD "2.0": bits 3:0 major, 7:4 minor (go-ipmi's docs say 0x20,
		// which reads as "0.2").
		IPMIVersion:             0x02,
		ManufacturerID:          cfg.ManufacturerID,
		ProductID:               cfg.ProductID,
		AdditionalDeviceSupport: 0x80, // chassis device
	}
	state := gobmc.New(info, guid, h, gobmc.WithClock(clock.Real), gobmc.WithCipherSuites(suites))
	state.Sessions = gobmc.NewSessionStoreWithOptions(clock.Real,
		gobmc.WithMaxSessions(cfg.MaxSessions),
		gobmc.WithInactivityTimeout(cfg.InactivityTimeout))
	state.Sessions.SetOnRemove(state.SOL.DeactivateBySession)

	user, err := state.Users.Add(2, cfg.Username)
	if err != nil {
		return nil, fmt.Errorf("ipmibmc: add user: %w", err)
	}
	user.SetPassword([]byte(cfg.Password))
	user.Enabled = true
	user.ChannelAccess[1] = gobmc.UserChannelAccess{
		MaxPrivilege: gobmc.PrivilegeLevelAdministrator,
		Enabled:      true,
	}

	reg := handlers.NewRegistry()
	reg.Use(middleware(m, f, ident, cfg.BootFlagTimeoutUnsupported))
	handlers.RegisterAllHandlers(reg)

	conn := &countingConn{Conn: udp.Wrap(uc), local: local, faults: f}
	srv := server.NewServer(state, conn, server.WithHandlerRegistry(reg))

	sctx, cancel := context.WithCancel(context.Background())
	b := &BMC{
		cfg:     cfg,
		addr:    local,
		machine: m,
		faults:  f,
		state:   state,
		srv:     srv,
		conn:    conn,
		ident:   ident,
		cancel:  cancel,
		done:    make(chan struct{}),
	}
	f.reboot = b.Reboot
	go func() {
		defer close(b.done)
		_ = srv.Serve(sctx)
	}()
	context.AfterFunc(ctx, func() { _ = b.Close() })
	return b, nil
}

func lanConfig(cfg Config, local *net.UDPAddr) (hal.IPConfig, error) {
	var ipc hal.IPConfig
	ip := local.IP.To4()
	if cfg.LANIP != "" {
		ip = net.ParseIP(cfg.LANIP).To4()
		if ip == nil {
			return ipc, fmt.Errorf("ipmibmc: LANIP %q is not an IPv4 address", cfg.LANIP)
		}
	}
	if ip == nil {
		ip = net.IPv4(127, 0, 0, 1).To4()
	}
	copy(ipc.IP[:], ip)
	ipc.Mask = [4]byte{255, 0, 0, 0}
	if cfg.LANMAC != "" {
		mac, err := net.ParseMAC(cfg.LANMAC)
		if err != nil || len(mac) != 6 {
			return ipc, fmt.Errorf("ipmibmc: LANMAC %q is not a 6-byte MAC address", cfg.LANMAC)
		}
		copy(ipc.MAC[:], mac)
	} else {
		ipc.MAC = [6]byte{0x02, 0x00, ip[0], ip[1], ip[2], ip[3]}
	}
	ipc.Port = uint16(local.Port)
	return ipc, nil
}

// Addr is the address the BMC serves on (ip:port).
func (b *BMC) Addr() string { return b.addr.String() }

// Host is the IP the BMC serves on.
func (b *BMC) Host() string { return b.addr.IP.String() }

// Port is the UDP port the BMC serves on.
func (b *BMC) Port() int { return b.addr.Port }

// Username is the administrator account's name.
func (b *BMC) Username() string { return b.cfg.Username }

// Password is the administrator account's password.
func (b *BMC) Password() string { return b.cfg.Password }

// Machine is the simulated host behind the BMC.
func (b *BMC) Machine() *Machine { return b.machine }

// Faults are the BMC's fault knobs.
func (b *BMC) Faults() *Faults { return b.faults }

// ActiveSessions is the number of RMCP+ sessions in the BMC's session table,
// pending (handshake under way or abandoned) or active.
func (b *BMC) ActiveSessions() int { return b.state.Sessions.Count() }

// Stats returns the datagram counters of the BMC's socket.
func (b *BMC) Stats() Stats {
	return Stats{
		Received: b.conn.received.Load(),
		Sent:     b.conn.sent.Load(),
		Dropped:  b.conn.dropped.Load(),

		SessionsOpened: b.conn.sessions.Load(),
	}
}

// Close stops the BMC and releases its socket. It is safe to call more than
// once.
func (b *BMC) Close() error {
	var err error
	b.closeOnce.Do(func() {
		b.cancel()
		err = b.srv.Close()
		<-b.done
		b.machine.close()
	})
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// Faults are fault knobs of one BMC; safe for concurrent use.
type Faults struct {
	dropAll            atomic.Bool
	busy               atomic.Int64
	ignoreBootWrites   atomic.Bool
	deviceOnlyReadBack atomic.Bool

	// rebootAfterBootWrite is how long the BMC stays down when it reboots
	// itself at the first datagram after a boot-flags write (0: never);
	// rebootArmed is set by that write.
	rebootAfterBootWrite atomic.Int64
	rebootArmed          atomic.Bool
	reboot               func(time.Duration)

	sessMu   sync.Mutex
	sessions map[uint32]struct{} // BMC session IDs seen in use
}

// SetRebootAfterBootWrite makes the BMC reboot itself once, at the first
// datagram after the next boot parameter 5 write: that datagram and every
// other for down are dropped, and every session is gone (as after a BMC
// reset: the client must open a new one). 0 disarms it.
func (f *Faults) SetRebootAfterBootWrite(down time.Duration) {
	f.rebootAfterBootWrite.Store(int64(down))
	if down == 0 {
		f.rebootArmed.Store(false)
	}
}

// noteSession remembers a session ID seen in use, so a reboot can drop it.
func (f *Faults) noteSession(id uint32) {
	f.sessMu.Lock()
	defer f.sessMu.Unlock()
	if f.sessions == nil {
		f.sessions = map[uint32]struct{}{}
	}
	f.sessions[id] = struct{}{}
}

// takeSessions returns and forgets the session IDs seen.
func (f *Faults) takeSessions() []uint32 {
	f.sessMu.Lock()
	defer f.sessMu.Unlock()
	ids := make([]uint32, 0, len(f.sessions))
	for id := range f.sessions {
		ids = append(ids, id)
	}
	clear(f.sessions)
	return ids
}

// Reboot simulates the BMC rebooting: every session it knows is dropped
// and it answers nothing for down. The host's power is not affected.
func (b *BMC) Reboot(down time.Duration) {
	for _, id := range b.faults.takeSessions() {
		_ = b.state.Sessions.Close(id)
	}
	b.faults.SetDropAll(true)
	b.reboots.Add(1)
	time.AfterFunc(down, func() { b.faults.SetDropAll(false) })
}

// Reboots counts the reboots (Reboot, SetRebootAfterBootWrite).
func (b *BMC) Reboots() int { return int(b.reboots.Load()) }

// SetIgnoreBootWrites makes the BMC answer boot parameter 5 writes with
// success and store nothing, like BMCs that silently revert an override.
func (f *Faults) SetIgnoreBootWrites(on bool) { f.ignoreBootWrites.Store(on) }

// SetDeviceOnlyReadBack makes boot parameter 5 read back only the device
// selector (valid, persistent and EFI bits read 0), like ipmi_sim.
func (f *Faults) SetDeviceOnlyReadBack(on bool) { f.deviceOnlyReadBack.Store(on) }

// SetDropAll makes the BMC drop every datagram it receives (never answer),
// or answer again.
func (f *Faults) SetDropAll(on bool) { f.dropAll.Store(on) }

// BusyNext makes the BMC answer the next n in-session commands (other than
// Close Session) with completion code C0h, "node busy".
func (f *Faults) BusyNext(n int) { f.busy.Store(int64(n)) }

// takeBusy reports whether this command should be answered busy.
func (f *Faults) takeBusy() bool {
	for {
		n := f.busy.Load()
		if n <= 0 {
			return false
		}
		if f.busy.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

// countingConn is the server's transport: it counts datagrams and drops
// them when told to.
type countingConn struct {
	*udp.Conn
	local  *net.UDPAddr
	faults *Faults

	received, sent, dropped, sessions atomic.Uint64
}

// isOpenSessionRequest reports whether an RMCP datagram carries an RMCP+
// Open Session Request: RMCP header (4 bytes), authentication type 06h
// (RMCP+), payload type 10h (IPMI v2.0 Table 13-16).
func isOpenSessionRequest(d []byte) bool {
	return len(d) >= 6 && d[0] == 0x06 && d[3] == 0x07 && d[4] == 0x06 && d[5]&0x3f == 0x10
}

func (c *countingConn) ReadFrom(buf []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.Conn.ReadFrom(buf)
		if err != nil {
			return n, addr, err
		}
		c.received.Add(1)
		if isOpenSessionRequest(buf[:n]) {
			c.sessions.Add(1)
		}
		if c.faults.rebootArmed.CompareAndSwap(true, false) && c.faults.reboot != nil {
			// Once: the fault disarms itself as it fires.
			c.faults.reboot(time.Duration(c.faults.rebootAfterBootWrite.Swap(0)))
		}
		if c.faults.dropAll.Load() {
			c.dropped.Add(1)
			continue
		}
		return n, addr, nil
	}
}

func (c *countingConn) WriteTo(data []byte, addr net.Addr) (int, error) {
	n, err := c.Conn.WriteTo(data, addr)
	if err == nil {
		c.sent.Add(1)
	}
	return n, err
}

func (c *countingConn) LocalAddr() net.Addr { return c.local }

func sameCommand(a, b types.Command) bool { return a.ID == b.ID && a.NetFn == b.NetFn }

// middleware adds what go-ipmi's handlers leave to the HAL's owner: boot
// parameter 3 (valid bit clearing) reaches the machine, Get System GUID
// (which go-ipmi's server lacks) reports the system identity, BMC Cold Reset
// restarts only the (simulated) BMC, and the busy fault.
func middleware(m *Machine, f *Faults, ident *identityState, param3Unsupported bool) handlers.Middleware {
	return func(next handlers.Handler) handlers.Handler {
		return handlers.HandlerFunc(func(ctx context.Context, hctx *handlers.HandlerContext, req []byte) ([]byte, types.CompletionCode, error) {
			cmd := hctx.Command
			if hctx.Session != nil {
				f.noteSession(hctx.Session.BMCID)
			}
			if sameCommand(cmd, types.CommandSetSystemBootOptions) && len(req) >= 1 && req[0]&0x7f == 5 && f.rebootAfterBootWrite.Load() > 0 {
				resp, cc, err := next.Handle(ctx, hctx, req)
				if cc == types.CodeOK && err == nil {
					f.rebootArmed.Store(true)
				}
				return resp, cc, err
			}
			if hctx.Session != nil && !sameCommand(cmd, types.CommandCloseSession) && f.takeBusy() {
				return nil, types.CodeNodeBusy, nil
			}
			switch {
			case sameCommand(cmd, types.CommandGetSystemGUID):
				return ident.handleGetSystemGUID(), types.CodeOK, nil
			case sameCommand(cmd, types.CommandColdReset) && hctx.Session != nil:
				// BMC Cold Reset resets the BMC, not the host; go-ipmi
				// routes it to the HAL's ColdReset (the host hard reset).
				return nil, types.CodeOK, nil
			case sameCommand(cmd, types.CommandSetSystemBootOptions) && len(req) >= 1 && req[0]&0x7f == 3:
				if param3Unsupported {
					return nil, types.CodeParameterNotSupported, nil
				}
				resp, cc, err := next.Handle(ctx, hctx, req)
				if cc == types.CodeOK && err == nil && len(req) >= 2 {
					m.setValidBitClearing(req[1])
				}
				return resp, cc, err
			case sameCommand(cmd, types.CommandGetSystemBootOptions) && len(req) >= 1 && req[0]&0x7f == 3:
				if param3Unsupported {
					return nil, types.CodeParameterNotSupported, nil
				}
				resp, cc, err := next.Handle(ctx, hctx, req)
				if cc != types.CodeParameterNotSupported {
					return resp, cc, err
				}
				return []byte{0x01, 0x03, m.validBitClearing()}, types.CodeOK, nil
			}
			return next.Handle(ctx, hctx, req)
		})
	}
}

// StartMany starts n BMCs configured like cfg, each on its own loopback IP
// (127.0.0.2 … 127.0.0.251, then 127.0.1.2 …, 250 per /24) and the port of
// cfg.Addr (default 0: a free port each). LANMAC is always per BMC (derived
// from its IP); LANIP (default: the serving IP) and GUID (default: random)
// are per BMC unless cfg sets them. On error, the BMCs
// already started are closed.
func StartMany(ctx context.Context, n int, cfg Config) ([]*BMC, error) {
	port := "0"
	if cfg.Addr != "" {
		_, p, err := net.SplitHostPort(cfg.Addr)
		if err != nil {
			return nil, fmt.Errorf("ipmibmc: address %q: %w", cfg.Addr, err)
		}
		port = p
	}
	if n > 250*256 {
		return nil, fmt.Errorf("ipmibmc: %d BMCs exceed the 127.0.0.0/16 spread", n)
	}
	bmcs := make([]*BMC, 0, n)
	for i := range n {
		c := cfg
		ip := manyIP(i)
		c.Addr = net.JoinHostPort(ip.String(), port)
		c.LANMAC = "" // derived from each BMC's IP
		b, err := Start(ctx, c)
		if err != nil {
			CloseAll(bmcs)
			return nil, fmt.Errorf("ipmibmc: start BMC %d of %d: %w", i+1, n, err)
		}
		bmcs = append(bmcs, b)
	}
	return bmcs, nil
}

func manyIP(i int) net.IP {
	ip := make(net.IP, 4)
	binary.BigEndian.PutUint32(ip, 127<<24|uint32(i/250)<<8|uint32(2+i%250))
	return ip
}

// CloseAll closes every BMC.
func CloseAll(bmcs []*BMC) {
	var wg sync.WaitGroup
	for _, b := range bmcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = b.Close()
		}()
	}
	wg.Wait()
}
