package agent_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/reprov/reprov/agent"
	"github.com/reprov/reprov/agent/audit"
	"github.com/reprov/reprov/agent/fleet"
	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/inventory"
	labfleet "github.com/reprov/reprov/lab/fleet"
	"github.com/reprov/reprov/playbooks"
)

// BenchmarkReinstall10k reinstalls a whole simulated fleet in one run, as
// `reprov reinstall --all` does: 10,000 legacy IPMI nodes (racks of 40)
// whose firmware takes 2 s from power-on to the network boot, under the
// limits a site would set (500 nodes at once, 10 per rack), engine, store
// (SQLite), audit log, landing endpoint and lab in this process. It
// reports nodes/s, the wall time against the floor the limits impose
// (admission waves × the simulated boot time), the process's max RSS (lab
// included) and per node, the peak heap and the lab's own heap before the
// run (the controller's share is the difference), goroutines per node at
// the peak, and the nodes that did not reinstall (their reasons logged).
// The playbooks are the built-in ones, with their site timeouts.
//
//	go test -run '^$' -bench Reinstall10k -benchtime 1x -timeout 60m ./agent/
//	REPROV_BENCH_NODES=1000 go test ...   # a smaller fleet
//	REPROV_BENCH_HEAPPROFILE=heap.out go test ...   # the heap at the peak
//	REPROV_BENCH_BOOT=60s go test ...   # a server's firmware time instead of 2 s
func BenchmarkReinstall10k(b *testing.B) {
	nodes := 10000
	if s := os.Getenv("REPROV_BENCH_NODES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			b.Fatalf("REPROV_BENCH_NODES=%q: want a positive number", s)
		}
		nodes = n
	}
	bootDelay := 2 * time.Second
	if s := os.Getenv("REPROV_BENCH_BOOT"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			b.Fatalf("REPROV_BENCH_BOOT=%q: want a positive duration such as 60s", s)
		}
		bootDelay = d
	}
	const (
		maxParallel = 500
		perRack     = 10
		rackSize    = 40
	)
	for b.Loop() {
		reinstallFleet(b, nodes, bootDelay, maxParallel, perRack, rackSize)
	}
}

