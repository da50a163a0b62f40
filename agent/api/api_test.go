package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reprov/reprov/agent"
	"github.com/reprov/reprov/agent/api"
	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/inventory"
	"github.com/reprov/reprov/playbooks"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

type rig struct {
	t   *testing.T
	st  *store.Store
	srv *httptest.Server
	log *syncBuf
}

// newRig serves the API over a real SQLite store and the real engine; no
// worker runs, so submitted jobs stay queued until stopped.
func newRig(t *testing.T) *rig {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "reprov.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	pbs, err := playbooks.Load("")
	if err != nil {
		t.Fatal(err)
	}
	eng, err := agent.New(agent.Config{Store: st, Playbooks: pbs, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	inv := &inventory.Inventory{Nodes: []inventory.Node{
		{Name: "web-001", Rack: "r1", MACs: []string{"02:00:00:00:00:01"}, Labels: map[string]string{"site": "ams"}},
		{Name: "web-002", Rack: "r1", MACs: []string{"02:00:00:00:00:02"}},
	}}
	r := &rig{t: t, st: st, log: &syncBuf{}}
	srv, err := api.New(api.Config{Store: st, Engine: eng, Inventory: inv, Playbooks: pbs,
		Log: slog.New(slog.NewTextHandler(r.log, &slog.HandlerOptions{Level: slog.LevelDebug})), PollInterval: 20 * time.Millisecond,
		Mount: func(m *http.ServeMux) {
			m.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "metrics here\n") })
		}})
	if err != nil {
		t.Fatal(err)
	}
	r.srv = httptest.NewServer(srv)
	t.Cleanup(r.srv.Close)
	return r
}

func (r *rig) token(name string, role store.Role) string {
	r.t.Helper()
	tok, _, err := r.st.CreateToken(context.Background(), name, role)
	if err != nil {
		r.t.Fatal(err)
	}
	return tok
}

