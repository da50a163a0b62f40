// Package web is reprov's fleet status page: racks as grids of node cells
// coloured by state, the active runs with progress bars, the reimaging
// windows, and a page per node with its jobs, landing evidence, learned
// quirks and audit trail. It is server-rendered (html/template, assets
// embedded, no build step, no CDN); a few lines of JavaScript refresh the
// live part every few seconds without reloading the page.
//
// `reprov serve` mounts the handler New returns at "/" of server.listen
// (docs/status-page.md). Viewers log in with an API token (viewer or
// operator role) typed into a form; the page keeps it in an HttpOnly,
// SameSite=Strict cookie and checks it on every request, so a revoked token
// ends the session at once. server.public_page skips the login.
package web

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

//go:embed templates/*.html assets/*
var files embed.FS

// SessionCookie is the name of the page's session cookie.
const SessionCookie = "reprov_session"

// Config configures the page handler.
type Config struct {
	// Source is what the page shows (required); StoreSource reads the store.
	Source Source
	// Verify checks a token typed into the login form (or sent as
	// "Authorization: Bearer"), returning its role; any role may view.
	// Required unless Public.
	Verify func(ctx context.Context, token string) (role string, ok bool)
	// Public serves the page without login (server.public_page).
	Public bool
	// SecureCookie marks the session cookie Secure (serve with TLS). The
	// cookie is also Secure whenever the login request came over TLS.
	SecureCookie bool
	// Prefix is the path the handler is mounted under, without a trailing
	// slash ("" for the root). Redirects use it; links are relative.
	Prefix string
	// Refresh is how often the page refreshes its live part (default 5 s).
	Refresh time.Duration
	// SessionTTL is the session cookie's lifetime (default 12 h).
	SessionTTL time.Duration
	// Log receives failed logins and source errors (default: discarded).
	// Tokens never appear in it.
	Log *slog.Logger
}

type handler struct {
	cfg   Config
	tmpl  *template.Template
	mux   *http.ServeMux
	log   *slog.Logger
	asset http.Handler
}

// New returns the page's handler. It serves, relative to Config.Prefix:
// "/" (the fleet), "/?part=live" (the refreshed fragment), "/nodes/NAME",
// "/login" (GET form, POST token), "/logout" (POST) and "/assets/…".
func New(cfg Config) (http.Handler, error) {
	if cfg.Source == nil {
		return nil, errors.New("web: no Source")
	}
	if !cfg.Public && cfg.Verify == nil {
		return nil, errors.New("web: a non-public page needs a token verifier")
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = 5 * time.Second
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	cfg.Prefix = strings.TrimSuffix(cfg.Prefix, "/")
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tmpl, err := parseTemplates()
	if err != nil {
		return nil, err
	}
	assets, err := fs.Sub(files, "assets")
	if err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	h := &handler{cfg: cfg, tmpl: tmpl, log: log, mux: http.NewServeMux(),
		asset: http.StripPrefix(cfg.Prefix+"/assets/", http.FileServerFS(assets))}
	p := cfg.Prefix
	h.mux.HandleFunc("GET "+p+"/{$}", h.auth(h.fleet))
	h.mux.HandleFunc("GET "+p+"/nodes/{name}", h.auth(h.node))
	h.mux.HandleFunc("GET "+p+"/login", h.loginForm)
	h.mux.HandleFunc("POST "+p+"/login", h.login)
	h.mux.HandleFunc("POST "+p+"/logout", h.logout)
	h.mux.HandleFunc("GET "+p+"/assets/", h.assets)
	return h, nil
}

func parseTemplates() (*template.Template, error) {
	funcs := template.FuncMap{
		"states": States,
		"ago":    ago,
		"clip":   clip,
		"ts": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.Local().Format("2006-01-02 15:04:05")
		},
		"rfc3339": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"raw":     func(b []byte) string { return string(b) },
	}
	t, err := template.New("").Funcs(funcs).ParseFS(files, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("web: templates: %w", err)
	}
	return t, nil
}

func ago(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("Referrer-Policy", "same-origin")
	hdr.Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'")
	h.mux.ServeHTTP(w, r)
}

// auth lets a request through when the page is public or the request
// carries a token (session cookie or bearer header) the verifier accepts.
// Otherwise a page is redirected to the login form and the live fragment
// gets 401 (its script then reloads the page, which redirects).
func (h *handler) auth(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if h.cfg.Public || h.authorized(r) {
			next(w, r)
			return
		}
		if r.URL.Query().Get("part") != "" {
			http.Error(w, "login required", http.StatusUnauthorized)
			return
		}
		http.Redirect(w, r, h.cfg.Prefix+"/login", http.StatusSeeOther)
	}
}

