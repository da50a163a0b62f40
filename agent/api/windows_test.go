package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/agent/window"
)

func TestWindowRoutes(t *testing.T) {
	r := newRig(t)
	op := r.token("op", store.RoleOperator)
	viewer := r.token("view", store.RoleViewer)
	body := `{"name": "sat", "selection": {"all": true}, "cron": "0 2 * * SAT", "tz": "Europe/Berlin", "duration": "4h", "cutoff": "30m", "batch": "50%", "max_failures": "1"}`

	if code, out := r.do(http.MethodPost, "/api/v1/windows", viewer, body); code != http.StatusForbidden {
		t.Fatalf("a viewer created a window: %d %s", code, out)
	}
	bad := strings.Replace(body, `"30m"`, `"5h"`, 1)
	if code, out := r.do(http.MethodPost, "/api/v1/windows", op, bad); code != http.StatusUnprocessableEntity || !strings.Contains(out, "--cutoff") {
		t.Fatalf("cutoff longer than the window: %d %s", code, out)
	}
	unknown := strings.Replace(body, `{"all": true}`, `{"names": ["nope-*"]}`, 1)
	if code, out := r.do(http.MethodPost, "/api/v1/windows", op, unknown); code != http.StatusUnprocessableEntity || !strings.Contains(out, "bad_selection") {
		t.Fatalf("a selection matching nothing: %d %s", code, out)
	}
	code, out := r.do(http.MethodPost, "/api/v1/windows", op, body)
	var st window.Status
	if err := json.Unmarshal([]byte(out), &st); code != http.StatusCreated || err != nil || st.Next.IsZero() || st.Spec.Batch.Percent != 50 {
		t.Fatalf("create: %d %v %s", code, err, out)
	}
	if code, out := r.do(http.MethodPost, "/api/v1/windows", op, body); code != http.StatusConflict {
		t.Fatalf("create twice: %d %s", code, out)
	}
	if code, out := r.do(http.MethodPost, "/api/v1/windows/sat/pause", op, `{"reason": "freeze"}`); code != 200 || !strings.Contains(out, `"pause_reason": "freeze"`) || !strings.Contains(out, "api token op") {
		t.Fatalf("pause: %d %s", code, out)
	}
	if code, out := r.do(http.MethodPost, "/api/v1/windows/sat/resume", op, ""); code != 200 || strings.Contains(out, "pause_reason") {
		t.Fatalf("resume: %d %s", code, out)
	}
	if code, out := r.do(http.MethodGet, "/api/v1/windows", viewer, ""); code != 200 || !strings.Contains(out, `"name": "sat"`) {
		t.Fatalf("list: %d %s", code, out)
	}
	if code, out := r.do(http.MethodGet, "/api/v1/windows/sat/runs", viewer, ""); code != 200 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("runs before any occurrence: %d %s", code, out)
	}
	if code, _ := r.do(http.MethodDelete, "/api/v1/windows/sat", op, ""); code != http.StatusNoContent {
		t.Fatalf("delete: %d", code)
	}
	if code, _ := r.do(http.MethodGet, "/api/v1/windows/sat/runs", viewer, ""); code != http.StatusNotFound {
		t.Fatalf("runs of a deleted window with no occurrence: %d", code)
	}
}
