package connect_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/bmc/connect"
	"github.com/reprov/reprov/lab/ipmibmc"
	"github.com/reprov/reprov/lab/labtool"
	"github.com/reprov/reprov/lab/redfishbmc"
)

func closeClient(t *testing.T, c bmc.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Close(ctx); err != nil {
		t.Errorf("close: %v", err)
	}
}

func TestDetectIPMI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := ipmibmc.Start(ctx, ipmibmc.Config{InitiallyOn: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })

	// A bare address: no protocol configured.
	ep := bmc.Endpoint{Host: b.Host(), Port: b.Port(), Username: b.Username(), Password: b.Password()}
	c, det, err := connect.Open(ctx, ep, bmc.NewLimiter(nil), nil)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if det.Protocol != "ipmi" || !det.Auto || c.Protocol() != "ipmi" {
		t.Errorf("detected %+v, client %s; want ipmi, detected", det, c.Protocol())
	}
	if s, err := c.PowerState(ctx); err != nil || s != bmc.PowerOn {
		t.Errorf("power state %q, %v; the machine is on", s, err)
	}
	closeClient(t, c)
	labtool.Eventually(t, 10*time.Second, "the BMC's session to be closed", func() bool { return b.ActiveSessions() == 0 })
}

func TestDetectRedfish(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := redfishbmc.Start(ctx, redfishbmc.Config{Powered: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })

	ep := b.Endpoint()
	ep.Protocol, ep.Scheme = "", ""
	c, det, err := connect.Open(ctx, ep, bmc.NewLimiter(nil), nil)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer closeClient(t, c)
	if det.Protocol != "redfish" || !det.Auto || c.Protocol() != "redfish" {
		t.Errorf("detected %+v, client %s; want redfish, detected", det, c.Protocol())
	}
	if s, err := c.PowerState(ctx); err != nil || s != bmc.PowerOn {
		t.Errorf("power state %q, %v; the machine is on", s, err)
	}
}

func TestDetectRedfishUntrustedCertificate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := redfishbmc.Start(ctx, redfishbmc.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })

	ep := b.Endpoint()
	ep.Protocol, ep.Scheme, ep.Options.CAFile = "", "", ""
	_, det, err := connect.Open(ctx, ep, bmc.NewLimiter(nil), nil)
	if det.Protocol != "redfish" {
		t.Errorf("detected %+v; a Redfish service with an untrusted certificate is still Redfish", det)
	}
	if !errors.Is(err, bmc.ErrTLS) {
		t.Errorf("open: %v, want a TLS verification failure", err)
	}
}

func TestOpenWrongPasswordIsNotRetried(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := ipmibmc.Start(ctx, ipmibmc.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	ep := bmc.Endpoint{Protocol: "ipmi", Host: b.Host(), Port: b.Port(), Username: b.Username(), Password: "wrong-password"}
	_, _, err = connect.Open(ctx, ep, nil, nil)
	if !errors.Is(err, bmc.ErrAuthentication) {
		t.Fatalf("open with a wrong password: %v, want bmc.ErrAuthentication", err)
	}
	var re *bmc.RetryError
	if errors.As(err, &re) {
		t.Errorf("a refused password was retried %d times", re.Tries)
	}
}
