package agent_test

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/reprov/reprov/agent"
	"github.com/reprov/reprov/agent/audit"
	"github.com/reprov/reprov/agent/landing"
	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/inventory"
	"github.com/reprov/reprov/lab/fleet"
	"github.com/reprov/reprov/playbooks"
)

// fastPlaybooks override the built-ins with lab timings (same paths and
// policies, seconds instead of minutes).
var fastPlaybooks = fstest.MapFS{
	"default.yaml": {Data: []byte("name: default\nextends: default\ntimeouts: {precheck: 3s, oob_boot: 10s, power: 10s, wait_landing: 8s, inband: 20s, reboot: 4s}\n")},
	"hp-dl360-g7.yaml": {Data: []byte("name: hp-dl360-g7\nextends: hp-dl360-g7\n" +
		"timeouts: {precheck: 3s, oob_boot: 10s, power: 10s, wait_landing: 8s, inband: 20s, reboot: 4s}\n")},
	"uefi-generic.yaml": {Data: []byte("name: uefi-generic\nextends: uefi-generic\n" +
		"timeouts: {precheck: 3s, oob_boot: 10s, power: 10s, wait_landing: 8s, inband: 20s, reboot: 4s}\n")},
}

// rig is a lab with a store, a landing endpoint and an engine.
type rig struct {
	t        *testing.T
	lab      *fleet.Lab
	st       *store.Store
	storeURL string
	stateDir string
	audit    *audit.Log
	pbs      *playbooks.Set
	nodes    []inventory.Node
	events   *eventLog
	landing  *landing.Server
}

type rigOpts struct {
	mix       []fleet.ModelCount
	storeURL  string
	noLand    bool          // no landing endpoint of its own
	bootDelay time.Duration // the lab firmware's (default 20 ms)
	faults    map[string][]fleet.Fault
}

func startLab(t testing.TB, mix []fleet.ModelCount, bootDelay time.Duration, faults ...map[string][]fleet.Fault) *fleet.Lab {
	t.Helper()
	if bootDelay == 0 {
		bootDelay = 20 * time.Millisecond
	}
	var fault map[string][]fleet.Fault
	if len(faults) > 0 {
		fault = faults[0]
	}
	l, err := fleet.Start(context.Background(), fleet.Config{Mix: mix, Dir: t.TempDir(),
		BootDelay: bootDelay, OSBootTime: 50 * time.Millisecond,
		NetbootRetry: 20 * time.Millisecond, NetbootRetryMax: 200 * time.Millisecond, PowerPoll: 20 * time.Millisecond, Faults: fault})
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

func newRig(t *testing.T, o rigOpts) *rig {
	t.Helper()
	r := &rig{t: t, lab: startLab(t, o.mix, o.bootDelay, o.faults), stateDir: filepath.Join(t.TempDir(), "state"), events: &eventLog{}}
	r.storeURL = o.storeURL
	if r.storeURL == "" {
		r.storeURL = "sqlite://" + filepath.Join(r.stateDir, "reprov.db")
	}
	r.st = openStore(t, r.storeURL)
	var err error
	if r.pbs, err = playbooks.LoadFS(fastPlaybooks); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(r.stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	r.audit, err = audit.Open(filepath.Join(r.stateDir, "audit.jsonl"), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.audit.Close() })
	r.nodes = r.lab.Inventory().Nodes
	if !o.noLand {
		r.landing = serveLanding(t, r.st, r.pbs, r.nodes, r.lab.LandingListen(), r.lab.LandingURL())
	}
	return r
}

func openStore(t testing.TB, url string) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), url, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// serveLanding runs a landing endpoint on addr until the test ends.
func serveLanding(t testing.TB, st *store.Store, pbs *playbooks.Set, nodes []inventory.Node, addr, url string) *landing.Server {
	t.Helper()
	byMAC := map[string]string{}
	for _, n := range nodes {
		for _, m := range n.MACs {
			byMAC[m] = n.Name
		}
	}
	srv, err := landing.New(landing.Config{Jobs: st, URL: url, NodeByMAC: func(mac string) (string, bool) {
		n, ok := byMAC[mac]
		return n, ok
	}, Profile: func(node string) (playbooks.InstallProfile, error) {
		return playbooks.InstallProfile{Kernel: "http://netboot.lab/vmlinuz", Initrds: []string{"http://netboot.lab/initrd.img"}, Cmdline: "boot=live toram"}, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return srv
}

// agentStub writes a minimal ELF header of this machine's architecture:
// what the engine pushes as reprov-agent to lab nodes, whose simulated OS
// runs the agent steps itself on whatever was pushed.
func agentStub(t testing.TB) string {
	t.Helper()
	machine := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "riscv64": elf.EM_RISCV,
		"ppc64le": elf.EM_PPC64, "s390x": elf.EM_S390}[runtime.GOARCH]
	var h elf.Header64
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS], h.Ident[elf.EI_DATA], h.Ident[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)
	h.Type, h.Machine, h.Version, h.Ehsize = uint16(elf.ET_EXEC), uint16(machine), uint32(elf.EV_CURRENT), 64
	var b bytes.Buffer
	if err := binary.Write(&b, binary.LittleEndian, h); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "reprov-agent")
	if err := os.WriteFile(p, b.Bytes(), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func (r *rig) engine(mod func(*agent.Config)) *agent.Engine {
	r.t.Helper()
	exe := agentStub(r.t)
	cfg := agent.Config{
		Store: r.st, Playbooks: r.pbs, Inventory: r.nodes, StateDir: r.stateDir,
		Audit: r.audit, AuditPath: filepath.Join(r.stateDir, "audit.jsonl"),
		LeaseTTL: 3 * time.Second, PollInterval: 50 * time.Millisecond, ProbeInterval: 300 * time.Millisecond,
		ProbeTimeout: 3 * time.Second, AgentBinary: exe, RebootDelay: 100 * time.Millisecond,
		Events: r.events.add,
	}
	if mod != nil {
		mod(&cfg)
	}
	e, err := agent.New(cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	return e
}

// eventLog collects engine events.
type eventLog struct {
	mu  sync.Mutex
	evs []agent.Event
}

func (l *eventLog) add(e agent.Event) {
	l.mu.Lock()
	l.evs = append(l.evs, e)
	l.mu.Unlock()
}

func (l *eventLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, e := range l.evs {
		fmt.Fprintf(&b, "%s %-14s %-12s %-8s %-7s %s\n", e.Time.Format("15:04:05.000"), e.Node, e.Step, e.Phase, e.Result, e.Note)
	}
	return b.String()
}

func reportOf(t *testing.T, rep *agent.Report) map[string]*agent.NodeReport {
	t.Helper()
	out := map[string]*agent.NodeReport{}
	for _, res := range rep.Results {
		nr, ok := res.Detail.(*agent.NodeReport)
		if !ok {
			t.Fatalf("result of %s has detail %T", res.Node, res.Detail)
		}
		out[res.Node] = nr
	}
	return out
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
