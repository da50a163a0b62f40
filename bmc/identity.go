package bmc

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// SystemID is the identity of the machine behind a BMC, as the BMC reports
// it: the system GUID (SMBIOS system UUID) and the product serial number.
// It is the only witness of which machine a BMC manages when the node's
// operating system does not answer.
//
// Implementations report what the BMC said, trimmed of surrounding white
// space: IPMI Get System GUID and the product serial of FRU 0's product
// info area; Redfish ComputerSystem UUID and SerialNumber. A field the BMC
// cannot tell is empty, or a placeholder the BMC fills in for "not set";
// MatchIdentity treats both as unknown (see KnownGUID and KnownSerial).
type SystemID struct {
	// GUID is the system GUID in its 8-4-4-4-12 text form. IPMI BMCs'
	// 16 bytes are decoded in SMBIOS byte order (the first three fields
	// little-endian), as ipmitool's "mc guid" does.
	GUID string `json:"guid,omitempty"`
	// Serial is the product (system) serial number.
	Serial string `json:"serial,omitempty"`
}

// SystemIdentifier reads the identity of the machine behind the BMC.
// Facts the BMC cannot tell are returned as unknown, not as an error;
// errors are for a BMC that does not answer, refuses the session or is
// busy.
type SystemIdentifier interface {
	SystemIdentity(ctx context.Context) (SystemID, error)
}

// ErrIdentityMismatch: the BMC reports a different machine than the
// inventory names. A node whose BMC reports another machine must not be
// powered, cycled or wiped.
var ErrIdentityMismatch = errors.New("BMC reports a different machine")

// FactMismatch is one identity fact that differs. Want and Got are
// identifiers (GUID, serial number), never secrets.
type FactMismatch struct {
	// Fact is "guid" or "serial".
	Fact string `json:"fact"`
	// Want is the inventory's value, Got the BMC's.
	Want string `json:"want"`
	Got  string `json:"got"`
}

// IdentityMismatchError names every fact that differs. It matches
// ErrIdentityMismatch.
type IdentityMismatchError struct {
	Mismatches []FactMismatch
}

// Error implements error.
func (e *IdentityMismatchError) Error() string {
	parts := make([]string, 0, len(e.Mismatches))
	for _, m := range e.Mismatches {
		parts = append(parts, fmt.Sprintf("%s: inventory %s, BMC %s", m.Fact, m.Want, m.Got))
	}
	return ErrIdentityMismatch.Error() + ": " + strings.Join(parts, "; ")
}

// Is matches ErrIdentityMismatch.
func (e *IdentityMismatchError) Is(target error) bool { return target == ErrIdentityMismatch }

// MatchIdentity compares the identity the inventory wants with the one the
// BMC reports. A fact either side cannot tell (empty, a placeholder, an
// all-zero GUID) is skipped, not a mismatch. matched lists the facts that
// agree ("guid", "serial"); err is an *IdentityMismatchError when any
// known fact differs. Both empty means nothing could be compared: the
// caller decides whether that is enough.
//
// GUIDs are compared as 16 bytes, case-insensitively, and in every byte
// order BMCs are known to use (docs/bmc.md, quirks): as written, with the
// first three fields byte-swapped (SMBIOS versus RFC 4122 order), and
// fully reversed (the IPMI specification's "least significant byte
// first"). Serials are compared case-insensitively after trimming.
func MatchIdentity(want, got SystemID) (matched []string, err error) {
	var bad []FactMismatch
	if w, ok := KnownGUID(want.GUID); ok {
		if g, ok := KnownGUID(got.GUID); ok {
			if sameGUID(w, g) {
				matched = append(matched, "guid")
			} else {
				bad = append(bad, FactMismatch{Fact: "guid", Want: formatGUID(w), Got: formatGUID(g)})
			}
		}
	}
	if w, ok := KnownSerial(want.Serial); ok {
		if g, ok := KnownSerial(got.Serial); ok {
			if strings.EqualFold(w, g) {
				matched = append(matched, "serial")
			} else {
				bad = append(bad, FactMismatch{Fact: "serial", Want: w, Got: g})
			}
		}
	}
	if len(bad) > 0 {
		return matched, &IdentityMismatchError{Mismatches: bad}
	}
	return matched, nil
}

