package redfish_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/lab/redfishbmc"
)

const (
	uuidA = "4c4c4544-0042-3510-8052-b7c04f4e3232"
	uuidB = "4c4c4544-0042-3510-8052-b7c04f4e9999"
)

func TestSystemIdentity(t *testing.T) {
	b := startBMC(t, redfishbmc.Config{UUID: uuidA, SerialNumber: "CZJ1234ABC"})
	c := open(t, b.Endpoint())
	ctx := ctxT(t)
	before := b.Requests("GET", "/redfish/v1/Systems/1")
	id, err := c.SystemIdentity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if id.GUID != uuidA || id.Serial != "CZJ1234ABC" {
		t.Errorf("system identity %+v, want UUID %s serial CZJ1234ABC", id, uuidA)
	}
	if n := b.Requests("GET", "/redfish/v1/Systems/1") - before; n != 1 {
		t.Errorf("%d GETs of the system, want 1", n)
	}
	inv := bmc.SystemID{GUID: "44454C4C-4200-1035-8052-B7C04F4E3232", Serial: "CZJ1234ABC"} // SMBIOS order, upper case
	if m, err := bmc.MatchIdentity(inv, id); err != nil || len(m) != 2 {
		t.Errorf("matched %v, %v", m, err)
	}

	// The BMC now answers for another machine.
	b.Machine().SetSystemIdentity(uuidB, "CZJ9999XYZ")
	id, err = c.SystemIdentity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bmc.MatchIdentity(bmc.SystemID{GUID: uuidA, Serial: "CZJ1234ABC"}, id); !errors.Is(err, bmc.ErrIdentityMismatch) {
		t.Errorf("BMC answering for %+v: %v, want ErrIdentityMismatch", id, err)
	}

	// A BMC that cannot tell: no UUID, a placeholder serial.
	b.Machine().SetSystemIdentity("", "Not Specified")
	id, err = c.SystemIdentity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := bmc.MatchIdentity(bmc.SystemID{GUID: uuidA, Serial: "CZJ1234ABC"}, id); err != nil || len(m) != 0 {
		t.Errorf("unknown identity %+v: matched %v, %v; want nothing compared", id, m, err)
	}
}

func TestRedfishtoolSeesSameSystemIdentity(t *testing.T) {
	b := startBMC(t, redfishbmc.Config{UUID: uuidA, SerialNumber: "CZJ1234ABC"})
	id, err := open(t, b.Endpoint()).SystemIdentity(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	var out struct{ UUID, SerialNumber string }
	raw := redfishtool(t, b, nil, "Systems", "-I", "1", "get")
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("redfishtool output %q: %v", raw, err)
	}
	if out.UUID != id.GUID || out.SerialNumber != id.Serial || id.GUID != uuidA {
		t.Errorf("redfishtool reads UUID %s serial %s; reprov reads %+v", out.UUID, out.SerialNumber, id)
	}
}
