// Package landing is reprov's landing endpoint (docs/netboot.md): the HTTP
// service the netboot chain talks to. iPXE requests
//
//	GET /boot/ipxe?mac=${net0/mac}
//
// and the endpoint looks the MAC up in the job store (MAC → node → job). A
// node whose reinstall job waits for its landing — the engine armed it
// right before the act that makes the node boot (store.ArmLanding) — is
// marked landed (source ipxe) and gets the iPXE script of its install
// profile: kernel, initrds and command line over HTTP, with the job's
// callback URL and token on the command line. Every other MAC, including a
// node whose job has not kicked it yet, gets a script that boots the local
// disk, so a PXE-first boot order is safe and a node never reinstalls in a
// loop. Within landing.retry_window of its landing, a node whose job ended
// landed and whose installer has not called back gets its script again.
//
// An installer may prove itself with
//
//	POST /landed/{node}   (token in "Authorization: Bearer …" or a "token" form field)
//
// which marks the job landed (source callback).
//
// Threat model (docs/netboot.md): the endpoint only ever marks a job landed
// and hands out the install script of a node whose job is waiting for it; a
// spoofed GET can never start a reinstall or a wipe, nor count before the
// engine made the node boot. Sources can be limited to networks (Allow) and
// to each node's provisioning address (MatchSource), and are rate-limited
// per address. The callback needs the job's token, derived by the store
// (never stored, never logged). Store errors are logged, never shown to
// clients.
//
// The endpoint keeps no state of its own: everything is in the store, so
// any number of reprov processes sharing a store can share one endpoint;
// a Keeper hands the listen address from one to the next.
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

	"golang.org/x/time/rate"

	"github.com/reprov/reprov/agent/metrics"
	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/playbooks"
)

// Jobs is the part of the job store the endpoint uses (*store.Store).
type Jobs interface {
	LandingJobByMAC(ctx context.Context, mac string, retryWindow time.Duration) (store.NodeJob, error)
	NodeJobs(ctx context.Context, f store.JobFilter) ([]store.NodeJob, error)
	Land(ctx context.Context, jobID int64, source store.LandingSource, evidence json.RawMessage, retryWindow time.Duration) (store.LandResult, error)
	JobByCallbackToken(ctx context.Context, token string) (store.NodeJob, error)
}

// Observer is told the answer of every request the endpoint answers but
// /healthz (one of the metrics.Answer constants); the Prometheus metrics
// implement it (agent/metrics.Observer). It must be safe for concurrent
// use.
type Observer interface {
	LandingRequest(answer string)
}

// Defaults of Config.
const (
	// DefaultRetryWindow is how long after its landing a node whose job
	// ended landed still gets its install script (landing.retry_window).
	DefaultRetryWindow = 15 * time.Minute
	// DefaultRate and DefaultBurst limit the requests of one source address.
	DefaultRate  = rate.Limit(5)
	DefaultBurst = 20
)

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
	// NodeAddr returns a node's provisioning address, for MatchSource
	// (nil: none known).
	NodeAddr func(node string) (netip.Addr, bool)
	// MatchSource requires a landing's source address to be its node's
	// provisioning address (landing.match_source); a node without one
	// cannot land.
	MatchSource bool
	// Allow lists the source networks allowed to talk to the endpoint;
	// empty allows every source.
	Allow []netip.Prefix
	// RetryWindow: how long after a node's first landing its job, ended
	// landed, still answers the node with its install script and accepts
	// its installer's callback (0: DefaultRetryWindow; negative: never).
	RetryWindow time.Duration
	// Rate and Burst limit the requests per source address (0: DefaultRate,
	// DefaultBurst). Loopback sources are not limited.
	Rate  rate.Limit
	Burst int
	// Log receives a record per request that changed something and per
	// refusal; nil discards. Tokens are never logged.
	Log *slog.Logger
	// RequestTimeout bounds the store work of one request (default 10 s).
	RequestTimeout time.Duration
	// Observer, when set, is told every answer (reprov serve's metrics).
	Observer Observer
}

