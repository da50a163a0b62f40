package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/reprov/reprov/agent"
	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/agent/window"
	"github.com/reprov/reprov/inventory"
)

// Selection picks nodes of the controller's inventory, as the CLI's
// selection arguments do; a run and a window select nodes the same way.
type Selection = window.Selection

// CreateRun is the body of POST /api/v1/runs.
type CreateRun struct {
	Selection Selection `json:"selection"`
	// Playbook overrides the nodes' playbooks (see docs/api.md: not yet
	// carried out by the workers).
	Playbook string `json:"playbook,omitempty"`
	// Limits are the run's limits; zero fields take the controller's
	// max_parallel and per_rack.
	Limits store.RunLimits `json:"limits"`
	// Resume continues the nodes' unfinished jobs and starts no new one.
	Resume bool `json:"resume,omitempty"`
	// DryRun resolves the selection and submits nothing.
	DryRun bool `json:"dry_run,omitempty"`
	// CreatedBy says who asked (user@host); the token's name is added.
	CreatedBy string `json:"created_by,omitempty"`
}

// SubmittedNode is what a run did for one node.
type SubmittedNode struct {
	Node     string         `json:"node"`
	Rack     string         `json:"rack,omitempty"`
	Playbook string         `json:"playbook,omitempty"`
	JobID    int64          `json:"job_id,omitempty"`
	RunID    int64          `json:"run_id,omitempty"`
	State    store.JobState `json:"state,omitempty"`
	// Attached: the node's job under way (of another run) is followed
	// instead of a new one.
	Attached bool `json:"attached,omitempty"`
	// Resumed: the node's interrupted job was resumed.
	Resumed bool `json:"resumed,omitempty"`
}

// CreatedRun is the answer of POST /api/v1/runs.
type CreatedRun struct {
	Run   *store.Run      `json:"run,omitempty"` // nil for a dry run
	Nodes []SubmittedNode `json:"nodes"`
}

// RunStatus is a run with its jobs counted by state.
type RunStatus struct {
	Run    store.Run              `json:"run"`
	Counts map[store.JobState]int `json:"counts"`
}

func (s *Server) listRuns(w http.ResponseWriter, r *http.Request) {
	limit, ok := queryInt(w, r, "limit", 50)
	if !ok {
		return
	}
	runs, err := s.cfg.Store.Runs(r.Context(), int(limit))
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	if runs == nil {
		runs = []store.Run{}
	}
	writeJSON(w, http.StatusOK, runs)
}

