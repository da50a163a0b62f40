package connect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reprov/reprov/bmc"
)

// stubClient is a bmc.Client whose PowerState fails with the queued errors
// first.
type stubClient struct {
	proto string
	mu    sync.Mutex
	errs  []error
	calls int
}

func (s *stubClient) PowerState(context.Context) (bmc.PowerState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if len(s.errs) > 0 {
		err := s.errs[0]
		s.errs = s.errs[1:]
		return bmc.PowerUnknown, err
	}
	return bmc.PowerOn, nil
}
func (s *stubClient) SetPower(context.Context, bmc.PowerAction) error { return nil }
func (s *stubClient) SetBootOverride(context.Context, bmc.BootOverride) (bmc.BootResult, error) {
	return bmc.BootResult{}, nil
}
func (s *stubClient) BootOverride(context.Context) (bmc.BootOverride, error) {
	return bmc.BootOverride{}, nil
}
func (s *stubClient) Identity(context.Context) (bmc.Identity, error) {
	return bmc.Identity{Protocol: s.proto}, nil
}
func (s *stubClient) SystemIdentity(context.Context) (bmc.SystemID, error) {
	return bmc.SystemID{}, nil
}
func (s *stubClient) Protocol() string            { return s.proto }
func (s *stubClient) Close(context.Context) error { return nil }

// instantClock never waits.
type instantClock struct{}

func (instantClock) Now() time.Time { return time.Unix(0, 0) }
func (instantClock) Sleep(ctx context.Context, _ time.Duration) error {
	return ctx.Err()
}

// stubs records which protocol Open reached and with what endpoint.
type stubs struct {
	probeErr   error
	probed     []bmc.Endpoint
	opened     []bmc.Endpoint
	openErrs   []error
	client     *stubClient
	probeCalls int
}

func (s *stubs) opener() opener {
	open := func(proto string) func(context.Context, bmc.Endpoint, *slog.Logger) (bmc.Client, error) {
		return func(_ context.Context, ep bmc.Endpoint, _ *slog.Logger) (bmc.Client, error) {
			s.opened = append(s.opened, ep)
			if len(s.openErrs) > 0 {
				err := s.openErrs[0]
				s.openErrs = s.openErrs[1:]
				return nil, err
			}
			s.client = &stubClient{proto: proto}
			return s.client, nil
		}
	}
	return opener{
		ipmi:    open("ipmi"),
		redfish: open("redfish"),
		probe: func(_ context.Context, ep bmc.Endpoint) error {
			s.probeCalls++
			s.probed = append(s.probed, ep)
			return s.probeErr
		},
		clock: instantClock{},
	}
}

