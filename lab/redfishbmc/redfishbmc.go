// Package redfishbmc is an in-process Redfish test BMC: a service root, a
// Systems collection whose systems have power, a boot override and a Reset
// action, a Manager with an Ethernet interface (for identity), and a
// SessionService, over HTTPS with a CA generated at start (or plain HTTP).
//
// Each system is backed by a Machine (which implements bmctest.Machine) so
// tests can check what the BMC stored without going through the client
// under test, and a fleet simulator can decide where a machine boots
// through its power hook. Switchable Quirks reproduce what real vendors do
// (If-Match required, silently reverted PATCHes, rejected or required
// BootSourceOverrideMode, asynchronous resets, session limits, 503/429
// storms).
//
// The BMC is for tests and the lab only; it listens where it is told
// (127.0.0.1 by default).
package redfishbmc

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/reprov/reprov/bmc"
)

// Defaults for Config fields left nil (read-only).
var (
	defaultResetTypes  = []string{"On", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart", "Nmi", "PushPowerButton", "PowerCycle"}
	defaultBootTargets = []string{"None", "Pxe", "Hdd", "Cd", "Usb", "BiosSetup"}
	defaultBootModes   = []string{"Legacy", "UEFI"}
)

// Default credentials when Config leaves them empty.
const (
	DefaultUsername = "admin"
	DefaultPassword = "redfish-lab-password"
)

// DefaultSessionLimit is the number of open sessions the BMC allows when
// Quirks.SessionLimit is zero (real BMCs allow 4 to 8).
const DefaultSessionLimit = 8

// Quirks switch on vendor behaviours a client must cope with (or detect).
type Quirks struct {
	// RequireIfMatch answers 428 to a PATCH without If-Match (AMI, XCC).
	// A stale If-Match is always answered 412, quirk or not.
	RequireIfMatch bool
	// SilentlyRevert answers 200 to a Boot PATCH and changes nothing (AMI).
	SilentlyRevert bool
	// RejectMode answers 400 to a PATCH that contains
	// BootSourceOverrideMode, and does not list the mode's allowable values
	// (iLO 5).
	RejectMode bool
	// RequireMode answers 400 to a Boot PATCH without
	// BootSourceOverrideMode (Supermicro).
	RequireMode bool
	// RejectAllowableValues answers 400 to a PATCH whose body contains an
	// @Redfish.AllowableValues annotation (strict BMCs).
	RejectAllowableValues bool
	// Task202 makes the Reset action answer 202 with a task monitor; the
	// reset happens when the monitor completes, after Config.TaskPolls polls.
	Task202 bool
	// SessionLimit is the number of sessions the BMC allows at once
	// (0: DefaultSessionLimit). Logins beyond it get 503 SessionLimitExceeded.
	SessionLimit int
	// Storm answers the next Storm requests (any path) with StormStatus
	// and a Retry-After header, before authentication.
	Storm int
	// StormStatus is 503 (default) or 429.
	StormStatus int
	// StormRetryAfter is sent as Retry-After in whole seconds, rounded
	// up ("0" when zero).
	StormRetryAfter time.Duration
	// ReportTransitions reports PowerState PoweringOff while a shutdown
	// is under way (GracefulShutdown with GracefulShutdownDelay, or
	// Machine.BeginShutdown) instead of On.
	ReportTransitions bool
	// ConflictDuringTransition answers 409 Conflict to a Reset while a
	// shutdown is under way (many BMCs refuse actions mid-transition).
	ConflictDuringTransition bool
	// EnabledOnceOnly lists BootSourceOverrideEnabled's allowable values
	// as [Disabled, Once] and answers 400 to Continuous (BMCs without
	// persistent overrides).
	EnabledOnceOnly bool
	// BootReadOnly answers 400 PropertyNotWritable to every PATCH of Boot
	// (iDRAC 10: boot settings live in @Redfish.Settings).
	BootReadOnly bool
	// SessionNoLocation answers a login without a Location header; the
	// body still carries the session's @odata.id.
	SessionNoLocation bool
	// ConflictResets answers the next ConflictResets Reset actions 409
	// Conflict ("the system is transitioning") and carries nothing out,
	// as BMCs do while a power transition of their own is under way.
	ConflictResets int
	// SessionNoURI answers a login with neither a Location header nor an
	// @odata.id in the body.
	SessionNoURI bool
}

// Config describes one test BMC. The zero value is a working BMC on
// 127.0.0.1 with one powered-off system "1".
type Config struct {
	// Addr is the listen address (default "127.0.0.1:0").
	Addr string
	// PlainHTTP serves http:// instead of https://.
	PlainHTTP bool
	// CA signs the server certificate; nil means a CA of the BMC's own.
	// Share one CA (with a file) across a lab's BMCs.
	CA *CA
	// Dir is where the BMC writes its CA certificate file when the CA has
	// none; empty means a temporary directory that Close removes.
	Dir string
	// Username and Password are the one account (defaults DefaultUsername,
	// DefaultPassword).
	Username string
	Password string
	// Systems are the system Ids (default ["1"]).
	Systems []string
	// ResetTypes is ResetType@Redfish.AllowableValues (default On,
	// ForceOff, GracefulShutdown, GracefulRestart, ForceRestart, Nmi,
	// PushPowerButton, PowerCycle). Other reset types are refused with 400.
	ResetTypes []string
	// BootTargets is BootSourceOverrideTarget@Redfish.AllowableValues
	// (default None, Pxe, Hdd, Cd, Usb, BiosSetup).
	BootTargets []string
	// BootModes is BootSourceOverrideMode@Redfish.AllowableValues (default
	// Legacy, UEFI).
	BootModes []string
	// NoBootMode leaves BootSourceOverrideMode out of the system entirely
	// (older BMCs); a PATCH that sends it gets 400.
	NoBootMode bool
	// Boot is every system's initial override (default Target None,
	// Enabled Disabled, Mode the first of BootModes).
	Boot BootSettings
	// Powered is every system's initial power.
	Powered bool
	// GracefulShutdownDelay is how long a GracefulShutdown takes to power
	// the machine off (0: at once).
	GracefulShutdownDelay time.Duration
	// TaskPolls is how many task-monitor polls answer 202 before the
	// reset happens and the monitor completes (Quirks.Task202; default 2).
	TaskPolls int
	// Identity strings, reported by the system (Manufacturer, Model,
	// SerialNumber — suffixed "-ID" on systems after the first —,
	// BiosVersion) and the manager (FirmwareVersion, MACAddress). Defaults:
	// "reprov lab", "Redfish Test System", "LAB0001", "LAB BIOS 1.0",
	// "1.0.0", "02:00:00:00:00:01".
	Manufacturer    string
	Model           string
	SerialNumber    string
	BIOSVersion     string
	FirmwareVersion string
	MACAddress      string
	// UUID is the first system's UUID; systems after it get the same UUID
	// with the last 4 hex digits replaced by their index. Default:
	// "7c2e6c1a-4b0e-4a8e-9f5c-" followed by the port in 12 hex digits.
	UUID string
	// IPAddress is the manager's reported IPv4 address (default: the
	// listen host).
	IPAddress string
	// Quirks are the initial quirks (see SetQuirks).
	Quirks Quirks
	// OnPower is every machine's initial power hook (see Machine.SetPowerHook).
	OnPower func(PowerEvent)
	// Logger receives one debug line per request (nil: discard).
	Logger *slog.Logger
}

type session struct {
	id, token, user string
}

type task struct {
	id        string
	machine   *Machine
	resetType string
	pollsLeft int
	done      bool
}

// BMC is a running test BMC. Its methods are safe for concurrent use.
type BMC struct {
	cfg      Config
	log      *slog.Logger
	srv      *http.Server
	ln       net.Listener
	url      string
	host     string
	port     int
	ca       *CA
	caFile   string
	tmpDir   string
	machines []*Machine
	serveErr chan error

	mu        sync.Mutex
	quirks    Quirks
	stormLeft int
	sessions  map[string]*session // by id
	nextID    int
	tasks     map[string]*task
	requests  map[string]int // "METHOD /path"
	total     int
	closed    bool
}

// Start starts a test BMC; ctx bounds only the start itself. Stop it
// with Close.
func Start(ctx context.Context, cfg Config) (*BMC, error) {
	cfg = withDefaults(cfg)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("redfishbmc: listen on %s: %w", cfg.Addr, err)
	}
	tcpAddr := ln.Addr().(*net.TCPAddr)
	b := &BMC{
		cfg:      cfg,
		log:      log,
		ln:       ln,
		host:     tcpAddr.IP.String(),
		port:     tcpAddr.Port,
		quirks:   cfg.Quirks,
		sessions: map[string]*session{},
		tasks:    map[string]*task{},
		requests: map[string]int{},
		serveErr: make(chan error, 1),
	}
	b.stormLeft = cfg.Quirks.Storm
	if b.cfg.IPAddress == "" {
		b.cfg.IPAddress = b.host
	}
	for _, id := range cfg.Systems {
		b.machines = append(b.machines, newMachine(id, cfg.Boot, cfg.OnPower))
	}
	for i, m := range b.machines {
		m.powered = cfg.Powered
		m.uuid = cfg.UUID
		if m.uuid == "" {
			m.uuid = fmt.Sprintf("7c2e6c1a-4b0e-4a8e-9f5c-%012x", b.port)
		}
		m.serial = cfg.SerialNumber
		if i > 0 {
			m.serial += "-" + m.id
			if len(m.uuid) == 36 {
				m.uuid = m.uuid[:32] + fmt.Sprintf("%04x", i)
			}
		}
	}

	scheme := "https"
	if cfg.PlainHTTP {
		scheme = "http"
	} else {
		if err := b.setupTLS(); err != nil {
			ln.Close()
			b.removeTmp()
			return nil, err
		}
		cert, err := b.ca.serverCert(b.host)
		if err != nil {
			ln.Close()
			b.removeTmp()
			return nil, fmt.Errorf("redfishbmc: %w", err)
		}
		ln = tls.NewListener(ln, &tls.Config{
			Certificates: []tls.Certificate{cert},
			MinVersion:   tls.VersionTLS12,
		})
		b.ln = ln
	}
	b.url = scheme + "://" + net.JoinHostPort(b.host, strconv.Itoa(b.port))
	b.srv = &http.Server{
		Handler:           http.HandlerFunc(b.serveHTTP),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	go func() {
		err := b.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		b.serveErr <- err
	}()
	log.Debug("redfish test BMC started", "url", b.url, "systems", cfg.Systems)
	return b, nil
}

func withDefaults(cfg Config) Config {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Username == "" {
		cfg.Username = DefaultUsername
	}
	if cfg.Password == "" {
		cfg.Password = DefaultPassword
	}
	if len(cfg.Systems) == 0 {
		cfg.Systems = []string{"1"}
	}
	if cfg.ResetTypes == nil {
		cfg.ResetTypes = defaultResetTypes
	}
	if cfg.BootTargets == nil {
		cfg.BootTargets = defaultBootTargets
	}
	if cfg.BootModes == nil {
		cfg.BootModes = defaultBootModes
	}
	if cfg.Boot.Target == "" {
		cfg.Boot.Target = "None"
	}
	if cfg.Boot.Enabled == "" {
		cfg.Boot.Enabled = EnabledDisabled
	}
	if cfg.NoBootMode {
		cfg.Boot.Mode = ""
	} else if cfg.Boot.Mode == "" && len(cfg.BootModes) > 0 {
		cfg.Boot.Mode = cfg.BootModes[0]
	}
	if cfg.TaskPolls <= 0 {
		cfg.TaskPolls = 2
	}
	if cfg.Manufacturer == "" {
		cfg.Manufacturer = "reprov lab"
	}
	if cfg.Model == "" {
		cfg.Model = "Redfish Test System"
	}
	if cfg.SerialNumber == "" {
		cfg.SerialNumber = "LAB0001"
	}
	if cfg.BIOSVersion == "" {
		cfg.BIOSVersion = "LAB BIOS 1.0"
	}
	if cfg.FirmwareVersion == "" {
		cfg.FirmwareVersion = "1.0.0"
	}
	if cfg.MACAddress == "" {
		cfg.MACAddress = "02:00:00:00:00:01"
	}
	return cfg
}

// setupTLS settles the CA and the CA file.
func (b *BMC) setupTLS() error {
	b.ca = b.cfg.CA
	if b.ca != nil && b.ca.File() != "" {
		b.caFile = b.ca.File()
		return nil
	}
	dir := b.cfg.Dir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "redfishbmc-"); err != nil {
			return fmt.Errorf("redfishbmc: %w", err)
		}
		b.tmpDir = dir
	}
	file := filepath.Join(dir, fmt.Sprintf("redfishbmc-ca-%d.pem", b.port))
	if b.ca == nil {
		ca, err := NewCA(file)
		if err != nil {
			return fmt.Errorf("redfishbmc: %w", err)
		}
		b.ca = ca
	} else if err := os.WriteFile(file, b.ca.PEM(), 0o644); err != nil {
		return fmt.Errorf("redfishbmc: write CA file: %w", err)
	}
	b.caFile = file
	return nil
}

