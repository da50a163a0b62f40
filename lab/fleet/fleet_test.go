package fleet_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/command/chassis"
	"github.com/bougou/go-ipmi/pkg/types"

	"github.com/reprov/reprov/agent/audit"
	agentfleet "github.com/reprov/reprov/agent/fleet"
	"github.com/reprov/reprov/agent/inband"
	"github.com/reprov/reprov/agent/inband/host"
	"github.com/reprov/reprov/agent/inband/sshx"
	"github.com/reprov/reprov/agent/inband/steps"
	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/inventory"
	"github.com/reprov/reprov/lab/fleet"
	"github.com/reprov/reprov/lab/redfishbmc"
	"github.com/reprov/reprov/lab/udpproxy"
)

const waitFor = 20 * time.Second

// startLab starts a lab with fast timings in a temporary directory.
func startLab(t *testing.T, cfg fleet.Config) *fleet.Lab {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.BootDelay == 0 {
		cfg.BootDelay = 10 * time.Millisecond
	}
	cfg.NetbootRetry, cfg.NetbootRetryMax, cfg.PowerPoll = 20*time.Millisecond, 200*time.Millisecond, 20*time.Millisecond
	l, err := fleet.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("close lab: %v", err)
		}
	})
	return l
}

func mix(m fleet.Model, n int) []fleet.ModelCount { return []fleet.ModelCount{{Model: m, Count: n}} }

// landing is a landing endpoint: it records every request and answers an
// installer script.
type landing struct {
	srv  *httptest.Server
	reqs chan *http.Request
	mu   sync.Mutex
	all  []string
}

func newLanding(t *testing.T, l *fleet.Lab) *landing {
	t.Helper()
	ld := &landing{reqs: make(chan *http.Request, 100)}
	ld.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ld.mu.Lock()
		ld.all = append(ld.all, r.URL.String())
		ld.mu.Unlock()
		select {
		case ld.reqs <- r:
		default:
		}
		w.Write([]byte("#!ipxe\nkernel http://127.0.0.1/vmlinuz\ninitrd http://127.0.0.1/initrd\nboot\n"))
	}))
	t.Cleanup(ld.srv.Close)
	if err := l.SetLandingURL(ld.srv.URL); err != nil {
		t.Fatal(err)
	}
	return ld
}

// waitRequest waits for a landing request naming mac.
func (ld *landing) waitRequest(t *testing.T, mac string) *http.Request {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case r := <-ld.reqs:
			if r.URL.Query().Get("mac") == mac {
				return r
			}
		case <-deadline:
			ld.mu.Lock()
			defer ld.mu.Unlock()
			t.Fatalf("no landing request with mac=%s within %v (requests: %v)", mac, waitFor, ld.all)
			return nil
		}
	}
}

func wait(t *testing.T, n *fleet.Node, what string, cond func(fleet.Status) bool) fleet.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	st, err := n.Wait(ctx, cond)
	if err != nil {
		t.Fatalf("waiting for %s: %v (status %+v)", what, err, st)
	}
	return st
}

func osUp(st fleet.Status) bool { return st.OSUp }

