package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/reprov/reprov/agent/metrics"
	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/agent/web/webtest"
	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/inventory"
	"github.com/reprov/reprov/lab/pg"
)

// reasons stands in for agent.Reasons() (metrics must not import the engine).
var reasons = []string{"precheck: BMC unreachable", "precheck: BMC refused the credentials", "did not land", "interrupted"}

func seededRegistry(t *testing.T) (*prometheus.Registry, *metrics.Observer) {
	t.Helper()
	return seededRegistryAt(t, "sqlite://"+filepath.Join(t.TempDir(), "reprov.db"))
}

func seededRegistryAt(t *testing.T, storeURL string) (*prometheus.Registry, *metrics.Observer) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, storeURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	nodes := webtest.Fleet()
	if _, err := webtest.Seed(ctx, st, "tester", nodes); err != nil {
		t.Fatal(err)
	}
	// A second site's queued node, and a node failing for a reason outside the categories.
	extra := []webtest.Node{{Name: "s2-n01", Rack: "s2r1", Site: "Site 2", State: store.JobQueued},
		{Name: "s2-n02", Rack: "s2r1", Site: "Site 2", State: store.JobFailed, Reason: "something new"}}
	if _, err := webtest.Seed(ctx, st, "tester", extra); err != nil {
		t.Fatal(err)
	}
	inv := webtest.Inventory(append(nodes, extra...))
	reg, obs, err := metrics.NewRegistry(metrics.Config{Store: st, Reasons: reasons, NoRuntime: true,
		Inventory: func() *inventory.Inventory { return inv }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		problems, err := testutil.GatherAndLint(reg)
		if err != nil {
			t.Error(err)
		}
		for _, p := range problems {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	})
	return reg, obs
}

// wantFleet is webtest.Fleet plus the two extra nodes, as the store holds them.
const wantFleet = `
# HELP reprov_nodes Nodes by the state of their latest job (idle: never run).
# TYPE reprov_nodes gauge
reprov_nodes{state="cancelled"} 1
reprov_nodes{state="failed"} 4
reprov_nodes{state="idle"} 2
reprov_nodes{state="interrupted"} 1
reprov_nodes{state="landed"} 6
reprov_nodes{state="queued"} 3
reprov_nodes{state="running"} 3
# HELP reprov_jobs Node jobs in the store by state.
# TYPE reprov_jobs gauge
reprov_jobs{state="cancelled"} 1
reprov_jobs{state="failed"} 4
reprov_jobs{state="interrupted"} 1
reprov_jobs{state="landed"} 6
reprov_jobs{state="queued"} 3
reprov_jobs{state="running"} 3
# HELP reprov_runs Runs in the store by state.
# TYPE reprov_runs gauge
reprov_runs{state="cancelled"} 0
reprov_runs{state="finished"} 0
reprov_runs{state="interrupted"} 0
reprov_runs{state="running"} 2
reprov_runs{state="scheduled"} 0
# HELP reprov_landings_total Landings recorded (one per job and source) by the job's path and the source that saw the node land.
# TYPE reprov_landings_total counter
reprov_landings_total{path="inband",source="callback"} 3
reprov_landings_total{path="oob",source="ipxe"} 3
# HELP reprov_job_failures_total Failed node jobs by reason category (docs/runbooks/when-a-node-does-not-land.md).
# TYPE reprov_job_failures_total counter
reprov_job_failures_total{reason="other"} 1
reprov_job_failures_total{reason="precheck: BMC unreachable"} 3
# HELP reprov_queue_depth Node jobs waiting on each shared queue (queued, not yet claimed).
# TYPE reprov_queue_depth gauge
reprov_queue_depth{queue="reprov"} 2
reprov_queue_depth{queue="reprov_site_site_2"} 1
# HELP reprov_job_requeues_total Times node jobs were put back on a queue: handover (a stopping controller) or resume (lease takeover or reinstall --resume).
# TYPE reprov_job_requeues_total counter
reprov_job_requeues_total{cause="handover"} 1
reprov_job_requeues_total{cause="resume"} 0
# HELP reprov_store_scrape_ok 1 when the last scrape read the job store, 0 when a store query failed.
# TYPE reprov_store_scrape_ok gauge
reprov_store_scrape_ok 1
`

func TestFleetMetricsEqualTheStore(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { checkFleetMetrics(t, "sqlite://"+filepath.Join(t.TempDir(), "reprov.db")) })
	t.Run("postgres", func(t *testing.T) { checkFleetMetrics(t, pg.NewDatabase(t, pg.Start(t))) })
}

func checkFleetMetrics(t *testing.T, storeURL string) {
	reg, _ := seededRegistryAt(t, storeURL)
	err := testutil.GatherAndCompare(reg, strings.NewReader(wantFleet), "reprov_nodes", "reprov_jobs", "reprov_runs",
		"reprov_landings_total", "reprov_job_failures_total", "reprov_queue_depth", "reprov_job_requeues_total",
		"reprov_store_scrape_ok")
	if err != nil {
		t.Error(err)
	}
}