func (b *BMC) removeTmp() {
	if b.tmpDir != "" {
		_ = os.RemoveAll(b.tmpDir)
	}
}

// Close stops the BMC at once (open connections are closed) and removes
// its temporary files. It is safe to call more than once.
func (b *BMC) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	err := b.srv.Close()
	if serr := <-b.serveErr; err == nil {
		err = serr
	}
	for _, m := range b.machines {
		m.close()
	}
	b.removeTmp()
	return err
}

// URL is the service's base URL (https://127.0.0.1:PORT), without path.
func (b *BMC) URL() string { return b.url }

// Host is the address the BMC listens on.
func (b *BMC) Host() string { return b.host }

// Port is the TCP port the BMC listens on.
func (b *BMC) Port() int { return b.port }

// CAFile is the path of the PEM file holding the CA that signed the
// server certificate ("" in plain-HTTP mode).
func (b *BMC) CAFile() string { return b.caFile }

// CAPEM is the CA certificate in PEM (nil in plain-HTTP mode).
func (b *BMC) CAPEM() []byte {
	if b.ca == nil {
		return nil
	}
	return b.ca.PEM()
}

// CAPool is a pool holding only the BMC's CA (nil in plain-HTTP mode).
func (b *BMC) CAPool() *x509.CertPool {
	if b.ca == nil {
		return nil
	}
	return b.ca.Pool()
}

