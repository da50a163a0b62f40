package metrics

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/reprov/reprov/bmc"
)

// BMC request outcomes (the outcome label of reprov_bmc_requests_total).
const (
	OutcomeOK      = "ok"
	OutcomeTimeout = "timeout" // no answer in time (bmc.ErrTimeout, context deadline)
	OutcomeAuth    = "auth"    // credentials refused (bmc.ErrAuth)
	OutcomeRefused = "refused" // the BMC answered but refused the request (unsupported, busy, powered off, reverted)
	OutcomeError   = "error"   // anything else
)

// BMCOutcome is the outcome label of a BMC request that returned err.
func BMCOutcome(err error) string {
	switch {
	case err == nil:
		return OutcomeOK
	case errors.Is(err, bmc.ErrNoAnswer), errors.Is(err, context.DeadlineExceeded):
		return OutcomeTimeout
	case errors.Is(err, bmc.ErrAuthentication):
		return OutcomeAuth
	case errors.Is(err, bmc.ErrUnsupported), errors.Is(err, bmc.ErrBusy), errors.Is(err, bmc.ErrPoweredOff),
		errors.Is(err, bmc.ErrReverted), errors.Is(err, bmc.ErrCipherSuite):
		return OutcomeRefused
	}
	return OutcomeError
}

// Landing endpoint answers (the answer label of
// reprov_landing_requests_total).
const (
	AnswerNetboot         = "netboot"          // the install profile's iPXE script: the node has an active job
	AnswerLocal           = "local"            // "boot local disk": no job for this MAC
	AnswerHold            = "hold"             // 503: an interrupted job holds the node in network boot
	AnswerCallbackOK      = "callback_ok"      // POST /landed/{node} with a valid token
	AnswerCallbackRefused = "callback_refused" // POST /landed/{node} with a bad or stale token
	AnswerForbidden       = "forbidden"        // the source address is not an allowed network, or not the node's (landing.match_source)
	AnswerRateLimited     = "rate_limited"     // 429: the source address is over its request rate
	AnswerError           = "error"            // the endpoint could not answer (store error, bad request)
)

// Observer records what this controller does, as it happens. The engine,
// the BMC wrappers and the landing endpoint call it (docs/metrics.md says
// where). Its methods are safe for concurrent use, and a nil *Observer does
// nothing, so callers need no check.
type Observer struct {
	bmc         *prometheus.CounterVec
	bmcDuration *prometheus.HistogramVec
	landing     *prometheus.CounterVec
	step        *prometheus.HistogramVec
	takeovers   prometheus.Counter
	windows     *prometheus.CounterVec
	admission   *prometheus.CounterVec
}

func newObserver() *Observer {
	return &Observer{
		bmc: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "reprov_bmc_requests_total",
			Help: "BMC requests made by this controller by protocol (ipmi, redfish) and outcome."},
			[]string{"protocol", "outcome"}),
		bmcDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "reprov_bmc_request_duration_seconds",
			Help:    "Duration of BMC requests made by this controller, retries included, by protocol.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}},
			[]string{"protocol"}),
		landing: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "reprov_landing_requests_total",
			Help: "Requests to this controller's landing endpoint by answer."},
			[]string{"answer"}),
		step: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "reprov_step_duration_seconds",
			Help:    "Duration of reinstall steps worked by this controller, from intent to outcome, by step and result.",
			Buckets: []float64{.1, .5, 1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600}},
			[]string{"step", "result"}),
		takeovers: prometheus.NewCounter(prometheus.CounterOpts{Name: "reprov_lease_takeovers_total",
			Help: "Running jobs this controller requeued because their controller's lease expired."}),
		windows: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "reprov_window_occurrences_total",
			Help: "Reimaging window occurrences started by this controller, by result (ok, failed, budget_spent, skipped)."},
			[]string{"result"}),
		admission: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "reprov_admission_waits_total",
			Help: "Claims by this controller that a run's limits turned away (the job waits), by limit (max_parallel, per_rack, per_bmc, hold)."},
			[]string{"limit"}),
	}
}

func (o *Observer) collectors() []prometheus.Collector {
	return []prometheus.Collector{o.bmc, o.bmcDuration, o.landing, o.step, o.takeovers, o.windows, o.admission}
}

// Describe implements prometheus.Collector.
func (o *Observer) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range o.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (o *Observer) Collect(ch chan<- prometheus.Metric) {
	for _, c := range o.collectors() {
		c.Collect(ch)
	}
}

// BMCRequest records one BMC request: protocol "ipmi" or "redfish",
// outcome one of the Outcome constants (others count as "error"), and how
// long it took.
func (o *Observer) BMCRequest(protocol, outcome string, d time.Duration) {
	if o == nil {
		return
	}
	switch outcome {
	case OutcomeOK, OutcomeTimeout, OutcomeAuth, OutcomeRefused, OutcomeError:
	default:
		outcome = OutcomeError
	}
	switch protocol {
	case "ipmi", "redfish":
	default:
		protocol = "other"
	}
	o.bmc.WithLabelValues(protocol, outcome).Inc()
	o.bmcDuration.WithLabelValues(protocol).Observe(d.Seconds())
}

// BMCResult records one BMC request that returned err (nil: it succeeded)
// under its outcome (BMCOutcome). A request cancelled by its caller (a
// stopping controller) is not counted: it says nothing about the BMC. It
// implements bmc.RequestObserver.
func (o *Observer) BMCResult(protocol string, err error, d time.Duration) {
	if o == nil || errors.Is(err, context.Canceled) {
		return
	}
	o.BMCRequest(protocol, BMCOutcome(err), d)
}

var _ bmc.RequestObserver = (*Observer)(nil)

// LandingRequest records one answer of the landing endpoint (an Answer
// constant; others count as "error").
func (o *Observer) LandingRequest(answer string) {
	if o == nil {
		return
	}
	switch answer {
	case AnswerNetboot, AnswerLocal, AnswerHold, AnswerCallbackOK, AnswerCallbackRefused, AnswerForbidden, AnswerRateLimited, AnswerError:
	default:
		answer = AnswerError
	}
	o.landing.WithLabelValues(answer).Inc()
}

// Step records a step worked by this controller: its name from the step
// table (precheck, pre_hooks, oob_boot, power, inband, wait_landing,
// post_hooks), its result (ok, failed, skipped) and the time from its
// intent to its outcome.
func (o *Observer) Step(step, result string, d time.Duration) {
	if o == nil {
		return
	}
	o.step.WithLabelValues(step, result).Observe(d.Seconds())
}

// Takeovers records jobs this controller took over from a dead one (the
// length of store.Queue.TakeOver's result).
func (o *Observer) Takeovers(n int) {
	if o == nil || n <= 0 {
		return
	}
	o.takeovers.Add(float64(n))
}

// AdmissionWait records a claim that a run's limit turned away: limit is
// max_parallel, per_rack, per_bmc or hold (others count as "other").
func (o *Observer) AdmissionWait(limit string) {
	if o == nil {
		return
	}
	switch limit {
	case "max_parallel", "per_rack", "per_bmc", "hold":
	default:
		limit = "other"
	}
	o.admission.WithLabelValues(limit).Inc()
}

// WindowOccurrence records a reimaging window occurrence and its result.
func (o *Observer) WindowOccurrence(result string) {
	if o == nil {
		return
	}
	o.windows.WithLabelValues(result).Inc()
}
