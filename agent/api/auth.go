package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/reprov/reprov/agent/store"
)

type tokenKey struct{}

// TokenOf returns the API token (its name and role, never the token) a
// request was authenticated with, for handlers mounted on the server.
func TokenOf(ctx context.Context) (store.Token, bool) {
	t, ok := ctx.Value(tokenKey{}).(store.Token)
	return t, ok
}

// statusWriter records the status a handler answered, for the log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush lets event streams through the wrapper.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// auth checks the bearer token: none, unknown or revoked is 401; a viewer
// may only read (GET, HEAD), anything else is 403. The request is logged
// with the token's name; the token itself never is.
func (s *Server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		name := ""
		defer func() {
			level := slog.LevelDebug
			if r.Method != http.MethodGet && r.Method != http.MethodHead || sw.status >= 400 {
				level = slog.LevelInfo
			}
			s.log.Log(r.Context(), level, "api request", "method", r.Method, "path", r.URL.Path, "status", sw.status,
				"token", name, "remote", r.RemoteAddr, "took", time.Since(start).Round(time.Millisecond))
		}()
		h := r.Header.Get("Authorization")
		raw, ok := strings.CutPrefix(h, "Bearer ")
		raw = strings.TrimSpace(raw)
		if !ok || raw == "" {
			sw.Header().Set("WWW-Authenticate", `Bearer realm="reprov"`)
			writeError(sw, http.StatusUnauthorized, "unauthenticated", "no bearer token: send Authorization: Bearer TOKEN (reprov token create)", "")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		tok, err := s.cfg.Store.VerifyToken(ctx, raw)
		cancel()
		switch {
		case errors.Is(err, store.ErrTokenRevoked):
			name = tok.Name
			sw.Header().Set("WWW-Authenticate", `Bearer realm="reprov", error="invalid_token"`)
			writeError(sw, http.StatusUnauthorized, "token_revoked", "the token "+tok.Name+" was revoked", "")
			return
		case errors.Is(err, store.ErrNotFound):
			sw.Header().Set("WWW-Authenticate", `Bearer realm="reprov", error="invalid_token"`)
			writeError(sw, http.StatusUnauthorized, "invalid_token", "unknown token", "")
			return
		case err != nil:
			s.log.Error("api: token check", "err", err)
			writeError(sw, http.StatusServiceUnavailable, "store_error", "cannot check the token now", "")
			return
		}
		name = tok.Name
		if r.Method != http.MethodGet && r.Method != http.MethodHead && tok.Role != store.RoleOperator {
			writeError(sw, http.StatusForbidden, "forbidden", "the token "+tok.Name+" is a "+string(tok.Role)+": "+r.Method+" needs an operator token", "")
			return
		}
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), tokenKey{}, tok)))
	})
}
