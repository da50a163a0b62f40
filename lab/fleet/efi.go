package fleet

import (
	"fmt"
	"slices"
	"strings"
)

// efiEntry is one Boot#### variable of a UEFI node.
type efiEntry struct {
	num     string
	desc    string
	path    string
	network bool
}

// efiVars is a UEFI node's boot manager state (NVRAM): it survives
// reboots and power cycles.
type efiVars struct {
	entries  []efiEntry
	order    []string
	bootNext string // "" when unset
	current  string
}

func newEFIVars(mac string) *efiVars {
	hexMAC := strings.ReplaceAll(mac, ":", "")
	return &efiVars{
		entries: []efiEntry{
			{num: "0001", desc: "debian", path: `HD(1,GPT,6a2b1c3d-0001-4e5f-8a9b-0c1d2e3f4a5b,0x800,0x100000)/File(\EFI\debian\shimx64.efi)`},
			{num: "0002", desc: "UEFI PXEv4 (MAC:" + hexMAC + ")", network: true,
				path: "PciRoot(0x0)/Pci(0x3,0x0)/MAC(" + hexMAC + ",1)/IPv4(0.0.0.0,0,DHCP,0.0.0.0,0.0.0.0,0.0.0.0)"},
			{num: "0003", desc: "UEFI PXEv6 (MAC:" + hexMAC + ")", network: true,
				path: "PciRoot(0x0)/Pci(0x3,0x0)/MAC(" + hexMAC + ",1)/IPv6([::]:<->[::]:,0,Static,[::],[::],[::])"},
		},
		order:   []string{"0001", "0002", "0003"},
		current: "0001",
	}
}

func (e *efiVars) entry(num string) (efiEntry, bool) {
	for _, x := range e.entries {
		if strings.EqualFold(x.num, num) {
			return x, true
		}
	}
	return efiEntry{}, false
}

// networkEntry is the IPv4 PXE entry.
func (e *efiVars) networkEntry() efiEntry {
	for _, x := range e.entries {
		if x.network {
			return x
		}
	}
	return efiEntry{}
}

// list prints what efibootmgr prints (with the device paths when verbose).
func (e *efiVars) list(verbose bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "BootCurrent: %s\n", e.current)
	if e.bootNext != "" {
		fmt.Fprintf(&b, "BootNext: %s\n", e.bootNext)
	}
	b.WriteString("Timeout: 1 seconds\n")
	fmt.Fprintf(&b, "BootOrder: %s\n", strings.Join(e.order, ","))
	for _, x := range e.entries {
		if verbose {
			fmt.Fprintf(&b, "Boot%s* %s\t%s\n", x.num, x.desc, x.path)
		} else {
			fmt.Fprintf(&b, "Boot%s* %s\n", x.num, x.desc)
		}
	}
	return b.String()
}

// efibootmgr runs the efibootmgr options the lab knows: -v, -n NUM,
// -N, -o LIST. It returns stdout, stderr and the exit status.
func (e *efiVars) efibootmgr(args []string) (string, string, int) {
	verbose := false
	for i := 0; i < len(args); i++ {
		switch a := args[i]; a {
		case "-v", "--verbose":
			verbose = true
		case "-n", "--bootnext":
			if i+1 >= len(args) {
				return "", "efibootmgr: option requires an argument -- 'n'\n", 1
			}
			i++
			num := strings.ToUpper(args[i])
			if _, ok := e.entry(num); !ok {
				return "", "Could not set BootNext: No such file or directory\n", 5
			}
			e.bootNext = num
		case "-N", "--delete-bootnext":
			e.bootNext = ""
		case "-o", "--bootorder":
			if i+1 >= len(args) {
				return "", "efibootmgr: option requires an argument -- 'o'\n", 1
			}
			i++
			order := strings.Split(strings.ToUpper(args[i]), ",")
			for _, n := range order {
				if _, ok := e.entry(n); !ok {
					return "", "Invalid BootOrder order entry value" + n + "\n", 8
				}
			}
			e.order = slices.Clone(order)
		default:
			return "", "efibootmgr: unrecognized option '" + a + "'\n", 1
		}
	}
	return e.list(verbose), "", 0
}