// Endpoint is a bmc.Endpoint for this BMC with its credentials, the first
// system left to discovery, and CAFile set (TLS verified).
func (b *BMC) Endpoint() bmc.Endpoint {
	ep := bmc.Endpoint{
		Protocol: "redfish",
		Scheme:   "https",
		Host:     b.host,
		Port:     b.port,
		Username: b.cfg.Username,
		Password: b.cfg.Password,
	}
	if b.cfg.PlainHTTP {
		ep.Scheme = "http"
	} else {
		ep.Options.CAFile = b.caFile
	}
	return ep
}

// Machine is the first system's machine.
func (b *BMC) Machine() *Machine { return b.machines[0] }

// Machines are all systems' machines, in Config.Systems order.
func (b *BMC) Machines() []*Machine { return slices.Clone(b.machines) }

// MachineFor is the machine of system id, or nil.
func (b *BMC) MachineFor(id string) *Machine {
	for _, m := range b.machines {
		if m.id == id {
			return m
		}
	}
	return nil
}

// Sessions is the number of open Redfish sessions.
func (b *BMC) Sessions() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.sessions)
}

// SetQuirks replaces the quirks; Storm re-arms the storm counter.
func (b *BMC) SetQuirks(q Quirks) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.quirks = q
	b.stormLeft = q.Storm
}

// Quirks returns the current quirks.
func (b *BMC) Quirks() Quirks {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.quirks
}

// Requests counts the requests received for method and path (trailing
// slash ignored, query excluded), including refused ones.
func (b *BMC) Requests(method, path string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.requests[method+" "+normPath(path)]
}

// TotalRequests counts every request received.
func (b *BMC) TotalRequests() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.total
}

func randomHex(n int) string {
	buf := make([]byte, n)
	_, _ = rand.Read(buf) // never fails (Go ≥ 1.24)
	return hex.EncodeToString(buf)
}

func equalSecret(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
