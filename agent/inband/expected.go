package inband

import (
	"context"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/reprov/reprov/agent/inband/steps"
	"github.com/reprov/reprov/inventory"
)

// BMCHost returns the host part of an inventory BMC address
// (ipmi://10.1.12.14:623, redfish+https://bmc/redfish/v1/Systems/1,
// 10.1.12.14, bmc.example:623).
func BMCHost(address string) string {
	a := strings.TrimSpace(address)
	if a == "" {
		return ""
	}
	if strings.Contains(a, "://") {
		u, err := url.Parse(a)
		if err != nil {
			return ""
		}
		return u.Hostname()
	}
	if h, _, err := net.SplitHostPort(a); err == nil {
		return h
	}
	return strings.Trim(a, "[]")
}

// expected is what the inventory says the node is, with the BMC host
// resolved to addresses.
func (s *Session) expected(ctx context.Context) steps.Expected {
	return ExpectedFor(ctx, s.node, s.cfg.Resolver)
}

// ExpectedFor builds the identity expectations of node, resolving a BMC
// host name with r (nil: no resolution, the fact is skipped).
func ExpectedFor(ctx context.Context, n inventory.Node, r Resolver) steps.Expected {
	exp := steps.Expected{Node: n.Name, Serial: n.Serial, MACs: n.MACs}
	h := BMCHost(n.BMC.Address)
	switch {
	case h == "":
	case isIP(h):
		a, _ := netip.ParseAddr(h)
		exp.BMCAddresses = []string{a.Unmap().String()}
	case r == nil:
		exp.BMCUnresolved = "BMC host " + h + " not resolved"
	default:
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		addrs, err := r.LookupHost(rctx, h)
		if err != nil || len(addrs) == 0 {
			exp.BMCUnresolved = "cannot resolve BMC host " + h
			if err != nil {
				exp.BMCUnresolved += ": " + err.Error()
			}
			break
		}
		exp.BMCAddresses = addrs
	}
	return exp
}

func isIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}
