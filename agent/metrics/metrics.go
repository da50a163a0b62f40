// Package metrics is reprov's Prometheus exposition (docs/metrics.md).
//
// Two kinds of metrics live in one registry:
//
//   - fleet metrics, read from the job store at scrape time (the store
//     collector): nodes, jobs and runs by state, landings by path and
//     source, failures by reason category, queue depth, requeues. Every
//     controller sharing a store reports the same fleet values: aggregate
//     them with max(), never sum().
//   - process metrics, observed live by this controller (the Observer): BMC
//     requests, landing endpoint answers, step durations, lease takeovers,
//     window occurrences. These are per controller: sum() them.
//
// No metric has a node name as a label value.
package metrics

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/inventory"
)

// Config configures the registry.
type Config struct {
	// Store is the job store the fleet metrics are read from (required).
	Store *store.Store
	// Inventory returns the current inventory, so that nodes that never had
	// a job are counted as idle; nil: only nodes the store knows.
	Inventory func() *inventory.Inventory
	// Reasons are the failure reason categories (agent.Reasons()): a failed
	// job's reason is counted under the longest category it starts with,
	// else "other".
	Reasons []string
	// ScrapeTimeout bounds the store queries of one scrape (default 10 s).
	ScrapeTimeout time.Duration
	// Log receives store errors met while scraping (default: discarded).
	Log *slog.Logger
	// NoRuntime leaves out the Go runtime and process collectors (tests).
	NoRuntime bool
}

