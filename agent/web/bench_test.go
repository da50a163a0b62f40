package web_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/agent/web"
)

// synthetic is a Source of n nodes in racks of 40 in a realistic mix of
// states (most landed, some running, a few failed with long reasons).
type synthetic struct{ fleet web.Fleet }

func newSynthetic(n int) *synthetic {
	cells := make([]web.Cell, n)
	for i := range cells {
		c := web.Cell{Node: fmt.Sprintf("node-%05d", i), Rack: fmt.Sprintf("rack-%03d", i/40), JobID: int64(i + 1), RunID: 7,
			Path: "oob", Updated: time.Now()}
		switch i % 20 {
		case 0, 1:
			c.State, c.Step = web.StateRunning, "wait_landing"
		case 2:
			c.State, c.Step = web.StateFailed, "precheck"
			c.Reason = "precheck: BMC unreachable: ipmi: dial udp 10.20.30.40:623: i/o timeout after 3 attempts with cipher suites 17, 3"
		case 3:
			c.State = web.StateQueued
		case 4:
			c.State = web.StateIdle
			c.JobID = 0
		default:
			c.State, c.LandingSource = web.StateLanded, store.LandingIPXE
		}
		cells[i] = c
	}
	runs := []web.RunProgress{{ID: 7, State: store.RunRunning, CreatedBy: "ops@ctl1", Selection: "--all", Created: time.Now(),
		Jobs: map[store.JobState]int64{store.JobLanded: int64(n * 15 / 20), store.JobRunning: int64(n / 10), store.JobFailed: int64(n / 20)}}}
	return &synthetic{fleet: web.BuildFleet(cells, runs, time.Now())}
}

func (s *synthetic) Fleet(context.Context) (web.Fleet, error) { return s.fleet, nil }
func (s *synthetic) Node(context.Context, string) (web.NodeDetail, error) {
	return web.NodeDetail{}, web.ErrNoSuchNode
}
func (s *synthetic) Audit(context.Context, string, int) ([]web.AuditEntry, error) { return nil, nil }
func (s *synthetic) Windows(context.Context) ([]web.Window, error)                { return nil, nil }

func render(tb testing.TB, h http.Handler, path string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	if rec.Code != http.StatusOK {
		tb.Fatalf("GET %s = %d", path, rec.Code)
	}
	return rec
}

// TestPage10kUnder2MB: the size budget for a 10,000-node fleet.
func TestPage10kUnder2MB(t *testing.T) {
	h, err := web.New(web.Config{Source: newSynthetic(10_000), Public: true})
	if err != nil {
		t.Fatal(err)
	}
	page := render(t, h, "/").Body.Len()
	frag := render(t, h, "/?part=live").Body.Len()
	t.Logf("10k nodes: page %d bytes, live fragment %d bytes", page, frag)
	if page >= 2<<20 {
		t.Errorf("page is %d bytes at 10,000 nodes, over 2 MB", page)
	}
}

// BenchmarkPage10k renders the fleet page server-side for 10,000 nodes
// (the source is in memory: this measures the rendering, not the store
// query).
func BenchmarkPage10k(b *testing.B) {
	h, err := web.New(web.Config{Source: newSynthetic(10_000), Public: true})
	if err != nil {
		b.Fatal(err)
	}
	var size int
	b.ReportAllocs()
	for b.Loop() {
		size = render(b, h, "/").Body.Len()
	}
	b.ReportMetric(float64(size), "page_bytes")
}
