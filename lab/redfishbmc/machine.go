package redfishbmc

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/reprov/reprov/bmc"
)

// Redfish BootSourceOverrideEnabled values.
const (
	EnabledDisabled   = "Disabled"
	EnabledOnce       = "Once"
	EnabledContinuous = "Continuous"
)

// BootSettings is a system's boot override in Redfish terms.
type BootSettings struct {
	// Target is BootSourceOverrideTarget: None, Pxe, Hdd, BiosSetup, Cd, Usb, …
	Target string
	// Enabled is BootSourceOverrideEnabled: Disabled, Once or Continuous.
	Enabled string
	// Mode is BootSourceOverrideMode: Legacy or UEFI ("" when the system
	// has no mode property).
	Mode string
}

// Device is the override as a bmc.BootDevice: Pxe → pxe, Hdd → disk,
// BiosSetup → bios, None (or Enabled=Disabled) → none; other targets are
// lower-cased (Cd → cd).
func (b BootSettings) Device() bmc.BootDevice {
	if b.Enabled == EnabledDisabled || b.Enabled == "" {
		return bmc.BootNone
	}
	switch b.Target {
	case "", "None":
		return bmc.BootNone
	case "Pxe":
		return bmc.BootPXE
	case "Hdd":
		return bmc.BootDisk
	case "BiosSetup":
		return bmc.BootBIOS
	default:
		return bmc.BootDevice(strings.ToLower(b.Target))
	}
}

// PowerEvent is one power transition of a simulated machine, handed to
// the power hook (Config.OnPower, Machine.SetPowerHook).
type PowerEvent struct {
	// System is the system's Id ("1").
	System string
	// On is true for off→on (a boot), false for on→off.
	On bool
	// Boot is the override in effect for this boot, read before a one-time
	// override was consumed (zero for power-off events).
	Boot BootSettings
	// Device is Boot.Device(): where the firmware was told to boot
	// (bmc.BootNone: its normal boot order).
	Device bmc.BootDevice
	// PowerOns is the machine's PowerOns count after this event.
	PowerOns int
}

// Machine is the simulated computer behind one Redfish system. It
// implements bmctest.Machine. Every off→on transition is a boot: it
// counts in PowerOns, consumes a one-time override (Enabled Once →
// Disabled, Target None) and is reported to the power hook.
type Machine struct {
	id string

	mu       sync.Mutex
	powered  bool
	powerOns int
	boot     BootSettings
	gen      uint64 // ETag generation; bumped on every change
	hook     func(PowerEvent)
	offTimer *time.Timer
	uuid     string // ComputerSystem UUID
	serial   string // ComputerSystem SerialNumber
}

func newMachine(id string, boot BootSettings, hook func(PowerEvent)) *Machine {
	return &Machine{id: id, boot: boot, gen: 1, hook: hook}
}

// ID is the Redfish system Id.
func (m *Machine) ID() string { return m.id }

// Powered reports whether the machine is on.
func (m *Machine) Powered() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.powered
}

// PowerOns counts off→on transitions (boots, including resets) since start.
func (m *Machine) PowerOns() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.powerOns
}

// BootDevice is the stored next-boot override as a bmc.BootDevice
// (bmc.BootNone when no override is active).
func (m *Machine) BootDevice() bmc.BootDevice {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.boot.Device()
}

// SystemID is the identity the system reports (UUID, SerialNumber).
func (m *Machine) SystemID() bmc.SystemID {
	m.mu.Lock()
	defer m.mu.Unlock()
	return bmc.SystemID{GUID: m.uuid, Serial: m.serial}
}

// SetSystemIdentity changes the UUID and SerialNumber the system reports
// (a BMC answering for another machine; "" leaves the property out, as a
// BMC that cannot tell does).
func (m *Machine) SetSystemIdentity(uuid, serial string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.uuid, m.serial = uuid, serial
	m.gen++
}

// Boot returns the stored override in Redfish terms.
func (m *Machine) Boot() BootSettings {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.boot
}