func (h *handler) authorized(r *http.Request) bool {
	token := ""
	if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		token = strings.TrimSpace(v)
	} else if c, err := r.Cookie(SessionCookie); err == nil {
		token = c.Value
	}
	if token == "" {
		return false
	}
	_, ok := h.cfg.Verify(r.Context(), token)
	return ok
}

type loginPage struct {
	Failed bool
}

func (h *handler) loginForm(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Public {
		http.Redirect(w, r, h.cfg.Prefix+"/", http.StatusSeeOther)
		return
	}
	h.render(w, r, http.StatusOK, "login.html", loginPage{})
}

func (h *handler) login(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Public {
		http.Redirect(w, r, h.cfg.Prefix+"/", http.StatusSeeOther)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	token := strings.TrimSpace(r.PostFormValue("token"))
	if token == "" {
		h.render(w, r, http.StatusUnauthorized, "login.html", loginPage{Failed: true})
		return
	}
	if _, ok := h.cfg.Verify(r.Context(), token); !ok {
		h.log.WarnContext(r.Context(), "status page: login refused", "remote", r.RemoteAddr)
		h.render(w, r, http.StatusUnauthorized, "login.html", loginPage{Failed: true})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: token, Path: h.cfg.Prefix + "/",
		MaxAge: int(h.cfg.SessionTTL.Seconds()), HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: h.cfg.SecureCookie || r.TLS != nil})
	http.Redirect(w, r, h.cfg.Prefix+"/", http.StatusSeeOther)
}

func (h *handler) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: h.cfg.Prefix + "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: h.cfg.SecureCookie || r.TLS != nil})
	http.Redirect(w, r, h.cfg.Prefix+"/login", http.StatusSeeOther)
}

func (h *handler) assets(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=300")
	h.asset.ServeHTTP(w, r)
}

// fleetPage is the main page's data.
type fleetPage struct {
	Fleet
	Windows   []Window
	RefreshMS int64
	Public    bool
}

// Page renders the fleet page (or, with fragment, only its live part) into
// buf: the benchmark and the handler share it.
func (h *handler) page(ctx context.Context, buf *bytes.Buffer, fragment bool) error {
	f, err := h.cfg.Source.Fleet(ctx)
	if err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	wins, err := h.cfg.Source.Windows(ctx)
	if err != nil {
		return fmt.Errorf("windows: %w", err)
	}
	p := fleetPage{Fleet: f, Windows: wins, RefreshMS: h.cfg.Refresh.Milliseconds(), Public: h.cfg.Public}
	name := "fleet.html"
	if fragment {
		name = "live"
	}
	return h.tmpl.ExecuteTemplate(buf, name, p)
}

func (h *handler) fleet(w http.ResponseWriter, r *http.Request) {
	var buf bytes.Buffer
	fragment := r.URL.Query().Get("part") == "live"
	if err := h.page(r.Context(), &buf, fragment); err != nil {
		h.fail(w, r, err)
		return
	}
	if fragment {
		// The poll revalidates with the ETag: an unchanged fleet costs a 304.
		sum := fnv.New64a()
		sum.Write(buf.Bytes())
		etag := fmt.Sprintf(`"%x"`, sum.Sum64())
		w.Header().Set("ETag", etag)
		w.Header().Set("Cache-Control", "no-cache")
		if match := r.Header.Get("If-None-Match"); match == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	} else {
		w.Header().Set("Cache-Control", "no-store")
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
}

// nodePage is a node page's data.
type nodePage struct {
	NodeDetail
	Audit      []AuditEntry
	AuditLimit int
	Public     bool
}

func (h *handler) node(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	d, err := h.cfg.Source.Node(r.Context(), name)
	if errors.Is(err, ErrNoSuchNode) {
		http.Error(w, "no node "+name+" in the inventory or the job store", http.StatusNotFound)
		return
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	const auditLimit = 50
	audit, err := h.cfg.Source.Audit(r.Context(), name, auditLimit)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	h.render(w, r, http.StatusOK, "node.html", nodePage{NodeDetail: d, Audit: audit, AuditLimit: auditLimit, Public: h.cfg.Public})
}

func (h *handler) render(w http.ResponseWriter, r *http.Request, code int, name string, data any) {
	var buf bytes.Buffer
	if err := h.tmpl.ExecuteTemplate(&buf, name, data); err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return // the client went away
	}
	h.log.ErrorContext(r.Context(), "status page", "path", r.URL.Path, "err", err)
	http.Error(w, "the status page could not read the fleet: "+err.Error(), http.StatusInternalServerError)
}
