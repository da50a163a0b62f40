package ipmi_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/command/chassis"
	"github.com/bougou/go-ipmi/pkg/types"
	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/bmc/ipmi"
	"github.com/reprov/reprov/lab/ipmibmc"
)

// forEach runs fn for every index in [0, n) with at most workers at a time
// and returns the first error.
func forEach(n, workers int, fn func(i int) error) error {
	jobs := make(chan int)
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
				}
			}
		}()
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return first
}

// BenchmarkPXEOnceAndCycle256 is reprov's out-of-band step over a rack of
// 256 go-ipmi BMCs on loopback at fan-out 64: open a session, set a
// one-time PXE boot (parameter 3, parameter 5, read back), power cycle
// (the cycle alone: no status read first) and close. It reports the time and the UDP exchanges
// (datagrams the BMCs received) per node. The sub-benchmark go-ipmi makes
// the same exchanges with go-ipmi's client alone, checking nothing: the
// floor bmc/ipmi's own work is measured against (docs/performance.md).
func BenchmarkPXEOnceAndCycle256(b *testing.B) {
	const nodes = 256
	ctx := context.Background()
	bmcs, err := ipmibmc.StartMany(ctx, nodes, ipmibmc.Config{InitiallyOn: true})
	if err != nil {
		b.Fatalf("start BMCs: %v", err)
	}
	defer ipmibmc.CloseAll(bmcs)
	log := slog.New(slog.DiscardHandler)
	lib := func(i int) error {
		bm := bmcs[i]
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		c, err := ipmi.Open(ctx, bmcEndpoint(bm, bmc.Options{}), log)
		if err != nil {
			return err
		}
		defer c.Close(ctx)
		if _, err := c.SetBootOverride(ctx, bmc.BootOverride{Device: bmc.BootPXE, Mode: bmc.BootModeLegacy}); err != nil {
			return err
		}
		if err := c.SetPower(ctx, bmc.ActionCycle); err != nil {
			return err
		}
		return c.Close(ctx)
	}
	raw := func(i int) error {
		bm := bmcs[i]
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		c, err := client.NewClient(bm.Host(), bm.Port(), bm.Username(), bm.Password())
		if err != nil {
			return err
		}
		c.WithCipherSuiteID(types.CipherSuiteID17).WithTimeout(2 * time.Second).WithRetry(1)
		if err := c.Connect(ctx); err != nil {
			return err
		}
		defer c.Close(ctx)
		if err := c.SetSystemBootOptionsParamFor(ctx, &types.BootOptionParam_BMCBootFlagValidBitClear{DontClearOnCommandReceivedTimeout: true}); err != nil {
			return err
		}
		if err := c.SetBootDevice(ctx, types.BootDeviceSelectorForcePXE, types.BIOSBootTypeLegacy, false); err != nil {
			return err
		}
		if err := c.GetSystemBootOptionsParamFor(ctx, &types.BootOptionParam_BootFlags{}); err != nil {
			return err
		}
		_, err = c.ChassisControl(ctx, chassis.ChassisControlPowerCycle)
		return err
	}
	boots := 0
	b.Run("bmc-ipmi", func(b *testing.B) { benchStep(b, bmcs, lib, &boots) })
	b.Run("go-ipmi", func(b *testing.B) { benchStep(b, bmcs, raw, &boots) })
}

// benchStep runs step on every BMC at fan-out 64, b.N times, reports time
// and exchanges per node, and checks that every BMC booted from PXE each
// time (*done counts the runs before, of every sub-benchmark) with no
// session left open.
func benchStep(b *testing.B, bmcs []*ipmibmc.BMC, step func(i int) error, done *int) {
	const fanout = 64
	nodes := len(bmcs)
	received := func() (n uint64) {
		for _, bm := range bmcs {
			n += bm.Stats().Received
		}
		return n
	}
	before := received()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if err := forEach(nodes, fanout, step); err != nil {
			b.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	total := float64(b.N * nodes)
	b.ReportMetric(float64(elapsed.Nanoseconds())/total, "ns/node")
	b.ReportMetric(float64(received()-before)/total, "exchanges/node")
	*done += b.N
	for _, bm := range bmcs {
		boots := bm.Machine().Boots()
		if len(boots) != *done || boots[len(boots)-1].Device != bmc.BootPXE {
			b.Fatalf("BMC %s: boots %v, want %d PXE boots", bm.Addr(), boots, *done)
		}
		if n := bm.ActiveSessions(); n != 0 {
			b.Fatalf("BMC %s: %d sessions left open", bm.Addr(), n)
		}
	}
}
