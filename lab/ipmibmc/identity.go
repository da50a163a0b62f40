package ipmibmc

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/bougou/go-ipmi/pkg/hal"
	"github.com/bougou/go-ipmi/pkg/types"

	"github.com/reprov/reprov/bmc"
)

// systemIdentity is what the BMC reports about the machine: the 16 bytes
// of Get System GUID as sent, and the FRU 0 image (nil: no FRU).
type systemIdentity struct {
	id   bmc.SystemID
	wire [16]byte
	fru  []byte
}

// identityState holds the BMC's current systemIdentity; it can be swapped
// while the BMC serves (a "BMC answering for another machine").
type identityState struct {
	cur atomic.Pointer[systemIdentity]
}

func (s *identityState) load() *systemIdentity { return s.cur.Load() }

// newSystemIdentity encodes guid (text; "" means fallback) and serial.
func newSystemIdentity(guid string, fallback [16]byte, rfcOrder bool, serial string) (*systemIdentity, error) {
	si := &systemIdentity{id: bmc.SystemID{Serial: serial}}
	var b [16]byte
	if guid == "" {
		b = fallback
	} else {
		if !bmc.ValidGUID(guid) {
			return nil, fmt.Errorf("ipmibmc: system GUID %q is not a GUID", guid)
		}
		// Placeholders (all 00h or FFh) are sent as they are.
		b, _ = bmc.KnownGUID(guid)
	}
	si.id.GUID = bmc.FormatGUID(b)
	si.wire = b
	if !rfcOrder {
		si.wire = bmc.SwapGUIDFields(b)
	}
	if serial != "" {
		si.fru = ProductFRU("reprov lab", "simulated node", serial)
	}
	return si, nil
}

// ProductFRU is a FRU inventory image (FRU format v1) holding only a
// product info area with the given manufacturer, product name and serial
// number, as 8-bit ASCII fields. ipmitool "fru print 0" shows them as
// Product Manufacturer, Product Name and Product Serial.
func ProductFRU(manufacturer, product, serial string) []byte {
	area := (&types.FRUProductInfoArea{
		Manufacturer: []byte(manufacturer),
		Name:         []byte(product),
		SerialNumber: []byte(serial),
	}).Pack()
	hdr := []byte{0x01, 0, 0, 0, 1, 0, 0, 0} // product area right after the header
	var sum uint8
	for _, v := range hdr[:7] {
		sum += v
	}
	hdr[7] = -sum
	return append(hdr, area...)
}

// SystemIdentity is the machine identity the BMC reports now (GUID in
// RFC 4122 text, serial as in FRU 0's product area).
func (b *BMC) SystemIdentity() bmc.SystemID { return b.ident.load().id }

// SetSystemIdentity changes what Get System GUID and FRU 0 report, while
// the BMC serves: guid in 8-4-4-4-12 text (all zeros for "not set"),
// serial "" for no FRU. The GUID is sent in SMBIOS byte order unless the
// BMC was configured with SystemGUIDRFCOrder.
func (b *BMC) SetSystemIdentity(guid, serial string) error {
	si, err := newSystemIdentity(guid, b.cfg.GUID, b.cfg.SystemGUIDRFCOrder, serial)
	if err != nil {
		return err
	}
	b.ident.cur.Store(si)
	return nil
}

// handleGetSystemGUID answers Get System GUID (App 37h), which go-ipmi's
// server does not implement.
func (s *identityState) handleGetSystemGUID() []byte {
	w := s.load().wire
	return w[:]
}

// fruStore serves FRU device 0 from the current identity.
type fruStore struct{ s *identityState }

func (f fruStore) Read(_ context.Context, id uint8) ([]byte, error) {
	si := f.s.load()
	if id != 0 || si.fru == nil {
		return nil, hal.ErrNotFound
	}
	return si.fru, nil
}

func (f fruStore) Write(context.Context, uint8, []byte) error { return hal.ErrNotFound }
func (f fruStore) Delete(context.Context, uint8) error        { return hal.ErrNotFound }
func (f fruStore) DeviceIDs(context.Context) ([]uint8, error) {
	if f.s.load().fru == nil {
		return nil, nil
	}
	return []uint8{0}, nil
}

// storageHAL is the BMC's storage: FRU 0 only, no SDRs.
type storageHAL struct{ fru fruStore }

func (s storageHAL) FRU() hal.FRUStore { return s.fru }
func (s storageHAL) SDR() hal.SDRStore { return nil }