func TestObserverCountsWhatItIsTold(t *testing.T) {
	reg, obs := seededRegistry(t)
	obs.BMCRequest("ipmi", metrics.OutcomeOK, 30*time.Millisecond)
	obs.BMCRequest("ipmi", metrics.OutcomeTimeout, 5*time.Second)
	obs.BMCRequest("redfish", "weird", time.Second)
	obs.LandingRequest(metrics.AnswerNetboot)
	obs.LandingRequest(metrics.AnswerNetboot)
	obs.LandingRequest(metrics.AnswerLocal)
	obs.Step("power", "ok", 3*time.Second)
	obs.Takeovers(2)
	obs.AdmissionWait("per_rack")
	obs.AdmissionWait("per_rack")
	obs.AdmissionWait("surprise")
	obs.WindowOccurrence("ok")
	var nilObs *metrics.Observer
	nilObs.Step("power", "ok", time.Second) // a nil Observer does nothing

	// Through the HTTP handler, as Prometheus scrapes it.
	page := scrape(t, metrics.Handler(reg, ""))
	for _, c := range []struct {
		metric string
		want   float64
	}{
		{`reprov_bmc_requests_total{outcome="ok",protocol="ipmi"}`, 1},
		{`reprov_bmc_requests_total{outcome="timeout",protocol="ipmi"}`, 1},
		{`reprov_bmc_requests_total{outcome="error",protocol="redfish"}`, 1},
		{`reprov_landing_requests_total{answer="netboot"}`, 2},
		{`reprov_landing_requests_total{answer="local"}`, 1},
		{`reprov_lease_takeovers_total`, 2},
		{`reprov_admission_waits_total{limit="per_rack"}`, 2},
		{`reprov_admission_waits_total{limit="other"}`, 1},
		{`reprov_window_occurrences_total{result="ok"}`, 1},
		{`reprov_step_duration_seconds_count{result="ok",step="power"}`, 1},
		{`reprov_step_duration_seconds_bucket{result="ok",step="power",le="1"}`, 0},
		{`reprov_step_duration_seconds_bucket{result="ok",step="power",le="5"}`, 1},
	} {
		if !strings.Contains(page, "\n"+c.metric+" "+strconv.FormatFloat(c.want, 'g', -1, 64)+"\n") {
			t.Errorf("scrape lacks %s %v", c.metric, c.want)
		}
	}
}

func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape = %d", rec.Code)
	}
	return rec.Body.String()
}

func openEmpty(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), "sqlite://"+filepath.Join(t.TempDir(), "reprov.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestHandlerToken(t *testing.T) {
	reg, _, err := metrics.NewRegistry(metrics.Config{Store: openEmpty(t)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(metrics.Handler(reg, "s3cret"))
	defer srv.Close()
	for _, c := range []struct {
		auth string
		want int
	}{{"", 401}, {"Bearer wrong", 401}, {"Bearer s3cret", 200}} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("Authorization %q: %d, want %d", c.auth, resp.StatusCode, c.want)
		}
	}
	open := httptest.NewServer(metrics.Handler(reg, ""))
	defer open.Close()
	resp, err := http.Get(open.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("without a token configured: %d, want 200", resp.StatusCode)
	}
}

func TestCategory(t *testing.T) {
	for reason, want := range map[string]string{
		"precheck: BMC unreachable: dial udp":                                               "precheck: BMC unreachable",
		"interrupted before the node was started; reprov reinstall --resume x continues it": "interrupted",
		"": "other",
	} {
		if got := metrics.Category(reason, reasons); got != want {
			t.Errorf("Category(%q) = %q, want %q", reason, got, want)
		}
	}
}

// TestBMCResultCountsByOutcome: a request's error is counted under its
// outcome; a request its caller cancelled is not counted.
func TestBMCResultCountsByOutcome(t *testing.T) {
	reg, obs := seededRegistry(t)
	for _, err := range []error{
		nil,
		nil,
		&bmc.OpError{Op: "power status", BMC: "127.0.0.1:623", Err: bmc.ErrNoAnswer},
		fmt.Errorf("power status: %w", context.DeadlineExceeded),
		&bmc.OpError{Op: "connect", BMC: "127.0.0.1:623", Err: bmc.ErrAuthentication},
		&bmc.RetryError{Op: "set boot override", Tries: 4, Err: bmc.Temporary(bmc.ErrBusy)},
		errors.New("unexpected EOF"),
		context.Canceled,
	} {
		obs.BMCResult("ipmi", err, time.Second)
	}
	obs.BMCResult("redfish", fmt.Errorf("%w: BootSourceOverrideMode", bmc.ErrUnsupported), time.Second)
	page := scrape(t, metrics.Handler(reg, ""))
	for metric, want := range map[string]int{
		`reprov_bmc_requests_total{outcome="ok",protocol="ipmi"}`:         2,
		`reprov_bmc_requests_total{outcome="timeout",protocol="ipmi"}`:    2,
		`reprov_bmc_requests_total{outcome="auth",protocol="ipmi"}`:       1,
		`reprov_bmc_requests_total{outcome="refused",protocol="ipmi"}`:    1,
		`reprov_bmc_requests_total{outcome="error",protocol="ipmi"}`:      1,
		`reprov_bmc_requests_total{outcome="refused",protocol="redfish"}`: 1,
		`reprov_bmc_request_duration_seconds_count{protocol="ipmi"}`:      7,
		`reprov_bmc_request_duration_seconds_count{protocol="redfish"}`:   1,
	} {
		if !strings.Contains(page, "\n"+metric+" "+strconv.Itoa(want)+"\n") {
			t.Errorf("scrape lacks %s %d", metric, want)
		}
	}
}