func (s *Server) createRun(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		writeError(w, http.StatusServiceUnavailable, "shutting_down", "this controller is stopping: submit the run to another one", "")
		return
	}
	var req CreateRun
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "request body: "+err.Error(), "")
		return
	}
	for _, c := range []struct {
		field string
		v     int
	}{{"limits.max_parallel", req.Limits.MaxParallel}, {"limits.per_rack", req.Limits.PerRack},
		{"limits.per_bmc", req.Limits.PerBMC}, {"limits.max_failures", req.Limits.MaxFailures}} {
		if c.v < 0 {
			writeError(w, http.StatusUnprocessableEntity, "invalid", fmt.Sprintf("%s: %d is negative", c.field, c.v), c.field)
			return
		}
	}
	sel := req.Selection
	nodes, err := s.cfg.Inventory.Select(inventory.Selector{Names: sel.Names, Racks: sel.Racks, Labels: sel.Selector, All: sel.All})
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, "bad_selection", "selection: "+err.Error(), "selection")
		return
	}
	if req.Playbook != "" {
		if s.cfg.Playbooks != nil {
			if _, err := s.cfg.Playbooks.Get(req.Playbook); err != nil {
				writeError(w, http.StatusUnprocessableEntity, "invalid", "playbook: "+err.Error(), "playbook")
				return
			}
		}
		for _, n := range nodes {
			if n.Playbook != req.Playbook {
				writeNodeError(w, http.StatusUnprocessableEntity, "unsupported",
					fmt.Sprintf("playbook: overriding node %s's playbook %q with %q is not supported yet: workers only work a job whose node entry matches their inventory (set the playbook in the inventory)", n.Name, n.Playbook, req.Playbook), n.Name)
				return
			}
		}
	}
	if s.cfg.CheckNodes != nil {
		if err := s.cfg.CheckNodes(nodes); err != nil {
			writeError(w, http.StatusUnprocessableEntity, "invalid", err.Error(), "selection")
			return
		}
	}
	if req.DryRun {
		out := CreatedRun{Nodes: make([]SubmittedNode, len(nodes))}
		for i, n := range nodes {
			out.Nodes[i] = SubmittedNode{Node: n.Name, Rack: n.Rack, Playbook: n.Playbook}
		}
		writeJSON(w, http.StatusOK, out)
		return
	}
	limits := req.Limits
	if limits.MaxParallel == 0 {
		limits.MaxParallel = s.cfg.Defaults.MaxParallel
	}
	if limits.PerRack == 0 {
		limits.PerRack = s.cfg.Defaults.PerRack
	}
	tok, _ := TokenOf(r.Context())
	by := "api token " + tok.Name
	if req.CreatedBy != "" {
		by = req.CreatedBy + " (" + by + ")"
	}
	opts := agent.RunOptions{
		Selection: sel.Text(),
		CreatedBy: by,
		Options: map[string]any{"max_parallel": limits.MaxParallel, "per_rack": limits.PerRack, "per_bmc": limits.PerBMC,
			"max_failures": limits.MaxFailures, "resume": req.Resume, "via": "api"},
		MaxParallel: limits.MaxParallel, PerRack: limits.PerRack, PerBMC: limits.PerBMC, MaxFailures: limits.MaxFailures,
		ResumeOnly: req.Resume,
	}
	// The submission must not be cut half-way by a client that goes away.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Minute)
	defer cancel()
	sub, err := s.cfg.Engine.Submit(ctx, nodes, opts)
	if err != nil {
		s.log.Error("api: submit run", "err", err)
		writeError(w, http.StatusInternalServerError, "submit_failed", err.Error(), "")
		return
	}
	out := CreatedRun{Run: &sub.Run, Nodes: make([]SubmittedNode, len(sub.Nodes))}
	for i, n := range sub.Nodes {
		res := sub.Results[i]
		out.Nodes[i] = SubmittedNode{Node: n.Name, Rack: n.Rack, Playbook: n.Playbook, JobID: res.Job.ID, RunID: res.Job.RunID,
			State: res.Job.State, Attached: res.Attached && !res.Resumed, Resumed: res.Resumed}
	}
	s.log.Info("run submitted", "run", sub.Run.ID, "nodes", len(nodes), "selection", opts.Selection, "token", tok.Name)
	writeJSON(w, http.StatusCreated, out)
}

func (s *Server) getRun(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	st, err := s.runStatus(r.Context(), id)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) runStatus(ctx context.Context, id int64) (RunStatus, error) {
	run, err := s.cfg.Store.Run(ctx, id)
	if err != nil {
		return RunStatus{}, err
	}
	all, err := s.cfg.Store.RunJobCounts(ctx, []int64{id})
	if err != nil {
		return RunStatus{}, err
	}
	counts := map[store.JobState]int{}
	for st, n := range all[id] {
		counts[st] = int(n)
	}
	return RunStatus{Run: run, Counts: counts}, nil
}