// do sends a request and returns the status and body.
func (r *rig) do(method, path, token, body string) (int, string) {
	r.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, r.srv.URL+path, rd)
	if err != nil {
		r.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func errCode(t *testing.T, body string) string {
	t.Helper()
	var e struct {
		Error api.Error `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Errorf("not a JSON error with a code and a message: %v %q", err, body)
	}
	return e.Error.Code
}

func TestTokensAndRoles(t *testing.T) {
	r := newRig(t)
	viewer := r.token("dash", store.RoleViewer)
	op := r.token("ops-bob", store.RoleOperator)
	create := `{"selection":{"names":["web-001"]}}`

	if code, body := r.do("GET", "/api/v1/runs", "", ""); code != 401 || errCode(t, body) != "unauthenticated" {
		t.Errorf("no token: %d %s, want 401", code, body)
	}
	if code, body := r.do("GET", "/api/v1/runs", "rpv_not-a-token", ""); code != 401 || errCode(t, body) != "invalid_token" {
		t.Errorf("unknown token: %d %s, want 401", code, body)
	}
	if code, body := r.do("GET", "/api/v1/runs", viewer, ""); code != 200 || strings.TrimSpace(body) != "[]" {
		t.Errorf("viewer reads: %d %s", code, body)
	}
	if code, body := r.do("POST", "/api/v1/runs", viewer, create); code != 403 || errCode(t, body) != "forbidden" {
		t.Errorf("viewer creates a run: %d %s, want 403", code, body)
	}
	if code, body := r.do("DELETE", "/api/v1/quirks/web-001", viewer, ""); code != 403 {
		t.Errorf("viewer clears quirks: %d %s, want 403", code, body)
	}
	if jobs, _ := r.st.NodeJobs(context.Background(), store.JobFilter{}); len(jobs) != 0 {
		t.Fatalf("a refused request created jobs: %+v", jobs)
	}
	if code, body := r.do("POST", "/api/v1/runs", op, create); code != 201 {
		t.Errorf("operator creates a run: %d %s, want 201", code, body)
	}
	if err := r.st.RevokeToken(context.Background(), "ops-bob"); err != nil {
		t.Fatal(err)
	}
	if code, body := r.do("GET", "/api/v1/runs", op, ""); code != 401 || errCode(t, body) != "token_revoked" {
		t.Errorf("revoked token: %d %s, want 401", code, body)
	}
	if code, body := r.do("GET", "/api/v1/health", "", ""); code != 200 || !strings.Contains(body, `"ok"`) {
		t.Errorf("health without a token: %d %s", code, body)
	}
	if code, body := r.do("GET", "/metrics", "", ""); code != 200 || body != "metrics here\n" {
		t.Errorf("a mounted handler: %d %q", code, body)
	}
	logs := r.log.String()
	for _, tok := range []string{viewer, op} {
		if strings.Contains(logs, tok) || strings.Contains(logs, tok[len(store.TokenPrefix):]) {
			t.Errorf("a token is in the log:\n%s", logs)
		}
	}
	if !strings.Contains(logs, "token=ops-bob") || !strings.Contains(logs, "token=dash") || !strings.Contains(logs, "status=403") {
		t.Errorf("the log does not name the tokens or the refusals:\n%s", logs)
	}
}

func TestRunLifecycleAndErrors(t *testing.T) {
	r := newRig(t)
	op := r.token("ops", store.RoleOperator)
	ctx := context.Background()

	// Errors name the field or node.
	for _, c := range []struct{ body, code, field string }{
		{`{"selection":{"names":["nope-*"]}}`, "bad_selection", "selection"},
		{`{"selection":{}}`, "bad_selection", "selection"},
		{`{"selection":{"all":true},"limits":{"max_failures":-1}}`, "invalid", "limits.max_failures"},
		{`{"selection":{"all":true},"playbook":"no-such"}`, "invalid", "playbook"},
		{`{"selection":{"all":true},"bogus":1}`, "bad_request", ""},
	} {
		code, body := r.do("POST", "/api/v1/runs", op, c.body)
		var e struct{ Error api.Error }
		_ = json.Unmarshal([]byte(body), &e)
		if code/100 != 4 || e.Error.Code != c.code || e.Error.Field != c.field {
			t.Errorf("%s: %d %s; want code %s field %q", c.body, code, body, c.code, c.field)
		}
	}
	if code, body := r.do("POST", "/api/v1/runs", op, `{"selection":{"all":true},"playbook":"hp-dl360-g7"}`); code != 422 ||
		!strings.Contains(body, `"node": "web-001"`) {
		t.Errorf("playbook override: %d %s", code, body)
	}

	code, body := r.do("POST", "/api/v1/runs", op, `{"selection":{"all":true},"dry_run":true}`)
	if code != 200 || !strings.Contains(body, "web-002") || !strings.Contains(body, `"nodes"`) {
		t.Errorf("dry run: %d %s", code, body)
	}
	if jobs, _ := r.st.NodeJobs(ctx, store.JobFilter{}); len(jobs) != 0 {
		t.Fatalf("a dry run created jobs")
	}
	code, body = r.do("POST", "/api/v1/runs", op, `{"selection":{"all":true},"limits":{"per_bmc":1}}`)
	var created api.CreatedRun
	if err := json.Unmarshal([]byte(body), &created); code != 201 || err != nil || created.Run == nil || len(created.Nodes) != 2 || created.Nodes[0].JobID == 0 {
		t.Fatalf("create: %d %v %s", code, err, body)
	}
	runID := created.Run.ID
	if created.Run.Limits.PerBMC != 1 {
		t.Errorf("limits not recorded: %+v", created.Run.Limits)
	}
	code, body = r.do("GET", "/api/v1/runs/"+itoa(runID), op, "")
	var rs api.RunStatus
	if err := json.Unmarshal([]byte(body), &rs); code != 200 || err != nil || rs.Counts[store.JobQueued] != 2 {
		t.Errorf("get run: %d %v %s", code, err, body)
	}
	if code, body := r.do("GET", "/api/v1/runs/"+itoa(runID)+"/report", op, ""); code != 409 || errCode(t, body) != "run_active" {
		t.Errorf("report of an active run: %d %s, want 409", code, body)
	}
	code, body = r.do("GET", "/api/v1/jobs?node=web-002&state=queued", op, "")
	if code != 200 || strings.Count(body, `"node": "web-002"`) != 1 {
		t.Errorf("jobs filter: %d %s", code, body)
	}
	if code, body := r.do("GET", "/api/v1/jobs?state=bogus", op, ""); code != 400 || !strings.Contains(body, `"field": "state"`) {
		t.Errorf("bad state filter: %d %s", code, body)
	}
	code, body = r.do("GET", "/api/v1/nodes", op, "")
	if code != 200 || !strings.Contains(body, `"site": "ams"`) || strings.Count(body, `"last_job": {`) != 2 {
		t.Errorf("nodes: %d %s", code, body)
	}
	if code, body := r.do("GET", "/api/v1/audit", op, ""); code != 501 || errCode(t, body) != "not_available" {
		t.Errorf("audit without a source: %d %s", code, body)
	}
	if code, body := r.do("GET", "/api/v1/nope", op, ""); code != 404 || errCode(t, body) != "not_found" {
		t.Errorf("unknown route: %d %s", code, body)
	}

	// Follow the run's events while one job is cancelled and the run stopped.
	req, _ := http.NewRequest("GET", r.srv.URL+"/api/v1/runs/"+itoa(runID)+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+op)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %v %v", err, resp)
	}
	defer resp.Body.Close()
	events := make(chan [2]string, 100)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		var ev string
		for sc.Scan() {
			line := sc.Text()
			if v, ok := strings.CutPrefix(line, "event: "); ok {
				ev = v
			}
			if v, ok := strings.CutPrefix(line, "data: "); ok {
				events <- [2]string{ev, v}
			}
		}
	}()
	next := func() [2]string {
		select {
		case e := <-events:
			return e
		case <-time.After(10 * time.Second):
			t.Fatal("no event within 10 s")
		}
		return [2]string{}
	}
	for range 2 {
		if e := next(); e[0] != "job" || !strings.Contains(e[1], `"state":"queued"`) {
			t.Errorf("first events: %v", e)
		}
	}
	job1 := created.Nodes[0].JobID
	if code, body := r.do("POST", "/api/v1/jobs/"+itoa(job1)+"/cancel", op, `{"reason":"test"}`); code != 200 || !strings.Contains(body, `"state": "cancelled"`) {
		t.Errorf("cancel job: %d %s", code, body)
	}
	if e := next(); e[0] != "job" || !strings.Contains(e[1], `"state":"cancelled"`) {
		t.Errorf("after the cancel: %v", e)
	}
	if code, body := r.do("POST", "/api/v1/jobs/"+itoa(job1)+"/cancel", op, ""); code != 409 || !strings.Contains(body, `"node": "web-001"`) {
		t.Errorf("cancel an ended job: %d %s", code, body)
	}
	if code, body := r.do("POST", "/api/v1/runs/"+itoa(runID)+"/cancel", op, ""); code != 200 || !strings.Contains(body, `"state": "interrupted"`) {
		t.Errorf("cancel run: %d %s", code, body)
	}
	if e := next(); e[0] != "job" || !strings.Contains(e[1], `"state":"interrupted"`) {
		t.Errorf("after the run was stopped: %v", e)
	}
	if e := next(); e[0] != "end" || !strings.Contains(e[1], `"interrupted":1`) {
		t.Errorf("end: %v", e)
	}
	code, body = r.do("GET", "/api/v1/runs/"+itoa(runID)+"/report", op, "")
	var rep api.Report
	if err := json.Unmarshal([]byte(body), &rep); code != 200 || err != nil || len(rep.Results) != 2 || rep.Run.State != store.RunInterrupted ||
		rep.Results[0].Node != "web-001" || rep.Results[0].Status != "skipped" || rep.Results[1].Status != "interrupted" {
		t.Errorf("report: %d %v %s", code, err, body)
	}

	// Quirks: list and clear.
	_ = r.st.LearnQuirk(ctx, store.Quirk{Node: "web-001", Quirk: store.QuirkIgnoresOOBPXE})
	if code, body := r.do("GET", "/api/v1/quirks", op, ""); code != 200 || !strings.Contains(body, store.QuirkIgnoresOOBPXE) {
		t.Errorf("quirks: %d %s", code, body)
	}
	if code, body := r.do("DELETE", "/api/v1/quirks/web-001/"+store.QuirkIgnoresOOBPXE, op, ""); code != 200 || !strings.Contains(body, `"cleared": 1`) {
		t.Errorf("clear: %d %s", code, body)
	}
	if code, body := r.do("DELETE", "/api/v1/quirks/web-001", op, ""); code != 404 || !strings.Contains(body, `"node": "web-001"`) {
		t.Errorf("clear again: %d %s", code, body)
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

// TestNodeCancelPlanRestoreRoutes: cancel by node, and the routes a
// controller serves only with a Planner and a Restorer.
func TestNodeCancelPlanRestoreRoutes(t *testing.T) {
	r := newRig(t)
	op := r.token("ops", store.RoleOperator)
	viewer := r.token("dash", store.RoleViewer)
	if code, body := r.do("POST", "/api/v1/runs", op, `{"selection":{"names":["web-001"]}}`); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	if code, body := r.do("POST", "/api/v1/nodes/web-001/cancel", viewer, ""); code != 403 || errCode(t, body) != "forbidden" {
		t.Errorf("viewer cancels: %d %s, want 403", code, body)
	}
	code, body := r.do("POST", "/api/v1/nodes/web-001/cancel", op, `{"reason":"maintenance window moved"}`)
	if code != 200 || !strings.Contains(body, `"state": "cancelled"`) || !strings.Contains(body, "maintenance window moved") {
		t.Errorf("cancel web-001's queued job: %d %s", code, body)
	}
	if code, body := r.do("POST", "/api/v1/nodes/web-001/cancel", op, ""); code != 404 || !strings.Contains(body, `"node": "web-001"`) {
		t.Errorf("cancel with no active job: %d %s, want 404 naming the node", code, body)
	}
	if code, body := r.do("GET", "/api/v1/plan?all=true", viewer, ""); code != 501 || errCode(t, body) != "not_available" {
		t.Errorf("plan without a planner: %d %s", code, body)
	}
	if code, body := r.do("POST", "/api/v1/nodes/web-001/restore", op, ""); code != 501 || errCode(t, body) != "not_available" {
		t.Errorf("restore without a restorer: %d %s", code, body)
	}
	if code, body := r.do("POST", "/api/v1/nodes/web-001/restore", viewer, ""); code != 403 {
		t.Errorf("viewer restores: %d %s, want 403", code, body)
	}
}
