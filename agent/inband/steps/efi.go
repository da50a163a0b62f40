package steps

import (
	"bufio"
	"regexp"
	"sort"
	"strings"
)

// EFIEntry is one Boot#### entry of `efibootmgr -v`.
type EFIEntry struct {
	Num         string `json:"num"`
	Active      bool   `json:"active"`
	Description string `json:"description"`
	DevicePath  string `json:"device_path,omitempty"`
	// MAC is the NIC the entry boots from, if its path or description names one.
	MAC string `json:"mac,omitempty"`
}

// EFIBootList is what `efibootmgr -v` prints.
type EFIBootList struct {
	BootCurrent string
	BootNext    string
	BootOrder   []string
	Entries     []EFIEntry
}

var (
	efiEntryRe = regexp.MustCompile(`^Boot([0-9A-Fa-f]{4})(\*?)\s+(.*)$`)
	efiMACRe   = regexp.MustCompile(`MAC\(([0-9A-Fa-f]{12})[,)]`)
	efiMACDesc = regexp.MustCompile(`\(MAC:([0-9A-Fa-f]{12})\)`)
	// Device path nodes that start the path when efibootmgr separates it
	// with spaces instead of a tab.
	efiPathStart = regexp.MustCompile(`\s+((?:PciRoot|Pci|VenHw|VenMsg|HD|BBS|Acpi|MAC|Fv|FvVol|MemoryMapped|Sata|Scsi|NVMe|USB|Uri|IPv4|IPv6|dp:)[(:].*)$`)
)

// ParseEFIBootMgr parses `efibootmgr` or `efibootmgr -v` output.
func ParseEFIBootMgr(s string) EFIBootList {
	var l EFIBootList
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		switch {
		case strings.HasPrefix(line, "BootCurrent:"):
			l.BootCurrent = strings.TrimSpace(strings.TrimPrefix(line, "BootCurrent:"))
		case strings.HasPrefix(line, "BootNext:"):
			l.BootNext = strings.TrimSpace(strings.TrimPrefix(line, "BootNext:"))
		case strings.HasPrefix(line, "BootOrder:"):
			for _, n := range strings.Split(strings.TrimSpace(strings.TrimPrefix(line, "BootOrder:")), ",") {
				if n = strings.TrimSpace(n); n != "" {
					l.BootOrder = append(l.BootOrder, strings.ToUpper(n))
				}
			}
		default:
			m := efiEntryRe.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			e := EFIEntry{Num: strings.ToUpper(m[1]), Active: m[2] == "*"}
			rest := m[3]
			if desc, path, ok := strings.Cut(rest, "\t"); ok {
				e.Description, e.DevicePath = strings.TrimSpace(desc), strings.TrimSpace(path)
			} else if loc := efiPathStart.FindStringSubmatchIndex(rest); loc != nil {
				e.Description, e.DevicePath = strings.TrimSpace(rest[:loc[0]]), strings.TrimSpace(rest[loc[2]:])
			} else {
				e.Description = strings.TrimSpace(rest)
			}
			if mm := efiMACRe.FindStringSubmatch(e.DevicePath); mm != nil {
				e.MAC = NormalizeMAC(mm[1])
			} else if mm := efiMACDesc.FindStringSubmatch(e.Description); mm != nil {
				e.MAC = NormalizeMAC(mm[1])
			}
			l.Entries = append(l.Entries, e)
		}
	}
	return l
}

// IsNetwork reports whether the entry boots from the network.
func (e EFIEntry) IsNetwork() bool {
	p := e.DevicePath
	if strings.Contains(p, "MAC(") || strings.Contains(p, "IPv4(") || strings.Contains(p, "IPv6(") || strings.Contains(p, "Uri(") {
		return true
	}
	d := strings.ToLower(e.Description)
	for _, w := range []string{"pxe", "network", "ipv4", "ipv6", "nic", "lan"} {
		if strings.Contains(d, w) {
			return true
		}
	}
	return false
}

func (e EFIEntry) isHTTP() bool {
	return strings.Contains(e.DevicePath, "Uri(") || strings.Contains(strings.ToLower(e.Description), "http")
}

func (e EFIEntry) isIPv4() bool {
	return strings.Contains(e.DevicePath, "IPv4(") || strings.Contains(strings.ToLower(e.Description), "ipv4") ||
		strings.Contains(strings.ToLower(e.Description), "pxev4")
}

// NetworkEntry picks the entry to boot from the network: one on a NIC of
// the inventory (macs) first, then IPv4 PXE over IPv6 and over HTTP boot,
// active entries first, then in BootOrder.
func (l EFIBootList) NetworkEntry(macs []string) (EFIEntry, bool) {
	want := map[string]bool{}
	for _, m := range macs {
		if n := NormalizeMAC(m); n != "" {
			want[n] = true
		}
	}
	order := map[string]int{}
	for i, n := range l.BootOrder {
		order[n] = i
	}
	var cands []EFIEntry
	for _, e := range l.Entries {
		if e.IsNetwork() {
			cands = append(cands, e)
		}
	}
	if len(cands) == 0 {
		return EFIEntry{}, false
	}
	score := func(e EFIEntry) int {
		s := 0
		if e.MAC != "" && want[e.MAC] {
			s += 8
		}
		if e.isIPv4() {
			s += 4
		}
		if !e.isHTTP() {
			s += 2
		}
		if e.Active {
			s++
		}
		return s
	}
	pos := func(e EFIEntry) int {
		if p, ok := order[e.Num]; ok {
			return p
		}
		return len(order) + 1
	}
	sort.SliceStable(cands, func(i, j int) bool {
		si, sj := score(cands[i]), score(cands[j])
		if si != sj {
			return si > sj
		}
		if pos(cands[i]) != pos(cands[j]) {
			return pos(cands[i]) < pos(cands[j])
		}
		return cands[i].Num < cands[j].Num
	})
	return cands[0], true
}
