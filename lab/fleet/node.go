package fleet

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/reprov/reprov/agent/inband/host"
	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/inventory"
	"github.com/reprov/reprov/lab/ipmibmc"
	"github.com/reprov/reprov/lab/redfishbmc"
	"github.com/reprov/reprov/lab/udpproxy"
)

// State is where a node is in its boot.
type State string

// Node states.
const (
	// StateOff: powered off.
	StateOff State = "off"
	// StateFirmware: powered on, the firmware deciding where to boot
	// (Config.BootDelay).
	StateFirmware State = "firmware"
	// StateNetboot: booting from the network, requesting the landing
	// endpoint until it answers.
	StateNetboot State = "netboot"
	// StateLanded: the landing endpoint answered; the installer runs.
	StateLanded State = "landed"
	// StateBooting: booting from the disk (Config.OSBootTime, or waiting
	// for one of Config.MaxOSUp slots).
	StateBooting State = "booting"
	// StateOS: the OS is up and answers SSH.
	StateOS State = "os"
	// StateHalted: nothing to boot from ("no bootable device"), or the
	// OS could not open its SSH port.
	StateHalted State = "halted"
)

// Where a node booted from (Status.LastBoot).
const (
	BootNetwork = "network"
	BootDisk    = "disk"
)

// Status is a snapshot of a node.
type Status struct {
	Name  string `json:"name"`
	Model Model  `json:"model"`
	// Powered reports the machine's power as the lab last saw it.
	Powered bool  `json:"powered"`
	State   State `json:"state"`
	// BootCount counts boots since the lab started: power-ons, resets,
	// OS reboots (an OS running at start is not one).
	BootCount int `json:"boot_count"`
	// LastBoot is BootNetwork or BootDisk: where the last boot went
	// ("" before the first).
	LastBoot string `json:"last_boot,omitempty"`
	// LastReason says why the firmware chose LastBoot.
	LastReason string `json:"last_reason,omitempty"`
	// LastOverride is what the BMC held at the last boot.
	LastOverride Override `json:"last_override"`
	NetworkBoots int      `json:"network_boots"`
	DiskBoots    int      `json:"disk_boots"`
	// LandingRequests counts the HTTP requests to the landing endpoint;
	// Landings those answered 2xx.
	LandingRequests int `json:"landing_requests"`
	Landings        int `json:"landings"`
	// LandingScript is the body of the last answer (truncated).
	LandingScript string `json:"landing_script,omitempty"`
	// OSUp reports whether the OS answers SSH; BootID is its boot id.
	OSUp   bool   `json:"os_up"`
	BootID string `json:"boot_id,omitempty"`
}

// Node is one virtual machine of a lab.
type Node struct {
	lab          *Lab
	idx          int
	name         string
	rack         string
	model        Model
	playbook     string
	ip           netip.Addr
	sshPort      int
	mac          string
	serial       string
	inbandSerial string
	guid         string // system GUID (inventory and the BMC)
	hostKey      ssh.Signer
	disk         *vdisk
	fs           *vfs
	be           backend
	ipmi         *ipmiBackend
	redfish      *redfishBackend

	mu           sync.Mutex
	gen          uint64
	st           Status
	bootPowerOns int
	ipmiLoaded   bool
	efi          *efiVars
	cancelBoot   context.CancelFunc
	srv          *sshServer
	hasSlot      bool
	files        *tmpFiles
	changed      chan struct{}
	faults       []Fault
	// overrideBoots counts the boots that found an override (the
	// override-second-cycle fault ignores the first).
	overrideBoots int
}

