package store_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/reprov/reprov/agent/store"
)

// BenchmarkAppendAudit measures the audit log's store mirror as an ad-hoc
// `power cycle --pxe` over 256 nodes meets it: batches of 24 records of
// distinct nodes (what a 64-node fan-out hands over per group commit),
// into a SQLite store that already holds a trail of 20,000 records.
// It reports the time per batch and per record: every intent waits for
// its batch (docs/performance.md).
func BenchmarkAppendAudit(b *testing.B) {
	s := open(b, "sqlite://"+filepath.Join(b.TempDir(), "reprov.db"))
	ctx := ctxT(b)
	detail := json.RawMessage(`{"bmc":"ipmi://127.0.0.2:623","protocol":"ipmi","device":"pxe","mode":"legacy","persistent":false}`)
	seq := 0
	batch := func(n int) []store.AuditRecord {
		recs := make([]store.AuditRecord, n)
		for i := range recs {
			seq++
			recs[i] = store.AuditRecord{At: time.Now(), RecordID: fmt.Sprintf("%016x", seq), Phase: "intent",
				Node: fmt.Sprintf("n%04d", (seq*97)%256), Action: "bootdev pxe", Controller: "bench/1", Detail: detail}
		}
		return recs
	}
	for range 20_000 / 200 {
		if err := s.AppendAudit(ctx, batch(200)); err != nil {
			b.Fatal(err)
		}
	}
	const perBatch = 24
	b.ResetTimer()
	for b.Loop() {
		if err := s.AppendAudit(ctx, batch(perBatch)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/batch")
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*perBatch), "µs/record")
}
