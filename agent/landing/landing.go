// Package landing is reprov's landing endpoint (DESIGN.md §4): the HTTP
// service the netboot chain talks to. iPXE requests
//
//	GET /boot/ipxe?mac=${net0/mac}
//
// and the endpoint looks the MAC up in the job store (MAC → node → active
// job). A node with an active reinstall job is marked landed (source ipxe)
// and gets the iPXE script of its install profile: kernel, initrds and
// command line over HTTP, with the job's callback URL and token on the
// command line. Every other MAC gets a script that boots the local disk, so
// a PXE-first boot order is safe and a node never reinstalls in a loop.
//
// An installer may prove itself with
//
//	POST /landed/{node}   (token in "Authorization: Bearer …" or a "token" form field)
//
// which marks the job landed (source callback).
//
// Threat model: the endpoint only ever marks a job landed and hands out
// the install script of a node that already has an active job; a spoofed
// GET can do no more than that — it can never start a reinstall or a wipe.
// It can be limited to source networks (Config.Allow); the callback needs
// the per-job token handed out in the script, stored only as a hash.
//
// The endpoint keeps no state of its own: everything is in the store, so
// any number of reinstall processes sharing a store can share one endpoint.
package landing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/playbooks"
)

// Jobs is the part of the job store the endpoint uses (*store.Store).
type Jobs interface {
	ActiveJobByMAC(ctx context.Context, mac string) (store.NodeJob, error)
	NodeJobs(ctx context.Context, f store.JobFilter) ([]store.NodeJob, error)
	MarkLanded(ctx context.Context, jobID int64, source store.LandingSource, evidence json.RawMessage) (bool, error)
	IssueCallbackToken(ctx context.Context, jobID int64) (string, error)
	JobByCallbackToken(ctx context.Context, token string) (store.NodeJob, error)
}

// Config configures a Server.
type Config struct {
	// Jobs is the job store.
	Jobs Jobs
	// Profile returns the install profile of a node: its playbook's, else
	// the endpoint's default. An empty profile makes the script say so and
	// return to the firmware.
	Profile func(node string) (playbooks.InstallProfile, error)
	// URL is the base URL nodes reach the endpoint at (landing.url); the
	// callback URL in the scripts is built from it.
	URL string
	// NodeByMAC names the inventory node of a MAC (nil: none known). It
	// lets the endpoint hold a node whose reinstall was interrupted after
	// the node was made to boot (see HoldUntilKey).
	NodeByMAC func(mac string) (string, bool)
	// Allow lists the source networks allowed to talk to the endpoint;
	// empty allows every source.
	Allow []netip.Prefix
	// Log receives a record per request that changed something and per
	// refusal; nil discards. Tokens are never logged.
	Log *slog.Logger
	// RequestTimeout bounds the store work of one request (default 10 s).
	RequestTimeout time.Duration
}

// Server is the landing endpoint. It is an http.Handler.
type Server struct {
	cfg  Config
	base *url.URL
	log  *slog.Logger
	mux  *http.ServeMux
}

// New returns the endpoint for cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Jobs == nil {
		return nil, errors.New("landing: no job store")
	}
	if cfg.Profile == nil {
		return nil, errors.New("landing: no install profile lookup")
	}
	base, err := ParseURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	s := &Server{cfg: cfg, base: base, log: cfg.Log, mux: http.NewServeMux()}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.mux.HandleFunc("GET /boot/ipxe", s.bootIPXE)
	s.mux.HandleFunc("POST /landed/{node}", s.landed)
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, HealthBody)
	})
	return s, nil
}

// HealthBody is what GET /healthz answers: a reprov landing endpoint is
// listening.
const HealthBody = "reprov landing endpoint"

// ParseURL checks a landing.url value: an absolute http or https URL.
func ParseURL(s string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimRight(s, "/"))
	if err != nil {
		return nil, fmt.Errorf("landing.url %q: %w", s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("landing.url %q: want an absolute http:// or https:// URL", s)
	}
	if u.User != nil {
		return nil, fmt.Errorf("landing.url: must not carry credentials")
	}
	return u, nil
}