func (l *Lab) newNode(i, k int, name, rack string, m Model) (*Node, error) {
	n := &Node{
		lab: l, idx: i, name: name, rack: rack, model: m, ip: l.nodeIP(i),
		mac:     fmt.Sprintf("02:52:%02x:%02x:%02x:%02x", l.subnet, byte(i>>16), byte(i>>8), byte(i)),
		changed: make(chan struct{}),
		files:   newTmpFiles(),
		faults:  l.cfg.Faults[name],
	}
	n.st = Status{Name: name, Model: m, State: StateOff}
	switch m {
	case ModelDL360G7, ModelWrongIdentity:
		n.serial = fmt.Sprintf("CZJ%07d", i+1)
	default:
		n.serial = fmt.Sprintf("LAB%07d", i+1)
	}
	n.inbandSerial = n.serial
	n.guid = fmt.Sprintf("5eed1ab0-%04x-4000-8000-%012x", l.subnet, i+1)
	if m == ModelWrongIdentity {
		n.inbandSerial = fmt.Sprintf("CZX%07d", 9000000+i+1)
	}
	n.playbook = defaultPlaybook(m, k)
	n.fs, n.disk = l.vfsLegacy, newVDisk(l.imgMBR)
	if m.UEFI() {
		n.fs, n.disk = l.vfsUEFI, newVDisk(l.imgGPT)
		n.efi = newEFIVars(n.mac)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	if n.hostKey, err = ssh.NewSignerFromSigner(priv); err != nil {
		return nil, err
	}
	// The SSH port: free now, the node's for the lab's life (its OS
	// listens on it while up).
	ln, err := net.Listen("tcp4", net.JoinHostPort(n.ip.String(), "0"))
	if err != nil {
		return nil, fmt.Errorf("pick SSH port on %s: %w", n.ip, err)
	}
	n.sshPort = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	if m.Protocol() == "redfish" {
		b, err := l.newRedfishBackend(n)
		if err != nil {
			return nil, err
		}
		n.redfish, n.be = b, b
	} else {
		b, err := l.newIPMIBackend(n)
		if err != nil {
			return nil, err
		}
		n.ipmi, n.be = b, b
	}
	return n, nil
}

// wrongBMCIP is the BMC address the wrong-identity model reports in-band.
func (n *Node) wrongBMCIP() netip.Addr {
	return netip.AddrFrom4([4]byte{127, 254, byte(n.idx / 250), byte(2 + n.idx%250)})
}

// wrongBMCSystemID is the identity a wrong-bmc node's BMC reports: another
// machine's GUID and serial.
func (n *Node) wrongBMCSystemID() (guid, serial string) {
	return fmt.Sprintf("badb0c00-%04x-4000-8000-%012x", n.lab.subnet, n.idx+1), fmt.Sprintf("CZW%07d", 9000000+n.idx+1)
}

func (n *Node) bmcMAC() string {
	a := n.ip.As4()
	return fmt.Sprintf("02:00:%02x:%02x:%02x:%02x", a[0], a[1], a[2], a[3])
}

func (n *Node) vendor() string {
	switch n.model {
	case ModelDL360G7, ModelWrongIdentity:
		return "HP"
	}
	return "reprov lab"
}

func (n *Node) productName() string {
	switch n.model {
	case ModelDL360G7, ModelWrongIdentity:
		return "ProLiant DL360 G7"
	case ModelUEFI:
		return "Lab UEFI Server"
	case ModelRedfish:
		return "Redfish Lab Server"
	}
	return "Lab IPMI Server"
}

// Name is the node's inventory name.
func (n *Node) Name() string { return n.name }

// Model is the node's model.
func (n *Node) Model() Model { return n.model }

// Playbook is the node's inventory playbook.
func (n *Node) Playbook() string { return n.playbook }

// MAC is the node's NIC address (what its network boot sends).
func (n *Node) MAC() string { return n.mac }

// Serial is the node's inventory serial (the wrong-identity model's OS
// reports another).
func (n *Node) Serial() string { return n.serial }

// GUID is the node's inventory system GUID; its BMC reports it (the
// wrong-bmc model's BMC reports another, see BMCSystemID).
func (n *Node) GUID() string { return n.guid }

// BMCSystemID is the machine identity the node's BMC reports now.
func (n *Node) BMCSystemID() bmc.SystemID {
	if n.redfish != nil {
		return n.redfish.bmc.Machine().SystemID()
	}
	return n.ipmi.bmc.SystemIdentity()
}

// SetBMCSystemID makes the node's BMC report another machine's identity
// (or its own again): guid in 8-4-4-4-12 text, serial "" for none.
func (n *Node) SetBMCSystemID(id bmc.SystemID) error {
	if n.redfish != nil {
		n.redfish.bmc.Machine().SetSystemIdentity(id.GUID, id.Serial)
		return nil
	}
	return n.ipmi.bmc.SetSystemIdentity(id.GUID, id.Serial)
}

// IP is the node's loopback address (SSH and, unless flaky, the BMC).
func (n *Node) IP() netip.Addr { return n.ip }

// SSHAddr is host:port of the node's SSH server.
func (n *Node) SSHAddr() string { return net.JoinHostPort(n.ip.String(), strconv.Itoa(n.sshPort)) }

// BMCAddress is the inventory's bmc.address of the node.
func (n *Node) BMCAddress() string { return n.be.address() }

// HostKey is the node's SSH host key (stable across boots).
func (n *Node) HostKey() ssh.PublicKey { return n.hostKey.PublicKey() }

// IPMIBMC is the node's IPMI BMC (nil for Redfish nodes).
func (n *Node) IPMIBMC() *ipmibmc.BMC {
	if n.ipmi == nil {
		return nil
	}
	return n.ipmi.bmc
}

// RedfishBMC is the node's Redfish BMC (nil for IPMI nodes).
func (n *Node) RedfishBMC() *redfishbmc.BMC {
	if n.redfish == nil {
		return nil
	}
	return n.redfish.bmc
}

// Proxy is the UDP proxy in front of a flaky node's BMC (nil otherwise).
func (n *Node) Proxy() *udpproxy.Proxy {
	if n.ipmi == nil {
		return nil
	}
	return n.ipmi.proxy
}

// Host is the node's virtual host: what the agent subcommands run
// against over SSH. It acts on the node whatever its state.
func (n *Node) Host() host.Host { return &vhost{n: n} }

// BootSector returns a copy of the disk's sector 0.
func (n *Node) BootSector() []byte { return n.disk.sector(0) }

// Bootable reports whether the firmware would boot the disk: a boot
// sector (legacy), or a GPT header (UEFI).
func (n *Node) Bootable() bool {
	if n.model.UEFI() {
		return n.disk.uefiBootable()
	}
	return n.disk.legacyBootable()
}

// InventoryNode is the node as the lab's inventory has it.
func (n *Node) InventoryNode() inventory.Node {
	l := n.lab
	in := inventory.Node{
		Name:   n.name,
		Rack:   n.rack,
		Labels: map[string]string{"model": string(n.model), "lab": "reprov"},
		BMC: inventory.BMC{
			Address:  n.be.address(),
			Username: bmcUsername,
			Password: inventory.NewSecret("file:" + l.files.BMCPassword),
		},
		SSH: inventory.SSH{
			Address: n.ip.String(), Port: n.sshPort, User: sshUser,
			Identity: l.files.Identity, KnownHosts: l.files.KnownHosts,
		},
		MACs:     []string{n.mac},
		Serial:   n.serial,
		GUID:     n.guid,
		Boot:     inventory.Boot{Mode: "legacy"},
		Playbook: n.playbook,
	}
	if n.redfish != nil {
		in.BMC.Options.CAFile = l.files.CA
	}
	if n.model.UEFI() {
		in.Boot.Mode = "uefi"
	}
	return in
}

// Status returns a snapshot of the node.
func (n *Node) Status() Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.st
}

