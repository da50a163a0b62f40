package ipmi

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/bougou/go-ipmi/pkg/types"

	"github.com/reprov/reprov/bmc"
)

// FRU layout (Platform Management FRU Information Storage Definition v1.0).
const (
	fruHeaderSize  = 8
	fruFormatV1    = 0x01
	fruEndOfFields = 0xc1
	// fruChunk is the largest Read FRU Data count asked for: 32 bytes fit
	// every BMC's message buffer (go-ipmi and ipmitool start there too).
	fruChunk = 32
	// fruProductSerialField is the serial's index among the product info
	// area's type/length fields (manufacturer, name, part/model, version,
	// serial).
	fruProductSerialField = 4
)

// SystemIdentity implements bmc.SystemIdentifier: Get System GUID (App
// 37h) and the product serial number of FRU 0's product info area (Read
// FRU Data: the 8-byte common header, then the product area only as far as
// the serial field). A BMC that does not implement a command, has no FRU 0
// or no product area, or holds a damaged one, leaves that fact empty
// (unknown); no answer, busy and privilege errors fail the read.
//
// The GUID's 16 bytes are decoded in SMBIOS order (first three fields
// little-endian), as ipmitool "mc guid" does; bmc.MatchIdentity also
// accepts the other byte orders BMCs use.
//
// Exchanges: one for the GUID, one for the FRU header, and one or two
// (rarely more) 32-byte reads of the product area: 4 on the lab BMC.
func (cl *Client) SystemIdentity(ctx context.Context) (bmc.SystemID, error) {
	var id bmc.SystemID
	err := cl.op(ctx, "system identity", func(ctx context.Context) error {
		g, err := cl.c.GetSystemGUID(ctx)
		switch {
		case err == nil:
			id.GUID = bmc.FormatGUID(bmc.SwapGUIDFields(g.GUID))
		case cannotTell(err):
			cl.log.Debug("BMC cannot tell the system GUID", "bmc", cl.name, "err", err)
		default:
			return fmt.Errorf("get system GUID: %w", err)
		}
		serial, err := cl.productSerial(ctx)
		switch {
		case err == nil:
			id.Serial = serial
		case cannotTell(err):
			cl.log.Debug("BMC cannot tell the product serial", "bmc", cl.name, "err", err)
		default:
			return fmt.Errorf("read FRU 0 product serial: %w", err)
		}
		return nil
	})
	return id, err
}

// errFRUData marks FRU contents reprov cannot read (wrong version, bad
// checksum, truncated fields): the fact is unknown, not an error.
var errFRUData = errors.New("unreadable FRU data")

// cannotTell reports whether err means "the BMC does not have this fact"
// rather than "the BMC did not answer properly": a completion code other
// than busy or insufficient privilege, FRU contents reprov cannot decode,
// or an answer too short to decode.
func cannotTell(err error) bool {
	if errors.Is(err, errFRUData) || errors.Is(err, types.ErrUnpackedDataTooShort) {
		return true
	}
	cc, ok := completionCode(err)
	return ok && !isBusyCode(cc) && cc != types.CodeInsufficientPrivilege
}

// productSerial reads the product serial number of FRU device 0. An empty
// serial with a nil error means the FRU has no product area.
func (cl *Client) productSerial(ctx context.Context) (string, error) {
	hdr, err := cl.readFRU(ctx, 0, fruHeaderSize)
	if err != nil {
		return "", err
	}
	if len(hdr) < fruHeaderSize || hdr[0]&0x0f != fruFormatV1 || checksum(hdr[:fruHeaderSize]) != 0 {
		return "", fmt.Errorf("%w: common header % x", errFRUData, hdr)
	}
	off := uint16(hdr[4]) * 8
	if off == 0 {
		return "", nil
	}
	// The first chunk holds the area's length, the language code and
	// usually every field up to the serial.
	area, err := cl.readFRU(ctx, off, fruChunk)
	if err != nil {
		if !cannotTell(err) {
			return "", err
		}
		// Some BMCs refuse a read past the end of the FRU: ask for the
		// area's length first.
		if area, err = cl.readFRU(ctx, off, 2); err != nil {
			return "", err
		}
	}
	if len(area) < 2 || area[0]&0x0f != fruFormatV1 || area[1] == 0 {
		return "", fmt.Errorf("%w: product area header % x", errFRUData, area[:min(len(area), 2)])
	}
	size := int(area[1]) * 8
	for {
		serial, complete, err := serialField(area[:min(len(area), size)])
		if err != nil || complete {
			return serial, err
		}
		if len(area) >= size {
			return "", fmt.Errorf("%w: product area ends before the serial field", errFRUData)
		}
		more, err := cl.readFRU(ctx, off+uint16(len(area)), uint8(min(fruChunk, size-len(area))))
		if err != nil {
			return "", err
		}
		area = append(area, more...)
	}
}

// readFRU reads up to count bytes of FRU 0 at off; a BMC may return fewer.
func (cl *Client) readFRU(ctx context.Context, off uint16, count uint8) ([]byte, error) {
	res, err := cl.c.ReadFRUData(ctx, 0, off, count)
	if err != nil {
		return nil, err
	}
	if len(res.Data) == 0 {
		return nil, fmt.Errorf("%w: no bytes at offset %d", errFRUData, off)
	}
	return res.Data, nil
}

// serialField walks the product area's type/length fields. complete is
// false while the bytes read so far end before the serial field does.
func serialField(area []byte) (serial string, complete bool, err error) {
	i := 3 // format version, length, language code
	for n := 0; ; n++ {
		if i >= len(area) {
			return "", false, nil
		}
		tl := types.TypeLength(area[i])
		if area[i] == fruEndOfFields {
			return "", true, nil // no serial field at all
		}
		end := i + 1 + int(tl.Length())
		if n < fruProductSerialField {
			i = end
			continue
		}
		if end > len(area) {
			return "", false, nil
		}
		chars, err := tl.Chars(area[i+1 : end])
		if err != nil {
			return "", true, fmt.Errorf("%w: serial field: %v", errFRUData, err)
		}
		if tl.TypeCode() == 0 {
			// Binary: no text to compare with an inventory's serial.
			return "", true, nil
		}
		return strings.TrimSpace(strings.Trim(string(chars), "\x00")), true, nil
	}
}

// checksum is the FRU zero checksum: the bytes, checksum included, sum to 0.
func checksum(b []byte) uint8 {
	var s uint8
	for _, v := range b {
		s += v
	}
	return s
}
