package redfish_test

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/bmc/redfish"
	"github.com/reprov/reprov/lab/redfishbmc"
)

func TestTLSVerification(t *testing.T) {
	b := startBMC(t, redfishbmc.Config{})
	otherCA := startBMC(t, redfishbmc.Config{}).CAFile()
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		opts    bmc.Options
		wantTLS bool
		wantErr bool
	}{
		{name: "system roots do not know the lab CA", opts: bmc.Options{}, wantTLS: true},
		{name: "another CA", opts: bmc.Options{CAFile: otherCA}, wantTLS: true},
		{name: "the BMC's CA", opts: bmc.Options{CAFile: b.CAFile()}},
		{name: "insecure", opts: bmc.Options{InsecureTLS: true}},
		{name: "missing CA file", opts: bmc.Options{CAFile: filepath.Join(t.TempDir(), "nope.pem")}, wantErr: true},
		{name: "CA file without a certificate", opts: bmc.Options{CAFile: garbage}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ep := b.Endpoint()
			ep.Options = tc.opts
			c, err := redfish.Open(ctxT(t), ep, testLogger(t))
			if c != nil {
				defer c.Close(context.Background())
			}
			switch {
			case tc.wantTLS:
				if !errors.Is(err, bmc.ErrTLS) {
					t.Fatalf("err = %v, want ErrTLS", err)
				}
				for _, hint := range []string{"ca_file", "insecure_tls", b.URL()} {
					if !strings.Contains(err.Error(), hint) {
						t.Errorf("error %q does not mention %q", err, hint)
					}
				}
				var te *redfish.TLSError
				if !errors.As(err, &te) {
					t.Errorf("error %v is no *TLSError", err)
				}
				if bmc.IsTemporary(err) {
					t.Errorf("a certificate failure is marked temporary")
				}
			case tc.wantErr:
				if err == nil {
					t.Fatal("no error")
				}
			default:
				if err != nil {
					t.Fatalf("open: %v", err)
				}
				if _, err := c.PowerState(ctxT(t)); err != nil {
					t.Errorf("power state: %v", err)
				}
			}
		})
	}
}