// Wait waits until cond holds for the node's status (checked at every
// change) and returns that status, or ctx's error with the last status.
func (n *Node) Wait(ctx context.Context, cond func(Status) bool) (Status, error) {
	for {
		n.mu.Lock()
		st, ch := n.st, n.changed
		n.mu.Unlock()
		if cond(st) {
			return st, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return st, fmt.Errorf("node %s (state %s): %w", n.name, st.State, ctx.Err())
		}
	}
}

// PowerOn switches the machine on as its power button does (a boot; a
// one-time IPMI override is cleared unless boot parameter 3 keeps it).
func (n *Node) PowerOn() { n.be.setPowered(true) }

// PowerOff switches the machine off as holding its power button does.
func (n *Node) PowerOff() {
	n.be.setPowered(false)
	n.powerOff(n.be.powerOns())
}

// notifyLocked wakes the waiters.
func (n *Node) notifyLocked() {
	close(n.changed)
	n.changed = make(chan struct{})
}

func (n *Node) currentBootID() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.st.BootID
}

func (n *Node) ipmiDeviceLoaded() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ipmiLoaded
}

// startRunning brings up the OS of a node that is on when the lab starts.
func (n *Node) startRunning() {
	n.mu.Lock()
	n.gen++
	n.st.Powered = true
	n.st.State = StateBooting
	ctx, cancel := context.WithCancel(n.lab.ctx)
	n.cancelBoot = cancel
	gen := n.gen
	n.notifyLocked()
	n.mu.Unlock()
	go n.bootOS(ctx, gen, 0)
}

