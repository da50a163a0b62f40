package landing_test

import (
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/reprov/reprov/agent/landing"
	"github.com/reprov/reprov/agent/metrics"
)

// registryObserver hands the endpoint's answers to the metrics of a
// registry made once the endpoint's store exists.
type registryObserver struct {
	reg *prometheus.Registry
	obs *metrics.Observer
}

func (r *registryObserver) LandingRequest(answer string) { r.obs.LandingRequest(answer) }

// observed serves an endpoint configured by cfg whose answers go to a
// metrics registry on its store.
func observed(t *testing.T, cfg landing.Config) (*env, *registryObserver) {
	t.Helper()
	ro := &registryObserver{}
	cfg.Observer = ro
	e := newEnvWith(t, cfg)
	var err error
	if ro.reg, ro.obs, err = metrics.NewRegistry(metrics.Config{Store: e.st, NoRuntime: true}); err != nil {
		t.Fatal(err)
	}
	return e, ro
}

// answers is reprov_landing_requests_total as "answer=count …".
func (r *registryObserver) answers(t *testing.T) string {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		if mf.GetName() != "reprov_landing_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			out = append(out, m.GetLabel()[0].GetValue()+"="+strconv.FormatFloat(m.GetCounter().GetValue(), 'g', -1, 64))
		}
	}
	return strings.Join(out, " ")
}

// TestAnswersAreCountedInTheMetrics: every answer of the endpoint lands in
// reprov_landing_requests_total under its answer label, /healthz in none.
func TestAnswersAreCountedInTheMetrics(t *testing.T) {
	e, ro := observed(t, landing.Config{})
	e.get("/healthz")
	e.get("/boot/ipxe?mac=" + mac) // no job: local
	e.get("/boot/ipxe?mac=zz")     // bad MAC: error
	j := e.acquire("web-014")
	e.get("/boot/ipxe?mac=" + mac) // not armed yet: local
	e.arm(j)
	_, body := e.get("/boot/ipxe?mac=" + mac) // netboot
	m := regexp.MustCompile(`reprov\.token=(\S+)`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no install script:\n%s", body)
	}
	e.post("/landed/web-014", "", false)      // refused: no token
	e.post("/landed/web-014", "wrong", false) // refused: unknown token
	if c := e.post("/landed/web-014", m[1], false); c != http.StatusNoContent {
		t.Fatalf("callback: %d", c)
	}
	if got, want := ro.answers(t), "callback_ok=1 callback_refused=2 error=1 local=2 netboot=1"; got != want {
		t.Errorf("reprov_landing_requests_total by answer:\n got %s\nwant %s", got, want)
	}

	// A source outside landing.allow: forbidden.
	f, fo := observed(t, landing.Config{Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	if code, _ := f.get("/boot/ipxe?mac=" + mac); code != http.StatusForbidden {
		t.Fatalf("outside landing.allow: %d", code)
	}
	if got := fo.answers(t); got != "forbidden=1" {
		t.Errorf("a refused source counted as %q, want forbidden=1", got)
	}
}
