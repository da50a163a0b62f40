// Package api is reprov serve's HTTP API: JSON over HTTP under /api/v1,
// bearer tokens with two roles (viewer reads; operator also creates and
// cancels), a run's progress as server-sent events. docs/api.md is its
// reference.
//
// The API reads and writes the job store shared by every controller, so
// any controller answers for any run: a client whose controller died
// reconnects to another (behind the same DNS name or VIP) and follows the
// same run.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/reprov/reprov/agent"
	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/inventory"
	"github.com/reprov/reprov/playbooks"
)

// Prefix is the path prefix of every API route.
const Prefix = "/api/v1"

// DefaultPollInterval is how often a run's event stream reads the store.
const DefaultPollInterval = 500 * time.Millisecond

// Engine is the part of the reinstall engine the API uses (*agent.Engine).
type Engine interface {
	Submit(ctx context.Context, nodes []inventory.Node, opts agent.RunOptions) (*agent.Submission, error)
	ReportEnded(ctx context.Context, run store.Run, nodes []inventory.Node, jobs []store.NodeJob, attached []bool) (*agent.Report, error)
}

// AuditQuery filters the audit log.
type AuditQuery struct {
	// Nodes are the nodes whose records to keep (none: every node).
	Nodes []string
	// Run is the run tag of the records ("run-12"; "" : every run).
	Run string
	// JobID keeps the records of this node job (0: all).
	JobID int64
	// Since keeps the records from then on (zero: all).
	Since time.Time
	// Limit keeps the newest Limit records (0: all).
	Limit int
}

// AuditSource serves GET /api/v1/audit: the audit records matching q, as
// any JSON-marshallable value. Without one the route answers 501.
type AuditSource interface {
	AuditEntries(ctx context.Context, q AuditQuery) (any, error)
}

// Config configures a Server.
type Config struct {
	// Store is the job store.
	Store *store.Store
	// Engine submits runs.
	Engine Engine
	// Inventory is this controller's inventory: runs are selected from it.
	Inventory *inventory.Inventory
	// Playbooks are the loaded playbooks (a run's playbook override must
	// name one).
	Playbooks *playbooks.Set
	// CheckNodes refuses a selection the controller cannot reinstall (for
	// instance nodes without an install profile); nil: none refused.
	CheckNodes func([]inventory.Node) error
	// Audit serves the audit route (nil: 501).
	Audit AuditSource
	// Plan serves GET /api/v1/plan (nil: 501).
	Plan Planner
	// Restore serves POST /api/v1/nodes/{node}/restore (nil: 501).
	Restore Restorer
	// Defaults are the limits of a run that sets none (max_parallel,
	// per_rack from the configuration).
	Defaults store.RunLimits
	// Log receives one record per request (with the token's name, never
	// the token); nil discards.
	Log *slog.Logger
	// PollInterval is how often a run's event stream reads the store
	// (default DefaultPollInterval).
	PollInterval time.Duration
	// Mount adds handlers to the server's mux (the status page on "/",
	// "/nodes/", "/login", and "/metrics" are left free for it).
	Mount func(*http.ServeMux)
}

// Server is the API. It is an http.Handler.
type Server struct {
	cfg      Config
	log      *slog.Logger
	mux      *http.ServeMux
	draining atomic.Bool
}

// New returns the API server for cfg.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("api: no job store")
	case cfg.Engine == nil:
		return nil, errors.New("api: no engine")
	case cfg.Inventory == nil:
		return nil, errors.New("api: no inventory")
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	s := &Server{cfg: cfg, log: cfg.Log, mux: http.NewServeMux()}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.mux.HandleFunc("GET "+Prefix+"/health", s.health)
	route := func(pattern string, h func(http.ResponseWriter, *http.Request)) {
		s.mux.Handle(pattern, s.auth(http.HandlerFunc(h)))
	}
	route("GET "+Prefix+"/runs", s.listRuns)
	route("POST "+Prefix+"/runs", s.createRun)
	route("GET "+Prefix+"/runs/{id}", s.getRun)
	route("POST "+Prefix+"/runs/{id}/cancel", s.cancelRun)
	route("GET "+Prefix+"/runs/{id}/events", s.runEvents)
	route("GET "+Prefix+"/runs/{id}/report", s.runReport)
	route("GET "+Prefix+"/jobs", s.listJobs)
	route("GET "+Prefix+"/jobs/{id}", s.getJob)
	route("POST "+Prefix+"/jobs/{id}/cancel", s.cancelJob)
	route("GET "+Prefix+"/jobs/{id}/landings", s.jobLandings)
	route("GET "+Prefix+"/nodes", s.listNodes)
	route("POST "+Prefix+"/nodes/{node}/cancel", s.cancelNode)
	route("POST "+Prefix+"/nodes/{node}/restore", s.restore)
	route("GET "+Prefix+"/plan", s.plan)
	route("GET "+Prefix+"/quirks", s.listQuirks)
	route("DELETE "+Prefix+"/quirks/{node}", s.clearQuirks)
	route("DELETE "+Prefix+"/quirks/{node}/{quirk}", s.clearQuirks)
	route("GET "+Prefix+"/audit", s.audit)
	s.windowRoutes(route)
	// Anything else under the prefix is a JSON 404, not the web root's.
	route(Prefix+"/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such API route: "+r.Method+" "+r.URL.Path, "")
	})
	if cfg.Mount != nil {
		cfg.Mount(s.mux)
	}
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Drain makes the server refuse new runs (503 shutting_down) while the
// controller stops; reads and event streams go on until the HTTP server
// shuts down.
func (s *Server) Drain() { s.draining.Store(true) }

func (s *Server) health(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "draining": s.draining.Load()})
}

// Error is the body of every API error: {"error": {...}}.
type Error struct {
	// Code is a stable, machine-readable word (not_found, forbidden, …).
	Code string `json:"code"`
	// Message says what is wrong, naming the node or field.
	Message string `json:"message"`
	// Field is the request field at fault, when one is.
	Field string `json:"field,omitempty"`
	// Node is the node concerned, when one is.
	Node string `json:"node,omitempty"`
}

type errorBody struct {
	Error Error `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg, field string) {
	writeJSON(w, status, errorBody{Error{Code: code, Message: msg, Field: field}})
}

func writeNodeError(w http.ResponseWriter, status int, code, msg, node string) {
	writeJSON(w, status, errorBody{Error{Code: code, Message: msg, Node: node}})
}

// storeError answers a store failure: not found as 404, else 500 (logged).
func (s *Server) storeError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", err.Error(), "")
		return
	}
	if r.Context().Err() != nil {
		return
	}
	s.log.Error("api: store", "method", r.Method, "path", r.URL.Path, "err", err)
	writeError(w, http.StatusInternalServerError, "store_error", err.Error(), "")
}

func pathID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("id %q is not a positive number", r.PathValue("id")), "id")
		return 0, false
	}
	return id, true
}

// queryInt reads an optional non-negative integer query parameter.
func queryInt(w http.ResponseWriter, r *http.Request, name string, def int64) (int64, bool) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, true
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("query parameter %s=%q is not a non-negative number", name, v), name)
		return 0, false
	}
	return n, true
}

// queryIDs reads a comma-separated list of job IDs.
func queryIDs(w http.ResponseWriter, r *http.Request, name string) ([]int64, bool) {
	var out []int64
	for _, part := range strings.Split(r.URL.Query().Get(name), ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		id, err := strconv.ParseInt(part, 10, 64)
		if err != nil || id <= 0 {
			writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("query parameter %s: %q is not a job ID", name, part), name)
			return nil, false
		}
		out = append(out, id)
	}
	return out, true
}
