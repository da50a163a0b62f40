package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/agent/web/webtest"
	"github.com/reprov/reprov/lab/fleet"
	"github.com/reprov/reprov/lab/labtool"
)

// servedLab is a lab with `reprov serve` running on it and two API tokens.
type servedLab struct {
	*labCLI
	url      string
	operator string // token with the operator role
	viewer   string // token with the viewer role
	log      *syncBuffer
}

// serveLab starts a lab of mix, creates an operator and a viewer token
// (reprov token create) and starts `reprov serve` on it.
func serveLab(ctx context.Context, t *testing.T, mix []fleet.ModelCount) *servedLab {
	t.Helper()
	s := &servedLab{labCLI: newLabCLI(t, mix, 0), log: &syncBuffer{}}
	// A lease long enough for SQLite under a whole rack at once (the
	// engine's store calls are bounded by fractions of it).
	cfg, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.config, bytes.Replace(cfg, []byte("lease: 2s"), []byte("lease: 20s"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	// Step timeouts for a whole rack worked at once on a shared machine
	// (the lab's defaults are tight, for the fault tests).
	for _, name := range []string{"default", "hp-dl360-g7", "uefi-generic"} {
		body := "name: " + name + "\nextends: " + name +
			"\ntimeouts: {precheck: 60s, oob_boot: 60s, power: 60s, wait_landing: 120s, inband: 120s, reboot: 60s}\n"
		if err := os.WriteFile(filepath.Join(s.dir, "playbooks", name+".yaml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	token := func(role string) string {
		code, out, errOut := s.run(ctx, "token", "create", "--role", role, "--name", "ci-"+role)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		tok := lines[len(lines)-1]
		if code != exitOK || !strings.HasPrefix(tok, store.TokenPrefix) {
			t.Fatalf("token create --role %s: exit %d\n%s\n%s", role, code, out, errOut)
		}
		return tok
	}
	s.operator, s.viewer = token("operator"), token("viewer")
	apiAddr := freeAddr(t)
	s.url = "http://" + apiAddr
	cmd := s.startServe(ctx, apiAddr, s.log)
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			stopServe(t, cmd, s.log)
		}
		s.noSecrets(s.log.String())
		if strings.Contains(s.log.String(), s.operator) || strings.Contains(s.log.String(), s.viewer) {
			t.Error("an API token appears in serve's log")
		}
	})
	return s
}

// client runs reprov as a client of the served API with the operator token.
func (s *servedLab) client(ctx context.Context, args ...string) (int, string, string) {
	getenv := func(k string) string {
		switch k {
		case "REPROV_SERVER_TOKEN":
			return "env:TEST_REPROV_TOKEN"
		case "TEST_REPROV_TOKEN":
			return s.operator
		}
		return s.getenv(k)
	}
	var out, errb syncBuffer
	code := runAllCmds(ctx, append([]string{"--config", s.config, "--server", s.url}, args...), strings.NewReader(""), &out, &errb, getenv)
	return code, out.String(), errb.String()
}

// reinstallAll starts `reprov reinstall --all --yes -o json` through the
// API; the channel gets its exit code and output.
func (s *servedLab) reinstallAll(ctx context.Context) <-chan [3]string {
	done := make(chan [3]string, 1)
	go func() {
		code, out, errOut := s.client(ctx, "-o", "json", "reinstall", "--all", "--yes")
		done <- [3]string{fmt.Sprint(code), out, errOut}
	}()
	return done
}

// jobs is `reprov jobs list -o json --limit 0` through the API.
func (s *servedLab) jobs(ctx context.Context, t *testing.T) []store.NodeJob {
	t.Helper()
	code, out, errOut := s.client(ctx, "-o", "json", "jobs", "list", "--limit", "0")
	var jobs []store.NodeJob
	if err := json.Unmarshal([]byte(out), &jobs); code != exitOK || err != nil {
		t.Fatalf("jobs list: exit %d, %v\n%s\n%s", code, err, out, errOut)
	}
	return jobs
}

// cellsJS counts the page's rack cells by state class.
const cellsJS = `(() => {
	const out = {};
	for (const a of document.querySelectorAll("#racks .grid a")) { const s = a.className.replace("s-", ""); out[s] = (out[s] || 0) + 1; }
	return out; })()`

// TestStatusPageOfARunThroughServe loads `reprov serve`'s status page in a
// real headless Chromium while a 60-node lab (a dead BMC and a BMC that
// answers for another machine among them) is reinstalled through the API:
// the page logs in with a viewer token, turns cells landed as nodes land
// without reloading, ends with as many cells per state as `reprov jobs
// list` has jobs, names each failed node's reason in its tooltip, shows a
// landed node's audit trail, and a screenshot is saved
// (status-page-serve.png under $REPROV_TEST_ARTIFACTS or the temp dir).
func TestStatusPageOfARunThroughServe(t *testing.T) {
	chromium := labtool.RequireTool(t, "chromium")
	ctx := ctxFor(t, 10*time.Minute)
	s := serveLab(ctx, t, []fleet.ModelCount{{Model: fleet.ModelIPMI, Count: 54}, {Model: fleet.ModelDL360G7, Count: 4},
		{Model: fleet.ModelDeadBMC, Count: 1}, {Model: fleet.ModelWrongBMC, Count: 1}})

	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, webtest.ChromeOptions(chromium, t.TempDir())...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()

	// Without a session the page sends the browser to the login form.
	if err := chromedp.Do(bctx, chromedp.Navigate(s.url+"/"), chromedp.WaitVisible(chromedp.CSS("#token"))); err != nil {
		t.Fatalf("open the page: %v", err)
	}
	if loc, err := chromedp.Run(bctx, chromedp.Location()); err != nil || !strings.HasSuffix(loc, "/login") {
		t.Errorf("without a session the page went to %s (%v), want the login form", loc, err)
	}
	err := chromedp.Do(bctx,
		chromedp.SendKeys(chromedp.CSS("#token"), s.viewer),
		chromedp.Submit(chromedp.CSS("#token")),
		chromedp.WaitVisible(chromedp.CSS("#racks")),
	)
	if err != nil {
		t.Fatalf("log in with the viewer token: %v", err)
	}
	cells, err := chromedp.Run(bctx, chromedp.Evaluate[map[string]int](cellsJS))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(cells) != "map[idle:60]" {
		t.Errorf("before any run the page shows %v, want 60 idle cells", cells)
	}
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`window.__notReloaded = true`)); err != nil {
		t.Fatal(err)
	}

	// The run, through the API: nodes land while the page is open.
	done := s.reinstallAll(ctx)
	if _, err := chromedp.Run(bctx, chromedp.Poll[bool](`document.querySelectorAll("#racks a.s-landed").length > 0`,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(5*time.Minute))); err != nil {
		t.Fatalf("no cell turned landed while the run went on: %v\n%s", err, tail(s.log.String(), 4000))
	}
	if ok, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`window.__notReloaded === true`)); err != nil || !ok {
		t.Errorf("the page reloaded to show a landing (%v); it should swap its live part in place", err)
	}
	var res [3]string
	select {
	case res = <-done:
	case <-ctx.Done():
		t.Fatalf("the run did not end\n%s", tail(s.log.String(), 4000))
	}
	if res[0] != fmt.Sprint(exitFailed) {
		t.Fatalf("reinstall --all through serve: exit %s, want %d (two nodes fail)\n%s\n%s", res[0], exitFailed, res[1], tail(res[2], 4000))
	}

	// Cells per state = jobs per state (one run: one job per node).
	jobs := s.jobs(ctx, t)
	want := map[string]int{}
	var failed []store.NodeJob
	landed := ""
	for _, j := range jobs {
		want[string(j.State)]++
		switch j.State {
		case store.JobFailed:
			failed = append(failed, j)
		case store.JobLanded:
			if landed == "" || j.Path == "inband" {
				landed = j.Node
			}
		}
	}
	if len(jobs) != 60 || len(failed) != 2 || want["landed"] != 58 {
		t.Errorf("jobs list: %d jobs, %v; want 60 jobs, 58 landed and 2 failed", len(jobs), want)
		for _, j := range failed {
			t.Logf("failed: %s: %s", j.Node, j.Reason)
		}
	}
	waitFor(ctx, t, "the page's cells to match the jobs list", func() bool {
		cells, err = chromedp.Run(bctx, chromedp.Evaluate[map[string]int](cellsJS))
		return err == nil && fmt.Sprint(cells) == fmt.Sprint(want)
	})
	if ok, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`window.__notReloaded === true`)); err != nil || !ok {
		t.Errorf("the page reloaded during the run (%v)", err)
	}

	// A failed node's tooltip names its reason.
	for _, j := range failed {
		tip, err := chromedp.Run(bctx, chromedp.AttributeValue(chromedp.CSS(`#racks a[href="nodes/`+j.Node+`"]`), "title"))
		if err != nil {
			t.Fatal(err)
		}
		reason := strings.Join(strings.Fields(j.Reason), " ")
		reason = reason[:min(len(reason), 60)]
		if j.Reason == "" || !strings.Contains(tip.Value, "failed") || !strings.Contains(tip.Value, reason) {
			t.Errorf("failed node %s's tooltip %q does not name its reason %q", j.Node, tip.Value, j.Reason)
		}
	}
	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	webtest.SaveArtifact(t, "status-page-serve.png", png)

	// A landed node's page shows its audit trail: as many rows as the
	// store has records for it (the page shows the latest 50).
	code, out, errOut := s.run(ctx, "--local", "-o", "json", "audit", landed)
	var recs []store.AuditRecord
	if err := json.Unmarshal([]byte(out), &recs); code != exitOK || err != nil || len(recs) == 0 {
		t.Fatalf("audit %s: exit %d, %v, %d records\n%s\n%s", landed, code, err, len(recs), out, errOut)
	}
	if err := chromedp.Do(bctx, chromedp.Navigate(s.url+"/nodes/"+landed), chromedp.WaitVisible(chromedp.CSS("#audit"))); err != nil {
		t.Fatalf("node page of %s: %v", landed, err)
	}
	rows, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll("#audit tr").length - 1`))
	if err != nil {
		t.Fatal(err)
	}
	if rows != min(len(recs), 50) {
		t.Errorf("node page of %s: %d audit rows, the store has %d records", landed, rows, len(recs))
	}
	text, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("#audit")))
	if err != nil {
		t.Fatal(err)
	}
	if last := recs[len(recs)-1]; !strings.Contains(text, last.Action) {
		t.Errorf("node page of %s: the audit table lacks the latest action %q:\n%s", landed, last.Action, text)
	}
}
