package web_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/agent/web"
	"github.com/reprov/reprov/agent/web/webtest"
	"github.com/reprov/reprov/inventory"
)

func openStore(t testing.TB) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), "sqlite://"+filepath.Join(t.TempDir(), "reprov.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// seeded returns a store holding webtest.Fleet and its Source.
func seeded(t testing.TB) (*store.Store, *web.StoreSource) {
	t.Helper()
	st := openStore(t)
	nodes := webtest.Fleet()
	if _, err := webtest.Seed(context.Background(), st, "tester", nodes); err != nil {
		t.Fatal(err)
	}
	inv := webtest.Inventory(nodes)
	return st, &web.StoreSource{Store: st, Inventory: func() *inventory.Inventory { return inv }}
}

var cellRE = regexp.MustCompile(`<a class="s-([a-z]+)" href="nodes/([^"]+)" title="([^"]*)"></a>`)

func get(t *testing.T, h http.Handler, path string, hdr ...string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPageShowsEveryNodeInItsState(t *testing.T) {
	st, src := seeded(t)
	h, err := web.New(web.Config{Source: src, Public: true})
	if err != nil {
		t.Fatal(err)
	}
	resp := get(t, h, "/")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET / = %d", resp.StatusCode)
	}
	page := body(t, resp)

	got := map[string]int{}
	titles := map[string]string{}
	for _, m := range cellRE.FindAllStringSubmatch(page, -1) {
		got[m[1]]++
		titles[m[2]] = m[3]
	}
	// What the store says: each node's latest job, idle for the rest.
	jobs, err := st.LatestJobs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"idle": len(webtest.Fleet()) - len(jobs)}
	for _, j := range jobs {
		want[string(j.State)]++
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("cells by state = %v, the store says %v", got, want)
	}
	if tt := titles["r2-n03"]; !strings.Contains(tt, "failed: precheck: BMC unreachable") {
		t.Errorf("failed node's tooltip = %q, want its reason", tt)
	}
	if tt := titles["r1-n04"]; !strings.Contains(tt, "running (wait_landing)") {
		t.Errorf("running node's tooltip = %q, want its step", tt)
	}
	for _, s := range []string{`<meta name="viewport"`, "no windows", `id="runs"`, "run 1", `data-refresh="5000"`, "r3"} {
		if !strings.Contains(page, s) {
			t.Errorf("page lacks %q", s)
		}
	}
	if !strings.Contains(page, `role="progressbar" aria-valuemin="0" aria-valuemax="16" aria-valuenow="11"`) {
		t.Errorf("the run's progress bar does not say 11 of 16 done:\n%s", page)
	}
}