func (s *Server) cancelRun(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	if _, err := s.cfg.Store.Run(r.Context(), id); err != nil {
		s.storeError(w, r, err)
		return
	}
	if err := s.cfg.Store.StopRun(r.Context(), id); err != nil {
		s.storeError(w, r, err)
		return
	}
	tok, _ := TokenOf(r.Context())
	s.log.Info("run stopped", "run", id, "token", tok.Name)
	st, err := s.runStatus(r.Context(), id)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	run, ok := queryInt(w, r, "run", 0)
	if !ok {
		return
	}
	limit, ok := queryInt(w, r, "limit", 100)
	if !ok {
		return
	}
	f := store.JobFilter{Node: q.Get("node"), RunID: run, Limit: int(limit)}
	for _, v := range q["state"] {
		for _, part := range strings.Split(v, ",") {
			st := store.JobState(strings.TrimSpace(part))
			switch st {
			case store.JobQueued, store.JobRunning, store.JobLanded, store.JobFailed, store.JobCancelled, store.JobInterrupted:
			default:
				writeError(w, http.StatusBadRequest, "bad_request",
					fmt.Sprintf("state %q: want queued, running, landed, failed, cancelled or interrupted", part), "state")
				return
			}
			f.States = append(f.States, st)
		}
	}
	jobs, err := s.cfg.Store.NodeJobs(r.Context(), f)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	if jobs == nil {
		jobs = []store.NodeJob{}
	}
	writeJSON(w, http.StatusOK, jobs)
}

