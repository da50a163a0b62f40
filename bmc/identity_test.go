package bmc

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestMatchIdentity(t *testing.T) {
	const (
		rfc    = "4c4c4544-0042-3510-8052-b7c04f4e3232"
		smbios = "44454c4c-4200-1035-8052-b7c04f4e3232" // first three fields byte-swapped
		rev    = "32324e4f-c0b7-5280-1035-42004445" + "4c4c"
		other  = "4c4c4544-0042-3510-8052-b7c04f4e3233"
	)
	for _, tc := range []struct {
		name     string
		want     SystemID
		got      SystemID
		matched  []string
		mismatch []string // facts that must be named
	}{
		{"same guid and serial", SystemID{rfc, "CZJ1234ABC"}, SystemID{rfc, "CZJ1234ABC"}, []string{"guid", "serial"}, nil},
		{"guid case and braces", SystemID{GUID: rfc}, SystemID{GUID: "{" + strings.ToUpper(rfc) + "}"}, []string{"guid"}, nil},
		{"guid without hyphens", SystemID{GUID: rfc}, SystemID{GUID: strings.ReplaceAll(rfc, "-", "")}, []string{"guid"}, nil},
		{"smbios byte order", SystemID{GUID: rfc}, SystemID{GUID: smbios}, []string{"guid"}, nil},
		{"smbios byte order, other side", SystemID{GUID: smbios}, SystemID{GUID: rfc}, []string{"guid"}, nil},
		{"fully reversed", SystemID{GUID: rfc}, SystemID{GUID: rev}, []string{"guid"}, nil},
		{"serial case and spaces", SystemID{Serial: "czj1234abc"}, SystemID{Serial: " CZJ1234ABC  "}, []string{"serial"}, nil},
		{"different guid", SystemID{rfc, "CZJ1234ABC"}, SystemID{other, "CZJ1234ABC"}, []string{"serial"}, []string{"guid"}},
		{"different serial", SystemID{rfc, "CZJ1234ABC"}, SystemID{rfc, "CZJ1234ABD"}, []string{"guid"}, []string{"serial"}},
		{"both differ", SystemID{rfc, "A"}, SystemID{other, "B"}, nil, []string{"guid", "serial"}},
		{"bmc cannot tell: empty", SystemID{rfc, "A"}, SystemID{}, nil, nil},
		{"bmc cannot tell: zero guid", SystemID{GUID: rfc}, SystemID{GUID: "00000000-0000-0000-0000-000000000000"}, nil, nil},
		{"bmc cannot tell: ff guid", SystemID{GUID: rfc}, SystemID{GUID: "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF"}, nil, nil},
		{"bmc cannot tell: garbage guid", SystemID{GUID: rfc}, SystemID{GUID: "Not Specified"}, nil, nil},
		{"bmc cannot tell: placeholder serial", SystemID{Serial: "A"}, SystemID{Serial: "To Be Filled By O.E.M."}, nil, nil},
		{"bmc cannot tell: Not Specified", SystemID{Serial: "A"}, SystemID{Serial: "Not Specified"}, nil, nil},
		{"bmc cannot tell: whitespace", SystemID{Serial: "A"}, SystemID{Serial: "   \t"}, nil, nil},
		{"bmc cannot tell: zeros", SystemID{Serial: "A"}, SystemID{Serial: "0000000000"}, nil, nil},
		{"bmc cannot tell: FFh bytes", SystemID{Serial: "A"}, SystemID{Serial: "\xff\xff\xff\xff"}, nil, nil},
		{"inventory has nothing", SystemID{}, SystemID{rfc, "A"}, nil, nil},
		{"serial unknown, guid differs", SystemID{rfc, "A"}, SystemID{other, "Not Specified"}, nil, []string{"guid"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			matched, err := MatchIdentity(tc.want, tc.got)
			if !slices.Equal(matched, tc.matched) {
				t.Errorf("matched %v, want %v", matched, tc.matched)
			}
			if len(tc.mismatch) == 0 {
				if err != nil {
					t.Fatalf("unexpected mismatch: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrIdentityMismatch) {
				t.Fatalf("error %v does not match ErrIdentityMismatch", err)
			}
			var me *IdentityMismatchError
			if !errors.As(err, &me) {
				t.Fatalf("error %T is not an *IdentityMismatchError", err)
			}
			var facts []string
			for _, m := range me.Mismatches {
				facts = append(facts, m.Fact)
				if !strings.Contains(err.Error(), m.Fact+": inventory ") {
					t.Errorf("error %q does not name fact %s", err, m.Fact)
				}
			}
			if !slices.Equal(facts, tc.mismatch) {
				t.Errorf("mismatched facts %v, want %v", facts, tc.mismatch)
			}
		})
	}
}

func TestMismatchErrorNamesBothValues(t *testing.T) {
	_, err := MatchIdentity(SystemID{GUID: "4C4C4544-0042-3510-8052-B7C04F4E3232"}, SystemID{GUID: "11111111-2222-3333-4444-555555555555"})
	want := "BMC reports a different machine: guid: inventory 4c4c4544-0042-3510-8052-b7c04f4e3232, BMC 11111111-2222-3333-4444-555555555555"
	if err == nil || err.Error() != want {
		t.Errorf("error %v, want %q", err, want)
	}
}

func TestGUIDHelpers(t *testing.T) {
	for _, s := range []string{"4c4c4544-0042-3510-8052-b7c04f4e3232", "4C4C45440042351080 52B7C04F4E3232", "urn:uuid:4c4c4544-0042-3510-8052-b7c04f4e3232"} {
		got := ValidGUID(s)
		want := !strings.Contains(s, " ")
		if got != want {
			t.Errorf("ValidGUID(%q) = %v, want %v", s, got, want)
		}
	}
	for _, s := range []string{"", "4c4c4544", "4c4c4544-0042-3510-8052-b7c04f4e323g", "4c4c45440-042-3510-8052-b7c04f4e3232"} {
		if ValidGUID(s) {
			t.Errorf("ValidGUID(%q) = true", s)
		}
	}
	if !ValidGUID("00000000-0000-0000-0000-000000000000") {
		t.Error("an all-zero GUID is written as a GUID")
	}
	if got := CanonicalGUID(" {4C4C4544-0042-3510-8052-B7C04F4E3232} "); got != "4c4c4544-0042-3510-8052-b7c04f4e3232" {
		t.Errorf("CanonicalGUID = %q", got)
	}
	b, _ := KnownGUID("00112233-4455-6677-8899-aabbccddeeff")
	if got := FormatGUID(SwapGUIDFields(b)); got != "33221100-5544-7766-8899-aabbccddeeff" {
		t.Errorf("swapped %s", got)
	}
}

func TestWrappersPassSystemIdentity(t *testing.T) {
	ctx := context.Background()
	want := SystemID{GUID: "4c4c4544-0042-3510-8052-b7c04f4e3232", Serial: "CZJ1234ABC"}

	t.Run("dry run reads", func(t *testing.T) {
		f := newFake()
		got, err := DryRun(f, nil).SystemIdentity(ctx)
		if err != nil || got != want {
			t.Errorf("dry run system identity %+v, %v; want %+v", got, err, want)
		}
		if n := f.count("SystemIdentity"); n != 1 {
			t.Errorf("reached the BMC %d times, want 1", n)
		}
	})
	t.Run("retry retries a temporary failure", func(t *testing.T) {
		f, clock := newFake(), newFakeClock()
		f.fail("SystemIdentity", timeout(), busy())
		got, err := WithRetry(f, policy(clock, 3), nil).SystemIdentity(ctx)
		if err != nil || got != want {
			t.Fatalf("system identity %+v, %v", got, err)
		}
		if n := f.count("SystemIdentity"); n != 3 {
			t.Errorf("BMC asked %d times, want 3", n)
		}
	})
	t.Run("retry does not retry a final failure", func(t *testing.T) {
		f, clock := newFake(), newFakeClock()
		f.fail("SystemIdentity", ErrAuthentication)
		_, err := WithRetry(f, policy(clock, 3), nil).SystemIdentity(ctx)
		if !errors.Is(err, ErrAuthentication) {
			t.Fatalf("error %v", err)
		}
		if n := f.count("SystemIdentity"); n != 1 {
			t.Errorf("BMC asked %d times, want 1", n)
		}
	})
	t.Run("limit holds a slot", func(t *testing.T) {
		g := newGated()
		c := WithLimit(g, NewLimiter(nil), "10.1.12.14:623", Options{MaxConcurrent: 1})
		var wg sync.WaitGroup
		for range 3 {
			wg.Go(func() {
				if _, err := c.SystemIdentity(ctx); err != nil {
					t.Errorf("system identity: %v", err)
				}
			})
		}
		for range 3 {
			waitFor(t, "a call at the BMC", func() bool { return g.inside.Load() == 1 })
			g.gate <- struct{}{}
		}
		wg.Wait()
		if m := g.maxInside.Load(); m != 1 {
			t.Errorf("%d calls at the BMC at once, want 1", m)
		}
	})
	t.Run("limit wait ends with the context", func(t *testing.T) {
		g := newGated()
		c := WithLimit(g, NewLimiter(nil), "10.1.12.15:623", Options{MaxConcurrent: 1})
		go func() { _, _ = c.SystemIdentity(ctx) }()
		waitFor(t, "the first call at the BMC", func() bool { return g.inside.Load() == 1 })
		cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		if _, err := c.SystemIdentity(cctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("second call while the slot is held: %v, want the deadline", err)
		}
		g.gate <- struct{}{}
	})
}
