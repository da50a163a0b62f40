package fleet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/command/chassis"
	"github.com/bougou/go-ipmi/pkg/types"

	"github.com/reprov/reprov/agent/inband/host"
	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/lab/ipmibmc"
	"github.com/reprov/reprov/lab/redfishbmc"
	"github.com/reprov/reprov/lab/udpproxy"
)

// Override is the boot override the firmware found at a boot.
type Override struct {
	// Valid is set when an override was in effect.
	Valid bool `json:"valid"`
	// Device is where it asked to boot (pxe, disk, …).
	Device bmc.BootDevice `json:"device,omitempty"`
	// EFI is IPMI's EFI bit, or Redfish BootSourceOverrideMode UEFI.
	EFI bool `json:"efi,omitempty"`
	// Persistent is set for an override on every boot.
	Persistent bool `json:"persistent,omitempty"`
	// Source is "ipmi" or "redfish" (the BMC that held it).
	Source string `json:"source,omitempty"`
}

func overrideFromIPMI(f ipmibmc.BootFlags) Override {
	return Override{Valid: f.Valid, Device: f.Device, EFI: f.EFI, Persistent: f.Persistent, Source: "ipmi"}
}

func overrideFromRedfish(b redfishbmc.BootSettings) Override {
	d := b.Device()
	return Override{Valid: d != bmc.BootNone, Device: d, EFI: strings.EqualFold(b.Mode, "UEFI"),
		Persistent: b.Enabled == redfishbmc.EnabledContinuous, Source: "redfish"}
}

// backend is a node's BMC as the rest of the node sees it.
type backend interface {
	// address is the inventory's bmc.address.
	address() string
	// powered reports the machine's power.
	powered() bool
	// setPowered is the front-panel power button.
	setPowered(on bool)
	// powerOns counts the machine's off→on transitions.
	powerOns() int
	// warmReboot reboots the running machine through its firmware, as an
	// OS reboot does (the firmware reads, and consumes, the override).
	warmReboot(ctx context.Context) error
	// inBand is the node's in-band IPMI interface (/dev/ipmi0).
	inBand(ctx context.Context) (host.IPMI, error)
	close() error
}

// ipmiBackend is a go-ipmi reference BMC, with a UDP proxy in front of
// it for the flaky model.
type ipmiBackend struct {
	bmc   *ipmibmc.BMC
	proxy *udpproxy.Proxy
	dead  bool
}

func (l *Lab) newIPMIBackend(n *Node) (*ipmiBackend, error) {
	cfg := ipmibmc.Config{
		Addr:        net.JoinHostPort(n.ip.String(), "0"),
		Username:    bmcUsername,
		Password:    l.password,
		InitiallyOn: !l.cfg.PoweredOff,
		SystemGUID:  n.guid,
		Serial:      n.serial,
	}
	if n.hasFault(FaultBadCredentials) {
		// The BMC answers, and its password is not the inventory's.
		cfg.Password = randomPassword(16)
	}
	if n.model == ModelWrongBMC {
		// The BMC at this node's address manages another machine.
		cfg.SystemGUID, cfg.Serial = n.wrongBMCSystemID()
	}
	switch n.model {
	case ModelDL360G7, ModelWrongIdentity:
		cfg.ManufacturerID, cfg.ProductID = hpManufacturerID, dl360G7ProductID
	}
	if n.model == ModelWrongIdentity {
		// Another machine answers at this node's SSH address: its BMC
		// has another address.
		cfg.LANIP = n.wrongBMCIP().String()
	}
	b, err := ipmibmc.Start(l.ctx, cfg)
	if err != nil {
		return nil, err
	}
	be := &ipmiBackend{bmc: b}
	m := b.Machine()
	m.OnBoot(func(f ipmibmc.BootFlags) { n.powerOn(overrideFromIPMI(f), m.PowerOns()) })
	if n.hasFault(FaultBMCReboot) {
		b.Faults().SetRebootAfterBootWrite(FaultBMCRebootDown)
	}
	loss, delay, proxied := 0.0, time.Duration(0), false
	switch n.model {
	case ModelDeadBMC:
		b.Faults().SetDropAll(true)
		be.dead = true
	case ModelFlaky:
		loss, delay, proxied = l.cfg.FlakyLoss, l.cfg.Latency, true
		if delay == 0 {
			delay = DefaultFlakyDelay
		}
	}
	for _, f := range n.faults {
		switch f {
		case FaultLoss1, FaultLoss10, FaultLoss30:
			loss, proxied = f.lossOf(), true
		case FaultLatency:
			delay, proxied = FaultLatencyOneWay, true
		}
	}
	if proxied {
		p, err := udpproxy.Start(l.ctx, udpproxy.Config{
			Listen: net.JoinHostPort(n.ip.String(), "0"),
			Target: b.Addr(),
			Seed:   uint64(n.idx) + 1,
		})
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("BMC proxy: %w", err)
		}
		p.SetLoss(udpproxy.Both, loss)
		p.SetDelay(delay)
		be.proxy = p
	}
	return be, nil
}