func TestProbe(t *testing.T) {
	b := startBMC(t, redfishbmc.Config{})
	plain := startBMC(t, redfishbmc.Config{PlainHTTP: true})
	notRedfish := httptest.NewUnstartedServer(http.NotFoundHandler())
	notRedfish.Config.ErrorLog = log.New(io.Discard, "", 0) // handshake failures are expected
	notRedfish.StartTLS()
	t.Cleanup(notRedfish.Close)
	nrHost, nrPort := splitHostPort(t, notRedfish.Listener.Addr().String())
	closedPort := func() int {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}()

	t.Run("verified", func(t *testing.T) {
		ep := b.Endpoint()
		ep.Username, ep.Password = "", ""
		if err := redfish.Probe(ctxT(t), ep); err != nil {
			t.Errorf("probe: %v", err)
		}
	})
	t.Run("untrusted certificate but Redfish", func(t *testing.T) {
		ep := bmc.Endpoint{Host: b.Host(), Port: b.Port()}
		err := redfish.Probe(ctxT(t), ep)
		var te *redfish.TLSError
		if !errors.As(err, &te) || !te.ServiceFound || !errors.Is(err, bmc.ErrTLS) {
			t.Fatalf("err = %v, want a *TLSError with ServiceFound", err)
		}
		if !strings.Contains(err.Error(), "a Redfish service answers") {
			t.Errorf("error %q does not say a Redfish service answered", err)
		}
	})
	t.Run("insecure", func(t *testing.T) {
		ep := bmc.Endpoint{Host: b.Host(), Port: b.Port(), Options: bmc.Options{InsecureTLS: true}}
		if err := redfish.Probe(ctxT(t), ep); err != nil {
			t.Errorf("probe: %v", err)
		}
	})
	t.Run("plain http", func(t *testing.T) {
		ep := bmc.Endpoint{Scheme: "http", Host: plain.Host(), Port: plain.Port()}
		if err := redfish.Probe(ctxT(t), ep); err != nil {
			t.Errorf("probe: %v", err)
		}
	})
	t.Run("https server that is not Redfish", func(t *testing.T) {
		ep := bmc.Endpoint{Host: nrHost, Port: nrPort}
		err := redfish.Probe(ctxT(t), ep)
		if !errors.Is(err, redfish.ErrNotRedfish) || errors.Is(err, bmc.ErrTLS) {
			t.Errorf("err = %v, want ErrNotRedfish and not ErrTLS", err)
		}
	})
	t.Run("nothing listening", func(t *testing.T) {
		ep := bmc.Endpoint{Host: "127.0.0.1", Port: closedPort}
		err := redfish.Probe(ctxT(t), ep)
		if !errors.Is(err, bmc.ErrNoAnswer) {
			t.Errorf("err = %v, want ErrNoAnswer", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := redfish.Probe(ctx, b.Endpoint())
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	})
}

func splitHostPort(t *testing.T, addr string) (string, int) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return h, port
}

func TestBadCredentials(t *testing.T) {
	b := startBMC(t, redfishbmc.Config{})
	for _, session := range []bool{false, true} {
		t.Run("session="+strconv.FormatBool(session), func(t *testing.T) {
			ep := b.Endpoint()
			ep.Password = "wrong-secret-value"
			ep.Options.RedfishSession = session
			_, err := redfish.Open(ctxT(t), ep, testLogger(t))
			if !errors.Is(err, bmc.ErrAuthentication) {
				t.Fatalf("err = %v, want ErrAuthentication", err)
			}
			if bmc.IsTemporary(err) {
				t.Error("bad credentials marked temporary")
			}
			if strings.Contains(err.Error(), ep.Password) || strings.Contains(err.Error(), b.Endpoint().Password) {
				t.Errorf("error %q contains a password", err)
			}
			if !strings.Contains(err.Error(), b.URL()) {
				t.Errorf("error %q does not name the BMC", err)
			}
			if b.Sessions() != 0 {
				t.Errorf("%d sessions open after a failed login", b.Sessions())
			}
		})
	}
}

func TestSystemPath(t *testing.T) {
	b := startBMC(t, redfishbmc.Config{Systems: []string{"A", "B"}})

	_, err := redfish.Open(ctxT(t), b.Endpoint(), testLogger(t))
	if err == nil || !strings.Contains(err.Error(), "/redfish/v1/Systems/A, /redfish/v1/Systems/B") {
		t.Errorf("open with two systems and no path: %v; want an error listing both", err)
	}

	ep := b.Endpoint()
	ep.SystemPath = "/redfish/v1/Systems/9/"
	ep.Options.RedfishSession = true
	_, err = redfish.Open(ctxT(t), ep, testLogger(t))
	if err == nil || !strings.Contains(err.Error(), "/redfish/v1/Systems/9 not found") || !strings.Contains(err.Error(), "Systems/B") {
		t.Errorf("open with a wrong system path: %v; want not found, listing the systems", err)
	}
	if b.Sessions() != 0 {
		t.Errorf("failed open left %d sessions", b.Sessions())
	}

	ep.SystemPath = "/redfish/v1/Systems/B"
	c := open(t, ep)
	if _, err := c.SetBootOverride(ctxT(t), bmc.BootOverride{Device: bmc.BootPXE}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetPower(ctxT(t), bmc.ActionOn); err != nil {
		t.Fatal(err)
	}
	a, bm := b.MachineFor("A"), b.MachineFor("B")
	if a.Powered() || a.BootDevice() != bmc.BootNone || !bm.Powered() || bm.PowerOns() != 1 {
		t.Errorf("A: on=%v dev=%s; B: on=%v power-ons=%d; want only B touched", a.Powered(), a.BootDevice(), bm.Powered(), bm.PowerOns())
	}
	id, err := c.Identity(ctxT(t))
	if err != nil || id.SystemPath != "/redfish/v1/Systems/B" {
		t.Errorf("identity %+v, %v", id, err)
	}
}

func TestIdentity(t *testing.T) {
	b := startBMC(t, redfishbmc.Config{
		Manufacturer: "HPE", Model: "ProLiant DL360 Gen10", SerialNumber: "CZJ1234ABC",
		BIOSVersion: "U32 v2.80", FirmwareVersion: "iLO 5 v2.78", MACAddress: "94:40:c9:00:11:22",
		IPAddress: "10.1.12.14", ResetTypes: []string{"On", "ForceOff", "PushPowerButton"},
	})
	id, err := open(t, b.Endpoint()).Identity(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	want := bmc.Identity{
		Protocol: "redfish", Vendor: "HPE", Model: "ProLiant DL360 Gen10", Serial: "CZJ1234ABC",
		Firmware: "BMC iLO 5 v2.78, BIOS U32 v2.80", BMCMAC: "94:40:c9:00:11:22", BMCIP: "10.1.12.14",
		SystemPath: "/redfish/v1/Systems/1", PowerActions: []string{"On", "ForceOff", "PushPowerButton"},
	}
	if strings.Join(id.PowerActions, ",") != strings.Join(want.PowerActions, ",") {
		t.Errorf("PowerActions %v, want %v", id.PowerActions, want.PowerActions)
	}
	if !reflect.DeepEqual(id, want) {
		t.Errorf("identity\n got %+v\nwant %+v", id, want)
	}
}

func TestPowerActions(t *testing.T) {
	tests := []struct {
		name       string
		resetTypes []string
		on         bool
		action     bmc.PowerAction
		wantOn     bool
		wantBoots  int // PowerOns added
		wantErr    error
		wantReset  string
	}{
		{name: "on when off", on: false, action: bmc.ActionOn, wantOn: true, wantBoots: 1},
		{name: "on when on does nothing", on: true, action: bmc.ActionOn, wantOn: true},
		{name: "off", on: true, action: bmc.ActionOff, wantOn: false},
		{name: "off when off does nothing", on: false, action: bmc.ActionOff, wantOn: false},
		{name: "graceful off only", resetTypes: []string{"On", "GracefulShutdown"}, on: true, action: bmc.ActionOff, wantOn: false},
		{name: "reset", on: true, action: bmc.ActionReset, wantOn: true, wantBoots: 1},
		{name: "reset by PowerCycle", resetTypes: []string{"On", "PowerCycle"}, on: true, action: bmc.ActionReset, wantOn: true, wantBoots: 1},
		{name: "cycle when on", on: true, action: bmc.ActionCycle, wantOn: true, wantBoots: 1},
		{name: "cycle when off", on: false, action: bmc.ActionCycle, wantOn: true, wantBoots: 1},
		{name: "cycle by off and on", resetTypes: []string{"On", "ForceOff"}, on: true, action: bmc.ActionCycle, wantOn: true, wantBoots: 1},
		{name: "no way to reset", resetTypes: []string{"On", "ForceOff"}, on: true, action: bmc.ActionReset, wantOn: true, wantErr: bmc.ErrUnsupported},
		{name: "no way to power on", resetTypes: []string{"ForceOff"}, on: false, action: bmc.ActionOn, wantOn: false, wantErr: bmc.ErrUnsupported},
		{name: "unknown action", on: false, action: "explode", wantOn: false, wantErr: bmc.ErrUnsupported},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := startBMC(t, redfishbmc.Config{ResetTypes: tc.resetTypes, Powered: tc.on, GracefulShutdownDelay: 100 * time.Millisecond})
			c := open(t, b.Endpoint())
			m := b.Machine()
			err := c.SetPower(ctxT(t), tc.action)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatalf("SetPower(%s): %v", tc.action, err)
			}
			// Graceful shutdowns take their time; nothing else should.
			deadline := time.Now().Add(5 * time.Second)
			for m.Powered() != tc.wantOn && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if m.Powered() != tc.wantOn || m.PowerOns() != tc.wantBoots {
				t.Errorf("powered %v with %d boots, want %v with %d", m.Powered(), m.PowerOns(), tc.wantOn, tc.wantBoots)
			}
			if got, err := c.PowerState(ctxT(t)); err != nil || (got == bmc.PowerOn) != tc.wantOn {
				t.Errorf("PowerState %q, %v", got, err)
			}
		})
	}
}

