package window

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"sort"
	"strings"
	"time"
)

// GateResult is one check of a window's gate.
type GateResult struct {
	// OK: the window may go on.
	OK bool
	// Output is what the check said: the hook's output, the query's
	// answer, or why the check could not be made.
	Output string
}

// Gate checks a window's gate (Checker is the real one).
type Gate func(ctx context.Context, s Spec) GateResult

// GateTimeout bounds one gate check. The scheduler bounds it further by
// half its occurrence lease, so that a slow check never outlasts the
// lease of the controller waiting on it.
const GateTimeout = 30 * time.Second

// maxGateOutput is how much of a gate's output is recorded.
const maxGateOutput = 4096

// Checker returns the gate of docs/windows.md: the hook (exit 0 = go)
// and the Prometheus query (an empty answer = go), both when both are
// set. A check that cannot be made (hook missing, Prometheus unreachable)
// fails: a window never goes on blind. hc is the HTTP client for
// Prometheus (nil: a default one).
func Checker(hc *http.Client) Gate {
	if hc == nil {
		hc = &http.Client{Timeout: GateTimeout}
	}
	return func(ctx context.Context, s Spec) GateResult {
		ctx, cancel := context.WithTimeout(ctx, GateTimeout)
		defer cancel()
		var outs []string
		ok := true
		if s.GateHook != "" {
			r := runHook(ctx, s)
			ok = ok && r.OK
			outs = append(outs, r.Output)
		}
		if s.GatePrometheus != "" {
			r := queryPrometheus(ctx, hc, s.GatePrometheus, s.GateQuery)
			ok = ok && r.OK
			outs = append(outs, r.Output)
		}
		return GateResult{OK: ok, Output: clip(strings.Join(outs, "; "))}
	}
}

func clip(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > maxGateOutput {
		return s[:maxGateOutput] + "…"
	}
	return s
}

// runHook runs the gate hook with no argument and a minimal environment
// (no credential of the controller's reaches it).
func runHook(ctx context.Context, s Spec) GateResult {
	if err := checkHook(s.GateHook); err != nil {
		return GateResult{Output: "gate hook: " + err.Error()}
	}
	cmd := exec.CommandContext(ctx, s.GateHook)
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "REPROV_WINDOW=" + s.Name}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	text := clip(out.String())
	var ee *exec.ExitError
	switch {
	case err == nil:
		return GateResult{OK: true, Output: "gate hook " + s.GateHook + " exited 0: " + text}
	case ctx.Err() != nil:
		return GateResult{Output: fmt.Sprintf("gate hook %s did not finish in time (killed): %s", s.GateHook, text)}
	case errors.As(err, &ee):
		return GateResult{Output: fmt.Sprintf("gate hook %s exited %d: %s", s.GateHook, ee.ExitCode(), text)}
	default:
		return GateResult{Output: fmt.Sprintf("gate hook %s: %v", s.GateHook, err)}
	}
}

// promAnswer is Prometheus's /api/v1/query answer.
type promAnswer struct {
	Status string `json:"status"`
	Error  string `json:"error"`
	Data   struct {
		ResultType string            `json:"resultType"`
		Result     []json.RawMessage `json:"result"`
	} `json:"data"`
}

// queryPrometheus asks an instant query; an empty vector lets the window
// go on (like kured's alert check), anything else holds it.
func queryPrometheus(ctx context.Context, hc *http.Client, base, query string) GateResult {
	u := strings.TrimRight(base, "/") + "/api/v1/query?query=" + url.QueryEscape(query)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return GateResult{Output: "gate query: " + err.Error()}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return GateResult{Output: fmt.Sprintf("gate query: Prometheus %s unreachable: %v", base, err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return GateResult{Output: fmt.Sprintf("gate query: Prometheus %s: %v", base, err)}
	}
	var a promAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return GateResult{Output: fmt.Sprintf("gate query: Prometheus %s answered %s, not its API's JSON", base, resp.Status)}
	}
	if a.Status != "success" {
		return GateResult{Output: fmt.Sprintf("gate query %q: Prometheus %s: %s %s", query, base, a.Status, a.Error)}
	}
	switch a.Data.ResultType {
	case "vector", "matrix":
	default:
		return GateResult{Output: fmt.Sprintf("gate query %q returned a %s, which is never empty: write a query that returns the series that must not exist", query, a.Data.ResultType)}
	}
	if len(a.Data.Result) == 0 {
		return GateResult{OK: true, Output: fmt.Sprintf("gate query %q returned nothing", query)}
	}
	var series []string
	for _, r := range a.Data.Result {
		var s struct {
			Metric map[string]string `json:"metric"`
		}
		_ = json.Unmarshal(r, &s)
		series = append(series, labels(s.Metric))
	}
	return GateResult{Output: fmt.Sprintf("gate query %q returned %d series: %s", query, len(series), strings.Join(series, ", "))}
}

func labels(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%q", k, m[k])
	}
	return "{" + strings.Join(parts, ",") + "}"
}
