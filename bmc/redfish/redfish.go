// Package redfish is reprov's Redfish bmc.Client, built on gofish.
//
// What it does about the field's lessons (docs/bmc.md):
//   - TLS is verified unless the node says insecure_tls; ca_file adds a CA.
//   - Basic auth by default; with redfish_session a session that Close
//     always deletes, even after the caller's context is done.
//   - Every boot-override PATCH is preceded by a fresh read (fresh ETag for
//     If-Match), sends a freshly built Boot object (never the read one with
//     its @Redfish.AllowableValues), sends BootSourceOverrideMode only where
//     the BMC takes it, and is read back (an AMI BMC answers 200 and
//     silently reverts).
//   - Reset types come from the system's allowable values; a 202 task
//     monitor is followed to completion.
//   - 429 and 5xx answers, timeouts and refused connections are
//     bmc.Temporary; an *HTTPError carries the service's Retry-After.
package redfish

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/reprov/reprov/bmc"
	"github.com/stmcginnis/gofish"
	"github.com/stmcginnis/gofish/schemas"
)

// Protocol is the name this package's clients report.
const Protocol = "redfish"

// Tunables.
const (
	// DefaultRequestTimeout bounds one HTTP request when Options.Timeout is zero.
	DefaultRequestTimeout = 30 * time.Second
	// closeTimeout bounds the session logout when Close's context is done.
	closeTimeout = 10 * time.Second
	// taskPoll is the task-monitor poll interval when the service gives no
	// Retry-After; maxTaskWait caps a Retry-After between polls.
	taskPoll    = 250 * time.Millisecond
	maxTaskWait = 10 * time.Second
	// powerPoll is the interval of power-state polls while waiting for a
	// machine to go off; maxPowerWait bounds the wait when ctx has no deadline.
	powerPoll    = 500 * time.Millisecond
	maxPowerWait = 5 * time.Minute
	// transitionWait bounds waiting for a PoweringOn/PoweringOff system
	// to settle before a power action.
	transitionWait = 2 * time.Minute
	// conflictRetries is how often a Reset refused with 409 Conflict is
	// decided and sent again, conflictWait apart.
	conflictRetries = 3
	conflictWait    = time.Second
)

// client is an open connection to one Redfish service.
type client struct {
	api    *gofish.APIClient
	httpc  *http.Client
	base   string // scheme://host:port, for errors and logs
	system string // the system's @odata.id
	opts   bmc.Options
	log    *slog.Logger
	sess   *gofish.Session // nil with basic auth

	mu     sync.Mutex
	closed bool
}

var _ bmc.Client = (*client)(nil)

// Open connects to the Redfish service at ep, authenticates (basic auth,
// or a session with Options.RedfishSession), resolves the system
// (ep.SystemPath, or the only system the service lists) and reads it once,
// so bad credentials and a wrong system path fail here. Options.Timeout
// bounds each HTTP request (default DefaultRequestTimeout). The caller
// must Close the client.
func Open(ctx context.Context, ep bmc.Endpoint, log *slog.Logger) (bmc.Client, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	base, err := baseURL(ep)
	if err != nil {
		return nil, &bmc.OpError{Op: "connect", BMC: ep.Host, Err: err}
	}
	log = log.With("bmc", base)
	if err := ctx.Err(); err != nil {
		return nil, &bmc.OpError{Op: "connect", BMC: base, Err: err}
	}
	httpc, err := newHTTPClient(ep.Options)
	if err != nil {
		return nil, &bmc.OpError{Op: "connect", BMC: base, Err: err}
	}
	api, err := gofish.ConnectContext(ctx, gofish.ClientConfig{
		Endpoint:              base,
		Username:              ep.Username,
		Password:              ep.Password,
		BasicAuth:             !ep.Options.RedfishSession,
		HTTPClient:            httpc,
		NoModifyTransport:     true,
		ReuseConnections:      true,
		MaxConcurrentRequests: 1,
	})
	if err != nil {
		httpc.CloseIdleConnections()
		if ep.Options.RedfishSession && statusOf(err) == 0 && strings.Contains(err.Error(), "no target provided") {
			err = fmt.Errorf("%w: the service offers no SessionService; unset redfish_session to use basic auth", bmc.ErrUnsupported)
		}
		return nil, classify(ctx, base, "connect", err)
	}
	c := &client{api: api, httpc: httpc, base: base, opts: ep.Options, log: log}
	if ep.Options.RedfishSession {
		s, err := api.GetSession()
		if err != nil || s.ID == "" {
			// Neither a Location header nor an @odata.id in the login
			// answer: the session cannot be deleted. Refuse it rather
			// than work in a session that leaks a slot on every run.
			httpc.CloseIdleConnections()
			log.Warn("redfish session cannot be logged out: the BMC did not say where it is; it stays open until the BMC times it out")
			return nil, &bmc.OpError{Op: "connect", BMC: base, Err: fmt.Errorf(
				"%w: the BMC's session login gave no session URI (no Location header, no @odata.id), so the session could not be logged out; unset redfish_session to use basic auth", bmc.ErrUnsupported)}
		}
		c.sess = s
		log.Debug("redfish session opened", "session", s.ID)
	}
	if err := c.resolveSystem(ctx, ep.SystemPath); err != nil {
		_ = c.Close(ctx)
		return nil, err
	}
	log.Debug("redfish client open", "system", c.system, "session", c.sess != nil)
	return c, nil
}