func TestFragmentIsRevalidatedByETag(t *testing.T) {
	_, src := seeded(t)
	h, err := web.New(web.Config{Source: src, Public: true, Refresh: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	r1 := get(t, h, "/?part=live")
	frag := body(t, r1)
	if r1.StatusCode != http.StatusOK || strings.Contains(frag, "<html") || !strings.Contains(frag, `class="grid"`) {
		t.Fatalf("fragment: %d %q", r1.StatusCode, frag)
	}
	etag := r1.Header.Get("ETag")
	if etag == "" {
		t.Fatal("fragment has no ETag")
	}
	if r2 := get(t, h, "/?part=live", "If-None-Match", etag); r2.StatusCode != http.StatusNotModified {
		t.Errorf("unchanged fragment with its ETag = %d, want 304", r2.StatusCode)
	}
}

func TestLoginSetsAnHttpOnlySessionCookie(t *testing.T) {
	_, src := seeded(t)
	const token = "rpv_viewer_secret"
	var logs bytes.Buffer
	h, err := web.New(web.Config{Source: src, Log: slog.New(slog.NewTextHandler(&logs, nil)),
		Verify: func(_ context.Context, tok string) (string, bool) { return "viewer", tok == token }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	resp, err := noRedirect.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Fatalf("GET / without session = %d → %q, want 303 → /login", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, err = noRedirect.Get(srv.URL + "/?part=live")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("fragment without session = %d, want 401", resp.StatusCode)
	}

	resp, err = noRedirect.PostForm(srv.URL+"/login", url.Values{"token": {"wrong-" + token}})
	if err != nil {
		t.Fatal(err)
	}
	b := body(t, resp)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(b, "not accepted") || len(resp.Cookies()) != 0 {
		t.Errorf("wrong token: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}

	resp, err = noRedirect.PostForm(srv.URL+"/login", url.Values{"token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login = %d", resp.StatusCode)
	}
	var sess *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == web.SessionCookie {
			sess = c
		}
	}
	if sess == nil || !sess.HttpOnly || sess.SameSite != http.SameSiteStrictMode {
		t.Fatalf("session cookie = %+v, want HttpOnly and SameSite=Strict", sess)
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/nodes/r1-n03", nil)
	req.AddCookie(sess)
	resp, err = noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b = body(t, resp)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(b, "precheck: BMC unreachable") {
		t.Errorf("node page with session = %d", resp.StatusCode)
	}
	if strings.Contains(logs.String(), token) {
		t.Errorf("the token is in the log:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "login refused") {
		t.Errorf("the refused login is not logged:\n%s", logs.String())
	}
}

func TestNewRefusesAPrivatePageWithoutVerifier(t *testing.T) {
	_, src := seeded(t)
	if _, err := web.New(web.Config{Source: src}); err == nil {
		t.Error("New accepted a non-public page without a token verifier")
	}
}

func TestNodePage(t *testing.T) {
	st, src := seeded(t)
	ctx := context.Background()
	if err := st.LearnQuirk(ctx, store.Quirk{Node: "r1-n02", Quirk: store.QuirkIgnoresOOBPXE, Model: "ProLiant DL360 G7",
		Evidence: []byte(`{"boot_id":"same"}`)}); err != nil {
		t.Fatal(err)
	}
	h, err := web.New(web.Config{Source: src, Public: true})
	if err != nil {
		t.Fatal(err)
	}
	resp := get(t, h, "/nodes/r1-n02")
	page := body(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("node page = %d: %s", resp.StatusCode, page)
	}
	for _, s := range []string{"landed", "callback", "ignores-oob-pxe", "ProLiant DL360 G7", "wait_landing", "no audit records", "rack r1"} {
		if !strings.Contains(page, s) {
			t.Errorf("node page lacks %q", s)
		}
	}
	if resp := get(t, h, "/nodes/r1-n06"); resp.StatusCode != http.StatusOK || !strings.Contains(body(t, resp), "never run") {
		t.Errorf("idle node's page = %d", resp.StatusCode)
	}
	if resp := get(t, h, "/nodes/nope"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown node = %d, want 404", resp.StatusCode)
	}
	if resp := get(t, h, "/assets/refresh.js"); resp.StatusCode != http.StatusOK || !strings.Contains(body(t, resp), "part=live") {
		t.Errorf("refresh.js = %d", resp.StatusCode)
	}
}

// TestNodePageShowsTheAuditTrail: the node page lists the node's records
// of the store's audit trail, newest first, and no other node's.
func TestNodePageShowsTheAuditTrail(t *testing.T) {
	st, src := seeded(t)
	ctx := context.Background()
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	recs := []store.AuditRecord{
		{At: at, RecordID: "a1", Phase: "intent", Node: "r1-n02", Action: "set_boot_override", JobID: 7, Controller: "ctl-a/1",
			Detail: []byte(`{"device":"pxe"}`)},
		{At: at.Add(time.Second), RecordID: "a1", Phase: "outcome", Node: "r1-n02", Action: "set_boot_override", JobID: 7,
			Controller: "ctl-a/1", Result: "ok"},
		{At: at.Add(2 * time.Second), RecordID: "a2", Phase: "intent", Node: "r1-n02", Action: "power_cycle", JobID: 7, Controller: "ctl-b/2"},
		{At: at.Add(3 * time.Second), RecordID: "a2", Phase: "outcome", Node: "r1-n02", Action: "power_cycle", JobID: 7,
			Controller: "ctl-b/2", Result: "failed", Error: "no answer from BMC"},
		{At: at, RecordID: "b1", Phase: "intent", Node: "r1-n03", Action: "wipe_boot_sector", Controller: "ctl-a/1"},
	}
	if err := st.AppendAudit(ctx, recs); err != nil {
		t.Fatal(err)
	}
	h, err := web.New(web.Config{Source: src, Public: true})
	if err != nil {
		t.Fatal(err)
	}
	page := body(t, get(t, h, "/nodes/r1-n02"))
	_, table, ok := strings.Cut(page, `<table id="audit">`)
	if !ok {
		t.Fatalf("the node page has no audit table:\n%s", page)
	}
	table, _, _ = strings.Cut(table, "</table>")
	rows := regexp.MustCompile(`<tr><td>[^<]*</td><td>7</td><td>([a-z_]+)</td><td>([a-z]+)</td><td>([^<]*)</td><td>([^<]*)</td>`).
		FindAllStringSubmatch(table, -1)
	var got []string
	for _, r := range rows {
		got = append(got, strings.Join(r[1:], " "))
	}
	want := []string{
		"power_cycle outcome failed: no answer from BMC ctl-b/2",
		"power_cycle intent  ctl-b/2",
		"set_boot_override outcome ok ctl-a/1",
		"set_boot_override intent  ctl-a/1",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("audit rows on the node page, newest first:\n got %q\nwant %q", got, want)
	}
	if !strings.Contains(table, "{&#34;device&#34;:&#34;pxe&#34;}") {
		t.Errorf("the intent's detail is not shown:\n%s", table)
	}
	if strings.Contains(page, "wipe_boot_sector") {
		t.Error("r1-n02's page shows r1-n03's audit record")
	}
}