// JobDetail is a job with its step record and landings, its node's
// learned quirks and the boot sectors saved by its run: `reprov jobs show
// -o json`.
type JobDetail struct {
	Job      store.NodeJob        `json:"job"`
	Steps    []store.Step         `json:"steps"`
	Landings []store.Landing      `json:"landings"`
	Quirks   []store.Quirk        `json:"quirks"`
	Sectors  []store.SectorRecord `json:"saved_boot_sectors"`
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	job, err := s.cfg.Store.NodeJob(ctx, id)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	d := JobDetail{Job: job, Steps: []store.Step{}, Landings: []store.Landing{}}
	if steps, err := s.cfg.Store.Steps(ctx, id); err != nil {
		s.storeError(w, r, err)
		return
	} else if steps != nil {
		d.Steps = steps
	}
	if ls, err := s.cfg.Store.Landings(ctx, id); err != nil {
		s.storeError(w, r, err)
		return
	} else if ls != nil {
		d.Landings = ls
	}
	var err2 error
	if d.Quirks, err2 = s.cfg.Store.Quirks(ctx, job.Node); err2 != nil {
		s.storeError(w, r, err2)
		return
	}
	if d.Sectors, err2 = s.cfg.Store.SectorRecords(ctx, job.Node, job.RunID); err2 != nil {
		s.storeError(w, r, err2)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func (s *Server) jobLandings(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	if _, err := s.cfg.Store.NodeJob(r.Context(), id); err != nil {
		s.storeError(w, r, err)
		return
	}
	ls, err := s.cfg.Store.Landings(r.Context(), id)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	if ls == nil {
		ls = []store.Landing{}
	}
	writeJSON(w, http.StatusOK, ls)
}

func (s *Server) cancelJob(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	job, err := s.cfg.Store.NodeJob(ctx, id)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	if !job.State.Active() {
		writeNodeError(w, http.StatusConflict, "not_active", fmt.Sprintf("job %d of node %s is %s: nothing to cancel", job.ID, job.Node, job.State), job.Node)
		return
	}
	tok, _ := TokenOf(ctx)
	var body struct {
		Reason string `json:"reason"`
	}
	if r.ContentLength != 0 {
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&body); err != nil && !errors.Is(err, io.EOF) {
			writeError(w, http.StatusBadRequest, "bad_request", "request body: "+err.Error(), "reason")
			return
		}
	}
	reason := body.Reason
	if reason == "" {
		reason = "cancelled through the API by token " + tok.Name
	}
	// CancelNode cancels the node's active job: make sure it is this one.
	got, err := s.cfg.Store.CancelNode(ctx, job.Node, reason)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	if got.ID != job.ID {
		writeNodeError(w, http.StatusConflict, "not_active", fmt.Sprintf("job %d of node %s ended meanwhile; job %d is now the node's (cancel requested on it)", job.ID, job.Node, got.ID), job.Node)
		return
	}
	s.log.Info("job cancel requested", "node", job.Node, "job", job.ID, "run", job.RunID, "token", tok.Name)
	writeJSON(w, http.StatusOK, got)
}

// NodeStatus is an inventory node with its latest job.
type NodeStatus struct {
	Node     string            `json:"node"`
	Rack     string            `json:"rack,omitempty"`
	Site     string            `json:"site,omitempty"`
	Playbook string            `json:"playbook,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	LastJob  *store.NodeJob    `json:"last_job"`
}

func (s *Server) listNodes(w http.ResponseWriter, r *http.Request) {
	jobs, err := s.cfg.Store.LatestJobs(r.Context())
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	latest := make(map[string]store.NodeJob, len(jobs))
	for _, j := range jobs {
		latest[j.Node] = j
	}
	out := make([]NodeStatus, 0, len(s.cfg.Inventory.Nodes))
	for _, n := range s.cfg.Inventory.Nodes {
		ns := NodeStatus{Node: n.Name, Rack: n.Rack, Site: n.Labels[agent.SiteLabel], Playbook: n.Playbook, Labels: n.Labels}
		if j, ok := latest[n.Name]; ok {
			ns.LastJob = &j
		}
		out = append(out, ns)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) listQuirks(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	qs, err := s.cfg.Store.ListQuirks(r.Context(), store.QuirkFilter{Node: q.Get("node"), Model: q.Get("model"), Quirk: q.Get("quirk")})
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	if qs == nil {
		qs = []store.Quirk{}
	}
	writeJSON(w, http.StatusOK, qs)
}

func (s *Server) clearQuirks(w http.ResponseWriter, r *http.Request) {
	node, quirk := r.PathValue("node"), r.PathValue("quirk")
	n, err := s.cfg.Store.ClearQuirks(r.Context(), node, quirk)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	if n == 0 {
		what := "no learned quirk"
		if quirk != "" {
			what = "no learned quirk " + quirk
		}
		writeNodeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("node %s has %s", node, what), node)
		return
	}
	tok, _ := TokenOf(r.Context())
	s.log.Info("learned quirks cleared", "node", node, "quirk", quirk, "cleared", n, "token", tok.Name)
	writeJSON(w, http.StatusOK, map[string]any{"node": node, "cleared": n})
}

func (s *Server) audit(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Audit == nil {
		writeError(w, http.StatusNotImplemented, "not_available", "the audit log is not available through this controller's API yet (reprov's audit.jsonl in the state dir has it)", "")
		return
	}
	query := r.URL.Query()
	q := AuditQuery{Run: query.Get("run")}
	if id, err := strconv.ParseInt(q.Run, 10, 64); err == nil {
		q.Run = agent.RunTag(id) // run=12 is run-12
	}
	job, ok := queryInt(w, r, "job", 0)
	if !ok {
		return
	}
	limit, ok := queryInt(w, r, "limit", 200)
	if !ok {
		return
	}
	q.JobID, q.Limit = job, int(limit)
	for _, v := range query["node"] {
		for _, n := range strings.Split(v, ",") {
			if n = strings.TrimSpace(n); n != "" {
				q.Nodes = append(q.Nodes, n)
			}
		}
	}
	if sel := selectionOf(query); !sel.Empty() {
		nodes, err := s.cfg.Inventory.Select(inventory.Selector{Names: sel.Names, Racks: sel.Racks, Labels: sel.Selector, All: sel.All})
		if err != nil {
			writeError(w, http.StatusUnprocessableEntity, "bad_selection", "selection: "+err.Error(), "selection")
			return
		}
		for _, n := range nodes {
			q.Nodes = append(q.Nodes, n.Name)
		}
	}
	if v := query.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("since=%q is not an RFC 3339 time", v), "since")
			return
		}
		q.Since = t
	}
	entries, err := s.cfg.Audit.AuditEntries(r.Context(), q)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, entries)
}