// KnownGUID parses a GUID (8-4-4-4-12 hex digits, with or without hyphens,
// braces or a "urn:uuid:" prefix, any case). ok is false when the GUID is
// unknown: empty, not a GUID, all zeros or all FFh (SMBIOS: "not set" and
// "not present").
func KnownGUID(s string) (b [16]byte, ok bool) {
	b, ok = parseGUID(s)
	if !ok || b == ([16]byte{}) || b == allFF {
		return b, false
	}
	return b, true
}

// ValidGUID reports whether s is written as a GUID (KnownGUID's forms),
// placeholder or not.
func ValidGUID(s string) bool {
	_, ok := parseGUID(s)
	return ok
}

func parseGUID(s string) (b [16]byte, ok bool) {
	s = strings.TrimSpace(s)
	s = strings.TrimSuffix(strings.TrimPrefix(s, "{"), "}")
	s = strings.TrimPrefix(strings.ToLower(s), "urn:uuid:")
	if len(s) == 36 {
		if s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
			return b, false
		}
		s = s[:8] + s[9:13] + s[14:18] + s[19:23] + s[24:]
	}
	if len(s) != 32 {
		return b, false
	}
	if _, err := hex.Decode(b[:], []byte(s)); err != nil {
		return b, false
	}
	return b, true
}

var allFF = [16]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// CanonicalGUID is s in lower-case 8-4-4-4-12 form, or "" when unknown.
func CanonicalGUID(s string) string {
	b, ok := KnownGUID(s)
	if !ok {
		return ""
	}
	return formatGUID(b)
}

// FormatGUID formats 16 bytes as an 8-4-4-4-12 GUID, in the order given.
func FormatGUID(b [16]byte) string { return formatGUID(b) }

func formatGUID(b [16]byte) string {
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// SwapGUIDFields byte-swaps the first three fields (4, 2 and 2 bytes): it
// converts between RFC 4122 (big-endian) and SMBIOS (little-endian first
// fields) byte order, in both directions.
func SwapGUIDFields(b [16]byte) [16]byte {
	return [16]byte{b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6],
		b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]}
}

func reverseGUID(b [16]byte) [16]byte {
	var r [16]byte
	for i := range b {
		r[i] = b[15-i]
	}
	return r
}

// sameGUID reports whether got is want in one of the byte orders BMCs use.
// An IPMI client decodes the wire bytes w in SMBIOS order (got =
// swap(w)); a BMC that sent RFC 4122 order gives want = swap(got), one
// that sent the whole GUID reversed gives want = reverse(swap(got)).
func sameGUID(want, got [16]byte) bool {
	s := SwapGUIDFields(got)
	return want == got || want == s || want == reverseGUID(s) || want == reverseGUID(got)
}

// placeholderSerials are what BMCs and firmware fill in for "no serial".
var placeholderSerials = map[string]bool{
	"not specified":          true,
	"not available":          true,
	"not applicable":         true,
	"not settable":           true,
	"not set":                true,
	"n/a":                    true,
	"none":                   true,
	"null":                   true,
	"unknown":                true,
	"unspecified":            true,
	"invalid":                true,
	"default string":         true,
	"to be filled by o.e.m.": true,
	"to be filled by o.e.m":  true,
	"to be filled by oem":    true,
	"system serial number":   true,
	"chassis serial number":  true,
	"serial number":          true,
	"0123456789":             true,
	"1234567890":             true,
}

// KnownSerial trims s; ok is false when the serial is unknown: empty, a
// placeholder firmware fills in ("Not Specified", "To Be Filled By
// O.E.M.", "Default string", …), or only zeros, dots, dashes, spaces or
// FFh bytes.
func KnownSerial(s string) (string, bool) {
	s = strings.TrimSpace(strings.Trim(s, "\x00"))
	if s == "" || placeholderSerials[strings.ToLower(s)] {
		return "", false
	}
	if strings.TrimFunc(s, func(r rune) bool {
		return r == '0' || r == '.' || r == '-' || r == ' ' || r == '\t' || r == utf8.RuneError || r == 'ÿ'
	}) == "" {
		return "", false
	}
	return s, true
}
