package agent_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/reprov/reprov/agent"
	"github.com/reprov/reprov/agent/fleet"
	labfleet "github.com/reprov/reprov/lab/fleet"
)

// BenchmarkEscalationLatency measures how long after a board that ignored
// the out-of-band override has its old OS answering SSH again the engine
// notices (the verdict that sends the node in-band): with the fast probe
// after a kick (the default: every second for five minutes) and with the
// probe interval alone (every 15 s, what the engine did before), side by
// side. Each run reinstalls 10 IPMI nodes that ignore the override, whose
// firmware takes 1 to 2 s and whose old OS then takes 1 s to answer SSH,
// on the default playbook with its site timeouts; the moment the old OS
// answers is taken from the lab, the moment it was noticed from the
// engine's events. It reports the mean and the worst latency.
//
//	go test -run '^$' -bench EscalationLatency -benchtime 1x ./agent/
func BenchmarkEscalationLatency(b *testing.B) {
	for _, c := range []struct {
		name  string
		probe func(*agent.Config)
	}{
		{"fast-probe", func(*agent.Config) {}},
		{"probe-interval-only", func(cfg *agent.Config) { cfg.FastProbeWindow = time.Nanosecond }},
	} {
		b.Run(c.name, func(b *testing.B) {
			var all []time.Duration
			for b.Loop() {
				all = append(all, escalationLatencies(b, 10, c.probe)...)
			}
			var sum time.Duration
			for _, d := range all {
				sum += d
			}
			b.ReportMetric(float64(sum.Milliseconds())/float64(len(all)), "ms-mean")
			b.ReportMetric(float64(slices.Max(all).Milliseconds()), "ms-max")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// escalationLatencies reinstalls n nodes that ignore the override and
// returns, for each, the time from its old OS answering SSH after the
// power cycle to the engine's verdict on it.
func escalationLatencies(b *testing.B, n int, probe func(*agent.Config)) []time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	faults := map[string][]labfleet.Fault{}
	for i := 1; i <= n; i++ {
		faults[fmt.Sprintf("ipmi-%03d", i)] = []labfleet.Fault{labfleet.FaultIgnoresOverride}
	}
	lab, err := labfleet.Start(ctx, labfleet.Config{Mix: []labfleet.ModelCount{{Model: labfleet.ModelIPMI, Count: n}},
		Dir: b.TempDir(), BootDelay: time.Second, BootDelaySpread: time.Second, OSBootTime: time.Second,
		NetbootRetry: 200 * time.Millisecond, NetbootRetryMax: 2 * time.Second, PowerPoll: 100 * time.Millisecond,
		Faults: faults})
	if err != nil {
		b.Fatal(err)
	}
	defer lab.Close()

	// When each node's old OS answers SSH after its first boot of the
	// run (the OS running at the start is not a boot).
	var mu sync.Mutex
	osUp := map[string]time.Time{}
	var watchers sync.WaitGroup
	for _, node := range lab.Nodes() {
		watchers.Go(func() {
			if _, err := node.Wait(ctx, func(s labfleet.Status) bool { return s.BootCount >= 1 && s.OSUp }); err == nil {
				mu.Lock()
				osUp[node.Name()] = time.Now()
				mu.Unlock()
			}
		})
	}

	c := newBenchController(b, lab)
	for i := range c.inv {
		c.inv[i].Playbook = "default" // the playbook that escalates
	}
	noticed := map[string]time.Time{}
	cfg := agent.Config{
		Store: c.st, Playbooks: c.pbs, Inventory: c.inv, StateDir: c.stateDir, Audit: c.audit, AuditPath: c.auditPath,
		AgentBinary: agentStub(b), RebootDelay: 100 * time.Millisecond,
		Events: func(ev agent.Event) {
			if ev.Step == "wait_landing" && ev.Phase == "outcome" {
				mu.Lock()
				if _, seen := noticed[ev.Node]; !seen {
					noticed[ev.Node] = ev.Time
				}
				mu.Unlock()
			}
		},
	}
	probe(&cfg)
	e, err := agent.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	rep, err := e.Reinstall(ctx, c.inv, agent.RunOptions{MaxParallel: n, Selection: "--all"})
	if err != nil {
		b.Fatal(err)
	}
	cancel()
	watchers.Wait()
	var out []time.Duration
	for _, r := range rep.Results {
		up, ok1 := osUp[r.Node]
		at, ok2 := noticed[r.Node]
		if !ok1 || !ok2 || r.Status != fleet.StatusOK {
			b.Fatalf("%s: status %s, old OS up seen %v, verdict seen %v: not an escalation to time", r.Node, r.Status, ok1, ok2)
		}
		out = append(out, at.Sub(up))
	}
	return out
}
