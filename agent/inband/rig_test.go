package inband_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/reprov/reprov/agent/audit"
	"github.com/reprov/reprov/agent/inband"
	"github.com/reprov/reprov/agent/inband/host"
	"github.com/reprov/reprov/agent/inband/host/fixture"
	"github.com/reprov/reprov/agent/inband/sshx"
	"github.com/reprov/reprov/inventory"
	"github.com/reprov/reprov/lab/ipmibmc"
	"github.com/reprov/reprov/lab/labtool"
	"github.com/reprov/reprov/lab/sshd"
)

// The fixture agent is built once per test binary, with the path of its
// layout file baked in; push tests write their layout there and so run
// one at a time (none of them is parallel).
var (
	agentOnce  sync.Once
	agentDir   string
	agentErr   error
	agentBuilt string
)

const bmcPassword = "bmc-S3cret-7f2a"

func TestMain(m *testing.M) {
	code := m.Run()
	if agentDir != "" {
		os.RemoveAll(agentDir)
	}
	os.Exit(code)
}

func layoutFile() string { return filepath.Join(agentDir, "layout.json") }

// fixtureAgent builds reprov-agent with the reprov_fixture tag: its Host is
// the fixture whose layout is at layoutFile(), never this machine.
func fixtureAgent(t *testing.T) string {
	t.Helper()
	agentOnce.Do(func() {
		agentDir, agentErr = os.MkdirTemp("", "reprov-inband-test-")
		if agentErr != nil {
			return
		}
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = "/usr/local/go/bin/go"
		}
		agentBuilt = filepath.Join(agentDir, "reprov-agent")
		cmd := exec.Command(goBin, "build", "-tags", "reprov_fixture",
			"-ldflags", "-X github.com/reprov/reprov/agent/inband/agentcmd.fixtureLayout="+layoutFile(),
			"-o", agentBuilt, "github.com/reprov/reprov/cmd/reprov-agent")
		out, err := cmd.CombinedOutput()
		if err != nil {
			agentErr = fmt.Errorf("build fixture agent: %v\n%s", err, out)
		}
	})
	if agentErr != nil {
		t.Fatal(agentErr)
	}
	return agentBuilt
}

const imageSize = 4 << 20

type rigOpts struct {
	label     string // dos or gpt
	mode      string // push or commands
	ipmitool  bool
	dropLink  bool
	uefi      bool
	node      func(*inventory.Node)
	fixture   func(*fixture.Node)
	bmcConfig func(*ipmibmc.Config)
	config    func(*inband.Config)
}

// rig is one node: an sshd on this machine, a fixture behind it, a lab BMC
// as its /dev/ipmi0, an image file as its disk.
type rig struct {
	t        *testing.T
	srv      *sshd.Server
	layout   *host.Layout
	image    string
	orig     []byte
	bmc      *ipmibmc.BMC
	node     inventory.Node
	stateDir string
	audit    string
	log      *audit.Log
	logs     *bytes.Buffer
	conn     *sshx.Client
	config   func(*inband.Config)
	// efiState holds the fake efibootmgr's BootNext (UEFI rigs).
	efiState string
}