// ipmiClient opens a session with the node's BMC (through its inventory
// address), closed at cleanup.
func ipmiClient(t *testing.T, n *fleet.Node, retries int) *client.Client {
	t.Helper()
	addr, err := inventory.ParseBMCAddress(n.BMCAddress())
	if err != nil {
		t.Fatal(err)
	}
	b := n.IPMIBMC()
	c, err := client.NewClient(addr.Host, addr.Port, b.Username(), b.Password())
	if err != nil {
		t.Fatal(err)
	}
	c.WithCipherSuiteID(types.CipherSuiteID17).WithTimeout(500 * time.Millisecond).WithRetry(retries)
	if err := c.Connect(context.Background()); err != nil {
		t.Fatalf("connect to %s: %v", n.BMCAddress(), err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// pxeAndCycle sets a one-time PXE override (legacy or EFI) and power
// cycles the node, out of band.
func pxeAndCycle(t *testing.T, c *client.Client, efi bool) {
	t.Helper()
	ctx := context.Background()
	bt := types.BIOSBootTypeLegacy
	if efi {
		bt = types.BIOSBootTypeEFI
	}
	if err := c.SetBootDevice(ctx, types.BootDeviceSelectorForcePXE, bt, false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ChassisControl(ctx, chassis.ChassisControlPowerCycle); err != nil {
		t.Fatal(err)
	}
}

func dialSSH(t *testing.T, n *fleet.Node) *sshx.Client {
	t.Helper()
	cfg, err := sshx.ConfigFor(n.InventoryNode(), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	c, err := sshx.Dial(context.Background(), cfg)
	if err != nil {
		t.Fatalf("ssh to %s: %v", n.Name(), err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestIPMIModelPXEOnceAndCycleRequestsTheLandingURL(t *testing.T) {
	l := startLab(t, fleet.Config{Mix: mix(fleet.ModelIPMI, 2)})
	ld := newLanding(t, l)
	n := l.NodesOf(fleet.ModelIPMI)[1]
	wait(t, n, "OS up", osUp)

	pxeAndCycle(t, ipmiClient(t, n, 1), false)
	r := ld.waitRequest(t, n.MAC())
	if r.URL.Path != "/boot/ipxe" || !strings.HasPrefix(r.UserAgent(), "iPXE/") {
		t.Errorf("landing request %s %q (User-Agent %q); want /boot/ipxe from iPXE", r.Method, r.URL, r.UserAgent())
	}
	st := wait(t, n, "landed", func(s fleet.Status) bool { return s.State == fleet.StateLanded })
	if st.LastBoot != fleet.BootNetwork || st.NetworkBoots != 1 || st.OSUp || !st.LastOverride.Valid || st.LastOverride.Device != bmc.BootPXE {
		t.Errorf("after PXE once + cycle: %+v", st)
	}
	// The one-time override was consumed: the next cycle boots the disk.
	if d := n.IPMIBMC().Machine().BootDevice(); d != bmc.BootNone {
		t.Errorf("override still %s after the boot", d)
	}
	if _, err := ipmiClient(t, n, 1).ChassisControl(context.Background(), chassis.ChassisControlPowerCycle); err != nil {
		t.Fatal(err)
	}
	st = wait(t, n, "disk boot", func(s fleet.Status) bool { return s.BootCount == 2 && s.OSUp })
	if st.LastBoot != fleet.BootDisk || st.NetworkBoots != 1 {
		t.Errorf("second cycle without override: %+v", st)
	}
	// The other node never asked.
	if other := l.NodesOf(fleet.ModelIPMI)[0].Status(); other.LandingRequests != 0 || other.BootCount != 0 {
		t.Errorf("untouched node: %+v", other)
	}
}

func TestLandingRequestsAreRetriedUntilAnswered(t *testing.T) {
	l := startLab(t, fleet.Config{Mix: mix(fleet.ModelIPMI, 1)})
	n := l.Nodes()[0]
	var calls int
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls < 3 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("#!ipxe\nkernel http://x/vmlinuz\nboot\n"))
	}))
	defer srv.Close()
	if err := l.SetLandingURL(srv.URL + "/"); err != nil {
		t.Fatal(err)
	}
	wait(t, n, "OS up", osUp)
	pxeAndCycle(t, ipmiClient(t, n, 1), false)
	st := wait(t, n, "landed", func(s fleet.Status) bool { return s.Landings == 1 })
	if st.LandingRequests != 3 {
		t.Errorf("%d landing requests, want 3 (two 503s, then 200)", st.LandingRequests)
	}
}

func TestDL360G7IgnoresTheOverrideAndNetbootsOnceTheBootSectorIsZero(t *testing.T) {
	l := startLab(t, fleet.Config{Mix: mix(fleet.ModelDL360G7, 2)})
	ld := newLanding(t, l)
	n := l.NodesOf(fleet.ModelDL360G7)[0]
	before := wait(t, n, "OS up", osUp)

	c := ipmiClient(t, n, 1)
	pxeAndCycle(t, c, false)
	st := wait(t, n, "disk boot after PXE override", func(s fleet.Status) bool { return s.BootCount == 1 && s.OSUp })
	if st.LastBoot != fleet.BootDisk || !st.LastOverride.Valid || st.LastOverride.Device != bmc.BootPXE || !strings.Contains(st.LastReason, "ignored") {
		t.Errorf("DL360 G7 after PXE once + cycle: %+v; want a disk boot with the override ignored", st)
	}
	if st.BootID == before.BootID || st.BootID == "" {
		t.Errorf("boot id %q after the reboot, %q before", st.BootID, before.BootID)
	}

	// Zero the boot sector through the node's Host, as the agent does.
	ctx := context.Background()
	d, err := n.Host().OpenDisk(ctx, "/dev/sda", true)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Zero(ctx, 0, 512); err != nil {
		t.Fatal(err)
	}
	d.Close()
	if n.Bootable() || !bytes.Equal(n.BootSector(), make([]byte, 512)) {
		t.Fatal("boot sector not zero after the write")
	}
	if _, err := c.ChassisControl(ctx, chassis.ChassisControlPowerCycle); err != nil {
		t.Fatal(err)
	}
	ld.waitRequest(t, n.MAC())
	st = wait(t, n, "network boot", func(s fleet.Status) bool { return s.State == fleet.StateLanded })
	if st.LastBoot != fleet.BootNetwork || st.LastOverride.Valid {
		t.Errorf("after zeroing: %+v; want a network boot without override", st)
	}
	// The other node's disk is its own.
	if !l.NodesOf(fleet.ModelDL360G7)[1].Bootable() {
		t.Error("zeroing one node's disk changed another's")
	}
}

// TestDL360G7InBandReinstall runs reprov's in-band step (agent/inband,
// agent mode push, over SSH) against a DL360 G7: identify, wipe the boot
// sector, force_pxe in-band, reboot — and the node lands.
func TestDL360G7InBandReinstall(t *testing.T) {
	l := startLab(t, fleet.Config{Mix: mix(fleet.ModelDL360G7, 2)})
	ld := newLanding(t, l)
	n := l.NodesOf(fleet.ModelDL360G7)[1]
	if n.Playbook() != "hp-dl360-g7" || l.NodesOf(fleet.ModelDL360G7)[0].Playbook() != "default" {
		t.Errorf("playbooks %s, %s; want default and hp-dl360-g7", l.NodesOf(fleet.ModelDL360G7)[0].Playbook(), n.Playbook())
	}
	before := wait(t, n, "OS up", osUp)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	al, err := audit.Open(filepath.Join(dir, "audit.jsonl"), "run-1")
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	c := dialSSH(t, n)
	s, err := inband.NewSession(n.InventoryNode(), c, inband.Config{StateDir: dir, Run: "run-1", Audit: al,
		AgentBinary: exe, RebootDelay: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	res, err := s.Reinstall(ctx)
	if err != nil {
		t.Fatalf("in-band reinstall: %v", err)
	}
	if !res.Identity.Check.OK || res.Identity.Check.Matched != 3 {
		t.Errorf("identity check %+v; want serial, MAC and BMC address matched", res.Identity.Check)
	}
	if res.BootIDBefore != before.BootID {
		t.Errorf("boot id before %q, node's %q", res.BootIDBefore, before.BootID)
	}
	if res.Wipe == nil || !res.Wipe.Verified || res.Wipe.Table != "mbr" || res.NextBoot == nil || !res.NextBoot.IPMI.Verified {
		t.Fatalf("reinstall result: wipe %+v next-boot %+v", res.Wipe, res.NextBoot)
	}
	saved, err := steps.ReadSavedFile(res.SavedFile)
	if err != nil || !bytes.Equal(saved.Ranges[0].Data[510:512], []byte{0x55, 0xaa}) {
		t.Errorf("saved boot sector %s: %v", res.SavedFile, err)
	}

	r := ld.waitRequest(t, n.MAC())
	if r.URL.Query().Get("mac") != n.MAC() {
		t.Errorf("landing request %s", r.URL)
	}
	st := wait(t, n, "landed", func(s fleet.Status) bool { return s.State == fleet.StateLanded })
	if st.LastBoot != fleet.BootNetwork || st.BootCount != 1 || !st.LastOverride.Valid || st.LastOverride.Device != bmc.BootPXE {
		t.Errorf("after the in-band step: %+v; want a network boot with the in-band force_pxe seen (and ignored)", st)
	}
	if !strings.Contains(st.LastReason, "ignored") || !strings.Contains(st.LastReason, "no bootable boot sector") {
		t.Errorf("reason %q: want the override ignored, the disk unbootable", st.LastReason)
	}
	// The BMC consumed the in-band one-time override at the reboot.
	if boots := n.IPMIBMC().Machine().Boots(); len(boots) != 1 || !boots[0].Valid || boots[0].Device != bmc.BootPXE {
		t.Errorf("BMC saw boots %+v", boots)
	}
	if _, err := c.Exec(ctx, "true", nil); !errors.Is(err, sshx.ErrConnectionLost) {
		t.Errorf("SSH after the reboot: %v; want the connection lost", err)
	}
	recs, err := audit.Read(filepath.Join(dir, "audit.jsonl"))
	if err != nil || len(audit.Unsettled(recs)) != 0 {
		t.Errorf("audit log: %d records, unsettled %v, err %v", len(recs), audit.Unsettled(recs), err)
	}
}

func TestWrongIdentityIsStoppedByTheInterlock(t *testing.T) {
	l := startLab(t, fleet.Config{Mix: mix(fleet.ModelWrongIdentity, 1)})
	n := l.Nodes()[0]
	wait(t, n, "OS up", osUp)
	if n.Playbook() != "hp-dl360-g7" {
		t.Errorf("playbook %s", n.Playbook())
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	s, err := inband.NewSession(n.InventoryNode(), dialSSH(t, n), inband.Config{AgentBinary: exe})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	rep, err := s.Identify(context.Background())
	if !errors.Is(err, steps.ErrIdentityMismatch) {
		t.Fatalf("identify: %v; want an identity mismatch", err)
	}
	bad := map[string]bool{}
	for _, f := range rep.Check.Mismatches() {
		bad[f.Fact] = true
	}
	if !bad["serial"] || !bad["bmc_address"] || bad["mac"] {
		t.Errorf("mismatches %+v; want serial and bmc_address", rep.Check.Mismatches())
	}
	if !n.Bootable() {
		t.Error("the disk was written")
	}
}

func TestUEFIIgnoresLegacyForcePXEAndHonoursBootNext(t *testing.T) {
	l := startLab(t, fleet.Config{Mix: mix(fleet.ModelUEFI, 1)})
	ld := newLanding(t, l)
	n := l.Nodes()[0]
	wait(t, n, "OS up", osUp)
	c := ipmiClient(t, n, 1)

	pxeAndCycle(t, c, false)
	st := wait(t, n, "disk boot", func(s fleet.Status) bool { return s.BootCount == 1 && s.OSUp })
	if st.LastBoot != fleet.BootDisk || !strings.Contains(st.LastReason, "no EFI bit") {
		t.Errorf("UEFI after a legacy force_pxe: %+v; want the disk", st)
	}

	// BootNext to the network entry, then an OS reboot.
	ctx := context.Background()
	h := n.Host()
	out, err := h.Run(ctx, "efibootmgr", "-v")
	if err != nil {
		t.Fatal(err)
	}
	e, ok := steps.ParseEFIBootMgr(string(out)).NetworkEntry([]string{n.MAC()})
	if !ok {
		t.Fatalf("no network entry in\n%s", out)
	}
	if _, err := h.Run(ctx, "efibootmgr", "-n", e.Num); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Reboot(ctx, 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	ld.waitRequest(t, n.MAC())
	st = wait(t, n, "network boot", func(s fleet.Status) bool { return s.State == fleet.StateLanded })
	if st.BootCount != 2 || !strings.Contains(st.LastReason, "BootNext="+e.Num) {
		t.Errorf("after BootNext: %+v", st)
	}
	// BootNext is one-shot; an EFI PXE override is honoured.
	if _, err := c.ChassisControl(ctx, chassis.ChassisControlPowerCycle); err != nil {
		t.Fatal(err)
	}
	st = wait(t, n, "disk boot", func(s fleet.Status) bool { return s.BootCount == 3 && s.OSUp })
	if st.LastBoot != fleet.BootDisk {
		t.Errorf("BootNext not consumed: %+v", st)
	}
	pxeAndCycle(t, c, true)
	st = wait(t, n, "network boot", func(s fleet.Status) bool { return s.BootCount == 4 && s.State == fleet.StateLanded })
	if !strings.Contains(st.LastReason, "EFI bit") {
		t.Errorf("EFI PXE override: %+v", st)
	}
}

func TestUEFIInBandWipeAndBootNextLand(t *testing.T) {
	l := startLab(t, fleet.Config{Mix: mix(fleet.ModelUEFI, 1)})
	ld := newLanding(t, l)
	n := l.Nodes()[0]
	wait(t, n, "OS up", osUp)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	al, err := audit.Open(filepath.Join(dir, "audit.jsonl"), "")
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	s, err := inband.NewSession(n.InventoryNode(), dialSSH(t, n), inband.Config{StateDir: dir, Audit: al, AgentBinary: exe, RebootDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Reinstall(context.Background())
	if err != nil {
		t.Fatalf("in-band reinstall of a UEFI node: %v", err)
	}
	if res.Wipe == nil || res.Wipe.Table != "gpt" || res.NextBoot == nil || res.NextBoot.EFI == nil || !res.NextBoot.EFI.Verified {
		t.Fatalf("wipe %+v next-boot %+v", res.Wipe, res.NextBoot)
	}
	ld.waitRequest(t, n.MAC())
	if n.Bootable() {
		t.Error("both GPT copies should be gone")
	}
}

func TestRedfishHonoursTheOverride(t *testing.T) {
	l := startLab(t, fleet.Config{Mix: mix(fleet.ModelRedfish, 1)})
	ld := newLanding(t, l)
	n := l.Nodes()[0]
	wait(t, n, "OS up", osUp)
	b := n.RedfishBMC()
	if b == nil || n.IPMIBMC() != nil || !strings.HasPrefix(n.BMCAddress(), "redfish+https://") {
		t.Fatalf("redfish node BMC %s", n.BMCAddress())
	}
	b.Machine().SetBoot(redfishbmc.BootSettings{Target: "Pxe", Enabled: redfishbmc.EnabledOnce, Mode: "Legacy"})
	// A ForceRestart through the API, with the lab CA.
	req, err := http.NewRequest(http.MethodPost, b.URL()+"/redfish/v1/Systems/1/Actions/ComputerSystem.Reset", strings.NewReader(`{"ResetType":"ForceRestart"}`))
	if err != nil {
		t.Fatal(err)
	}
	pw, err := n.InventoryNode().BMC.Password.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("admin", pw)
	req.Header.Set("Content-Type", "application/json")
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig(b)}}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("reset: %s", resp.Status)
	}
	ld.waitRequest(t, n.MAC())
	st := wait(t, n, "landed", func(s fleet.Status) bool { return s.State == fleet.StateLanded })
	if st.LastOverride.Source != "redfish" || st.LastOverride.Device != bmc.BootPXE {
		t.Errorf("redfish boot: %+v", st)
	}
	if l.Files().CA == "" || n.InventoryNode().BMC.Options.CAFile != l.Files().CA {
		t.Errorf("CA file %q, inventory ca_file %q", l.Files().CA, n.InventoryNode().BMC.Options.CAFile)
	}
}

func TestFlakyBMCLosesWhatItIsToldToLose(t *testing.T) {
	l := startLab(t, fleet.Config{Mix: mix(fleet.ModelFlaky, 1), FlakyLoss: -1})
	n := l.Nodes()[0]
	p := n.Proxy()
	if p == nil || !strings.Contains(n.BMCAddress(), p.Addr()) {
		t.Fatalf("flaky node BMC %s, proxy %v", n.BMCAddress(), p)
	}
	before := p.Stats()
	p.DropNext(udpproxy.Requests, 3)
	c := ipmiClient(t, n, 5)
	if _, err := c.GetChassisStatus(context.Background()); err != nil {
		t.Fatal(err)
	}
	d := p.Stats().Sub(before)
	if d.RequestsDropped != 3 {
		t.Errorf("proxy dropped %d requests, want 3 (%+v)", d.RequestsDropped, d)
	}
	if got := n.IPMIBMC().Stats().Received; got != d.RequestsForwarded {
		t.Errorf("BMC received %d datagrams, the proxy forwarded %d", got, d.RequestsForwarded)
	}
}

func TestDeadBMCNeverAnswers(t *testing.T) {
	l := startLab(t, fleet.Config{Mix: mix(fleet.ModelDeadBMC, 1)})
	n := l.Nodes()[0]
	b := n.IPMIBMC()
	c, err := client.NewClient(b.Host(), b.Port(), b.Username(), b.Password())
	if err != nil {
		t.Fatal(err)
	}
	c.WithCipherSuiteID(types.CipherSuiteID17).WithTimeout(200 * time.Millisecond).WithRetry(1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err == nil {
		c.Close(ctx)
		t.Fatal("connected to a dead BMC")
	}
	if s := b.Stats(); s.Received == 0 || s.Sent != 0 || s.Dropped != s.Received {
		t.Errorf("dead BMC stats %+v: want every datagram dropped, none sent", s)
	}
	// Its OS runs; only the BMC is dead.
	wait(t, n, "OS up", osUp)
}

func TestSSHHostKeyIsStableAcrossBootsAndTheBootIDChanges(t *testing.T) {
	l := startLab(t, fleet.Config{Mix: mix(fleet.ModelIPMI, 1)})
	n := l.Nodes()[0]
	wait(t, n, "OS up", osUp)
	ctx := context.Background()
	first, err := inband.BootID(ctx, dialSSH(t, n))
	if err != nil || first == "" || first != n.Status().BootID {
		t.Fatalf("boot id %q (%v), node says %q", first, err, n.Status().BootID)
	}

	n.PowerOff()
	wait(t, n, "off", func(s fleet.Status) bool { return !s.Powered && !s.OSUp })
	// The OS is down: nothing listens on its address.
	if c, err := net.DialTimeout("tcp", n.SSHAddr(), time.Second); err == nil {
		c.Close()
		t.Fatalf("%s accepted a connection while the node is off", n.SSHAddr())
	}
	cfg, err := sshx.ConfigFor(n.InventoryNode(), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sshx.Dial(ctx, cfg); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("ssh to a node that is off: %v; want connection refused", err)
	}

	n.PowerOn()
	st := wait(t, n, "OS up again", osUp)
	// Strict known_hosts: the same host key, a new boot id.
	second, err := inband.BootID(ctx, dialSSH(t, n))
	if err != nil {
		t.Fatal(err)
	}
	if second == first || second != st.BootID {
		t.Errorf("boot id %q after a power cycle, %q before (node says %q)", second, first, st.BootID)
	}
}

func TestShell(t *testing.T) {
	l := startLab(t, fleet.Config{Mix: mix(fleet.ModelIPMI, 1), Latency: time.Millisecond})
	n := l.Nodes()[0]
	wait(t, n, "OS up", osUp)
	c := dialSSH(t, n)
	ctx := context.Background()
	run := func(cmd string, stdin string) (string, int) {
		t.Helper()
		var in *strings.Reader
		if stdin != "" {
			in = strings.NewReader(stdin)
		}
		var out []byte
		var err error
		if in != nil {
			out, err = c.Exec(ctx, cmd, in)
		} else {
			out, err = c.Exec(ctx, cmd, nil)
		}
		var ee *host.ExitError
		switch {
		case err == nil:
			return string(out), 0
		case errors.As(err, &ee):
			return string(out), ee.Status
		}
		t.Fatalf("%s: %v", cmd, err)
		return "", 0
	}
	for _, tt := range []struct {
		cmd, stdin, out string
		status          int
	}{
		{"id -u", "", "0\n", 0},
		{"uname -s", "", "Linux\n", 0},
		{"cat /sys/class/dmi/id/product_serial", "", n.Serial() + "\n", 0},
		{"umask 077 && mkdir -m 700 /tmp/x && cat > /tmp/x/f && chmod 700 /tmp/x/f", "hello", "", 0},
		{"if command -v sha256sum >/dev/null 2>&1; then sha256sum -- '/tmp/x/f'; else echo no-sha256sum; fi", "",
			"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824  /tmp/x/f\n", 0},
		{"cat -- /tmp/x/f", "", "hello", 0},
		{"false; rc=$?; rm -rf -- /tmp/x; exit $rc", "", "", 1},
		{"cat /tmp/x/f", "", "", 1},
		{"nosuchtool --help", "", "", 127},
		{"echo 'a b' \"c $HOME\" || echo no", "", "a b c /root\n", 0},
		{"true | cat", "", "", 2},
		// The reads a push-mode plan sends (it copies nothing to the node).
		{"[ -e /sys/class/net/eth0 ] || [ -h /sys/class/net/eth0 ] || exit 66; ls -1A -- /sys/class/net", "", "eth0\nlo\n", 0},
		{"[ -e /nope ] || [ -h /nope ] || exit 66; cat -- /nope", "", "", 66},
		{"ls -lLd -- /dev/sda", "", "brw-rw---- 1 root disk 8, 0 Jan  1 00:00 /dev/sda\n", 0},
		{"p=/sys/class/net/eth0\nn=0\nwhile [ -h \"$p\" ]; do\ndone", "", "/sys/devices/pci0000:00/0000:00:03.0/net/eth0\n", 0},
		{"dd if=/dev/sda of=/dev/sda bs=512 seek=0 count=1", "", "", 1},
	} {
		out, status := run(tt.cmd, tt.stdin)
		if out != tt.out || status != tt.status {
			t.Errorf("%s: output %q status %d; want %q status %d", tt.cmd, out, status, tt.out, tt.status)
		}
	}
}

func TestMaxOSUpBoundsTheOSesRunning(t *testing.T) {
	l := startLab(t, fleet.Config{Mix: mix(fleet.ModelIPMI, 4), MaxOSUp: 2})
	nodes := l.Nodes()
	up := func() (n int) {
		for _, x := range nodes {
			if x.Status().OSUp {
				n++
			}
		}
		return n
	}
	// Which two boot first is up to the scheduler: wait for the count.
	deadline := time.Now().Add(waitFor)
	for up() != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d OSes up after %v, want 2", up(), waitFor)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if l.OSUp() != 2 {
		t.Fatalf("%d OSes up, want 2", l.OSUp())
	}
	var waiting, running []*fleet.Node
	for _, x := range nodes {
		if st := x.Status(); !st.OSUp {
			if st.State != fleet.StateBooting {
				t.Errorf("%s: %s, want booting (waiting for a slot)", x.Name(), st.State)
			}
			waiting = append(waiting, x)
		} else {
			running = append(running, x)
		}
	}
	for _, x := range running {
		x.PowerOff()
	}
	for _, x := range waiting {
		wait(t, x, "OS up once a slot is free", osUp)
	}
	if l.OSUp() != 2 {
		t.Errorf("%d OSes up, want 2", l.OSUp())
	}
	for _, x := range running {
		if st := x.Status(); st.OSUp || st.Powered {
			t.Errorf("%s: %+v after power off", x.Name(), st)
		}
	}
}

func TestPoweredOffLabWaitsForPower(t *testing.T) {
	l := startLab(t, fleet.Config{Mix: mix(fleet.ModelIPMI, 3), PoweredOff: true})
	for _, n := range l.Nodes() {
		st := n.Status()
		if st.Powered || st.OSUp || n.IPMIBMC().Machine().Powered() {
			t.Errorf("%s: %+v; want off", n.Name(), st)
		}
		if c, err := net.DialTimeout("tcp", n.SSHAddr(), time.Second); err == nil {
			c.Close()
			t.Errorf("%s listens while off", n.SSHAddr())
		}
	}
	n := l.Nodes()[1]
	if _, err := ipmiClient(t, n, 1).ChassisControl(context.Background(), chassis.ChassisControlPowerUp); err != nil {
		t.Fatal(err)
	}
	st := wait(t, n, "OS up", osUp)
	if st.BootCount != 1 || st.LastBoot != fleet.BootDisk {
		t.Errorf("power on: %+v", st)
	}
	// Chassis power down through the BMC takes the OS down too.
	if _, err := ipmiClient(t, n, 1).ChassisControl(context.Background(), chassis.ChassisControlPowerDown); err != nil {
		t.Fatal(err)
	}
	wait(t, n, "OS down", func(s fleet.Status) bool { return !s.Powered && !s.OSUp })
	if l.OSUp() != 0 {
		t.Errorf("%d OSes up", l.OSUp())
	}
}

func TestWriteFiles(t *testing.T) {
	dir := t.TempDir()
	every := make([]fleet.ModelCount, 0, len(fleet.Models()))
	for _, m := range fleet.Models() {
		every = append(every, fleet.ModelCount{Model: m, Count: 1})
	}
	every[0].Count = 2 // one more node than models
	nodes := len(fleet.Models()) + 1
	l := startLab(t, fleet.Config{Dir: dir, Mix: every, PoweredOff: true})
	files, err := l.WriteFiles(filepath.Join(dir, "fleet.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	inv, warnings, err := inventory.Load(files.Inventory)
	if err != nil {
		t.Fatalf("inventory does not load: %v", err)
	}
	if len(inv.Nodes) != nodes {
		t.Errorf("%d nodes, want %d", len(inv.Nodes), nodes)
	}
	for _, w := range warnings {
		t.Errorf("warning: %s", w)
	}
	want := l.Inventory()
	for i, got := range inv.Nodes {
		w := want.Nodes[i]
		if got.Name != w.Name || got.BMC.Address != w.BMC.Address || got.SSH.Port != w.SSH.Port || got.Serial != w.Serial || got.GUID != w.GUID || w.GUID == "" ||
			got.Playbook != w.Playbook || got.Boot.Mode != w.Boot.Mode || got.BMC.Options.CAFile != w.BMC.Options.CAFile ||
			got.SSH.KnownHosts != files.KnownHosts || got.SSH.Identity != files.Identity || got.BMC.Password.Ref() != "file:"+files.BMCPassword {
			t.Errorf("node %d: file has %+v, lab %+v", i, got, w)
		}
	}
	for _, p := range []string{files.BMCPassword, files.Identity} {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v; want 0600", p, err, fi.Mode().Perm())
		}
	}
	cfg, err := os.ReadFile(files.Config)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"inventory: \"" + files.Inventory + "\"", "listen: \"" + l.LandingListen() + "\"", "url: \"" + l.LandingURL() + "\""} {
		if !strings.Contains(string(cfg), s) {
			t.Errorf("reprov.yaml lacks %s:\n%s", s, cfg)
		}
	}
	pw, err := os.ReadFile(files.BMCPassword)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := os.ReadFile(files.Inventory)
	if bytes.Contains(all, bytes.TrimSpace(pw)) || bytes.Contains(cfg, bytes.TrimSpace(pw)) {
		t.Error("the BMC password is written in the inventory or config")
	}
	kh, _ := os.ReadFile(files.KnownHosts)
	if got := strings.Count(string(kh), "\n"); got != nodes {
		t.Errorf("known_hosts has %d lines, want %d", got, nodes)
	}
	// Rewriting is fine; a reprov.yaml of someone else's is not touched.
	if _, err := l.WriteFiles(filepath.Join(dir, "fleet.yaml")); err != nil {
		t.Errorf("rewrite: %v", err)
	}
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "reprov.yaml"), []byte("inventory: mine.yaml\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := l.WriteFiles(filepath.Join(other, "fleet.yaml")); !errors.Is(err, fleet.ErrForeignConfig) {
		t.Errorf("WriteFiles over a foreign reprov.yaml: %v", err)
	}
}

func TestMix(t *testing.T) {
	m, err := fleet.ParseMix("ipmi=12, hp-dl360-g7=6,redfish=4,uefi=2")
	if err != nil {
		t.Fatal(err)
	}
	if got := fleet.FormatMix(m); got != "ipmi=12,hp-dl360-g7=6,redfish=4,uefi=2" {
		t.Errorf("mix %s", got)
	}
	if got := fleet.FormatMix(fleet.ScaleMix(m, 10000)); got != "ipmi=5000,hp-dl360-g7=2500,redfish=1667,uefi=833" {
		t.Errorf("scaled to 10000: %s", got)
	}
	if got := fleet.FormatMix(fleet.ScaleMix(m, 5)); got != "ipmi=3,hp-dl360-g7=1,redfish=1,uefi=0" {
		t.Errorf("scaled to 5: %s", got)
	}
	for _, bad := range []string{"", "ipmi", "ipmi=x", "ipmi=-1", "vax=3", "ipmi=1,ipmi=2", "ipmi=0"} {
		if _, err := fleet.ParseMix(bad); err == nil {
			t.Errorf("ParseMix(%q) accepted", bad)
		}
	}
}

func tlsConfig(b *redfishbmc.BMC) *tls.Config { return &tls.Config{RootCAs: b.CAPool()} }

func TestCloseReleasesEverything(t *testing.T) {
	base := runtime.NumGoroutine()
	l, err := fleet.Start(context.Background(), fleet.Config{
		Mix:          []fleet.ModelCount{{Model: fleet.ModelIPMI, Count: 2}, {Model: fleet.ModelRedfish, Count: 1}, {Model: fleet.ModelFlaky, Count: 1}, {Model: fleet.ModelUEFI, Count: 1}},
		NetbootRetry: 10 * time.Millisecond, PowerPoll: 10 * time.Millisecond,
		// Nothing answers there: the network boot keeps retrying.
		LandingURL: "http://127.0.0.1:9",
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := l.Dir()
	n := l.Nodes()[0]
	wait(t, n, "OS up", osUp)
	c := dialSSH(t, n)
	pxeAndCycle(t, ipmiClient(t, n, 1), false)
	wait(t, n, "network boot retrying", func(s fleet.Status) bool { return s.LandingRequests >= 2 })
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary dir %s left behind: %v", dir, err)
	}
	for _, x := range l.Nodes() {
		if conn, err := net.DialTimeout("tcp", x.SSHAddr(), time.Second); err == nil {
			conn.Close()
			t.Errorf("%s still listens after Close", x.SSHAddr())
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base+2 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after Close, %d before:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestBMCsReportNodeIdentity opens every model's BMC (except the dead one)
// the way reprov does and compares its system identity with the
// inventory: it matches, except on the wrong-bmc node, whose BMC answers
// for another machine.
func TestBMCsReportNodeIdentity(t *testing.T) {
	l := startLab(t, fleet.Config{PoweredOff: true, Mix: []fleet.ModelCount{
		{Model: fleet.ModelIPMI, Count: 1}, {Model: fleet.ModelRedfish, Count: 1}, {Model: fleet.ModelDL360G7, Count: 1},
		{Model: fleet.ModelWrongBMC, Count: 1},
	}})
	lim := bmc.NewLimiter(nil)
	for _, n := range l.Nodes() {
		t.Run(n.Name(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			in := n.InventoryNode()
			if in.GUID != n.GUID() || !bmc.ValidGUID(in.GUID) {
				t.Fatalf("inventory GUID %q, node GUID %q", in.GUID, n.GUID())
			}
			c, _, err := agentfleet.OpenBMC(ctx, in, lim, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(context.Background())
			got, err := c.SystemIdentity(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got != n.BMCSystemID() {
				t.Errorf("client reads %+v, the lab BMC reports %+v", got, n.BMCSystemID())
			}
			matched, err := bmc.MatchIdentity(bmc.SystemID{GUID: in.GUID, Serial: in.Serial}, got)
			if n.Model() == fleet.ModelWrongBMC {
				var me *bmc.IdentityMismatchError
				if !errors.As(err, &me) || len(me.Mismatches) != 2 {
					t.Fatalf("wrong-bmc node: matched %v, %v; want guid and serial to differ", matched, err)
				}
				return
			}
			if err != nil || len(matched) != 2 {
				t.Errorf("matched %v, %v; want guid and serial", matched, err)
			}
		})
	}
	// Any node's BMC can be made to answer for another machine.
	n := l.NodesOf(fleet.ModelIPMI)[0]
	other := l.NodesOf(fleet.ModelRedfish)[0]
	if err := n.SetBMCSystemID(bmc.SystemID{GUID: other.GUID(), Serial: other.Serial()}); err != nil {
		t.Fatal(err)
	}
	if got := n.BMCSystemID(); got.GUID != other.GUID() || got.Serial != other.Serial() {
		t.Errorf("after SetBMCSystemID the BMC reports %+v", got)
	}
}

// Labs running at once never share a subnet: an explicit subnet another lab
// holds is refused, naming it, and labs picking at random get distinct ones.
func TestLabsNeverShareASubnet(t *testing.T) {
	one := mix(fleet.ModelIPMI, 1)
	first := startLab(t, fleet.Config{Mix: one})
	_, err := fleet.Start(context.Background(), fleet.Config{Mix: one, Subnet: first.Subnet()})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("127.%d.0.0/16 is taken", first.Subnet())) {
		t.Fatalf("a second lab on subnet %d: %v, want it refused as taken", first.Subnet(), err)
	}
	seen := map[int]bool{first.Subnet(): true}
	for range 8 {
		l := startLab(t, fleet.Config{Mix: one})
		if seen[l.Subnet()] {
			t.Fatalf("two labs running at once on subnet %d", l.Subnet())
		}
		seen[l.Subnet()] = true
	}
	// A closed lab's subnet is free again.
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := fleet.Start(context.Background(), fleet.Config{Mix: one, Subnet: first.Subnet()})
	if err != nil {
		t.Fatalf("subnet %d after its lab closed: %v", first.Subnet(), err)
	}
	_ = again.Close()
}