// NewRegistry returns a registry with the store collector, the Observer's
// metrics and (unless NoRuntime) the Go and process collectors, and the
// Observer the engine, the BMC wrappers and the landing endpoint report to.
func NewRegistry(cfg Config) (*prometheus.Registry, *Observer, error) {
	if cfg.Store == nil {
		return nil, nil, errors.New("metrics: no store")
	}
	if cfg.ScrapeTimeout <= 0 {
		cfg.ScrapeTimeout = 10 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	reg := prometheus.NewRegistry()
	obs := newObserver()
	cs := []prometheus.Collector{newStoreCollector(cfg), obs}
	if !cfg.NoRuntime {
		cs = append(cs, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, nil, err
		}
	}
	return reg, obs, nil
}

// Handler serves the registry's metrics (server.listen's /metrics). With a
// token (server.metrics_token) a scrape must send "Authorization: Bearer
// TOKEN"; without one, /metrics is open.
func Handler(g prometheus.Gatherer, token string) http.Handler {
	h := promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	if token == "" {
		return h
	}
	want := []byte(token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="reprov metrics"`)
			http.Error(w, "metrics need a bearer token (server.metrics_token)", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// The fleet metrics.
var (
	descNodes = prometheus.NewDesc("reprov_nodes",
		"Nodes by the state of their latest job (idle: never run).", []string{"state"}, nil)
	descJobs = prometheus.NewDesc("reprov_jobs",
		"Node jobs in the store by state.", []string{"state"}, nil)
	descRuns = prometheus.NewDesc("reprov_runs",
		"Runs in the store by state.", []string{"state"}, nil)
	descLandings = prometheus.NewDesc("reprov_landings_total",
		"Landings recorded (one per job and source) by the job's path and the source that saw the node land.",
		[]string{"path", "source"}, nil)
	descFailures = prometheus.NewDesc("reprov_job_failures_total",
		"Failed node jobs by reason category (docs/runbooks/when-a-node-does-not-land.md).", []string{"reason"}, nil)
	descQueue = prometheus.NewDesc("reprov_queue_depth",
		"Node jobs waiting on each shared queue (queued, not yet claimed).", []string{"queue"}, nil)
	descRequeues = prometheus.NewDesc("reprov_job_requeues_total",
		"Times node jobs were put back on a queue: handover (a stopping controller) or resume (lease takeover or reinstall --resume).",
		[]string{"cause"}, nil)
	descScrapeOK = prometheus.NewDesc("reprov_store_scrape_ok",
		"1 when the last scrape read the job store, 0 when a store query failed.", nil, nil)
	descScrapeTime = prometheus.NewDesc("reprov_store_scrape_duration_seconds",
		"How long the store queries of the last scrape took.", nil, nil)
)

type storeCollector struct {
	cfg Config
	// reasons, longest first, for prefix matching.
	reasons []string
}

func newStoreCollector(cfg Config) *storeCollector {
	rs := append([]string(nil), cfg.Reasons...)
	sort.Slice(rs, func(a, b int) bool { return len(rs[a]) > len(rs[b]) })
	return &storeCollector{cfg: cfg, reasons: rs}
}

// Describe implements prometheus.Collector.
func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descNodes, descJobs, descRuns, descLandings, descFailures, descQueue,
		descRequeues, descScrapeOK, descScrapeTime} {
		ch <- d
	}
}

// Category folds a failure reason into its category: the longest of
// reasons it starts with, else "other".
func Category(reason string, reasons []string) string {
	best := ""
	for _, r := range reasons {
		if len(r) > len(best) && strings.HasPrefix(reason, r) {
			best = r
		}
	}
	if best == "" {
		return "other"
	}
	return best
}

// Collect implements prometheus.Collector: it reads the store.
func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.ScrapeTimeout)
	defer cancel()
	start := time.Now()
	err := c.collect(ctx, ch)
	ok := 1.0
	if err != nil {
		ok = 0
		c.cfg.Log.Error("metrics: reading the job store", "err", err)
	}
	ch <- prometheus.MustNewConstMetric(descScrapeOK, prometheus.GaugeValue, ok)
	ch <- prometheus.MustNewConstMetric(descScrapeTime, prometheus.GaugeValue, time.Since(start).Seconds())
}

func (c *storeCollector) collect(ctx context.Context, ch chan<- prometheus.Metric) error {
	st := c.cfg.Store
	var errs []error

	// Nodes: each node's latest job, idle for inventory nodes without one.
	if latest, err := st.LatestJobs(ctx); err != nil {
		errs = append(errs, err)
	} else {
		nodes := map[string]float64{}
		for _, s := range []store.JobState{store.JobQueued, store.JobRunning, store.JobLanded, store.JobFailed,
			store.JobCancelled, store.JobInterrupted} {
			nodes[string(s)] = 0
		}
		known := make(map[string]bool, len(latest))
		for _, j := range latest {
			nodes[string(j.State)]++
			known[j.Node] = true
		}
		if c.cfg.Inventory != nil {
			nodes["idle"] = 0
			if inv := c.cfg.Inventory(); inv != nil {
				for _, n := range inv.Nodes {
					if !known[n.Name] {
						nodes["idle"]++
					}
				}
			}
		}
		for s, n := range nodes {
			ch <- prometheus.MustNewConstMetric(descNodes, prometheus.GaugeValue, n, s)
		}
	}

	if counts, err := st.JobCounts(ctx); err != nil {
		errs = append(errs, err)
	} else {
		jobs := map[string]float64{}
		for _, s := range []store.JobState{store.JobQueued, store.JobRunning, store.JobLanded, store.JobFailed,
			store.JobCancelled, store.JobInterrupted} {
			jobs[string(s)] = 0
		}
		queues := map[string]float64{store.DefaultQueue: 0}
		for _, jc := range counts {
			jobs[string(jc.State)] += float64(jc.Count)
			if jc.State == store.JobQueued {
				queues[store.QueueFor(jc.Site)] += float64(jc.Count)
			}
		}
		for s, n := range jobs {
			ch <- prometheus.MustNewConstMetric(descJobs, prometheus.GaugeValue, n, s)
		}
		for q, n := range queues {
			ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, n, q)
		}
	}

	if runs, err := st.RunCounts(ctx); err != nil {
		errs = append(errs, err)
	} else {
		for _, s := range []store.RunState{store.RunScheduled, store.RunRunning, store.RunFinished, store.RunCancelled, store.RunInterrupted} {
			ch <- prometheus.MustNewConstMetric(descRuns, prometheus.GaugeValue, float64(runs[s]), string(s))
		}
	}

	if landings, err := st.LandingCounts(ctx); err != nil {
		errs = append(errs, err)
	} else {
		for _, l := range landings {
			path := l.Path
			if path == "" {
				path = "none"
			}
			ch <- prometheus.MustNewConstMetric(descLandings, prometheus.CounterValue, float64(l.Count), path, string(l.Source))
		}
	}

	if reasons, err := st.EndReasons(ctx, store.JobFailed); err != nil {
		errs = append(errs, err)
	} else {
		byCat := map[string]float64{}
		for _, r := range reasons {
			byCat[Category(r.Reason, c.reasons)] += float64(r.Count)
		}
		for cat, n := range byCat {
			ch <- prometheus.MustNewConstMetric(descFailures, prometheus.CounterValue, n, cat)
		}
	}

	if resumes, handovers, err := st.ResumeCounts(ctx); err != nil {
		errs = append(errs, err)
	} else {
		ch <- prometheus.MustNewConstMetric(descRequeues, prometheus.CounterValue, float64(handovers), "handover")
		ch <- prometheus.MustNewConstMetric(descRequeues, prometheus.CounterValue, float64(max(resumes-handovers, 0)), "resume")
	}
	return errors.Join(errs...)
}
