package ipmibmc

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/bougou/go-ipmi/pkg/hal"
	"github.com/bougou/go-ipmi/pkg/types"

	"github.com/reprov/reprov/bmc"
)

// BootFlags is the boot override a machine saw, as IPMI boot parameter 5
// holds it.
type BootFlags struct {
	// Valid is the boot-flags-valid bit: an override is in effect.
	Valid bool
	// Persistent asks for the override on every boot, not only the next.
	Persistent bool
	// EFI asks for an EFI boot instead of a legacy (PC compatible) one.
	EFI bool
	// Selector is the raw boot device selector (IPMI Table 28-14, 4 bits).
	Selector uint8
	// Device is Selector as reprov names it: pxe, disk, bios, none, or
	// "selector-0xNN" for the rest.
	Device bmc.BootDevice
}

// Valid-bit clearing bits of boot parameter 3 (IPMI Table 28-14).
const (
	// dontClearOnPowerButton: don't clear the valid bit on power up via
	// the power push button or a wake event.
	dontClearOnPowerButton = 0x01
	// dontClearOnTimeout: don't clear the valid bit when no Chassis
	// Control command arrives within the 60 s timeout.
	dontClearOnTimeout = 0x08
)

// Machine is the simulated host behind one BMC: its power, the boot
// override the BMC holds for it, and the boots it made. It implements
// bmctest.Machine. All methods are safe for concurrent use.
//
// Power-on (from the BMC's Chassis Control or SetPowered) is a boot: the
// boot override in effect at that moment is handed to the OnBoot hook and,
// unless persistent, consumed (valid bit cleared). A hard reset of a machine
// that is on is a boot too. The valid bit expires BootFlagTimeout after it
// was set unless boot parameter 3 disabled the timeout.
type Machine struct {
	clk          func() time.Time
	timeout      time.Duration
	cycleDelay   time.Duration
	cycleWhenOff bool

	mu          sync.Mutex
	powered     bool
	powerOns    int
	boots       []BootFlags
	flags       types.BootOptionParam_BootFlags
	flagsSetAt  time.Time
	validClear  uint8 // boot parameter 3 data
	ack         types.BootOptionParam_BootInfoAcknowledge
	onBoot      func(BootFlags)
	pendingOn   *time.Timer
	identifying uint8
	closed      bool
}

func newMachine(cfg Config) *Machine {
	timeout := cfg.BootFlagTimeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	return &Machine{
		clk:          time.Now,
		timeout:      timeout,
		cycleDelay:   cfg.PowerCycleDelay,
		cycleWhenOff: cfg.CycleWhenOffPowersOn,
		powered:      cfg.InitiallyOn,
	}
}

// Powered reports whether the machine is on.
func (m *Machine) Powered() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.powered
}

// PowerOns counts off→on transitions since the BMC started.
func (m *Machine) PowerOns() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.powerOns
}

// BootDevice is the device of the boot override currently in effect
// (bmc.BootNone when the valid bit is clear or has expired).
func (m *Machine) BootDevice() bmc.BootDevice {
	f := m.BootFlags()
	if !f.Valid {
		return bmc.BootNone
	}
	return f.Device
}

// BootFlags returns the stored boot parameter 5, with the valid bit cleared
// if the boot-flag timeout expired.
func (m *Machine) BootFlags() BootFlags {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expireLocked()
	return flagsOf(&m.flags)
}

// BootFlagTimeoutDisabled reports whether boot parameter 3 asked the BMC not
// to clear the valid bit on the 60 s timeout.
func (m *Machine) BootFlagTimeoutDisabled() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.validClear&dontClearOnTimeout != 0
}

// Boots returns the boot override each boot of the machine used, oldest
// first (Valid false: the machine booted its default order).
func (m *Machine) Boots() []BootFlags {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]BootFlags(nil), m.boots...)
}

