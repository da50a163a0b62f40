package landing_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/reprov/reprov/agent/store"
)

// maxAnswer bounds every answer of the endpoint: a script or a one-line
// error, whatever the request.
const maxAnswer = 4096

// fuzzEnv is an endpoint with one job that is running but not armed (no
// request may write to it) and one that is armed.
func fuzzEnv(t testing.TB) (e *env, unarmed store.NodeJob, check func(t *testing.T)) {
	e = newEnv(t, nil)
	unarmed = e.acquire("web-014")
	unarmed, err := e.st.ClaimNodeJob(context.Background(), unarmed.ID, unarmed.Generation, "ctl", 1<<62)
	if err != nil {
		t.Fatal(err)
	}
	armed, err := e.st.AcquireNode(context.Background(), store.AcquireRequest{RunID: e.run.ID, Node: "web-015", MACs: []string{"3c:4a:92:11:22:44"}})
	if err != nil {
		t.Fatal(err)
	}
	e.arm(armed)
	before := e.snapshot(unarmed.ID)
	return e, unarmed, func(t *testing.T) {
		if after := e.snapshot(unarmed.ID); after != before {
			t.Fatalf("a request wrote to the unarmed job: %s → %s", before, after)
		}
	}
}

func checkAnswer(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Body.Len() > maxAnswer {
		t.Fatalf("answer of %d bytes (status %d), want at most %d", rec.Body.Len(), rec.Code, maxAnswer)
	}
	if rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
}

// FuzzBootIPXE: GET /boot/ipxe with any query never panics, answers
// boundedly and never writes to a job whose landing is not armed.
func FuzzBootIPXE(f *testing.F) {
	for _, q := range []string{"mac=" + mac, "mac=3C-4A-92-11-22-33", "mac=3c4a.9211.2233", "mac=" + mac + "&mac=3c:4a:92:11:22:44",
		"mac=3c:4a:92:11:22:44", "", "mac=", "mac=zz:zz", "mac=%00", "mac=" + strings.Repeat("a", 5000), "mac=00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01",
		"mac=3c%3a4a%3a92%3a11%3a22%3a33", ";;;&&&==", "mac=\n3c:4a:92:11:22:33"} {
		f.Add(q, "127.0.0.1:5000")
	}
	f.Add("mac="+mac, "garbage")
	f.Add("mac="+mac, "[::1]:1")
	e, _, check := fuzzEnv(f)
	f.Fuzz(func(t *testing.T, query, remote string) {
		e.t = t
		req := httptest.NewRequest(http.MethodGet, "/boot/ipxe", nil)
		req.URL.RawQuery = query
		req.RemoteAddr = remote
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, req)
		checkAnswer(t, rec)
		check(t)
	})
}

// FuzzLanded: POST /landed/{node} with any node, token and body never
// panics, answers boundedly and never writes to an unarmed job.
func FuzzLanded(f *testing.F) {
	f.Add("web-014", "Bearer v1.1.AAAA", "", "")
	f.Add("web-014", "", "token=v1.1.x", "application/x-www-form-urlencoded")
	f.Add("web-015", "Bearer v1.2.x", "", "")
	f.Add("../../etc", "Bearer "+strings.Repeat("v1.", 200), "", "")
	f.Add("web-014", "Basic dXNlcjpwYXNz", strings.Repeat("token=", 2000), "application/x-www-form-urlencoded")
	f.Add("web-014", "", "token=v1.99999999999999999999.x", "multipart/form-data; boundary=x")
	f.Add("", "Bearer ", "\x00\xff", "text/plain")
	f.Add("web-014", "Bearer v1.-1.x", "", "")
	e, _, check := fuzzEnv(f)
	f.Fuzz(func(t *testing.T, node, auth, body, contentType string) {
		e.t = t
		req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		req.URL.Path = "/landed/" + node
		req.URL.RawPath = ""
		if strings.ContainsAny(node, "?#") {
			req.URL.Path = "/landed/" + url.PathEscape(node)
		}
		req.RemoteAddr = "127.0.0.1:6000"
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, req)
		checkAnswer(t, rec)
		check(t)
	})
}