// Server is the landing endpoint. It is an http.Handler.
type Server struct {
	cfg     Config
	base    *url.URL
	log     *slog.Logger
	mux     *http.ServeMux
	limiter *limiter
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
	switch {
	case cfg.RetryWindow == 0:
		cfg.RetryWindow = DefaultRetryWindow
	case cfg.RetryWindow < 0:
		cfg.RetryWindow = 0
	}
	if cfg.Rate <= 0 {
		cfg.Rate = DefaultRate
	}
	if cfg.Burst <= 0 {
		cfg.Burst = DefaultBurst
	}
	s := &Server{cfg: cfg, base: base, log: cfg.Log, mux: http.NewServeMux(), limiter: newLimiter(cfg.Rate, cfg.Burst)}
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

// ListenIsLoopback reports whether landing.listen (host:port) binds only
// loopback addresses: an IP in 127.0.0.0/8 or ::1, or "localhost". An
// empty host, 0.0.0.0 or :: bind every interface.
func ListenIsLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// answered tells the observer, if any, how a request was answered.
func (s *Server) answered(answer string) {
	if s.cfg.Observer != nil {
		s.cfg.Observer.LandingRequest(answer)
	}
}

// unavailable is the answer when the store cannot answer: the detail goes
// to the log only; the netboot client retries (docs/netboot.md).
func (s *Server) unavailable(w http.ResponseWriter) {
	s.answered(metrics.AnswerError)
	w.Header().Set("Retry-After", "5")
	http.Error(w, "reprov landing endpoint: cannot answer now; retry", http.StatusServiceUnavailable)
}

// ServeHTTP implements http.Handler: the source checks, then the routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	src, ok := sourceAddr(r)
	if !ok || !s.allowed(src) {
		s.log.Warn("landing: request from a source outside landing.allow refused", "remote", r.RemoteAddr, "path", truncate(r.URL.Path, 80))
		s.answered(metrics.AnswerForbidden)
		http.Error(w, "source not allowed", http.StatusForbidden)
		return
	}
	if !src.IsLoopback() && !s.limiter.allow(src, time.Now()) {
		s.log.Debug("landing: source over its request rate", "remote", r.RemoteAddr)
		s.answered(metrics.AnswerRateLimited)
		w.Header().Set("Retry-After", "1")
		http.Error(w, "too many requests", http.StatusTooManyRequests)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// sourceAddr is the request's source IP.
func sourceAddr(r *http.Request) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}

// allowed reports whether the source address is in Allow.
func (s *Server) allowed(a netip.Addr) bool {
	if len(s.cfg.Allow) == 0 {
		return true
	}
	for _, p := range s.cfg.Allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// sourceMatches reports whether, under MatchSource, the request comes from
// the node's provisioning address (always true without MatchSource).
func (s *Server) sourceMatches(node string, r *http.Request) bool {
	if !s.cfg.MatchSource {
		return true
	}
	src, ok := sourceAddr(r)
	if !ok || s.cfg.NodeAddr == nil {
		return false
	}
	want, ok := s.cfg.NodeAddr(node)
	return ok && want.Unmap() == src
}

// bootIPXE answers GET /boot/ipxe?mac=….
func (s *Server) bootIPXE(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	defer cancel()
	raw := r.URL.Query().Get("mac")
	mac, err := store.NormalizeMAC(raw)
	if err != nil {
		s.answered(metrics.AnswerError)
		http.Error(w, fmt.Sprintf("bad or missing mac parameter %q", truncate(raw, 40)), http.StatusBadRequest)
		return
	}
	job, err := s.cfg.Jobs.LandingJobByMAC(ctx, mac, s.cfg.RetryWindow)
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.noJob(ctx, w, r, mac)
		return
	case err != nil:
		// A store that cannot answer, or a MAC on several nodes: the
		// netboot client retries (docs/netboot.md); never guess.
		s.log.Error("landing: MAC look-up failed", "mac", mac, "remote", r.RemoteAddr, "err", err)
		s.unavailable(w)
		return
	}
	if !s.sourceMatches(job.Node, r) {
		s.log.Warn("landing: request from a source that is not the node's provisioning address refused (landing.match_source)",
			"node", job.Node, "mac", mac, "remote", r.RemoteAddr)
		s.answered(metrics.AnswerForbidden)
		http.Error(w, "source is not this node's provisioning address", http.StatusForbidden)
		return
	}
	ev, _ := json.Marshal(map[string]string{"mac": mac, "remote": r.RemoteAddr, "user_agent": truncate(r.UserAgent(), 120)})
	res, err := s.cfg.Jobs.Land(ctx, job.ID, store.LandingIPXE, ev, s.cfg.RetryWindow)
	switch {
	case errors.Is(err, store.ErrNotArmed):
		// The engine has not made the node boot yet: whoever asks is not
		// the landing it waits for (a forged request, or the node booting
		// on its own during precheck). Answer as for any node.
		s.log.Warn("landing: landing before the kick refused: the job has not made the node boot yet; answering boot local disk",
			"node", job.Node, "job", job.ID, "mac", mac, "remote", r.RemoteAddr)
		s.answered(metrics.AnswerLocal)
		writeScript(w, LocalBootScript(mac))
		return
	case errors.Is(err, store.ErrNotActive), errors.Is(err, store.ErrNotFound):
		s.noJob(ctx, w, r, mac)
		return
	case err != nil:
		s.log.Error("landing: mark landed", "node", job.Node, "job", job.ID, "err", err)
		s.unavailable(w)
		return
	}
	switch {
	case res.AfterEnd:
		s.log.Info("landing: node asked again after its job ended landed (landing.retry_window): install script again",
			"node", job.Node, "job", job.ID, "mac", mac, "remote", r.RemoteAddr)
	case res.First:
		s.log.Info("landing: node landed", "node", job.Node, "job", job.ID, "run", job.RunID, "mac", mac, "remote", r.RemoteAddr)
	}
	profile, err := s.cfg.Profile(job.Node)
	if err != nil {
		s.log.Error("landing: install profile", "node", job.Node, "err", err)
		s.answered(metrics.AnswerError)
		http.Error(w, "no install profile for this node", http.StatusInternalServerError)
		return
	}
	s.answered(metrics.AnswerNetboot)
	writeScript(w, InstallScript(res.Job, profile, s.CallbackURL(job.Node), res.Token))
}

// noJob answers a MAC without a job waiting for it: hold the node in its
// network boot when its reinstall is interrupted, else boot the local disk.
func (s *Server) noJob(ctx context.Context, w http.ResponseWriter, r *http.Request, mac string) {
	if node, until, held := s.held(ctx, mac); held {
		s.log.Info("landing: the node's reinstall is interrupted: holding it in its network boot until it is resumed",
			"node", node, "mac", mac, "until", until)
		s.answered(metrics.AnswerHold)
		w.Header().Set("Retry-After", "15")
		http.Error(w, fmt.Sprintf("reprov: the reinstall of %s is interrupted; holding the network boot until it is resumed (reprov reinstall --resume %s) or %s",
			node, node, until.Format(time.RFC3339)), http.StatusServiceUnavailable)
		return
	}
	s.log.Debug("landing: no job waiting: boot local disk", "mac", mac, "remote", r.RemoteAddr)
	s.answered(metrics.AnswerLocal)
	writeScript(w, LocalBootScript(mac))
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

// maxTokenLen bounds the token the callback accepts (store tokens are
// about 60 characters).
const maxTokenLen = 256

// landed answers POST /landed/{node}.
func (s *Server) landed(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	defer cancel()
	node := r.PathValue("node")
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	token := ""
	if h := r.Header.Get("Authorization"); h != "" {
		if t, ok := strings.CutPrefix(h, "Bearer "); ok {
			token = strings.TrimSpace(t)
		}
	}
	if token == "" {
		if err := r.ParseForm(); err == nil {
			token = r.PostForm.Get("token")
		}
	}
	if token == "" {
		s.answered(metrics.AnswerCallbackRefused)
		http.Error(w, "missing token", http.StatusUnauthorized)
		return
	}
	refused := func(why string) {
		s.log.Warn("landing: callback refused: "+why, "node", truncate(node, 80), "remote", r.RemoteAddr)
		s.answered(metrics.AnswerCallbackRefused)
		http.Error(w, "unknown token, or the job no longer waits for a landing", http.StatusForbidden)
	}
	if len(token) > maxTokenLen {
		refused("token too long")
		return
	}
	job, err := s.cfg.Jobs.JobByCallbackToken(ctx, token)
	switch {
	case errors.Is(err, store.ErrNotFound):
		refused("unknown token")
		return
	case err != nil:
		s.log.Error("landing: callback token look-up", "node", truncate(node, 80), "remote", r.RemoteAddr, "err", err)
		s.unavailable(w)
		return
	}
	if job.Node != node {
		s.log.Warn("landing: callback token of another node refused", "path_node", truncate(node, 80), "token_node", job.Node, "remote", r.RemoteAddr)
		s.answered(metrics.AnswerCallbackRefused)
		http.Error(w, "the token is not this node's", http.StatusForbidden)
		return
	}
	if !s.sourceMatches(job.Node, r) {
		refused("source is not the node's provisioning address (landing.match_source)")
		return
	}
	ev, _ := json.Marshal(map[string]string{"remote": r.RemoteAddr, "user_agent": truncate(r.UserAgent(), 120)})
	res, err := s.cfg.Jobs.Land(ctx, job.ID, store.LandingCallback, ev, s.cfg.RetryWindow)
	switch {
	case errors.Is(err, store.ErrNotActive), errors.Is(err, store.ErrNotArmed), errors.Is(err, store.ErrNotFound):
		refused(fmt.Sprintf("job %d is %s and its retry window is over", job.ID, job.State))
		return
	case err != nil:
		s.log.Error("landing: mark landed (callback)", "node", node, "job", job.ID, "err", err)
		s.unavailable(w)
		return
	}
	if res.First {
		s.log.Info("landing: installer called back", "node", node, "job", job.ID, "after_end", res.AfterEnd, "remote", r.RemoteAddr)
	}
	s.answered(metrics.AnswerCallbackOK)
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
