package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/reprov/reprov/agent"
	"github.com/reprov/reprov/agent/fleet"
	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/inventory"
)

// keepAliveEvery is how often an idle event stream sends a comment line,
// so proxies and clients see it alive.
const keepAliveEvery = 15 * time.Second

// jobKey is what makes a job event: a change of state, step, landing or
// generation (a takeover or handover).
type jobKey struct {
	state   store.JobState
	step    string
	landing store.LandingSource
	gen     int64
}

// runEvents streams a run's progress as server-sent events, reading the
// store every PollInterval:
//
//	event: job   one per change of a job's state, step, landing or generation (data: the job)
//	event: end   once every job has ended (data: the run and its counts); the stream closes
//
// A new stream starts with one job event per job (the current state), so
// a client that reconnects — to this controller or another — loses
// nothing. ?also=ID,… adds jobs of other runs the run attached to.
func (s *Server) runEvents(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	also, ok := queryIDs(w, r, "also")
	if !ok {
		return
	}
	ctx := r.Context()
	if _, err := s.cfg.Store.Run(ctx, id); err != nil {
		s.storeError(w, r, err)
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "no_streaming", "this server cannot stream", "")
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, "retry: %d\n\n", 2000)
	flusher.Flush()

	seen := map[int64]jobKey{}
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	lastWrite := time.Now()
	seq := 0
	send := func(event string, v any) bool {
		b, err := json.Marshal(v)
		if err != nil {
			return false
		}
		seq++
		if _, err := fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", seq, event, b); err != nil {
			return false
		}
		flusher.Flush()
		lastWrite = time.Now()
		return true
	}
	for {
		jobs, err := s.runJobs(ctx, id, also)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("api: run events", "run", id, "err", err)
			}
		} else {
			active := 0
			for _, j := range jobs {
				k := jobKey{j.State, j.Step, j.LandingSource, j.Generation}
				if old, ok := seen[j.ID]; !ok || old != k {
					seen[j.ID] = k
					if !send("job", j) {
						return
					}
				}
				if j.State.Active() {
					active++
				}
			}
			if active == 0 {
				st, err := s.runStatus(ctx, id)
				if err == nil {
					send("end", st)
					return
				}
			}
		}
		if time.Since(lastWrite) >= keepAliveEvery {
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
			flusher.Flush()
			lastWrite = time.Now()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// runJobs returns the run's jobs (oldest first) and the extra jobs asked
// for, in that order.
func (s *Server) runJobs(ctx context.Context, runID int64, also []int64) ([]store.NodeJob, error) {
	own, err := s.cfg.Store.NodeJobs(ctx, store.JobFilter{RunID: runID})
	if err != nil {
		return nil, err
	}
	// NodeJobs lists newest first; the run's own order is submission order.
	for i, j := 0, len(own)-1; i < j; i, j = i+1, j-1 {
		own[i], own[j] = own[j], own[i]
	}
	if len(also) == 0 {
		return own, nil
	}
	have := map[int64]bool{}
	for _, j := range own {
		have[j.ID] = true
	}
	extra, err := s.cfg.Store.JobsByID(ctx, also)
	if err != nil {
		return nil, err
	}
	byID := map[int64]store.NodeJob{}
	for _, j := range extra {
		byID[j.ID] = j
	}
	for _, id := range also {
		if j, ok := byID[id]; ok && !have[id] {
			own = append(own, j)
			have[id] = true
		}
	}
	return own, nil
}

// Report is the answer of GET /api/v1/runs/{id}/report: the same shape as
// `reprov reinstall -o json`.
type Report struct {
	Run     store.Run      `json:"run"`
	Results []fleet.Result `json:"results"`
	Summary agent.Summary  `json:"summary"`
}

// runReport answers a run's report once every job of it has ended (409
// before): one result row per node, as an in-process reinstall prints
// them. ?attached=ID,… adds the jobs of other runs the run attached to,
// ?resumed=ID,… the interrupted jobs it resumed (both from the run's
// POST answer).
func (s *Server) runReport(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	attached, ok := queryIDs(w, r, "attached")
	if !ok {
		return
	}
	resumed, ok := queryIDs(w, r, "resumed")
	if !ok {
		return
	}
	ctx := r.Context()
	run, err := s.cfg.Store.Run(ctx, id)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	jobs, err := s.runJobs(ctx, id, append(append([]int64{}, resumed...), attached...))
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	isAttached := map[int64]bool{}
	for _, a := range attached {
		isAttached[a] = true
	}
	isResumed := map[int64]bool{}
	for _, a := range resumed {
		isResumed[a] = true
	}
	byName := map[string]inventory.Node{}
	for _, n := range s.cfg.Inventory.Nodes {
		byName[n.Name] = n
	}
	nodes := make([]inventory.Node, len(jobs))
	attachedTo := make([]bool, len(jobs))
	for i, j := range jobs {
		if j.State.Active() {
			writeNodeError(w, http.StatusConflict, "run_active",
				fmt.Sprintf("run %d is under way: job %d of node %s is %s (follow GET %s/runs/%d/events)", id, j.ID, j.Node, j.State, Prefix, id), j.Node)
			return
		}
		n, ok := byName[j.Node]
		if !ok {
			n = inventory.Node{Name: j.Node, Rack: j.Rack}
		}
		nodes[i] = n
		attachedTo[i] = isAttached[j.ID] && !isResumed[j.ID]
	}
	rep, err := s.cfg.Engine.ReportEnded(context.WithoutCancel(ctx), run, nodes, jobs, attachedTo)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	if rep.Results == nil {
		rep.Results = []fleet.Result{}
	}
	writeJSON(w, http.StatusOK, Report{Run: rep.Run, Results: rep.Results, Summary: agent.Summarize(rep.Results)})
}
