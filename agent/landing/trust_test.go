package landing_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/reprov/reprov/agent/landing"
	"github.com/reprov/reprov/agent/store"
)

// serve sends one request straight to the handler, from remote.
func (e *env) serve(method, target, remote string, body io.Reader, hdr map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, body)
	req.RemoteAddr = remote
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec
}

// snapshot is what a request may have written for a job.
func (e *env) snapshot(id int64) string {
	e.t.Helper()
	ctx := context.Background()
	j, err := e.st.NodeJob(ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	ls, err := e.st.Landings(ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	return fmt.Sprintf("%s %s %v %v %d", j.State, j.LandingSource, j.LandedAt, j.Updated, len(ls))
}

var tokenRE = regexp.MustCompile(`reprov\.token=(\S+)`)

// TestLandingBeforeTheKickIsRefused: issue 14's forged landing. A GET for
// the node's MAC before the job made the node boot gets "boot local disk",
// marks nothing, hands out no token, and is logged with node and source;
// after the kick the same GET lands.
func TestLandingBeforeTheKickIsRefused(t *testing.T) {
	e := newEnv(t, nil)
	j := e.acquire("web-014")
	for _, claimed := range []bool{false, true} {
		if claimed {
			var err error
			if j, err = e.st.ClaimNodeJob(context.Background(), j.ID, j.Generation, "ctl", time.Minute); err != nil {
				t.Fatal(err)
			}
		}
		before := e.snapshot(j.ID)
		code, body := e.get("/boot/ipxe?mac=" + mac)
		if code != http.StatusOK || !strings.Contains(body, "sanboot") || strings.Contains(body, "kernel") || strings.Contains(body, "reprov.token") {
			t.Fatalf("landing before the kick (claimed %v): %d\n%s\nwant the local boot script, no token", claimed, code, body)
		}
		if after := e.snapshot(j.ID); after != before {
			t.Errorf("a landing before the kick wrote to the job: %s → %s", before, after)
		}
		if c := e.post("/landed/web-014", "v1."+fmt.Sprint(j.ID)+".forged", false); c != http.StatusForbidden {
			t.Errorf("callback with a forged token before the kick: %d, want 403", c)
		}
	}
	if log := e.log.String(); !strings.Contains(log, "landing before the kick refused") || !strings.Contains(log, "node=web-014") || !strings.Contains(log, "remote=127.0.0.1") {
		t.Errorf("the refusal is not logged with node and source:\n%s", log)
	}
	e.arm(j)
	if _, body := e.get("/boot/ipxe?mac=" + mac); !tokenRE.MatchString(body) {
		t.Fatalf("after the kick the node gets no install script:\n%s", body)
	}
}

// TestRetryWindowAndCallbackAfterTheEnd: issue 10's landing/callback race.
// The engine ends the job as landed as soon as it sees the landing; the
// node asking again gets its install script (the same token), and its
// installer's callback counts; once it called back, the node boots its
// disk.
func TestRetryWindowAndCallbackAfterTheEnd(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	j := e.arm(e.acquire("web-014"))
	_, body := e.get("/boot/ipxe?mac=" + mac)
	m := tokenRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no token in the install script:\n%s", body)
	}
	token := m[1]
	if _, err := e.st.FinishNode(ctx, j.ID, store.Finish{State: store.JobLanded, Owner: "ctl"}); err != nil {
		t.Fatal(err)
	}
	code, again := e.get("/boot/ipxe?mac=" + mac)
	if code != http.StatusOK || strings.Contains(again, "sanboot") {
		t.Fatalf("the node asking again after its job ended landed: %d\n%s\nwant its install script", code, again)
	}
	if m := tokenRE.FindStringSubmatch(again); m == nil || m[1] != token {
		t.Errorf("the retry got another token")
	}
	if c := e.post("/landed/web-014", token, false); c != http.StatusNoContent {
		t.Fatalf("callback after the job ended landed: %d, want 204", c)
	}
	ls, _ := e.st.Landings(ctx, j.ID)
	if len(ls) != 2 || ls[1].Source != store.LandingCallback {
		t.Errorf("landings %+v, want ipxe then callback", ls)
	}
	if _, body := e.get("/boot/ipxe?mac=" + mac); !strings.Contains(body, "sanboot") {
		t.Errorf("after the installer called back the node got:\n%s\nwant boot local disk", body)
	}
	if strings.Contains(e.log.String(), token) {
		t.Error("the callback token is in the endpoint's log")
	}
}

func TestNoRetryWindowBootsTheDisk(t *testing.T) {
	e := newEnvWith(t, landing.Config{RetryWindow: -1})
	j := e.arm(e.acquire("web-014"))
	e.get("/boot/ipxe?mac=" + mac)
	if _, err := e.st.FinishNode(context.Background(), j.ID, store.Finish{State: store.JobLanded, Owner: "ctl"}); err != nil {
		t.Fatal(err)
	}
	if _, body := e.get("/boot/ipxe?mac=" + mac); !strings.Contains(body, "sanboot") {
		t.Errorf("without a retry window a node whose job ended got:\n%s", body)
	}
}

// TestRateLimitPerSource: a source over its rate gets 429 and no store
// work; other sources and loopback are not affected.
func TestRateLimitPerSource(t *testing.T) {
	e := newEnvWith(t, landing.Config{Rate: 0.001, Burst: 3})
	for i := range 3 {
		if rec := e.serve("GET", "/boot/ipxe?mac="+mac, "192.0.2.1:4000", nil, nil); rec.Code != http.StatusOK {
			t.Fatalf("request %d within the burst: %d", i, rec.Code)
		}
	}
	rec := e.serve("GET", "/boot/ipxe?mac="+mac, "192.0.2.1:4001", nil, nil)
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" {
		t.Errorf("request over the burst: %d (Retry-After %q), want 429 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
	if rec := e.serve("GET", "/boot/ipxe?mac="+mac, "192.0.2.2:4000", nil, nil); rec.Code != http.StatusOK {
		t.Errorf("another source: %d, want 200", rec.Code)
	}
	for range 5 {
		if rec := e.serve("GET", "/boot/ipxe?mac="+mac, "127.0.0.1:4000", nil, nil); rec.Code != http.StatusOK {
			t.Fatalf("loopback source: %d, want 200 (not limited)", rec.Code)
		}
	}
}

// TestMatchSource: with landing.match_source only the node's provisioning
// address lands it (GET and callback); others are refused and write nothing.
func TestMatchSource(t *testing.T) {
	e := newEnvWith(t, landing.Config{MatchSource: true, NodeAddr: func(node string) (netip.Addr, bool) {
		return netip.MustParseAddr("192.0.2.14"), node == "web-014"
	}})
	j := e.arm(e.acquire("web-014"))
	before := e.snapshot(j.ID)
	if rec := e.serve("GET", "/boot/ipxe?mac="+mac, "192.0.2.99:4000", nil, nil); rec.Code != http.StatusForbidden || strings.Contains(rec.Body.String(), "reprov.token") {
		t.Fatalf("landing from another address: %d\n%s\nwant 403 without a token", rec.Code, rec.Body)
	}
	if after := e.snapshot(j.ID); after != before {
		t.Errorf("a refused landing wrote: %s → %s", before, after)
	}
	rec := e.serve("GET", "/boot/ipxe?mac="+mac, "192.0.2.14:4000", nil, nil)
	m := tokenRE.FindStringSubmatch(rec.Body.String())
	if rec.Code != http.StatusOK || m == nil {
		t.Fatalf("landing from the node's address: %d\n%s", rec.Code, rec.Body)
	}
	auth := map[string]string{"Authorization": "Bearer " + m[1]}
	if rec := e.serve("POST", "/landed/web-014", "192.0.2.99:4000", nil, auth); rec.Code != http.StatusForbidden {
		t.Errorf("callback from another address: %d, want 403", rec.Code)
	}
	if rec := e.serve("POST", "/landed/web-014", "[::ffff:192.0.2.14]:4000", nil, auth); rec.Code != http.StatusNoContent {
		t.Errorf("callback from the node's address (IPv4-mapped): %d, want 204", rec.Code)
	}
}

// failingJobs is a store that cannot answer, with details a client must
// never see.
type failingJobs struct{}

var errSecretDetail = errors.New(`dial postgres://reprov:hunter2@10.9.8.7/reprov: connection refused`)

func (failingJobs) LandingJobByMAC(context.Context, string, time.Duration) (store.NodeJob, error) {
	return store.NodeJob{}, errSecretDetail
}
func (failingJobs) NodeJobs(context.Context, store.JobFilter) ([]store.NodeJob, error) {
	return nil, errSecretDetail
}
func (failingJobs) Land(context.Context, int64, store.LandingSource, json.RawMessage, time.Duration) (store.LandResult, error) {
	return store.LandResult{}, errSecretDetail
}
func (failingJobs) JobByCallbackToken(context.Context, string) (store.NodeJob, error) {
	return store.NodeJob{}, errSecretDetail
}

// TestStoreErrorsStayInTheLog: a store failure is a generic 503 (the client
// retries); the detail is only logged.
func TestStoreErrorsStayInTheLog(t *testing.T) {
	e := newEnvWith(t, landing.Config{Jobs: failingJobs{}})
	for _, rec := range []*httptest.ResponseRecorder{
		e.serve("GET", "/boot/ipxe?mac="+mac, "192.0.2.1:4000", nil, nil),
		e.serve("POST", "/landed/web-014", "192.0.2.1:4000", nil, map[string]string{"Authorization": "Bearer v1.1.x"}),
	} {
		if rec.Code != http.StatusServiceUnavailable {
			t.Errorf("store failure: %d, want 503", rec.Code)
		}
		if b := rec.Body.String(); strings.Contains(b, "hunter2") || strings.Contains(b, "10.9.8.7") || strings.Contains(b, "postgres") {
			t.Errorf("the store's error reached the client: %q", b)
		}
	}
	if !strings.Contains(e.log.String(), "connection refused") {
		t.Errorf("the store's error is not in the log:\n%s", e.log)
	}
}

func TestListenIsLoopback(t *testing.T) {
	for listen, want := range map[string]bool{
		"127.0.0.1:8086": true, "127.1.2.3:80": true, "[::1]:8086": true, "localhost:8086": true,
		"0.0.0.0:8086": false, ":8086": false, "[::]:8086": false, "10.0.0.5:8086": false, "netboot.example:8086": false, "garbage": false,
	} {
		if got := landing.ListenIsLoopback(listen); got != want {
			t.Errorf("ListenIsLoopback(%q) = %v, want %v", listen, got, want)
		}
	}
}
