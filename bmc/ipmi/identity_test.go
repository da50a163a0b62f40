package ipmi_test

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/lab/ipmibmc"
	"github.com/reprov/reprov/lab/ipmisim"
)

const (
	guidA = "4c4c4544-0042-3510-8052-b7c04f4e3232"
	guidB = "4c4c4544-0042-3510-8052-b7c04f4e9999"
)

func systemIdentity(t *testing.T, c bmc.Client) bmc.SystemID {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20e9)
	defer cancel()
	id, err := c.SystemIdentity(ctx)
	if err != nil {
		t.Fatalf("system identity: %v", err)
	}
	return id
}

func TestSystemIdentityGoIPMI(t *testing.T) {
	b := startBMC(t, ipmibmc.Config{SystemGUID: guidA, Serial: "CZJ1234ABC"})
	c := open(t, bmcEndpoint(b, bmc.Options{}))
	before := b.Stats().Received
	id := systemIdentity(t, c)
	if id.GUID != guidA || id.Serial != "CZJ1234ABC" {
		t.Errorf("system identity %+v, want GUID %s serial CZJ1234ABC", id, guidA)
	}
	// Get System GUID, the FRU header, two 32-byte product-area chunks
	// (the lab's fields before the serial take 31 bytes).
	if n := b.Stats().Received - before; n > 4 {
		t.Errorf("reading the system identity took %d requests, want at most 4", n)
	}
	if m, err := bmc.MatchIdentity(bmc.SystemID{GUID: guidA, Serial: "czj1234abc"}, id); err != nil || len(m) != 2 {
		t.Errorf("inventory identity: matched %v, %v", m, err)
	}
}

func TestSystemIdentityRFCOrderBMC(t *testing.T) {
	// A BMC that sends the GUID in RFC 4122 order: decoded in SMBIOS order
	// it reads byte-swapped, and still matches the inventory.
	b := startBMC(t, ipmibmc.Config{SystemGUID: guidA, SystemGUIDRFCOrder: true, Serial: "CZJ1234ABC"})
	id := systemIdentity(t, open(t, bmcEndpoint(b, bmc.Options{})))
	if id.GUID != "44454c4c-4200-1035-8052-b7c04f4e3232" {
		t.Errorf("GUID read as %s, want the byte-swapped form", id.GUID)
	}
	if m, err := bmc.MatchIdentity(bmc.SystemID{GUID: guidA}, id); err != nil || len(m) != 1 {
		t.Errorf("matched %v, %v; want the GUID to match across byte orders", m, err)
	}
}

func TestSystemIdentityUnknownFacts(t *testing.T) {
	// All-zero GUID and no FRU: both unknown, neither an error nor a mismatch.
	b := startBMC(t, ipmibmc.Config{SystemGUID: "00000000-0000-0000-0000-000000000000"})
	id := systemIdentity(t, open(t, bmcEndpoint(b, bmc.Options{})))
	if id.Serial != "" {
		t.Errorf("serial %q from a BMC without FRU", id.Serial)
	}
	m, err := bmc.MatchIdentity(bmc.SystemID{GUID: guidA, Serial: "CZJ1234ABC"}, id)
	if err != nil || len(m) != 0 {
		t.Errorf("matched %v, %v; want nothing compared", m, err)
	}
}

func TestSystemIdentityBMCForAnotherMachine(t *testing.T) {
	b := startBMC(t, ipmibmc.Config{SystemGUID: guidA, Serial: "CZJ1234ABC"})
	c := open(t, bmcEndpoint(b, bmc.Options{}))
	if err := b.SetSystemIdentity(guidB, "CZJ9999XYZ"); err != nil {
		t.Fatal(err)
	}
	id := systemIdentity(t, c)
	_, err := bmc.MatchIdentity(bmc.SystemID{GUID: guidA, Serial: "CZJ1234ABC"}, id)
	var me *bmc.IdentityMismatchError
	if !errors.Is(err, bmc.ErrIdentityMismatch) || !errors.As(err, &me) || len(me.Mismatches) != 2 {
		t.Fatalf("BMC answering for %+v: %v, want a mismatch of guid and serial", id, err)
	}
	if !strings.Contains(err.Error(), guidB) || !strings.Contains(err.Error(), "CZJ9999XYZ") {
		t.Errorf("error %q does not say what the BMC reported", err)
	}
}