// baseURL is scheme://host:port for ep (https and 443 by default).
func baseURL(ep bmc.Endpoint) (string, error) {
	if ep.Host == "" {
		return "", errors.New("no BMC host")
	}
	scheme := strings.ToLower(ep.Scheme)
	port := ep.Port
	switch scheme {
	case "", "https":
		scheme = "https"
		if port == 0 {
			port = 443
		}
	case "http":
		if port == 0 {
			port = 80
		}
	default:
		return "", fmt.Errorf("unknown Redfish scheme %q (want https or http)", ep.Scheme)
	}
	host := strings.TrimSuffix(strings.TrimPrefix(ep.Host, "["), "]")
	return scheme + "://" + net.JoinHostPort(host, strconv.Itoa(port)), nil
}

// tlsConfig verifies certificates against the system roots, or only the
// CAs in o.CAFile, unless o.InsecureTLS.
func tlsConfig(o bmc.Options) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.InsecureTLS {
		cfg.InsecureSkipVerify = true
		return cfg, nil
	}
	if o.CAFile != "" {
		pemData, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemData) {
			return nil, fmt.Errorf("ca_file %s holds no PEM certificate", o.CAFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

func newHTTPClient(o bmc.Options) (*http.Client, error) {
	tc, err := tlsConfig(o)
	if err != nil {
		return nil, err
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		DialContext:           dialer.DialContext,
		TLSClientConfig:       tc,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 0,
		IdleConnTimeout:       30 * time.Second,
		MaxIdleConnsPerHost:   1,
		ForceAttemptHTTP2:     true,
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = DefaultRequestTimeout
	}
	return &http.Client{Transport: &statusTransport{base: tr}, Timeout: timeout}, nil
}

// Protocol implements bmc.Client.
func (c *client) Protocol() string { return Protocol }

// begin checks that the client is usable for op and returns a gofish
// client bound to ctx.
func (c *client) begin(ctx context.Context, op string) (*gofish.APIClient, error) {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return nil, &bmc.OpError{Op: op, BMC: c.base, Err: errors.New("client is closed")}
	}
	if err := ctx.Err(); err != nil {
		return nil, &bmc.OpError{Op: op, BMC: c.base, Err: err}
	}
	return c.api.WithContext(ctx), nil
}

// resolveSystem settles c.system: the given path (checked to exist) or
// the only member of the Systems collection.
func (c *client) resolveSystem(ctx context.Context, path string) error {
	const op = "find system"
	api, err := c.begin(ctx, op)
	if err != nil {
		return err
	}
	if path != "" {
		path = "/" + strings.Trim(path, "/")
		if _, err := schemas.GetComputerSystem(api, path); err != nil {
			if statusOf(err) == http.StatusNotFound {
				listed := ""
				if ids, lerr := listSystems(api); lerr == nil && len(ids) > 0 {
					listed = "; the service lists: " + strings.Join(ids, ", ")
				}
				return &bmc.OpError{Op: op, BMC: c.base, Err: fmt.Errorf("system %s not found (HTTP 404)%s", path, listed)}
			}
			return classify(ctx, c.base, op, err)
		}
		c.system = path
		return nil
	}
	ids, err := listSystems(api)
	if err != nil {
		return classify(ctx, c.base, op, err)
	}
	switch len(ids) {
	case 0:
		return &bmc.OpError{Op: op, BMC: c.base, Err: errors.New("the service lists no systems")}
	case 1:
		c.system = ids[0]
		return nil
	default:
		return &bmc.OpError{Op: op, BMC: c.base, Err: fmt.Errorf(
			"the service lists %d systems (%s); name one in the BMC address, e.g. redfish+https://HOST%s",
			len(ids), strings.Join(ids, ", "), ids[0])}
	}
}

// listSystems returns the members of the service's Systems collection.
func listSystems(api *gofish.APIClient) ([]string, error) {
	resp, err := api.Get(schemas.DefaultServiceRoot)
	if err != nil {
		return nil, err
	}
	var root struct {
		Systems struct {
			ID string `json:"@odata.id"`
		}
	}
	err = json.NewDecoder(resp.Body).Decode(&root)
	schemas.DeferredCleanupHTTPResponse(resp)
	if err != nil {
		return nil, fmt.Errorf("decode service root: %w", err)
	}
	if root.Systems.ID == "" {
		return nil, errors.New("the service root has no Systems collection")
	}
	coll, err := schemas.GetCollection(api, root.Systems.ID)
	if err != nil {
		return nil, err
	}
	return coll.ItemLinks, nil
}

// system is one read of the ComputerSystem with what gofish does not
// decode.
type system struct {
	sys         *schemas.ComputerSystem
	etag        string
	hasMode     bool     // Boot lists BootSourceOverrideMode
	modeAllowed []string // BootSourceOverrideMode@Redfish.AllowableValues
	// enabledAllowed is BootSourceOverrideEnabled@Redfish.AllowableValues.
	enabledAllowed []string
	resetAllowed   []string
}

func (c *client) readSystem(ctx context.Context, api *gofish.APIClient, op string) (*system, error) {
	sys, err := schemas.GetComputerSystem(api, c.system)
	if err != nil {
		if statusOf(err) == http.StatusNotFound {
			return nil, &bmc.OpError{Op: op, BMC: c.base, Err: fmt.Errorf("system %s not found (HTTP 404)", c.system)}
		}
		return nil, classify(ctx, c.base, op, err)
	}
	s := &system{sys: sys, etag: sys.GetETag()}
	var raw struct {
		Boot map[string]json.RawMessage
	}
	if err := json.Unmarshal(sys.RawData, &raw); err == nil {
		if m, ok := raw.Boot["BootSourceOverrideMode"]; ok && string(m) != "null" {
			s.hasMode = true
		}
		if m, ok := raw.Boot["BootSourceOverrideMode@Redfish.AllowableValues"]; ok {
			_ = json.Unmarshal(m, &s.modeAllowed)
		}
		if m, ok := raw.Boot["BootSourceOverrideEnabled@Redfish.AllowableValues"]; ok {
			_ = json.Unmarshal(m, &s.enabledAllowed)
		}
	}
	types, err := sys.GetSupportedResetTypes()
	if err != nil && ctx.Err() != nil {
		return nil, classify(ctx, c.base, op, err)
	}
	for _, t := range types {
		s.resetAllowed = append(s.resetAllowed, string(t))
	}
	return s, nil
}

// PowerState implements bmc.PowerStateGetter.
func (c *client) PowerState(ctx context.Context) (bmc.PowerState, error) {
	const op = "read power state"
	api, err := c.begin(ctx, op)
	if err != nil {
		return bmc.PowerUnknown, err
	}
	s, err := c.readSystem(ctx, api, op)
	if err != nil {
		return bmc.PowerUnknown, err
	}
	return powerState(s.sys.PowerState), nil
}

// powerState maps Redfish PowerState. PoweringOn and PoweringOff are
// their own states (a power action waits for them to end); Paused counts
// as on (the machine draws power).
func powerState(p schemas.PowerState) bmc.PowerState {
	switch p {
	case schemas.PoweringOnPowerState:
		return bmc.PowerPoweringOn
	case schemas.PoweringOffPowerState:
		return bmc.PowerPoweringOff
	case schemas.OnPowerState, "Paused":
		return bmc.PowerOn
	case schemas.OffPowerState:
		return bmc.PowerOff
	default:
		return bmc.PowerUnknown
	}
}

// Identity implements bmc.Identifier. Firmware is "BMC <manager
// firmware>, BIOS <BiosVersion>"; PowerActions are the system's
// allowable Redfish reset types. A manager that cannot be read leaves
// the manager fields empty.
func (c *client) Identity(ctx context.Context) (bmc.Identity, error) {
	const op = "read identity"
	api, err := c.begin(ctx, op)
	if err != nil {
		return bmc.Identity{}, err
	}
	s, err := c.readSystem(ctx, api, op)
	if err != nil {
		return bmc.Identity{}, err
	}
	id := bmc.Identity{
		Protocol:     Protocol,
		Vendor:       s.sys.Manufacturer,
		Model:        s.sys.Model,
		Serial:       s.sys.SerialNumber,
		SystemPath:   c.system,
		PowerActions: s.resetAllowed,
	}
	var fw []string
	// The manager is optional: only a cancelled context or a temporary
	// failure (worth retrying the whole read) fails the identity.
	optional := func(err error) error {
		if err == nil {
			return nil
		}
		if cerr := classify(ctx, c.base, op, err); ctx.Err() != nil || bmc.IsTemporary(cerr) {
			return cerr
		}
		c.log.Debug("manager not readable", "err", err)
		return nil
	}
	mgr, err := c.manager(api, s.sys)
	if err := optional(err); err != nil {
		return bmc.Identity{}, err
	}
	if mgr != nil {
		if mgr.FirmwareVersion != "" {
			fw = append(fw, "BMC "+mgr.FirmwareVersion)
		}
		nics, err := mgr.EthernetInterfaces()
		if err := optional(err); err != nil {
			return bmc.Identity{}, err
		}
		for _, n := range nics {
			if id.BMCMAC == "" {
				id.BMCMAC = firstNonEmpty(n.MACAddress, n.PermanentMACAddress)
			}
			for _, a := range n.IPv4Addresses {
				if id.BMCIP == "" && a.Address != "" && a.Address != "0.0.0.0" {
					id.BMCIP = a.Address
				}
			}
		}
	}
	if s.sys.BiosVersion != "" {
		fw = append(fw, "BIOS "+s.sys.BiosVersion)
	}
	id.Firmware = strings.Join(fw, ", ")
	return id, nil
}

// manager is the manager of sys (ManagedBy), or the only manager the
// service lists.
func (c *client) manager(api *gofish.APIClient, sys *schemas.ComputerSystem) (*schemas.Manager, error) {
	ms, err := sys.ManagedBy()
	if err != nil {
		return nil, err
	}
	if len(ms) == 0 {
		ms, err = api.Service.Managers()
		if err != nil {
			return nil, err
		}
		if len(ms) != 1 {
			return nil, nil
		}
	}
	return ms[0], nil
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// Close implements bmc.Client: it deletes the session (with a fresh
// short context if ctx is done, retrying a busy BMC a few times) and
// drops idle connections. It is safe to call more than once.
func (c *client) Close(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	defer c.httpc.CloseIdleConnections()
	if c.sess == nil {
		return nil
	}
	if ctx.Err() != nil {
		ctx = context.WithoutCancel(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, closeTimeout)
	defer cancel()
	api := c.api.WithContext(ctx)
	var err error
	for attempt := 0; attempt < 4; attempt++ {
		err = api.Service.DeleteSession(c.sess.ID)
		if err == nil || statusOf(err) == http.StatusNotFound {
			c.log.Debug("redfish session closed")
			return nil
		}
		err = classify(ctx, c.base, "close session", err)
		if !bmc.IsTemporary(err) {
			break
		}
		wait := 200 * time.Millisecond
		var he *HTTPError
		if errors.As(err, &he) && he.RetryAfter() > 0 {
			wait = min(he.RetryAfter(), 3*time.Second)
		}
		if sleep(ctx, wait) != nil {
			break
		}
	}
	c.log.Warn("redfish session not closed; it holds a slot until the BMC times it out", "err", err)
	return err
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// relativeURI turns an absolute URI into a path, as gofish prefixes its
// endpoint to every URI.
func relativeURI(uri string) string {
	u, err := url.Parse(uri)
	if err != nil || !u.IsAbs() {
		return uri
	}
	return u.RequestURI()
}

func contains(list []string, v string) bool { return slices.Contains(list, v) }