// stopBootLocked ends the current boot: its goroutines, its OS.
func (n *Node) stopBootLocked() {
	if n.cancelBoot != nil {
		n.cancelBoot()
		n.cancelBoot = nil
	}
	if n.srv != nil {
		n.srv.close()
		n.srv = nil
	}
	if n.hasSlot {
		n.lab.releaseSlot()
		n.hasSlot = false
	}
	n.st.OSUp = false
	n.st.BootID = ""
	n.ipmiLoaded = false
	n.files.reset()
}

// powerOn is a boot: power-on, reset or reboot, with the override the
// BMC held. powerOns is the machine's power-on count (-1: unknown).
func (n *Node) powerOn(ov Override, powerOns int) {
	n.mu.Lock()
	if powerOns >= 0 {
		n.bootPowerOns = powerOns
	}
	n.stopBootLocked()
	n.gen++
	n.st.Powered = true
	n.st.State = StateFirmware
	n.st.BootCount++
	n.st.LastOverride = ov
	ctx, cancel := context.WithCancel(n.lab.ctx)
	n.cancelBoot = cancel
	gen := n.gen
	n.notifyLocked()
	n.mu.Unlock()
	n.lab.log.Debug("power on", "node", n.name, "override", ov)
	time.AfterFunc(n.bootDelay(), func() { n.firmware(ctx, gen, ov) })
}

// bootDelay is this node's firmware time (Config.BootDelaySpread).
func (n *Node) bootDelay() time.Duration {
	return n.lab.cfg.BootDelay + n.lab.cfg.BootDelaySpread*time.Duration(n.idx%5)/4
}

// powerOff is the machine going off. powerOns is the machine's power-on
// count when it was seen off: an older observation than the last boot is
// stale and ignored (-1: always applies).
func (n *Node) powerOff(powerOns int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if powerOns >= 0 && n.bootPowerOns > powerOns {
		return
	}
	if !n.st.Powered && n.st.State == StateOff {
		return
	}
	n.stopBootLocked()
	n.gen++
	n.st.Powered = false
	n.st.State = StateOff
	n.notifyLocked()
	n.lab.log.Debug("power off", "node", n.name)
}

// checkPower notices an IPMI machine switched off.
func (n *Node) checkPower() {
	if n.ipmi == nil {
		return
	}
	n.mu.Lock()
	on := n.st.Powered
	n.mu.Unlock()
	if !on {
		return
	}
	po := n.be.powerOns()
	if !n.be.powered() {
		n.powerOff(po)
	}
}