func TestCancelledOperationsWrapCanceled(t *testing.T) {
	b := startBMC(t, redfishbmc.Config{Quirks: redfishbmc.Quirks{Task202: true}, TaskPolls: 1000})
	c := open(t, b.Endpoint())
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	// The task never completes in time: the wait must end with the context.
	err := c.SetPower(ctx, bmc.ActionOn)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want DeadlineExceeded", err)
	}
	if bmc.IsTemporary(err) {
		t.Errorf("caller's deadline marked temporary: %v", err)
	}
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	for name, f := range map[string]func() error{
		"SetBootOverride": func() error { _, err := c.SetBootOverride(cctx, bmc.BootOverride{Device: bmc.BootPXE}); return err },
		"BootOverride":    func() error { _, err := c.BootOverride(cctx); return err },
		"Identity":        func() error { _, err := c.Identity(cctx); return err },
		"SetPower":        func() error { return c.SetPower(cctx, bmc.ActionOff) },
	} {
		if err := f(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s: err = %v, want context.Canceled", name, err)
		}
	}
	if _, err := redfish.Open(cctx, b.Endpoint(), nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Open: err = %v, want context.Canceled", err)
	}
}

func TestClosedClientRefuses(t *testing.T) {
	b := startBMC(t, redfishbmc.Config{})
	c := open(t, b.Endpoint())
	if err := c.Close(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PowerState(ctxT(t)); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("PowerState after Close: %v", err)
	}
}

func TestBadEndpoints(t *testing.T) {
	for _, ep := range []bmc.Endpoint{{}, {Host: "127.0.0.1", Scheme: "ftp"}} {
		if _, err := redfish.Open(ctxT(t), ep, nil); err == nil {
			t.Errorf("Open(%+v) succeeded", ep)
		}
	}
}