func TestSystemIdentityBusyIsTemporary(t *testing.T) {
	b := startBMC(t, ipmibmc.Config{SystemGUID: guidA, Serial: "CZJ1234ABC"})
	c := open(t, bmcEndpoint(b, bmc.Options{}))
	b.Faults().BusyNext(1)
	_, err := c.SystemIdentity(context.Background())
	if !errors.Is(err, bmc.ErrBusy) || !bmc.IsTemporary(err) {
		t.Fatalf("busy BMC: %v, want a temporary ErrBusy", err)
	}
	if id := systemIdentity(t, c); id.GUID != guidA {
		t.Errorf("after busy: %+v", id)
	}
}

func TestSystemIdentityIPMISim(t *testing.T) {
	sim := ipmisim.Start(t, ipmisim.Config{SystemGUID: guidA, Serial: "SIM-0042"})
	c := open(t, endpoint(sim.Host(), sim.Port(), sim.Username(), sim.Password(),
		bmc.Options{CipherSuites: []int{3}, Verify: bmc.VerifyDeviceOnly}))
	id := systemIdentity(t, c)
	if id.GUID != guidA || id.Serial != "SIM-0042" {
		t.Errorf("system identity %+v, want GUID %s serial SIM-0042", id, guidA)
	}
}

var (
	ipmitoolGUID   = regexp.MustCompile(`(?m)^System GUID\s*:\s*(\S+)`)
	ipmitoolSerial = regexp.MustCompile(`(?m)^\s*Product Serial\s*:\s*(.*?)\s*$`)
)

// TestIPMIToolSeesSameSystemIdentity cross-checks SystemIdentity with
// ipmitool "mc guid" and "fru print 0" on both IPMI peers.
func TestIPMIToolSeesSameSystemIdentity(t *testing.T) {
	type peer struct {
		name             string
		host             string
		port, suite      int
		user, pass       string
		opts             bmc.Options
		wantGUID, serial string
	}
	sim := ipmisim.Start(t, ipmisim.Config{SystemGUID: guidA, Serial: "SIM-0042"})
	b := startBMC(t, ipmibmc.Config{SystemGUID: guidB, Serial: "CZJ1234ABC"})
	for _, p := range []peer{
		{"ipmi_sim", sim.Host(), sim.Port(), 3, sim.Username(), sim.Password(), bmc.Options{CipherSuites: []int{3}}, guidA, "SIM-0042"},
		{"go-ipmi", b.Host(), b.Port(), 17, b.Username(), b.Password(), bmc.Options{}, guidB, "CZJ1234ABC"},
	} {
		t.Run(p.name, func(t *testing.T) {
			id := systemIdentity(t, open(t, endpoint(p.host, p.port, p.user, p.pass, p.opts)))
			out := ipmitool(t, p.suite, p.host, p.port, p.user, p.pass, "mc", "guid")
			g := ipmitoolGUID.FindStringSubmatch(out)
			if g == nil {
				t.Fatalf("no System GUID in ipmitool mc guid:\n%s", out)
			}
			if !strings.EqualFold(g[1], id.GUID) || id.GUID != p.wantGUID {
				t.Errorf("ipmitool mc guid says %s, reprov reads %s, peer configured %s", g[1], id.GUID, p.wantGUID)
			}
			out = ipmitool(t, p.suite, p.host, p.port, p.user, p.pass, "fru", "print", "0")
			s := ipmitoolSerial.FindStringSubmatch(out)
			if s == nil {
				t.Fatalf("no Product Serial in ipmitool fru print 0:\n%s", out)
			}
			if s[1] != id.Serial || id.Serial != p.serial {
				t.Errorf("ipmitool fru print 0 says serial %q, reprov reads %q, peer configured %q", s[1], id.Serial, p.serial)
			}
		})
	}
}
