package steps

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/bougou/go-ipmi/pkg/types"

	"github.com/reprov/reprov/agent/inband/host"
)

// ipmiDevices are the device nodes the kernel's IPMI driver creates.
var ipmiDevices = []string{"/dev/ipmi0", "/dev/ipmi/0", "/dev/ipmidev/0"}

// ipmiModules are loaded, in order, when no device node exists.
var ipmiModules = []string{"ipmi_si", "ipmi_devintf"}

func ipmiDevicePresent(ctx context.Context, h host.Host) bool {
	for _, d := range ipmiDevices {
		if _, err := h.Stat(ctx, d); err == nil {
			return true
		}
	}
	return false
}

// ensureIPMIDevice makes /dev/ipmi0 exist, loading the driver if it must,
// and returns the modules it loaded.
func ensureIPMIDevice(ctx context.Context, h host.Host, load bool) ([]string, error) {
	if ipmiDevicePresent(ctx, h) {
		return nil, nil
	}
	if !load {
		return nil, fmt.Errorf("%w: no /dev/ipmi0 and module loading is off", ErrNoIPMI)
	}
	var loaded []string
	var errs []error
	for _, m := range ipmiModules {
		if err := h.Modprobe(ctx, m); err != nil {
			errs = append(errs, fmt.Errorf("modprobe %s: %w", m, err))
			continue
		}
		loaded = append(loaded, m)
	}
	// udev creates the node shortly after the module loads.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if ipmiDevicePresent(ctx, h) {
			return loaded, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	return loaded, fmt.Errorf("%w: no /dev/ipmi0 after loading %s: %w", ErrNoIPMI, strings.Join(ipmiModules, ", "), errors.Join(errs...))
}

func hasTool(ctx context.Context, h host.Host, name string) bool {
	_, err := h.LookPath(ctx, name)
	return err == nil
}

// readBMCAddress reads the BMC's IPv4 address (LAN configuration
// parameter 3) in-band, with ipmitool where the node has it, otherwise
// with reprov's own open-interface client.
func readBMCAddress(ctx context.Context, h host.Host, load bool) BMCAddress {
	var out BMCAddress
	loaded, err := ensureIPMIDevice(ctx, h, load)
	out.LoadedModules = loaded
	if err != nil {
		out.Unknown = err.Error()
		return out
	}
	if hasTool(ctx, h, "ipmitool") {
		b, err := h.Run(ctx, "ipmitool", "lan", "print")
		if err == nil {
			if a := parseLanPrintIP(string(b)); a != "" {
				out.Address, out.Via = a, "ipmitool"
				return out
			}
			out.Unknown = "ipmitool lan print shows no IP address"
		} else {
			out.Unknown = "ipmitool lan print: " + err.Error()
		}
	}
	c, err := h.IPMI(ctx)
	if err != nil {
		if out.Unknown == "" {
			out.Unknown = err.Error()
		}
		return out
	}
	defer c.Close(context.WithoutCancel(ctx))
	var zero string
	for ch := uint8(1); ch <= 11; ch++ {
		p := &types.LanConfigParam_IP{}
		if err := c.GetLanConfigParamFor(ctx, ch, p); err != nil {
			continue
		}
		a, ok := netip.AddrFromSlice(p.IP.To4())
		if !ok {
			continue
		}
		if a.IsUnspecified() {
			zero = a.String()
			continue
		}
		return BMCAddress{Address: a.String(), Channel: int(ch), Via: "open", LoadedModules: loaded}
	}
	if zero != "" {
		out.Unknown = "BMC reports " + zero
		out.Address = zero
	} else if out.Unknown == "" {
		out.Unknown = "no LAN channel answered Get LAN Configuration Parameters"
	}
	out.Via = "open"
	return out
}

// parseLanPrintIP returns the "IP Address" of `ipmitool lan print`.
func parseLanPrintIP(s string) string {
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(k) != "IP Address" {
			continue
		}
		if a, err := netip.ParseAddr(strings.TrimSpace(v)); err == nil {
			return a.String()
		}
	}
	return ""
}

// BootFlags is IPMI boot parameter 5 as reprov cares about it.
type BootFlags struct {
	Valid      bool   `json:"valid"`
	Persistent bool   `json:"persistent"`
	EFI        bool   `json:"efi"`
	Device     string `json:"device"`
	// Raw is the five data bytes, hex.
	Raw string `json:"raw"`
}

func bootFlagsOf(p *types.BootOptionParam_BootFlags) BootFlags {
	return BootFlags{Valid: p.BootFlagsValid, Persistent: p.Persist, EFI: p.BIOSBootType == types.BIOSBootTypeEFI,
		Device: deviceName(p.BootDeviceSelector), Raw: hex.EncodeToString(p.Pack())}
}

func deviceName(d types.BootDeviceSelector) string {
	switch d {
	case types.BootDeviceSelectorNoOverride:
		return "none"
	case types.BootDeviceSelectorForcePXE:
		return "pxe"
	case types.BootDeviceSelectorForceHardDrive:
		return "disk"
	case types.BootDeviceSelectorForceHardDriveSafe:
		return "disk-safe"
	case types.BootDeviceSelectorForceDiagnosticPartition:
		return "diag"
	case types.BootDeviceSelectorForceCDROM:
		return "cdrom"
	case types.BootDeviceSelectorForceBIOSSetup:
		return "bios"
	case types.BootDeviceSelectorForceRemoteFloppy:
		return "floppy"
	}
	return fmt.Sprintf("0x%02x", uint8(d))
}

// parseBootParamData decodes the "Boot parameter data" line of
// `ipmitool chassis bootparam get 5`.
func parseBootParamData(s string) (BootFlags, error) {
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(k) != "Boot parameter data" {
			continue
		}
		b, err := hex.DecodeString(strings.Join(strings.Fields(v), ""))
		if err != nil {
			return BootFlags{}, fmt.Errorf("boot parameter data %q: %w", strings.TrimSpace(v), err)
		}
		if len(b) < 5 {
			return BootFlags{}, fmt.Errorf("boot parameter data %q: want 5 bytes", strings.TrimSpace(v))
		}
		p := &types.BootOptionParam_BootFlags{}
		if err := p.Unpack(b[:5]); err != nil {
			return BootFlags{}, err
		}
		return bootFlagsOf(p), nil
	}
	return BootFlags{}, errors.New("no \"Boot parameter data\" in ipmitool output")
}

// ipmitool command lines of the in-band boot override.
var (
	ipmitoolDisableTimer = []string{"raw", "0x00", "0x08", "0x03", "0x08"}
	ipmitoolForcePXE     = []string{"chassis", "bootparam", "set", "bootflag", "force_pxe"}
	// Set System Boot Options, parameter 5: valid, next boot only, EFI, PXE.
	ipmitoolForcePXEEFI = []string{"raw", "0x00", "0x08", "0x05", "0xa0", "0x04", "0x00", "0x00", "0x00"}
	ipmitoolGetFlags    = []string{"chassis", "bootparam", "get", "5"}
)