// OnBoot registers fn to be called at every boot with the boot override in
// effect (Valid false: none). fn runs synchronously on the BMC's packet
// handling path and must return quickly; it may call the Machine's methods.
func (m *Machine) OnBoot(fn func(BootFlags)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.onBoot = fn
}

// SetPowered forces the machine's power as the front-panel power button
// would: switching it on is a boot, which, as the IPMI specification says
// for a push-button power-up, ignores and clears a one-time override unless
// boot parameter 3 asked to keep it.
func (m *Machine) SetPowered(on bool) {
	m.mu.Lock()
	if on == m.powered {
		m.mu.Unlock()
		return
	}
	m.cancelPendingLocked()
	if !on {
		m.powered = false
		m.mu.Unlock()
		return
	}
	if m.validClear&dontClearOnPowerButton == 0 && !m.flags.Persist {
		m.flags.BootFlagsValid = false
	}
	m.powerOnLocked()
}

// powerOnLocked switches the machine on and boots it; it unlocks m.mu.
func (m *Machine) powerOnLocked() {
	m.powered = true
	m.powerOns++
	m.bootLocked()
}

// bootLocked records a boot, consumes a one-time override and calls the
// hook outside the lock; it unlocks m.mu.
func (m *Machine) bootLocked() {
	m.expireLocked()
	f := flagsOf(&m.flags)
	if f.Valid && !f.Persistent {
		m.flags.BootFlagsValid = false
	}
	m.boots = append(m.boots, f)
	hook := m.onBoot
	m.mu.Unlock()
	if hook != nil {
		hook(f)
	}
}

func (m *Machine) expireLocked() {
	if !m.flags.BootFlagsValid || m.timeout < 0 || m.validClear&dontClearOnTimeout != 0 {
		return
	}
	if m.clk().Sub(m.flagsSetAt) > m.timeout {
		m.flags.BootFlagsValid = false
	}
}

func (m *Machine) cancelPendingLocked() {
	if m.pendingOn != nil {
		m.pendingOn.Stop()
		m.pendingOn = nil
	}
}

func (m *Machine) setValidBitClearing(b uint8) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.validClear = b & 0x1f
}

func (m *Machine) validBitClearing() uint8 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.validClear
}

func (m *Machine) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.cancelPendingLocked()
}

func flagsOf(p *types.BootOptionParam_BootFlags) BootFlags {
	sel := uint8(p.BootDeviceSelector) & 0x0f
	return BootFlags{
		Valid:      p.BootFlagsValid,
		Persistent: p.Persist,
		EFI:        bool(p.BIOSBootType),
		Selector:   sel,
		Device:     deviceOf(sel),
	}
}

func deviceOf(sel uint8) bmc.BootDevice {
	switch types.BootDeviceSelector(sel) {
	case types.BootDeviceSelectorNoOverride:
		return bmc.BootNone
	case types.BootDeviceSelectorForcePXE:
		return bmc.BootPXE
	case types.BootDeviceSelectorForceHardDrive:
		return bmc.BootDisk
	case types.BootDeviceSelectorForceBIOSSetup:
		return bmc.BootBIOS
	}
	return bmc.BootDevice(fmt.Sprintf("selector-0x%02x", sel))
}

// chassisHAL adapts Machine to go-ipmi's hal.ChassisHAL.
type chassisHAL struct {
	m      *Machine
	faults *Faults
}

var _ hal.ChassisHAL = chassisHAL{}

func (c chassisHAL) PowerState(context.Context) (bool, error) { return c.m.Powered(), nil }

func (c chassisHAL) SetPower(_ context.Context, on bool) error {
	m := c.m
	m.mu.Lock()
	m.cancelPendingLocked()
	if on == m.powered {
		m.mu.Unlock()
		return nil
	}
	if !on {
		m.powered = false
		m.mu.Unlock()
		return nil
	}
	m.powerOnLocked()
	return nil
}

