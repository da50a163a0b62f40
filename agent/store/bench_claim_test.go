package store_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/reprov/reprov/agent/store"
)

// BenchmarkClaimRefusedPerRack measures the claim a controller retries
// most at scale: a queued node of a rack already at its per-rack limit,
// in a 10,000-node run of racks of 40 under a site's limits (500 at once,
// 10 per rack) with 500 nodes running. Every claim attempt runs the run's
// admission counts (docs/performance.md).
func BenchmarkClaimRefusedPerRack(b *testing.B) {
	s := open(b, "sqlite://"+filepath.Join(b.TempDir(), "reprov.db"))
	ctx := ctxT(b)
	q, err := s.NewQueue(store.QueueConfig{ID: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	const nodes, perRack, running = 10_000, 10, 500
	sub := make([]store.SubmitNode, nodes)
	for i := range sub {
		sub[i] = store.SubmitNode{Node: fmt.Sprintf("n%05d", i), Rack: fmt.Sprintf("r%03d", i/40)}
	}
	_, res, err := q.Submit(ctx, store.RunSpec{CreatedBy: "bench", Selection: "all",
		Limits: store.RunLimits{MaxParallel: running + 100, PerRack: perRack}}, sub, store.SubmitOpts{})
	if err != nil {
		b.Fatal(err)
	}
	// Fill 50 racks to their limit: 500 running.
	for i := 0; i < nodes && running > 0; i++ {
		if i%40 >= perRack || i/40 >= running/perRack {
			continue
		}
		j := res[i].Job
		if _, err := s.Claim(ctx, j.ID, j.Generation, "bench", time.Hour); err != nil {
			b.Fatalf("claim %s: %v", j.Node, err)
		}
	}
	refused := res[perRack].Job // rack r000's 11th node
	b.ResetTimer()
	for b.Loop() {
		_, err := s.Claim(ctx, refused.ID, refused.Generation, "bench", time.Hour)
		var na *store.NotAdmittedError
		if !errors.As(err, &na) || na.Limit != "per_rack" {
			b.Fatalf("claim of %s: %v, want refused by per_rack", refused.Node, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/claim")
}