// ParseAllow parses landing.allow: CIDR prefixes or single addresses.
func ParseAllow(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("landing.allow: %q is neither a CIDR prefix nor an address", s)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// ServeHTTP implements http.Handler: the source check, then the routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.allowed(r) {
		s.log.Warn("landing: request from a source outside landing.allow refused", "remote", r.RemoteAddr, "path", r.URL.Path)
		http.Error(w, "source not allowed", http.StatusForbidden)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// allowed reports whether the request's source address is in Allow.
func (s *Server) allowed(r *http.Request) bool {
	if len(s.cfg.Allow) == 0 {
		return true
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	a := ap.Addr().Unmap()
	for _, p := range s.cfg.Allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// bootIPXE answers GET /boot/ipxe?mac=….
func (s *Server) bootIPXE(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	defer cancel()
	raw := r.URL.Query().Get("mac")
	mac, err := store.NormalizeMAC(raw)
	if err != nil {
		http.Error(w, fmt.Sprintf("bad or missing mac parameter %q", truncate(raw, 40)), http.StatusBadRequest)
		return
	}
	job, err := s.cfg.Jobs.ActiveJobByMAC(ctx, mac)
	switch {
	case errors.Is(err, store.ErrNotFound):
		if node, until, held := s.held(ctx, mac); held {
			s.log.Info("landing: the node's reinstall is interrupted: holding it in its network boot until it is resumed",
				"node", node, "mac", mac, "until", until)
			w.Header().Set("Retry-After", "15")
			http.Error(w, fmt.Sprintf("reprov: the reinstall of %s is interrupted; holding the network boot until it is resumed (reprov reinstall --resume %s) or %s",
				node, node, until.Format(time.RFC3339)), http.StatusServiceUnavailable)
			return
		}
		s.log.Debug("landing: no active job: boot local disk", "mac", mac, "remote", r.RemoteAddr)
		writeScript(w, LocalBootScript(mac))
		return
	case err != nil:
		// A store that cannot answer, or a MAC on several nodes: the
		// netboot client retries (docs/netboot.md); never guess.
		s.log.Error("landing: MAC look-up failed", "mac", mac, "err", err)
		http.Error(w, "cannot look up the MAC now: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	ev, _ := json.Marshal(map[string]string{"mac": mac, "remote": r.RemoteAddr, "user_agent": truncate(r.UserAgent(), 120)})
	first, err := s.cfg.Jobs.MarkLanded(ctx, job.ID, store.LandingIPXE, ev)
	if err != nil {
		s.log.Error("landing: mark landed", "node", job.Node, "job", job.ID, "err", err)
		http.Error(w, "cannot record the landing now", http.StatusServiceUnavailable)
		return
	}
	if first {
		s.log.Info("landing: node landed", "node", job.Node, "job", job.ID, "run", job.RunID, "mac", mac, "remote", r.RemoteAddr)
	}
	profile, err := s.cfg.Profile(job.Node)
	if err != nil {
		s.log.Error("landing: install profile", "node", job.Node, "err", err)
		http.Error(w, "no install profile for this node", http.StatusInternalServerError)
		return
	}
	token, err := s.cfg.Jobs.IssueCallbackToken(ctx, job.ID)
	if err != nil {
		s.log.Error("landing: callback token", "node", job.Node, "job", job.ID, "err", err)
		http.Error(w, "cannot issue a callback token now", http.StatusServiceUnavailable)
		return
	}
	writeScript(w, InstallScript(job, profile, s.CallbackURL(job.Node), token))
}

// HoldUntilKey is the key, in the evidence of an interrupted job, of the
// time until which its node — already made to boot from the network — is
// held in its network boot: the endpoint answers 503 (netboot clients
// retry) instead of "boot the local disk", so that the resumed job sees it
// land instead of finding it back in its old OS (or, after an in-band
// wipe, with nothing to boot).
const HoldUntilKey = "hold_netboot_until"

// held reports whether mac's node's latest job is interrupted and holds
// the node in its network boot.
func (s *Server) held(ctx context.Context, mac string) (string, time.Time, bool) {
	if s.cfg.NodeByMAC == nil {
		return "", time.Time{}, false
	}
	node, ok := s.cfg.NodeByMAC(mac)
	if !ok {
		return "", time.Time{}, false
	}
	jobs, err := s.cfg.Jobs.NodeJobs(ctx, store.JobFilter{Node: node, Limit: 1})
	if err != nil || len(jobs) == 0 || jobs[0].State != store.JobInterrupted {
		return "", time.Time{}, false
	}
	var ev map[string]any
	_ = json.Unmarshal(jobs[0].Evidence, &ev)
	v, _ := ev[HoldUntilKey].(string)
	until, err := time.Parse(time.RFC3339Nano, v)
	if err != nil || !time.Now().Before(until) {
		return "", time.Time{}, false
	}
	return node, until, true
}

// CallbackURL is the URL an installer posts to when it has landed.
func (s *Server) CallbackURL(node string) string {
	return s.base.String() + "/landed/" + url.PathEscape(node)
}

// landed answers POST /landed/{node}.
func (s *Server) landed(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	defer cancel()
	node := r.PathValue("node")
	token := ""
	if h := r.Header.Get("Authorization"); h != "" {
		if t, ok := strings.CutPrefix(h, "Bearer "); ok {
			token = strings.TrimSpace(t)
		}
	}
	if token == "" {
		r.Body = http.MaxBytesReader(w, r.Body, 4096)
		if err := r.ParseForm(); err == nil {
			token = r.PostForm.Get("token")
		}
	}
	if token == "" {
		http.Error(w, "missing token", http.StatusUnauthorized)
		return
	}
	job, err := s.cfg.Jobs.JobByCallbackToken(ctx, token)
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.log.Warn("landing: callback with an unknown token, or for a job no longer active", "node", node, "remote", r.RemoteAddr)
		http.Error(w, "unknown token, or the job is no longer active", http.StatusForbidden)
		return
	case err != nil:
		s.log.Error("landing: callback token look-up", "node", node, "err", err)
		http.Error(w, "cannot check the token now", http.StatusServiceUnavailable)
		return
	}
	if job.Node != node {
		s.log.Warn("landing: callback token of another node", "path_node", node, "token_node", job.Node, "remote", r.RemoteAddr)
		http.Error(w, "the token is not this node's", http.StatusForbidden)
		return
	}
	ev, _ := json.Marshal(map[string]string{"remote": r.RemoteAddr, "user_agent": truncate(r.UserAgent(), 120)})
	first, err := s.cfg.Jobs.MarkLanded(ctx, job.ID, store.LandingCallback, ev)
	if err != nil {
		s.log.Error("landing: mark landed (callback)", "node", node, "job", job.ID, "err", err)
		http.Error(w, "cannot record the landing now", http.StatusServiceUnavailable)
		return
	}
	if first {
		s.log.Info("landing: installer called back", "node", node, "job", job.ID, "remote", r.RemoteAddr)
	}
	w.WriteHeader(http.StatusNoContent)
}

func writeScript(w http.ResponseWriter, script string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprint(w, script)
}

// LocalBootScript is the answer for a MAC without an active job: boot the
// first local disk (legacy BIOS), and where that is not possible (UEFI,
// no disk) return to the firmware, which goes on with its boot order.
func LocalBootScript(mac string) string {
	return "#!ipxe\n" +
		"echo reprov: no reinstall pending for " + oneLine(mac) + ": booting the local disk\n" +
		"sanboot --no-describe --drive 0x80 || exit\n" +
		"exit\n"
}

// InstallScript is the iPXE script of a node with an active job: its
// install profile, with the callback URL and token appended to the kernel
// command line (reprov.node, reprov.callback, reprov.token). Fetches that
// fail are retried. An empty profile gets a script that says so and
// returns to the firmware.
func InstallScript(job store.NodeJob, p playbooks.InstallProfile, callbackURL, token string) string {
	var b strings.Builder
	b.WriteString("#!ipxe\n")
	fmt.Fprintf(&b, "echo reprov: %s landed (job %d of run %d)\n", oneLine(job.Node), job.ID, job.RunID)
	if p.Kernel == "" {
		fmt.Fprintf(&b, "echo reprov: no install profile for %s (set the playbook's install or landing.kernel)\n", oneLine(job.Node))
		b.WriteString("sleep 10\nexit\n")
		return b.String()
	}
	args := strings.TrimSpace(oneLine(p.Cmdline) + " reprov.node=" + oneLine(job.Node) +
		" reprov.callback=" + oneLine(callbackURL) + " reprov.token=" + oneLine(token))
	b.WriteString("set reprov_tries:int32 0\n")
	b.WriteString(":retry\n")
	b.WriteString("imgfree\n")
	fmt.Fprintf(&b, "kernel %s %s || goto failed\n", oneLine(p.Kernel), args)
	for _, rd := range p.Initrds {
		fmt.Fprintf(&b, "initrd %s || goto failed\n", oneLine(rd))
	}
	b.WriteString("boot || goto failed\n")
	b.WriteString(":failed\n")
	b.WriteString("inc reprov_tries\n")
	b.WriteString("echo reprov: fetching the install image failed (try ${reprov_tries}); retrying in 5 s\n")
	b.WriteString("sleep 5\n")
	b.WriteString("goto retry\n")
	return b.String()
}

// oneLine keeps a value on one script line.
func oneLine(s string) string {
	return strings.NewReplacer("\n", " ", "\r", " ").Replace(s)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Serve serves the endpoint on l until ctx is done, then shuts down
// (in-flight requests get 5 s).
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()
	err := hs.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		<-done
		return nil
	}
	return err
}

// Probe reports whether a reprov landing endpoint answers at baseURL
// (GET /healthz), e.g. one served by another reprov on the same store.
func Probe(ctx context.Context, baseURL string) error {
	u, err := ParseURL(baseURL)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String()+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var buf [64]byte
	n, _ := resp.Body.Read(buf[:])
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(buf[:n]), HealthBody) {
		return fmt.Errorf("%s/healthz answered %s, not as a reprov landing endpoint", u, resp.Status)
	}
	return nil
}