func reinstallFleet(b *testing.B, nodes int, bootDelay time.Duration, maxParallel, perRack, rackSize int) {
	ctx := context.Background()
	g0 := runtime.NumGoroutine()
	lab, err := labfleet.Start(ctx, labfleet.Config{Mix: []labfleet.ModelCount{{Model: labfleet.ModelIPMI, Count: nodes}},
		Dir: b.TempDir(), BootDelay: bootDelay, OSBootTime: time.Second,
		NetbootRetry: 200 * time.Millisecond, NetbootRetryMax: 2 * time.Second, PowerPoll: 250 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	defer lab.Close()
	c := newBenchController(b, lab)
	e, err := agent.New(agent.Config{
		Store: c.st, Playbooks: c.pbs, Inventory: c.inv, StateDir: c.stateDir, Audit: c.audit, AuditPath: c.auditPath,
		LeaseTTL: 30 * time.Second, PollInterval: 250 * time.Millisecond, ProbeInterval: 2 * time.Second,
		ProbeTimeout: 3 * time.Second, AgentBinary: agentStub(b), RebootDelay: 100 * time.Millisecond,
	})
	if err != nil {
		b.Fatal(err)
	}
	gLab := runtime.NumGoroutine()
	// What the lab (and the test process) hold before the run: the
	// controller's share of the peak is the rest.
	runtime.GC()
	var ms0 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	labHeap := ms0.HeapInuse

	// Peak goroutines while the run lasts (sampled), and the heap profile
	// at the peak of the heap when asked for.
	var mu sync.Mutex
	peakG, peakHeap := 0, uint64(0)
	var peakProfile []byte
	profPath := os.Getenv("REPROV_BENCH_HEAPPROFILE")
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			g := runtime.NumGoroutine()
			runtime.ReadMemStats(&ms)
			mu.Lock()
			peakG = max(peakG, g)
			if ms.HeapInuse > peakHeap {
				peakHeap = ms.HeapInuse
				if profPath != "" {
					var buf bytes.Buffer
					if pprof.Lookup("heap").WriteTo(&buf, 0) == nil {
						peakProfile = buf.Bytes()
					}
				}
			}
			mu.Unlock()
		}
	}()

	start := time.Now()
	rep, err := e.Reinstall(ctx, c.inv, agent.RunOptions{MaxParallel: maxParallel, PerRack: perRack, Selection: "--all"})
	wall := time.Since(start)
	close(stop)
	<-sampled
	if err != nil {
		b.Fatal(err)
	}
	counts := fleet.Count(rep.Results)
	if counts.OK == 0 {
		b.Fatalf("no node reinstalled: %+v", counts)
	}
	if counts.OK != nodes {
		// Reported, not fatal: what fails at scale is the finding.
		reasons := map[string]int{}
		for _, r := range rep.Results {
			if r.Status != fleet.StatusOK {
				reasons[r.Reason]++
			}
		}
		b.Logf("%d of %d nodes reinstalled; the others: %v", counts.OK, nodes, reasons)
	}
	if profPath != "" && peakProfile != nil {
		if err := os.WriteFile(profPath, peakProfile, 0o644); err != nil {
			b.Fatal(err)
		}
	}

	racks := (nodes + rackSize - 1) / rackSize
	atOnce := min(maxParallel, racks*perRack)
	waves := (nodes + atOnce - 1) / atOnce
	if rackWaves := (min(nodes, rackSize) + perRack - 1) / perRack; rackWaves > waves {
		waves = rackWaves
	}
	floor := time.Duration(waves) * bootDelay
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	maxRSS := float64(ru.Maxrss) * 1024 // kB on Linux

	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(nodes)/wall.Seconds(), "nodes/s")
	b.ReportMetric(wall.Seconds(), "wall-s")
	b.ReportMetric(float64(waves), "waves")
	b.ReportMetric(wall.Seconds()/floor.Seconds(), "wall/floor")
	b.ReportMetric(maxRSS/(1<<20), "maxRSS-MiB")
	b.ReportMetric(maxRSS/float64(nodes), "RSS-B/node")
	b.ReportMetric(float64(peakHeap)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(labHeap)/(1<<20), "lab-heap-MiB")
	b.ReportMetric(float64(nodes-counts.OK), "failed-nodes")
	b.ReportMetric(float64(peakG-g0)/float64(nodes), "goroutines/node")
	b.ReportMetric(float64(peakG-gLab)/float64(nodes), "engine-goroutines/node")
}

// benchController is what a benchmark's engine runs on: a SQLite store in
// a fresh state dir, the built-in playbooks with their site timeouts (a
// loaded controller is slow, not failed), an audit log, and a landing
// endpoint for the lab's inventory (inv, which the benchmark may adjust
// before it builds its engine).
type benchController struct {
	stateDir, auditPath string
	st                  *store.Store
	pbs                 *playbooks.Set
	audit               *audit.Log
	inv                 []inventory.Node
}

func newBenchController(b *testing.B, lab *labfleet.Lab) *benchController {
	b.Helper()
	c := &benchController{stateDir: filepath.Join(b.TempDir(), "state")}
	if err := os.MkdirAll(c.stateDir, 0o700); err != nil {
		b.Fatal(err)
	}
	c.st = openStore(b, "sqlite://"+filepath.Join(c.stateDir, "reprov.db"))
	var err error
	if c.pbs, err = playbooks.LoadFS(playbooks.BuiltinFS()); err != nil {
		b.Fatal(err)
	}
	c.auditPath = filepath.Join(c.stateDir, "audit.jsonl")
	if c.audit, err = audit.Open(c.auditPath, ""); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.audit.Close() })
	c.inv = lab.Inventory().Nodes
	serveLanding(b, c.st, c.pbs, c.inv, lab.LandingListen(), lab.LandingURL())
	return c
}