func (b *ipmiBackend) address() string {
	if b.proxy != nil {
		return "ipmi://" + b.proxy.Addr()
	}
	return "ipmi://" + b.bmc.Addr()
}

func (b *ipmiBackend) powered() bool { return b.bmc.Machine().Powered() }

func (b *ipmiBackend) powerOns() int { return b.bmc.Machine().PowerOns() }

func (b *ipmiBackend) setPowered(on bool) { b.bmc.Machine().SetPowered(on) }

// dial opens an RMCP+ session with the BMC itself (not its proxy): the
// lab's stand-in for the system interface, which no network fault
// reaches. A dead BMC answers nothing here either.
func (b *ipmiBackend) dial(ctx context.Context) (host.IPMI, *client.Client, error) {
	c, err := client.NewClient(b.bmc.Host(), b.bmc.Port(), b.bmc.Username(), b.bmc.Password())
	if err != nil {
		return nil, nil, err
	}
	c.WithCipherSuiteID(types.CipherSuiteID17).WithTimeout(time.Second).WithRetry(1)
	if err := c.Connect(ctx); err != nil {
		return nil, nil, fmt.Errorf("in-band IPMI (BMC %s): %w", b.bmc.Addr(), err)
	}
	return host.OnceCloser(c), c, nil
}

// inBand is the lab's /dev/ipmi0 of an IPMI node: an RMCP+ session with
// its own BMC, in this process (see dial). It reads and writes the same
// boot flags and LAN configuration the BMC serves out of band.
func (b *ipmiBackend) inBand(ctx context.Context) (host.IPMI, error) {
	i, _, err := b.dial(ctx)
	return i, err
}

// warmReboot is a hard reset through the BMC: go-ipmi's HAL boots the
// machine, consuming a one-time override and calling the boot hook, as
// the BIOS reading the flags at POST does. A dead BMC cannot help: the
// machine then reboots on its own, with the override left in place.
func (b *ipmiBackend) warmReboot(ctx context.Context) error {
	if !b.dead {
		i, c, err := b.dial(ctx)
		if err == nil {
			defer i.Close(context.WithoutCancel(ctx))
			if _, err = c.ChassisControl(ctx, chassis.ChassisControlHardReset); err == nil {
				return nil
			}
		}
		if ctx.Err() != nil {
			return err
		}
	}
	return errLocalReboot
}

// errLocalReboot asks the node to reboot without its BMC.
var errLocalReboot = errors.New("reboot without the BMC")

func (b *ipmiBackend) close() error {
	var errs []error
	if b.proxy != nil {
		errs = append(errs, b.proxy.Close())
	}
	errs = append(errs, b.bmc.Close())
	return errors.Join(errs...)
}

// redfishBackend is a Redfish test BMC with one system.
type redfishBackend struct {
	bmc *redfishbmc.BMC

	mu sync.Mutex
	// validClr is boot parameter 3 (valid-bit clearing) as written
	// in-band; Redfish has no such timer, so it is only read back.
	validClr uint8
}

func (l *Lab) newRedfishBackend(n *Node) (*redfishBackend, error) {
	cfg := redfishbmc.Config{
		Addr:         net.JoinHostPort(n.ip.String(), "0"),
		CA:           l.ca,
		Dir:          l.dir,
		Username:     bmcUsername,
		Password:     l.password,
		Powered:      !l.cfg.PoweredOff,
		BootModes:    []string{"Legacy", "UEFI"},
		Manufacturer: "reprov lab",
		Model:        "Redfish Lab Server",
		SerialNumber: n.serial,
		UUID:         n.guid,
		MACAddress:   n.bmcMAC(),
	}
	if n.hasFault(FaultBadCredentials) {
		cfg.Password = randomPassword(16)
	}
	for _, f := range n.faults {
		switch f {
		case FaultRedfish503:
			cfg.Quirks.Storm, cfg.Quirks.StormStatus, cfg.Quirks.StormRetryAfter = FaultRedfish503Count, 503, time.Second
		case FaultRedfish409:
			cfg.Quirks.ConflictResets = FaultRedfish409Count
		case FaultRedfishSessionLimit:
			cfg.Quirks.SessionLimit = 1
		}
	}
	b, err := redfishbmc.Start(l.ctx, cfg)
	if err != nil {
		return nil, err
	}
	storm := n.hasFault(FaultRedfish503)
	b.Machine().SetPowerHook(func(ev redfishbmc.PowerEvent) {
		if storm {
			// Every power transition: the BMC is busy for a while.
			go b.SetQuirks(b.Quirks())
		}
		if ev.On {
			n.powerOn(overrideFromRedfish(ev.Boot), ev.PowerOns)
		} else {
			n.powerOff(ev.PowerOns)
		}
	})
	return &redfishBackend{bmc: b}, nil
}

func (b *redfishBackend) address() string {
	return "redfish+https://" + net.JoinHostPort(b.bmc.Host(), strconv.Itoa(b.bmc.Port())) + "/redfish/v1/Systems/1"
}