// SetBoot replaces the stored override, for test set-up and simulators.
func (m *Machine) SetBoot(b BootSettings) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.boot = b
	m.gen++
}

// SetPowered forces the machine's power. Turning an off machine on is a
// boot like any other (counted, override consumed, hook called).
func (m *Machine) SetPowered(on bool) {
	var ev *PowerEvent
	m.mu.Lock()
	m.stopOffTimerLocked()
	if on {
		ev = m.powerOnLocked()
	} else {
		ev = m.powerOffLocked()
	}
	hook := m.hook
	m.mu.Unlock()
	fire(hook, ev)
}

// SetPowerHook sets the function called after every power transition
// (outside the machine's lock, on the goroutine that caused it). A fleet
// simulator uses it to decide where the machine boots.
func (m *Machine) SetPowerHook(f func(PowerEvent)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.hook = f
}

func fire(hook func(PowerEvent), evs ...*PowerEvent) {
	if hook == nil {
		return
	}
	for _, ev := range evs {
		if ev != nil {
			hook(*ev)
		}
	}
}

// etagLocked is the current weak ETag.
func (m *Machine) etagLocked() string {
	return `W/"` + strconv.FormatUint(m.gen, 10) + `"`
}

func (m *Machine) powerOnLocked() *PowerEvent {
	if m.powered {
		return nil
	}
	m.powered = true
	m.powerOns++
	ev := &PowerEvent{System: m.id, On: true, Boot: m.boot, Device: m.boot.Device(), PowerOns: m.powerOns}
	if m.boot.Enabled == EnabledOnce {
		m.boot.Enabled = EnabledDisabled
		m.boot.Target = "None"
	}
	m.gen++
	return ev
}

func (m *Machine) powerOffLocked() *PowerEvent {
	if !m.powered {
		return nil
	}
	m.powered = false
	m.gen++
	return &PowerEvent{System: m.id, On: false, PowerOns: m.powerOns}
}

func (m *Machine) stopOffTimerLocked() {
	if m.offTimer != nil {
		m.offTimer.Stop()
		m.offTimer = nil
	}
}

// BeginShutdown starts an orderly shutdown of a machine that is on (its
// OS shutting down): it powers off after d. Until then the system reads
// PoweringOff when Quirks.ReportTransitions is on.
func (m *Machine) BeginShutdown(d time.Duration) { m.reset("GracefulShutdown", d) }

// shuttingDown reports whether a shutdown is under way; the caller holds m.mu.
func (m *Machine) shuttingDownLocked() bool { return m.offTimer != nil }

// reset applies a Redfish ResetType. Restart types on an off machine
// power it on.
func (m *Machine) reset(resetType string, gracefulDelay time.Duration) {
	var evs []*PowerEvent
	m.mu.Lock()
	switch resetType {
	case "On", "ForceOn":
		m.stopOffTimerLocked()
		evs = append(evs, m.powerOnLocked())
	case "ForceOff":
		m.stopOffTimerLocked()
		evs = append(evs, m.powerOffLocked())
	case "GracefulShutdown":
		if gracefulDelay <= 0 {
			m.stopOffTimerLocked()
			evs = append(evs, m.powerOffLocked())
		} else if m.powered && m.offTimer == nil {
			m.offTimer = time.AfterFunc(gracefulDelay, func() {
				m.mu.Lock()
				m.offTimer = nil
				ev := m.powerOffLocked()
				hook := m.hook
				m.mu.Unlock()
				fire(hook, ev)
			})
		}
	case "PushPowerButton":
		m.stopOffTimerLocked()
		if m.powered {
			evs = append(evs, m.powerOffLocked())
		} else {
			evs = append(evs, m.powerOnLocked())
		}
	case "ForceRestart", "GracefulRestart", "PowerCycle":
		m.stopOffTimerLocked()
		evs = append(evs, m.powerOffLocked(), m.powerOnLocked())
	case "Nmi":
		// A diagnostic interrupt changes nothing the model knows about.
	}
	hook := m.hook
	m.mu.Unlock()
	fire(hook, evs...)
}

func (m *Machine) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stopOffTimerLocked()
}