func newRig(t *testing.T, o rigOpts) *rig {
	t.Helper()
	labtool.RequireTool(t, "sfdisk")
	if o.label == "" {
		o.label = "dos"
	}
	if o.mode == "" {
		o.mode = inband.ModePush
	}
	r := &rig{t: t, stateDir: t.TempDir(), logs: &bytes.Buffer{}, config: o.config}
	r.image = filepath.Join(t.TempDir(), "disk.img")
	if err := fixture.MakeImage(r.image, imageSize, o.label); err != nil {
		t.Fatal(err)
	}
	r.orig = r.read()
	fn := fixture.Node{
		Serial: "CZJ1234ABC",
		NICs: []fixture.NIC{
			{Name: "eth0", MAC: "3c:4a:92:11:22:33"},
			{Name: "virbr0", MAC: "52:54:00:00:00:01", Virtual: true},
		},
		BootID:     "9c1b7a34-6d5e-4f27-a3b8-0c2d4e6f8a10",
		IPMIDevice: true,
		UEFI:       o.uefi,
		Disks: []fixture.Disk{{Name: "sda", Dev: "8:0", Image: r.image, Model: "LOGICAL VOLUME",
			Partitions: []fixture.Partition{{Name: "sda1", Dev: "8:1"}, {Name: "sda2", Dev: "8:2"}}}},
		Mounts: []fixture.Mount{
			{Dev: "8:2", MountPoint: "/", FSType: "ext4", Source: "/dev/sda2"},
			{Dev: "8:1", MountPoint: "/boot", FSType: "ext4", Source: "/dev/sda1"},
		},
	}
	if o.fixture != nil {
		o.fixture(&fn)
	}
	l, err := fixture.Build(filepath.Join(t.TempDir(), "root"), fn)
	if err != nil {
		t.Fatal(err)
	}
	r.layout = l
	l.RebootDropsLink = o.dropLink

	ctx, cancel := context.WithCancel(context.Background())
	bc := ipmibmc.Config{LANIP: "10.1.12.14", Password: bmcPassword, InitiallyOn: true}
	if o.bmcConfig != nil {
		o.bmcConfig(&bc)
	}
	b, err := ipmibmc.Start(ctx, bc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(); cancel() })
	r.bmc = b
	pw := filepath.Join(t.TempDir(), "bmc-password")
	if err := os.WriteFile(pw, []byte(bmcPassword), 0o600); err != nil {
		t.Fatal(err)
	}
	l.IPMI = &host.LANTarget{Host: b.Host(), Port: b.Port(), Username: b.Username(), PasswordFile: pw, CipherSuite: 3}
	if o.ipmitool || o.mode == inband.ModeCommands {
		ipmitool := labtool.RequireTool(t, "ipmitool")
		p := filepath.Join(l.Root, "bin", "ipmitool")
		os.MkdirAll(filepath.Dir(p), 0o755)
		script := fmt.Sprintf("#!/bin/sh\nexec %s -I lanplus -H %s -p %d -U %s -f %s -C 3 \"$@\"\n",
			ipmitool, b.Host(), b.Port(), b.Username(), pw)
		if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		l.Tools["ipmitool"] = p
	}

	if o.uefi {
		// efibootmgr for the fixture: a boot list, BootNext kept in a file
		// as the real one keeps it in NVRAM.
		r.efiState = filepath.Join(l.Root, "efi-bootnext")
		p := filepath.Join(l.Root, "bin", "efibootmgr")
		os.MkdirAll(filepath.Dir(p), 0o755)
		script := "#!/bin/sh\nstate=" + r.efiState + "\n" + `if [ "$1" = "-n" ]; then echo "$2" > "$state"; fi
echo "BootCurrent: 0001"
[ -s "$state" ] && echo "BootNext: $(cat "$state")"
echo "BootOrder: 0001,0002,0003"
echo "Boot0001* debian	HD(1,GPT,2c4b5d3e,0x800,0x100000)/File(\EFI\debian\shimx64.efi)"
echo "Boot0002* UEFI PXEv4 (MAC:AABBCCDDEEFF)	PciRoot(0x0)/Pci(0x3,0x0)/MAC(aabbccddeeff,1)/IPv4(0.0.0.00.0.0.0,0,0)"
echo "Boot0003* UEFI PXEv4 (MAC:3C4A92112233)	PciRoot(0x0)/Pci(0x4,0x0)/MAC(3c4a92112233,1)/IPv4(0.0.0.00.0.0.0,0,0)"
`
		if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		l.Tools["efibootmgr"] = p
	}

	r.srv = sshd.Start(t, sshd.Options{})
	r.node = inventory.Node{
		Name:   "web-014",
		Rack:   "r12",
		BMC:    inventory.BMC{Address: "ipmi://10.1.12.14:623", Username: "admin", Password: inventory.NewSecret("plain:" + bmcPassword)},
		SSH:    inventory.SSH{Address: r.srv.Host, Port: r.srv.Port, User: r.srv.User, Identity: r.srv.ClientKeyFile, KnownHosts: r.srv.WriteKnownHosts(t), Agent: o.mode},
		MACs:   []string{"3c:4a:92:11:22:33"},
		Serial: "CZJ1234ABC",
		Boot:   inventory.Boot{Mode: "legacy", Disk: r.image},
	}
	if o.uefi {
		r.node.Boot.Mode = "uefi"
	}
	if o.node != nil {
		o.node(&r.node)
	}
	r.audit = filepath.Join(r.stateDir, "audit.jsonl")
	if r.log, err = audit.Open(r.audit, "run-1"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.log.Close() })
	if o.mode == inband.ModePush {
		fixtureAgent(t)
		if err := l.Save(layoutFile()); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// dial connects to the rig's node.
func (r *rig) dial() *sshx.Client {
	r.t.Helper()
	cfg, err := sshx.ConfigFor(r.node, func(string) string { return "" })
	if err != nil {
		r.t.Fatal(err)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, err := sshx.Dial(context.Background(), cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { c.Close() })
	r.conn = c
	return c
}

// session opens a Session over conn (nil: a fresh connection).
func (r *rig) session(conn inband.Conn) *inband.Session {
	r.t.Helper()
	if conn == nil {
		conn = r.dial()
	}
	cfg := inband.Config{StateDir: r.stateDir, Run: "run-1", Audit: r.log,
		Logger: slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	// The layout is the commands path's stand-in node, and what a push-mode
	// plan reads (it pushes nothing); the pushed fixture agent has its own.
	cfg.Layout = r.layout
	if r.node.SSH.Agent != inband.ModeCommands {
		cfg.AgentBinary = agentBuilt
	}
	if r.config != nil {
		r.config(&cfg)
	}
	s, err := inband.NewSession(r.node, conn, cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func (r *rig) read() []byte {
	r.t.Helper()
	b, err := os.ReadFile(r.image)
	if err != nil {
		r.t.Fatal(err)
	}
	return b
}

func (r *rig) records() []audit.Record {
	r.t.Helper()
	recs, err := audit.Read(r.audit)
	if err != nil {
		r.t.Fatal(err)
	}
	return recs
}

func (r *rig) rebooted() bool {
	_, err := os.Stat(r.layout.RebootMarker)
	return err == nil
}

// assertUntouched checks that nothing destructive happened.
func (r *rig) assertUntouched() {
	r.t.Helper()
	if !bytes.Equal(r.read(), r.orig) {
		r.t.Error("the disk image changed")
	}
	if r.rebooted() {
		r.t.Error("the node was rebooted")
	}
	if f := r.bmc.Machine().BootFlags(); f.Valid {
		r.t.Errorf("boot flags were set: %+v", f)
	}
	for _, rec := range r.records() {
		switch rec.Action {
		case inband.ActionWipe, inband.ActionNextBoot, inband.ActionReboot:
			r.t.Errorf("audit log has %s %s", rec.Action, rec.Phase)
		}
	}
}

// assertZeroed checks that exactly ranges were zeroed, every other byte
// unchanged.
func (r *rig) assertZeroed(ranges [][2]int64) {
	r.t.Helper()
	after := r.read()
	prev := int64(0)
	same := func(from, to int64) {
		if !bytes.Equal(r.orig[from:to], after[from:to]) {
			r.t.Errorf("bytes %d..%d changed, outside the wipe", from, to-1)
		}
	}
	for _, rg := range ranges {
		same(prev, rg[0])
		if !bytes.Equal(after[rg[0]:rg[1]], make([]byte, rg[1]-rg[0])) {
			r.t.Errorf("bytes %d..%d not zeroed", rg[0], rg[1]-1)
		}
		prev = rg[1]
	}
	same(prev, int64(len(after)))
}

// spyConn sees every command before it runs.
type spyConn struct {
	inner  inband.Conn
	before func(cmd string)
	mu     sync.Mutex
	cmds   []string
}

func (s *spyConn) Exec(ctx context.Context, cmd string, stdin io.Reader) ([]byte, error) {
	s.mu.Lock()
	s.cmds = append(s.cmds, cmd)
	s.mu.Unlock()
	if s.before != nil {
		s.before(cmd)
	}
	return s.inner.Exec(ctx, cmd, stdin)
}

func (s *spyConn) commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.cmds...)
}

func itoa(i int) string { return strconv.Itoa(i) }

func contains(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