// firmware decides where the boot goes, BootDelay after power-on.
func (n *Node) firmware(ctx context.Context, gen uint64, ov Override) {
	n.mu.Lock()
	if gen != n.gen || ctx.Err() != nil {
		n.mu.Unlock()
		return
	}
	target, reason := n.decideLocked(ov)
	n.st.LastReason = reason
	switch target {
	case BootNetwork:
		n.st.State = StateNetboot
		n.st.LastBoot = BootNetwork
		n.st.NetworkBoots++
		n.notifyLocked()
		n.mu.Unlock()
		n.lab.log.Debug("boot from the network", "node", n.name, "why", reason)
		go n.netboot(ctx, gen)
	case BootDisk:
		n.st.LastBoot = BootDisk
		n.st.DiskBoots++
		n.st.State = StateBooting
		n.notifyLocked()
		n.mu.Unlock()
		n.lab.log.Debug("boot from the disk", "node", n.name, "why", reason)
		n.bootOS(ctx, gen, n.osBootTime())
	default:
		n.st.State = StateHalted
		n.notifyLocked()
		n.mu.Unlock()
		n.lab.log.Debug("no bootable device", "node", n.name, "why", reason)
	}
}

// bootOS brings the OS up after bootTime: a new boot id, the SSH server
// on the node's address, once one of MaxOSUp slots is free.
func (n *Node) bootOS(ctx context.Context, gen uint64, bootTime time.Duration) {
	if !n.lab.acquireSlot(ctx) {
		return
	}
	if bootTime > 0 {
		t := time.NewTimer(bootTime)
		select {
		case <-ctx.Done():
			t.Stop()
			n.lab.releaseSlot()
			return
		case <-t.C:
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if gen != n.gen || ctx.Err() != nil {
		n.lab.releaseSlot()
		return
	}
	n.hasSlot = true
	n.st.BootID = newUUID()
	srv, err := n.startSSH(ctx)
	if err != nil {
		n.lab.releaseSlot()
		n.hasSlot = false
		n.st.BootID = ""
		n.st.State = StateHalted
		n.st.LastReason = "the OS could not listen on its SSH address: " + err.Error()
		n.notifyLocked()
		n.lab.log.Warn("OS without SSH", "node", n.name, "err", err)
		return
	}
	n.srv = srv
	n.st.State = StateOS
	n.st.OSUp = true
	n.notifyLocked()
}

// reboot is the OS rebooting after delay (host.Reboot): through the
// firmware, as a warm reboot.
func (n *Node) reboot(delay time.Duration) error {
	n.mu.Lock()
	gen, up := n.gen, n.st.OSUp
	n.mu.Unlock()
	if !up {
		return fmt.Errorf("node %s: the OS is not running", n.name)
	}
	time.AfterFunc(delay, func() {
		n.mu.Lock()
		same := gen == n.gen
		n.mu.Unlock()
		if !same {
			return
		}
		n.lab.log.Debug("OS reboot", "node", n.name)
		ctx, cancel := context.WithTimeout(n.lab.ctx, 10*time.Second)
		defer cancel()
		err := n.be.warmReboot(ctx)
		if errors.Is(err, errLocalReboot) {
			ov := Override{Source: "ipmi"}
			if n.ipmi != nil {
				ov = overrideFromIPMI(n.ipmi.bmc.Machine().BootFlags())
			}
			n.powerOn(ov, -1)
		} else if err != nil {
			n.lab.log.Warn("OS reboot failed", "node", n.name, "err", err)
		}
	})
	return nil
}

// close stops the node and its BMC.
func (n *Node) close() error {
	n.mu.Lock()
	n.stopBootLocked()
	n.gen++
	n.mu.Unlock()
	if err := n.be.close(); err != nil {
		return fmt.Errorf("node %s: %w", n.name, err)
	}
	return nil
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
