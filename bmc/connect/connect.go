// Package connect turns a BMC endpoint into an open client with reprov's
// wrappers applied: it detects the protocol when none is configured
// (Redfish when a service root answers over HTTPS, IPMI otherwise), opens
// the session under the BMC's limits and with retries, and returns a
// client whose every call goes through the per-BMC limiter and the retry
// wrapper.
//
// The package knows nothing of the inventory: callers resolve credentials
// into the endpoint.
package connect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/bmc/ipmi"
	"github.com/reprov/reprov/bmc/redfish"
)

// Protocols.
const (
	ProtocolIPMI    = "ipmi"
	ProtocolRedfish = "redfish"
)

// DefaultProbeTimeout bounds the Redfish probe of protocol detection when
// the endpoint sets no Timeout.
const DefaultProbeTimeout = 5 * time.Second

// Detected says which protocol Open used and how it was chosen.
type Detected struct {
	// Protocol is "ipmi" or "redfish".
	Protocol string `json:"protocol"`
	// Auto is set when the protocol was detected rather than configured.
	Auto bool `json:"auto"`
	// How says how the protocol was chosen, e.g. "configured" or "detected
	// redfish: a Redfish service root answered over HTTPS".
	How string `json:"how"`
}

// Key is the per-BMC limiter key of ep: its host, with the port when one
// is given. IPMI and Redfish on the same host share a key, because they
// share the BMC behind them.
func Key(ep bmc.Endpoint) string {
	if ep.Port != 0 {
		return net.JoinHostPort(ep.Host, strconv.Itoa(ep.Port))
	}
	return ep.Host
}

// Open connects to the BMC at ep and returns a client wrapped in
// bmc.WithLimit (lim, keyed by Key(ep)) and bmc.WithRetry (ep.Options).
// When ep.Protocol is "" the protocol is detected: a Redfish service root
// answering over HTTPS means Redfish — also when its certificate fails to
// verify, in which case opening then fails with bmc.ErrTLS unless the node
// allows it — and anything else means IPMI. The choice is returned and
// logged at debug level. Opening is itself retried on temporary errors
// and counts as a command to the BMC for its limits.
//
// lim may be nil (a limiter private to this client); log may be nil. The
// caller must Close the client.
func Open(ctx context.Context, ep bmc.Endpoint, lim *bmc.Limiter, log *slog.Logger) (bmc.Client, Detected, error) {
	return opener{
		ipmi:    ipmi.Open,
		redfish: redfish.Open,
		probe:   redfish.Probe,
	}.open(ctx, ep, lim, log)
}

// opener holds what Open reaches the protocols through, so tests can
// substitute them.
type opener struct {
	ipmi    func(context.Context, bmc.Endpoint, *slog.Logger) (bmc.Client, error)
	redfish func(context.Context, bmc.Endpoint, *slog.Logger) (bmc.Client, error)
	probe   func(context.Context, bmc.Endpoint) error
	clock   bmc.Clock
}

func (o opener) open(ctx context.Context, ep bmc.Endpoint, lim *bmc.Limiter, log *slog.Logger) (bmc.Client, Detected, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if lim == nil {
		lim = bmc.NewLimiter(o.clock)
	}
	key := Key(ep)
	log = log.With("bmc", key)
	lim.Register(key, ep.Options)

	det := Detected{Protocol: ep.Protocol, How: "configured"}
	switch ep.Protocol {
	case ProtocolIPMI, ProtocolRedfish:
	case "":
		var err error
		det, err = o.detect(ctx, ep, lim, key)
		if err != nil {
			return nil, det, err
		}
		log.Debug("bmc: "+det.How, "protocol", det.Protocol)
		ep.Protocol = det.Protocol
		if det.Protocol == ProtocolRedfish && ep.Scheme == "" {
			ep.Scheme = "https"
		}
	default:
		return nil, det, &bmc.OpError{Op: "connect", BMC: key,
			Err: fmt.Errorf("%w: protocol %q (want ipmi or redfish)", bmc.ErrUnsupported, ep.Protocol)}
	}
	openProto := o.ipmi
	if ep.Protocol == ProtocolRedfish {
		openProto = o.redfish
	}

	policy := bmc.RetryPolicyFrom(ep.Options)
	policy.Clock = o.clock
	var c bmc.Client
	err := bmc.Retry(ctx, policy, log, "connect", func(ctx context.Context) error {
		release, err := lim.Acquire(ctx, key, ep.Options)
		if err != nil {
			return err
		}
		defer release()
		c, err = openProto(ctx, ep, log)
		return err
	})
	if err != nil {
		if det.Auto {
			err = fmt.Errorf("%w (%s)", err, det.How)
		}
		return nil, det, err
	}
	return bmc.WithRetry(bmc.WithLimit(c, lim, key, ep.Options), policy, log), det, nil
}

// detect probes for a Redfish service over HTTPS under the BMC's limits.
func (o opener) detect(ctx context.Context, ep bmc.Endpoint, lim *bmc.Limiter, key string) (Detected, error) {
	probeEP := ep
	probeEP.Protocol = ProtocolRedfish
	if probeEP.Scheme == "" {
		probeEP.Scheme = "https"
	}
	timeout := ep.Options.Timeout
	if timeout <= 0 {
		timeout = DefaultProbeTimeout
	}
	release, err := lim.Acquire(ctx, key, ep.Options)
	if err != nil {
		return Detected{}, err
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	err = o.probe(pctx, probeEP)
	cancel()
	release()
	switch {
	case err == nil:
		return Detected{Protocol: ProtocolRedfish, Auto: true,
			How: "detected redfish: a Redfish service root answered over HTTPS"}, nil
	case errors.Is(err, bmc.ErrTLS):
		return Detected{Protocol: ProtocolRedfish, Auto: true,
			How: "detected redfish: a Redfish service answered over HTTPS, but its certificate did not verify"}, nil
	case ctx.Err() != nil:
		return Detected{}, fmt.Errorf("detect protocol of %s: %w", key, ctx.Err())
	}
	return Detected{Protocol: ProtocolIPMI, Auto: true,
		How: fmt.Sprintf("detected ipmi: no Redfish service over HTTPS (%v)", err)}, nil
}