func (b *redfishBackend) powered() bool { return b.bmc.Machine().Powered() }

func (b *redfishBackend) powerOns() int { return b.bmc.Machine().PowerOns() }

func (b *redfishBackend) setPowered(on bool) { b.bmc.Machine().SetPowered(on) }

// warmReboot is off then on: the machine's hook sees both, and the
// power-on consumes a one-time override.
func (b *redfishBackend) warmReboot(context.Context) error {
	m := b.bmc.Machine()
	m.SetPowered(false)
	m.SetPowered(true)
	return nil
}

func (b *redfishBackend) inBand(context.Context) (host.IPMI, error) {
	return &redfishSystemInterface{b: b}, nil
}

func (b *redfishBackend) close() error { return b.bmc.Close() }

// redfishSystemInterface is the in-band IPMI of a Redfish node (servers
// with Redfish BMCs keep a KCS interface): boot parameter 5 maps onto the
// system's boot override, LAN parameter 3 is the BMC's address. It runs
// in-process, on the BMC's machine.
type redfishSystemInterface struct{ b *redfishBackend }

var errParamNotSupported = errors.New("parameter not supported (completion code 80h)")

func (r *redfishSystemInterface) GetLanConfigParamFor(_ context.Context, ch uint8, p types.LanConfigParameter) error {
	if ch != 1 {
		return fmt.Errorf("channel %d: invalid channel (completion code CCh)", ch)
	}
	switch p := p.(type) {
	case *types.LanConfigParam_IP:
		a, err := netip.ParseAddr(r.b.bmc.Host())
		if err != nil {
			return err
		}
		s := a.As4()
		p.IP = net.IP(s[:])
		return nil
	}
	return errParamNotSupported
}

func (r *redfishSystemInterface) SetSystemBootOptionsParamFor(_ context.Context, p types.BootOptionParameter) error {
	switch p := p.(type) {
	case *types.BootOptionParam_BMCBootFlagValidBitClear:
		r.b.mu.Lock()
		defer r.b.mu.Unlock()
		r.b.validClr = 0
		if p.DontClearOnCommandReceivedTimeout {
			r.b.validClr |= 0x08
		}
		return nil
	case *types.BootOptionParam_BootFlags:
		m := r.b.bmc.Machine()
		cur := m.Boot()
		s := redfishbmc.BootSettings{Target: "None", Enabled: redfishbmc.EnabledDisabled, Mode: cur.Mode}
		if p.BootFlagsValid {
			s.Enabled = redfishbmc.EnabledOnce
			if p.Persist {
				s.Enabled = redfishbmc.EnabledContinuous
			}
			switch p.BootDeviceSelector {
			case types.BootDeviceSelectorForcePXE:
				s.Target = "Pxe"
			case types.BootDeviceSelectorForceHardDrive:
				s.Target = "Hdd"
			case types.BootDeviceSelectorForceBIOSSetup:
				s.Target = "BiosSetup"
			case types.BootDeviceSelectorForceCDROM:
				s.Target = "Cd"
			case types.BootDeviceSelectorNoOverride:
				s.Enabled = redfishbmc.EnabledDisabled
			default:
				return fmt.Errorf("boot device selector 0x%02x: parameter out of range (completion code C9h)", uint8(p.BootDeviceSelector))
			}
			s.Mode = "Legacy"
			if p.BIOSBootType == types.BIOSBootTypeEFI {
				s.Mode = "UEFI"
			}
		}
		m.SetBoot(s)
		return nil
	}
	return errParamNotSupported
}

func (r *redfishSystemInterface) GetSystemBootOptionsParamFor(_ context.Context, p types.BootOptionParameter) error {
	switch p := p.(type) {
	case *types.BootOptionParam_BMCBootFlagValidBitClear:
		r.b.mu.Lock()
		defer r.b.mu.Unlock()
		p.DontClearOnCommandReceivedTimeout = r.b.validClr&0x08 != 0
		return nil
	case *types.BootOptionParam_BootFlags:
		s := r.b.bmc.Machine().Boot()
		*p = types.BootOptionParam_BootFlags{}
		if s.Device() == bmc.BootNone {
			return nil
		}
		p.BootFlagsValid = true
		p.Persist = s.Enabled == redfishbmc.EnabledContinuous
		p.BIOSBootType = types.BIOSBootType(strings.EqualFold(s.Mode, "UEFI"))
		switch s.Target {
		case "Pxe":
			p.BootDeviceSelector = types.BootDeviceSelectorForcePXE
		case "Hdd":
			p.BootDeviceSelector = types.BootDeviceSelectorForceHardDrive
		case "BiosSetup":
			p.BootDeviceSelector = types.BootDeviceSelectorForceBIOSSetup
		case "Cd":
			p.BootDeviceSelector = types.BootDeviceSelectorForceCDROM
		}
		return nil
	}
	return errParamNotSupported
}

func (r *redfishSystemInterface) Close(context.Context) error { return nil }