func TestOpenConfiguredProtocolDoesNotProbe(t *testing.T) {
	for _, proto := range []string{"ipmi", "redfish"} {
		s := &stubs{}
		c, det, err := s.opener().open(context.Background(), bmc.Endpoint{Protocol: proto, Host: "10.0.0.1"}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if s.probeCalls != 0 {
			t.Errorf("%s: probed although the protocol was configured", proto)
		}
		if c.Protocol() != proto || det != (Detected{Protocol: proto, How: "configured"}) {
			t.Errorf("%s: client %s, detected %+v", proto, c.Protocol(), det)
		}
	}
}

func TestOpenDetects(t *testing.T) {
	tlsErr := &bmc.OpError{Op: "probe", BMC: "https://10.0.0.1:443", Err: fmt.Errorf("%w: x509: unknown authority", bmc.ErrTLS)}
	noAnswer := bmc.Temporary(&bmc.OpError{Op: "probe", BMC: "https://10.0.0.1:443", Err: bmc.ErrNoAnswer})
	for _, tc := range []struct {
		name     string
		probeErr error
		want     string
		how      string
	}{
		{"redfish", nil, "redfish", "detected redfish"},
		{"redfish with untrusted certificate", tlsErr, "redfish", "certificate did not verify"},
		{"ipmi", noAnswer, "ipmi", "no Redfish service over HTTPS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &stubs{probeErr: tc.probeErr}
			c, det, err := s.opener().open(context.Background(), bmc.Endpoint{Host: "10.0.0.1"}, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(s.probed) != 1 || s.probed[0].Scheme != "https" || s.probed[0].Protocol != "redfish" {
				t.Errorf("probed %+v, want one HTTPS Redfish probe", s.probed)
			}
			if c.Protocol() != tc.want || det.Protocol != tc.want || !det.Auto || !strings.Contains(det.How, tc.how) {
				t.Errorf("client %s, detected %+v; want %s with %q", c.Protocol(), det, tc.want, tc.how)
			}
			if len(s.opened) != 1 || s.opened[0].Protocol != tc.want {
				t.Errorf("opened %+v, want one %s open", s.opened, tc.want)
			}
		})
	}
}

func TestOpenFailureAfterDetectionSaysWhatWasDetected(t *testing.T) {
	s := &stubs{probeErr: errors.New("connection refused"),
		openErrs: []error{&bmc.OpError{Op: "connect", BMC: "10.0.0.1:623", Err: bmc.ErrAuthentication}}}
	_, det, err := s.opener().open(context.Background(), bmc.Endpoint{Host: "10.0.0.1"}, nil, nil)
	if !errors.Is(err, bmc.ErrAuthentication) || !strings.Contains(err.Error(), "detected ipmi") {
		t.Errorf("error %v: want authentication failure mentioning the detection", err)
	}
	if det.Protocol != "ipmi" {
		t.Errorf("detected %+v", det)
	}
}

func TestOpenRetriesTemporaryFailures(t *testing.T) {
	tmp := bmc.Temporary(&bmc.OpError{Op: "connect", BMC: "10.0.0.1:623", Err: bmc.ErrNoAnswer})
	s := &stubs{openErrs: []error{tmp, tmp}}
	_, _, err := s.opener().open(context.Background(), bmc.Endpoint{Protocol: "ipmi", Host: "10.0.0.1"}, nil, nil)
	if err != nil {
		t.Fatalf("open after two timeouts: %v", err)
	}
	if len(s.opened) != 3 {
		t.Errorf("opened %d times, want 3", len(s.opened))
	}

	s = &stubs{openErrs: []error{tmp, tmp, tmp}}
	_, _, err = s.opener().open(context.Background(),
		bmc.Endpoint{Protocol: "ipmi", Host: "10.0.0.1", Options: bmc.Options{Retries: 1}}, nil, nil)
	var re *bmc.RetryError
	if !errors.As(err, &re) || re.Tries != 2 || len(s.opened) != 2 {
		t.Errorf("with retries 1: error %v after %d opens, want a RetryError after 2", err, len(s.opened))
	}
}

func TestOpenedClientIsWrapped(t *testing.T) {
	s := &stubs{}
	lim := bmc.NewLimiter(instantClock{})
	c, _, err := s.opener().open(context.Background(), bmc.Endpoint{Protocol: "ipmi", Host: "10.0.0.1", Port: 6230}, lim, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.client.errs = []error{bmc.Temporary(bmc.ErrBusy)}
	if _, err := c.PowerState(context.Background()); err != nil {
		t.Fatalf("power state after one busy answer: %v", err)
	}
	if s.client.calls != 2 {
		t.Errorf("BMC asked %d times, want 2 (retry wrapper)", s.client.calls)
	}

	// The client's calls hold the BMC's limiter slot: while another holder
	// has it, a call waits and gives up with its context.
	release, err := lim.Acquire(context.Background(), Key(bmc.Endpoint{Host: "10.0.0.1", Port: 6230}), bmc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.PowerState(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("call while the slot is held: %v, want to wait and give up", err)
	}
	release()
	if s.client.calls != 2 {
		t.Errorf("a call reached the BMC while its slot was held")
	}
}

func TestOpenUnknownProtocol(t *testing.T) {
	s := &stubs{}
	_, _, err := s.opener().open(context.Background(), bmc.Endpoint{Protocol: "amt", Host: "10.0.0.1"}, nil, nil)
	if !errors.Is(err, bmc.ErrUnsupported) || len(s.opened) != 0 {
		t.Errorf("error %v, opened %d", err, len(s.opened))
	}
}

func TestKey(t *testing.T) {
	for ep, want := range map[*bmc.Endpoint]string{
		{Host: "10.0.0.1"}: "10.0.0.1",
		{Host: "10.0.0.1", Port: 623, Protocol: "ipmi"}:   "10.0.0.1:623",
		{Host: "fe80::1", Port: 443, Protocol: "redfish"}: "[fe80::1]:443",
	} {
		if got := Key(*ep); got != want {
			t.Errorf("Key(%+v) = %q, want %q", *ep, got, want)
		}
	}
}
