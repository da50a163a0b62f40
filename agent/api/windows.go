package api

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/agent/window"
)

// Reimaging windows (docs/windows.md): created, listed, paused, resumed
// and deleted here; opened and worked by the window scheduler of every
// controller on the shared store.

// CreateWindow is the body of POST /api/v1/windows: the window's spec
// and who asks.
type CreateWindow struct {
	window.Spec
	// CreatedBy says who asked (user@host); the token's name is added.
	CreatedBy string `json:"created_by,omitempty"`
}

// PauseWindow is the body of POST /api/v1/windows/{name}/pause.
type PauseWindow struct {
	Reason string `json:"reason,omitempty"`
	By     string `json:"by,omitempty"`
}

func (s *Server) windowRoutes(route func(string, func(http.ResponseWriter, *http.Request))) {
	route("GET "+Prefix+"/windows", s.listWindows)
	route("POST "+Prefix+"/windows", s.createWindow)
	route("GET "+Prefix+"/windows/{name}", s.getWindow)
	route("DELETE "+Prefix+"/windows/{name}", s.deleteWindow)
	route("POST "+Prefix+"/windows/{name}/pause", s.pauseWindow)
	route("POST "+Prefix+"/windows/{name}/resume", s.pauseWindow)
	route("GET "+Prefix+"/windows/{name}/runs", s.windowRuns)
}

func (s *Server) listWindows(w http.ResponseWriter, r *http.Request) {
	recs, err := s.cfg.Store.Windows(r.Context())
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	out := make([]window.Status, 0, len(recs))
	for _, rec := range recs {
		st, err := window.Describe(r.Context(), s.cfg.Store, rec, time.Now(), 0)
		if err != nil {
			s.storeError(w, r, err)
			return
		}
		out = append(out, st)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) createWindow(w http.ResponseWriter, r *http.Request) {
	var req CreateWindow
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "request body: "+err.Error(), "")
		return
	}
	if err := errors.Join(req.Spec.Validate(), req.Spec.CheckAt(time.Now())); err != nil {
		writeError(w, http.StatusUnprocessableEntity, "invalid", err.Error(), "")
		return
	}
	nodes, err := window.SelectNodes(s.cfg.Inventory, req.Spec)
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, "bad_selection", "selection: "+err.Error(), "selection")
		return
	}
	if s.cfg.CheckNodes != nil {
		if err := s.cfg.CheckNodes(nodes); err != nil {
			writeError(w, http.StatusUnprocessableEntity, "invalid", err.Error(), "selection")
			return
		}
	}
	tok, _ := TokenOf(r.Context())
	by := "api token " + tok.Name
	if req.CreatedBy != "" {
		by = req.CreatedBy + " (" + by + ")"
	}
	rec, err := window.Create(r.Context(), s.cfg.Store, req.Spec, by)
	if errors.Is(err, store.ErrWindowExists) {
		writeError(w, http.StatusConflict, "exists", err.Error()+": delete it first, or choose another name", "name")
		return
	}
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	s.log.Info("window created", "window", rec.Name, "nodes", len(nodes), "token", tok.Name)
	s.writeWindow(w, r, rec, http.StatusCreated)
}

func (s *Server) writeWindow(w http.ResponseWriter, r *http.Request, rec store.WindowRecord, status int) {
	st, err := window.Describe(r.Context(), s.cfg.Store, rec, time.Now(), 0)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, status, st)
}

func (s *Server) getWindow(w http.ResponseWriter, r *http.Request) {
	rec, err := s.cfg.Store.Window(r.Context(), r.PathValue("name"))
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	s.writeWindow(w, r, rec, http.StatusOK)
}

func (s *Server) deleteWindow(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := s.cfg.Store.DeleteWindow(r.Context(), name); err != nil {
		s.storeError(w, r, err)
		return
	}
	tok, _ := TokenOf(r.Context())
	s.log.Info("window deleted", "window", name, "token", tok.Name)
	w.WriteHeader(http.StatusNoContent)
}

// pauseWindow serves pause and resume (the path's last element says
// which).
func (s *Server) pauseWindow(w http.ResponseWriter, r *http.Request) {
	pause := strings.HasSuffix(r.URL.Path, "/pause")
	var req PauseWindow
	if r.ContentLength != 0 {
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<16))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil && !errors.Is(err, io.EOF) {
			writeError(w, http.StatusBadRequest, "bad_request", "request body: "+err.Error(), "")
			return
		}
	}
	tok, _ := TokenOf(r.Context())
	by := "api token " + tok.Name
	if req.By != "" {
		by = req.By + " (" + by + ")"
	}
	rec, err := s.cfg.Store.PauseWindow(r.Context(), r.PathValue("name"), pause, by, req.Reason)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	s.log.Info("window paused or resumed", "window", rec.Name, "paused", pause, "token", tok.Name)
	s.writeWindow(w, r, rec, http.StatusOK)
}

func (s *Server) windowRuns(w http.ResponseWriter, r *http.Request) {
	limit, ok := queryInt(w, r, "limit", 20)
	if !ok {
		return
	}
	name := r.PathValue("name")
	occs, err := s.cfg.Store.Occurrences(r.Context(), name, int(limit))
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	if len(occs) == 0 {
		if _, err := s.cfg.Store.Window(r.Context(), name); err != nil {
			s.storeError(w, r, err)
			return
		}
	}
	withNodes := r.URL.Query().Get("nodes") == "true" || r.URL.Query().Get("nodes") == "1"
	out := make([]window.OccurrenceReport, 0, len(occs))
	for _, o := range occs {
		rep, err := window.Report(r.Context(), s.cfg.Store, o, withNodes, 0)
		if err != nil {
			s.storeError(w, r, err)
			return
		}
		out = append(out, rep)
	}
	writeJSON(w, http.StatusOK, out)
}
