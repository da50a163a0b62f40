package fleet_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/types"

	"github.com/reprov/reprov/agent/inband/sshx"
	"github.com/reprov/reprov/lab/fleet"
)

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}

// BenchmarkLab10k starts a 10,000-node lab (the default mix, powered
// off, as a fleet waiting for its window) and reports what a node costs
// (heap and stacks, powered off and with its OS up), how long the lab
// takes to start, and the cost of one simulated exchange: an SSH command
// on a node's OS, the pushed agent's identify over SSH, an IPMI command
// to a BMC, and a whole boot (power cycle → firmware → OS up).
//
//	go test -run '^$' -bench Lab10k ./lab/fleet/
func BenchmarkLab10k(b *testing.B) {
	const nodes = 10000
	const up = 1000
	ctx := context.Background()
	before := heapInUse()
	g0 := runtime.NumGoroutine()
	start := time.Now()
	l, err := fleet.Start(ctx, fleet.Config{Nodes: nodes, Dir: b.TempDir(), PoweredOff: true, PowerPoll: 250 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	startTime := time.Since(start)
	off := heapInUse()
	goroutines := runtime.NumGoroutine() - g0

	// Bring 1,000 OSes up (legacy IPMI nodes).
	ipmiNodes := l.NodesOf(fleet.ModelIPMI)[:up]
	for _, n := range ipmiNodes {
		n.PowerOn()
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for _, n := range ipmiNodes {
		if _, err := n.Wait(wctx, func(s fleet.Status) bool { return s.OSUp }); err != nil {
			b.Fatal(err)
		}
	}
	osUp := heapInUse()
	// A benchmark that runs sub-benchmarks reports nothing itself: the
	// costs of the lab are this sub-benchmark's metrics.
	b.Run("lab", func(b *testing.B) {
		for b.Loop() {
		}
		b.ReportMetric(0, "ns/op")
		b.ReportMetric(startTime.Seconds(), "start-s")
		b.ReportMetric(float64(off-before)/nodes, "B/node-off")
		b.ReportMetric(float64(osUp-off)/up, "B/node-os-up")
		b.ReportMetric(float64(goroutines)/nodes, "goroutines/node")
	})

	n := ipmiNodes[0]
	var once sync.Once
	var allUp time.Duration
	var openFiles int
	cfg, err := sshx.ConfigFor(n.InventoryNode(), func(string) string { return "" })
	if err != nil {
		b.Fatal(err)
	}
	c, err := sshx.Dial(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.Run("ssh-exec", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.Exec(ctx, "cat /proc/sys/kernel/random/boot_id", nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("agent-identify", func(b *testing.B) {
		if _, err := c.Exec(ctx, "mkdir -p /tmp/a && cat > /tmp/a/reprov-agent && chmod 700 /tmp/a/reprov-agent", strings.NewReader("agent")); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			out, err := c.Exec(ctx, "/tmp/a/reprov-agent identify -o json", nil)
			if err != nil || !strings.Contains(string(out), n.Serial()) {
				b.Fatalf("identify: %v: %s", err, out)
			}
		}
	})
	b.Run("ipmi-chassis-status", func(b *testing.B) {
		bm := n.IPMIBMC()
		ic, err := client.NewClient(bm.Host(), bm.Port(), bm.Username(), bm.Password())
		if err != nil {
			b.Fatal(err)
		}
		ic.WithCipherSuiteID(types.CipherSuiteID17).WithTimeout(time.Second).WithRetry(1)
		if err := ic.Connect(ctx); err != nil {
			b.Fatal(err)
		}
		defer ic.Close(ctx)
		for b.Loop() {
			if _, err := ic.GetChassisStatus(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("boot", func(b *testing.B) {
		// Round-robin over 100 powered-on nodes: off, on, OS up again.
		pool := ipmiNodes[up-100:]
		i := 0
		for b.Loop() {
			x := pool[i%len(pool)]
			i++
			bc := x.Status().BootCount
			x.PowerOff()
			x.PowerOn()
			if _, err := x.Wait(wctx, func(s fleet.Status) bool { return s.BootCount > bc && s.OSUp }); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel-ssh-exec", func(b *testing.B) {
		// 64 controllers' connections to 64 nodes at once.
		clients := make([]*sshx.Client, 64)
		for k := range clients {
			cfg, err := sshx.ConfigFor(ipmiNodes[k+1].InventoryNode(), func(string) string { return "" })
			if err != nil {
				b.Fatal(err)
			}
			if clients[k], err = sshx.Dial(ctx, cfg); err != nil {
				b.Fatal(err)
			}
			defer clients[k].Close()
		}
		var mu sync.Mutex
		next := 0
		b.ResetTimer()
		b.SetParallelism(64 / runtime.GOMAXPROCS(0))
		b.RunParallel(func(pb *testing.PB) {
			mu.Lock()
			cl := clients[next%len(clients)]
			next++
			mu.Unlock()
			for pb.Next() {
				if _, err := cl.Exec(ctx, "id -u", nil); err != nil {
					panic(fmt.Sprint(err))
				}
			}
		})
	})
	b.Run("power-on-all", func(b *testing.B) {
		// The whole fleet's window opens: every node powered on at once;
		// MaxOSUp of them come up, the rest wait for a slot.
		once.Do(func() {
			t0 := time.Now()
			for _, x := range l.Nodes() {
				x.PowerOn()
			}
			for l.OSUp() < l.MaxOSUp() && time.Since(t0) < 2*time.Minute {
				time.Sleep(50 * time.Millisecond)
			}
			allUp = time.Since(t0)
			if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
				openFiles = len(ents)
			}
		})
		for b.Loop() {
		}
		b.ReportMetric(0, "ns/op")
		b.ReportMetric(allUp.Seconds(), "s-to-max-os-up")
		b.ReportMetric(float64(l.OSUp()), "os-up")
		b.ReportMetric(float64(openFiles), "open-files")
	})
}
