package web_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/reprov/reprov/agent/web"
	"github.com/reprov/reprov/agent/web/webtest"
	"github.com/reprov/reprov/lab/labtool"
)

// TestPageInChromium loads the page in a real headless Chromium: logs in
// with a viewer token, counts the cells per state against the store, reads
// a failed node's tooltip, lands a running node in the store and waits for
// its cell to turn landed without a reload, and saves a screenshot
// (page.png under $REPROV_TEST_ARTIFACTS, or the test's temp dir).
func TestPageInChromium(t *testing.T) {
	chromium := labtool.RequireTool(t, "chromium")
	st, src := seeded(t)
	const token = "viewer-token-for-the-browser"
	h, err := web.New(web.Config{Source: src, Refresh: 300 * time.Millisecond,
		Verify: func(_ context.Context, tok string) (string, bool) { return "viewer", tok == token }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h) // 127.0.0.1
	defer srv.Close()

	opts := webtest.ChromeOptions(chromium, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()

	// Log in: the page redirects to the form.
	if err := chromedp.Do(bctx, chromedp.Navigate(srv.URL+"/"), chromedp.WaitVisible(chromedp.CSS("#token"))); err != nil {
		t.Fatalf("open the page: %v", err)
	}
	loc, err := chromedp.Run(bctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(loc, "/login") {
		t.Errorf("without a session the page went to %s, want the login form", loc)
	}
	err = chromedp.Do(bctx,
		chromedp.SendKeys(chromedp.CSS("#token"), token),
		chromedp.Submit(chromedp.CSS("#token")),
		chromedp.WaitVisible(chromedp.CSS("#racks")),
	)
	if err != nil {
		t.Fatalf("log in: %v", err)
	}

	// Cells per state equal the store's latest jobs (+ idle inventory nodes).
	cells, err := chromedp.Run(bctx, chromedp.Evaluate[map[string]int](`(() => {
		const out = {};
		for (const a of document.querySelectorAll("#racks .grid a")) { const s = a.className.replace("s-", ""); out[s] = (out[s] || 0) + 1; }
		return out; })()`))
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := st.LatestJobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"idle": len(webtest.Fleet()) - len(jobs)}
	for _, j := range jobs {
		want[string(j.State)]++
	}
	if fmt.Sprint(cells) != fmt.Sprint(want) {
		t.Errorf("cells per state in the browser = %v, the store says %v", cells, want)
	}

	tooltip, err := chromedp.Run(bctx, chromedp.AttributeValue(chromedp.CSS(`#racks a[href="nodes/r2-n03"]`), "title"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(tooltip.Value, "precheck: BMC unreachable") {
		t.Errorf("the failed node's tooltip %q does not name its reason", tooltip.Value)
	}

	// A node lands: the cell turns landed by the refresh, not a reload.
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`window.__notReloaded = true`)); err != nil {
		t.Fatal(err)
	}
	if err := webtest.Land(ctx, st, "r1-n04"); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(bctx, 15*time.Second)
	_, err = chromedp.Run(wctx, chromedp.Poll[bool](`document.querySelector('#racks a[href="nodes/r1-n04"]').className === "s-landed"`,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(15*time.Second)))
	wcancel()
	if err != nil {
		t.Fatalf("the landed node's cell did not turn landed within 15 s: %v", err)
	}
	notReloaded, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`window.__notReloaded === true`))
	if err != nil {
		t.Fatal(err)
	}
	if !notReloaded {
		t.Error("the page reloaded to show the landing; it should swap the live part in place")
	}

	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100)) // quality 100: PNG
	if err != nil {
		t.Fatal(err)
	}
	webtest.SaveArtifact(t, "status-page.png", png)
}
