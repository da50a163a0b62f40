package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/reprov/reprov/agent"
	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/lab/fleet"
	"github.com/reprov/reprov/lab/labtool"
)

// scrapeMetrics GETs /metrics and returns the exposition and its samples
// by "name{labels}" (labels as the exposition writes them, sorted).
func scrapeMetrics(ctx context.Context, t *testing.T, url string) (string, map[string]float64) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d, %v\n%s", resp.StatusCode, err, b)
	}
	samples := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("exposition line %q: %v", line, err)
		}
		samples[line[:i]] = v
	}
	return string(b), samples
}

// TestMetricsAfterARunThroughServe reinstalls a lab through `reprov serve`
// (in-band and Redfish nodes, a dead BMC and a BMC answering for another
// machine among them), scrapes /metrics and wants the fleet values to
// equal the run's summary: landed and failed nodes, landings by path,
// failures by reason; the BMC requests and landing answers counted; and
// the exposition to pass `promtool check metrics`.
func TestMetricsAfterARunThroughServe(t *testing.T) {
	promtool := labtool.RequireTool(t, "promtool")
	ctx := ctxFor(t, 6*time.Minute)
	s := serveLab(ctx, t, []fleet.ModelCount{{Model: fleet.ModelIPMI, Count: 4}, {Model: fleet.ModelDL360G7, Count: 2},
		{Model: fleet.ModelRedfish, Count: 1}, {Model: fleet.ModelDeadBMC, Count: 1}, {Model: fleet.ModelWrongBMC, Count: 1}})

	var res [3]string
	select {
	case res = <-s.reinstallAll(ctx):
	case <-ctx.Done():
		t.Fatalf("the run did not end\n%s", tail(s.log.String(), 4000))
	}
	var rep struct {
		Summary agent.Summary `json:"summary"`
	}
	if err := json.Unmarshal([]byte(res[1]), &rep); err != nil || res[0] != strconv.Itoa(exitFailed) {
		t.Fatalf("reinstall --all through serve: exit %s, %v (want %d: two nodes fail)\n%s\n%s", res[0], err, exitFailed, res[1], tail(res[2], 4000))
	}
	sum := rep.Summary
	failed := 0
	for _, g := range sum.Failed {
		failed += g.Count
	}
	if sum.Nodes != 9 || sum.LandedOOB+sum.LandedInband != 7 || sum.LandedInband == 0 || failed != 2 {
		t.Fatalf("run summary %+v: want 9 nodes, 7 landed (some in-band), 2 failed", sum)
	}

	page, m := scrapeMetrics(ctx, t, s.url)
	check := func(metric string, want float64) {
		t.Helper()
		if got, ok := m[metric]; !ok || got != want {
			t.Errorf("%s = %v (present %v), the run's summary says %v", metric, got, ok, want)
		}
	}
	check(`reprov_nodes{state="landed"}`, float64(sum.LandedOOB+sum.LandedInband))
	check(`reprov_nodes{state="failed"}`, float64(failed))
	check(`reprov_nodes{state="idle"}`, 0)
	check(`reprov_jobs{state="landed"}`, float64(sum.LandedOOB+sum.LandedInband))
	check(`reprov_jobs{state="failed"}`, float64(failed))
	check(`reprov_landings_total{path="oob",source="ipxe"}`, float64(sum.LandedOOB))
	check(`reprov_landings_total{path="inband",source="ipxe"}`, float64(sum.LandedInband))
	for _, g := range sum.Failed {
		check(`reprov_job_failures_total{reason="`+g.Reason+`"}`, float64(g.Count))
	}
	check(`reprov_queue_depth{queue="`+store.DefaultQueue+`"}`, 0)
	check(`reprov_store_scrape_ok`, 1)

	// What this controller did: BMC requests of both protocols, the dead
	// BMC's timeouts, the landing endpoint's install scripts.
	for _, metric := range []string{`reprov_bmc_requests_total{outcome="ok",protocol="ipmi"}`,
		`reprov_bmc_requests_total{outcome="ok",protocol="redfish"}`, `reprov_bmc_requests_total{outcome="timeout",protocol="ipmi"}`} {
		if m[metric] < 1 {
			t.Errorf("%s = %v, want at least 1", metric, m[metric])
		}
	}
	if got := m[`reprov_landing_requests_total{answer="netboot"}`]; got < float64(sum.LandedOOB+sum.LandedInband) {
		t.Errorf(`reprov_landing_requests_total{answer="netboot"} = %v, want at least one per landed node (%d)`, got, sum.LandedOOB+sum.LandedInband)
	}
	if got := m[`reprov_step_duration_seconds_count{result="ok",step="precheck"}`]; got != float64(sum.LandedOOB+sum.LandedInband) {
		t.Errorf(`reprov_step_duration_seconds_count{result="ok",step="precheck"} = %v, want one per landed node`, got)
	}
	for metric := range m {
		for _, n := range s.lab.Nodes() {
			if strings.Contains(metric, `"`+n.Name()+`"`) {
				t.Errorf("a node name is a label value: %s", metric)
			}
		}
	}

	cmd := exec.CommandContext(ctx, promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(page)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