// PowerCycle is off, then on (after PowerCycleDelay). Like many real BMCs,
// a cycle of a machine that is off is refused with completion code D5h
// ("not supported in present state") unless CycleWhenOffPowersOn is set.
func (c chassisHAL) PowerCycle(context.Context) error {
	m := c.m
	m.mu.Lock()
	if !m.powered && m.pendingOn == nil && !m.cycleWhenOff {
		m.mu.Unlock()
		return types.CodeNotSupported
	}
	m.cancelPendingLocked()
	m.powered = false
	if m.cycleDelay <= 0 {
		m.powerOnLocked()
		return nil
	}
	var t *time.Timer
	t = time.AfterFunc(m.cycleDelay, func() {
		m.mu.Lock()
		if m.pendingOn != t || m.closed {
			m.mu.Unlock()
			return
		}
		m.pendingOn = nil
		m.powerOnLocked()
	})
	m.pendingOn = t
	m.mu.Unlock()
	return nil
}

// ColdReset is a hard reset: a reboot of a machine that is on; refused with
// D5h when it is off.
func (c chassisHAL) ColdReset(context.Context) error {
	m := c.m
	m.mu.Lock()
	if !m.powered {
		m.mu.Unlock()
		return types.CodeNotSupported
	}
	m.bootLocked()
	return nil
}

// WarmReset is Chassis Control 05h, the soft (ACPI) shutdown: the machine
// powers off.
func (c chassisHAL) WarmReset(ctx context.Context) error { return c.SetPower(ctx, false) }

func (c chassisHAL) Identify(_ context.Context, seconds uint8) error {
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	c.m.identifying = seconds
	return nil
}

func (c chassisHAL) IntrusionState(context.Context) (bool, error) {
	return false, hal.ErrNotSupported
}

func (c chassisHAL) SetBootFlags(_ context.Context, f *types.BootOptionParam_BootFlags) error {
	if c.faults.ignoreBootWrites.Load() {
		return nil
	}
	m := c.m
	m.mu.Lock()
	defer m.mu.Unlock()
	m.flags = *f
	if f.BootFlagsValid {
		m.flagsSetAt = m.clk()
	}
	return nil
}

func (c chassisHAL) GetBootFlags(context.Context) (*types.BootOptionParam_BootFlags, error) {
	m := c.m
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expireLocked()
	f := m.flags
	if c.faults.deviceOnlyReadBack.Load() {
		f = types.BootOptionParam_BootFlags{BootDeviceSelector: f.BootDeviceSelector}
	}
	return &f, nil
}

func (c chassisHAL) SetBootInfoAcknowledge(_ context.Context, a *types.BootOptionParam_BootInfoAcknowledge) error {
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	c.m.ack = *a
	return nil
}

func (c chassisHAL) GetBootInfoAcknowledge(context.Context) (*types.BootOptionParam_BootInfoAcknowledge, error) {
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	a := c.m.ack
	return &a, nil
}

// networkHAL answers the LAN configuration parameters.
type networkHAL struct {
	mu  sync.Mutex
	cfg hal.IPConfig
}

func (n *networkHAL) GetConfig(context.Context) (*hal.IPConfig, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := n.cfg
	return &c, nil
}

func (n *networkHAL) SetConfig(_ context.Context, c *hal.IPConfig) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cfg = *c
	return nil
}

// machineHAL is the hal.HAL of one simulated BMC.
type machineHAL struct {
	chassis chassisHAL
	network *networkHAL
	storage storageHAL
}

func (h *machineHAL) Chassis() hal.ChassisHAL { return h.chassis }
func (h *machineHAL) Sensors() hal.SensorHAL  { return nil }
func (h *machineHAL) Storage() hal.StorageHAL { return h.storage }
func (h *machineHAL) Network() hal.NetworkHAL { return h.network }
func (h *machineHAL) GPIO() hal.GPIOHAL       { return nil }
func (h *machineHAL) I2C() hal.I2CHAL         { return nil }
func (h *machineHAL) Console() hal.ConsoleHAL { return nil }
func (h *machineHAL) Close() error            { return nil }
