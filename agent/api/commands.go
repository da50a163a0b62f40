package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/reprov/reprov/agent"
	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/inventory"
)

// The routes the CLI's plan, jobs cancel and restore go through.

// PlanRequest is GET /api/v1/plan's query: the selection as in
// SelectionQuery, offline=true, for_reinstall=true.
type PlanRequest struct {
	Selection Selection `json:"selection"`
	// Offline plans from the inventory alone: no BMC and no node is
	// contacted.
	Offline bool `json:"offline,omitempty"`
	// ForReinstall plans as `reprov reinstall --dry-run`: a node that
	// would land with no install profile is a problem.
	ForReinstall bool `json:"for_reinstall,omitempty"`
}

// Planner plans the selected nodes as `reprov plan` does, with the
// controller's BMC and SSH access (read-only), one plan per node in order.
type Planner func(ctx context.Context, nodes []inventory.Node, req PlanRequest) ([]*agent.NodePlan, error)

// RestoreRequest is the body of POST /api/v1/nodes/{node}/restore.
type RestoreRequest struct {
	// Run picks the run whose saved boot sector to put back (0: newest).
	Run int64 `json:"run,omitempty"`
	// Force writes over a changed boot sector, and for a node with an
	// active job.
	Force bool `json:"force,omitempty"`
}

// RestoreResult is the answer of POST /api/v1/nodes/{node}/restore:
// the same as `reprov restore -o json`.
type RestoreResult struct {
	Node         string `json:"node"`
	File         string `json:"file"`
	Disk         string `json:"disk,omitempty"`
	Before       string `json:"before"`
	BytesWritten int64  `json:"bytes_written"`
	Verified     bool   `json:"verified"`
}

// Restorer puts back a node's saved boot sector (`reprov restore`). A
// refusal (an active job, nothing saved, a changed disk) is a *Refusal.
type Restorer func(ctx context.Context, node inventory.Node, req RestoreRequest) (RestoreResult, error)

// Refusal is an error of a Planner or Restorer that refuses the request
// (422 with its message) rather than failing at it (500).
type Refusal struct{ Err error }

func (r *Refusal) Error() string { return r.Err.Error() }
func (r *Refusal) Unwrap() error { return r.Err }

func (s *Server) plan(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Plan == nil {
		writeError(w, http.StatusNotImplemented, "not_available", "this controller does not plan through the API", "")
		return
	}
	req, ok := planRequest(w, r)
	if !ok {
		return
	}
	sel := req.Selection
	nodes, err := s.cfg.Inventory.Select(inventory.Selector{Names: sel.Names, Racks: sel.Racks, Labels: sel.Selector, All: sel.All})
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, "bad_selection", "selection: "+err.Error(), "selection")
		return
	}
	plans, err := s.cfg.Plan(r.Context(), nodes, req)
	if err != nil {
		s.commandError(w, r, "plan", "", err)
		return
	}
	if plans == nil {
		plans = []*agent.NodePlan{}
	}
	writeJSON(w, http.StatusOK, plans)
}

func (s *Server) cancelNode(w http.ResponseWriter, r *http.Request) {
	node := r.PathValue("node")
	var body struct {
		Reason string `json:"reason"`
	}
	if r.ContentLength != 0 && !decodeBody(w, r, &body) {
		return
	}
	tok, _ := TokenOf(r.Context())
	reason := body.Reason
	if reason == "" {
		reason = "cancelled through the API by token " + tok.Name
	}
	job, err := s.cfg.Store.CancelNode(r.Context(), node, reason)
	if errors.Is(err, store.ErrNotFound) {
		writeNodeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("node %s has no active job: %v", node, err), node)
		return
	}
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	s.log.Info("job cancel requested", "node", job.Node, "job", job.ID, "run", job.RunID, "token", tok.Name)
	writeJSON(w, http.StatusOK, job)
}

func (s *Server) restore(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Restore == nil {
		writeError(w, http.StatusNotImplemented, "not_available", "this controller does not restore through the API", "")
		return
	}
	name := r.PathValue("node")
	node, ok := s.cfg.Inventory.Node(name)
	if !ok {
		writeNodeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no node %q in the controller's inventory", name), name)
		return
	}
	var req RestoreRequest
	if r.ContentLength != 0 && !decodeBody(w, r, &req) {
		return
	}
	if req.Run < 0 {
		writeError(w, http.StatusUnprocessableEntity, "invalid", fmt.Sprintf("run: %d is negative", req.Run), "run")
		return
	}
	tok, _ := TokenOf(r.Context())
	// A write over SSH must not be cut half-way by a client that goes away.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Minute)
	defer cancel()
	res, err := s.cfg.Restore(ctx, node, req)
	if err != nil {
		s.commandError(w, r, "restore", name, err)
		return
	}
	s.log.Info("boot sector restored", "node", name, "file", res.File, "bytes", res.BytesWritten, "verified", res.Verified, "token", tok.Name)
	writeJSON(w, http.StatusOK, res)
}

// commandError answers a Planner's or Restorer's error: a refusal is 422,
// anything else 500.
func (s *Server) commandError(w http.ResponseWriter, r *http.Request, what, node string, err error) {
	var ref *Refusal
	if errors.As(err, &ref) {
		writeJSON(w, http.StatusUnprocessableEntity, errorBody{Error{Code: "refused", Message: what + ": " + err.Error(), Node: node}})
		return
	}
	if r.Context().Err() == nil {
		s.log.Error("api: "+what, "node", node, "err", err)
	}
	writeJSON(w, http.StatusInternalServerError, errorBody{Error{Code: what + "_failed", Message: what + ": " + err.Error(), Node: node}})
}

// SelectionQuery is a selection as query parameters: names (node names or
// globs, repeatable or comma-separated), rack (likewise), selector, all=true.
func SelectionQuery(sel Selection) url.Values {
	q := url.Values{}
	if len(sel.Names) > 0 {
		q.Set("names", strings.Join(sel.Names, ","))
	}
	if len(sel.Racks) > 0 {
		q.Set("rack", strings.Join(sel.Racks, ","))
	}
	if sel.Selector != "" {
		q.Set("selector", sel.Selector)
	}
	if sel.All {
		q.Set("all", "true")
	}
	return q
}

// selectionOf reads a selection from the query (SelectionQuery).
func selectionOf(q url.Values) Selection {
	list := func(name string) []string {
		var out []string
		for _, v := range q[name] {
			for _, part := range strings.Split(v, ",") {
				if part = strings.TrimSpace(part); part != "" {
					out = append(out, part)
				}
			}
		}
		return out
	}
	return Selection{Names: list("names"), Racks: list("rack"), Selector: q.Get("selector"), All: q.Get("all") == "true"}
}

func planRequest(w http.ResponseWriter, r *http.Request) (PlanRequest, bool) {
	q := r.URL.Query()
	req := PlanRequest{Selection: selectionOf(q)}
	for _, b := range []struct {
		name string
		v    *bool
	}{{"offline", &req.Offline}, {"for_reinstall", &req.ForReinstall}} {
		switch v := q.Get(b.name); v {
		case "", "false":
		case "true":
			*b.v = true
		default:
			writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("query parameter %s=%q: want true or false", b.name, v), b.name)
			return req, false
		}
	}
	return req, true
}

// decodeBody decodes a JSON request body strictly; on error it answers
// 400 and returns false.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, "bad_request", "request body: "+err.Error(), "")
		return false
	}
	return true
}
