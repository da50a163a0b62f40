package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/reprov/reprov/agent"
	"github.com/reprov/reprov/agent/api"
	"github.com/reprov/reprov/agent/metrics"
	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/agent/web"
	"github.com/reprov/reprov/inventory"
)

// serveOptions are the options of `reprov serve`.
type serveOptions struct {
	// InsecureHTTP lets the API listen on a non-loopback address without
	// TLS.
	InsecureHTTP bool

	// mount adds handlers to the API's mux (the status page, /metrics).
	mount func(*http.ServeMux)
	// ready, when set, gets the API's address once it listens (tests).
	ready func(apiAddr string)
	// tweak adjusts the engine configuration (tests).
	tweak func(*agent.Config)
}

func newServeCmd(a *app) *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the standing controller: landing endpoint, API, and a worker on the shared queues",
		Long: `Run reprov as a standing controller, in one process:

  - the landing endpoint on landing.listen (always up: nodes may netboot at any time);
  - the API on server.listen (docs/api.md; bearer tokens from reprov token create);
  - a worker on the shared queues of every site of the inventory (and the default
    queue): it works the node jobs of every run, whoever submitted it.

SIGTERM or SIGINT: no new run is accepted, nodes in flight stop at their next step
boundary (never inside the in-band wipe unit) and are handed back to the shared
queue for another controller; exit 0. docs/deploy.md shows the systemd unit.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runServe(cmd.Context(), a, o) },
	}
	cmd.Flags().BoolVar(&o.InsecureHTTP, "insecure-http", false, "allow a non-loopback server.listen without TLS (tokens then cross the network in clear)")
	return cmd
}

// newLogger is the process's logger for log.format and log_level.
func newLogger(w io.Writer, cfg *Config) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// isLoopback reports whether a listen address binds only loopback.
func isLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func runServe(ctx context.Context, a *app, o serveOptions) error {
	a.log = newLogger(a.stderr, a.cfg)
	tls := a.cfg.Server.TLSCert != ""
	if !tls && !isLoopback(a.cfg.Server.Listen) {
		if !o.InsecureHTTP {
			return usagef("server.listen %s is not a loopback address and the API has no TLS: set server.tls_cert and server.tls_key, or pass --insecure-http (tokens would cross the network in clear)", a.cfg.Server.Listen)
		}
		a.log.Warn("the API listens without TLS on a non-loopback address (--insecure-http): bearer tokens cross the network in clear", "listen", a.cfg.Server.Listen)
	}
	inv, err := a.loadInventory()
	if err != nil {
		return err
	}
	events := newStateLog(a.log)
	env, err := a.newEngineEnv(ctx, inv, true, func(c *agent.Config) {
		c.Events = events.event
		if o.tweak != nil {
			o.tweak(c)
		}
	})
	if err != nil {
		return err
	}
	defer env.close()
	events.st = env.st

	// The metrics exist before the landing endpoint, which reports to them.
	reg, obs, err := env.newMetrics(inv)
	if err != nil {
		return err
	}
	env.obs = obs

	// The landing endpoint (one call: the rebinding keeper replaces it).
	stopLanding, err := env.serveLanding(ctx)
	if err != nil {
		return err
	}
	defer stopLanding()

	ln, err := net.Listen("tcp", a.cfg.Server.Listen)
	if err != nil {
		return usagef("server.listen: %w", err)
	}
	mount, err := env.statusHandlers(inv, tls, reg)
	if err != nil {
		ln.Close()
		return err
	}
	if o.mount != nil {
		inner := mount
		mount = func(mux *http.ServeMux) { inner(mux); o.mount(mux) }
	}
	env.engine.SetObserver(obs)
	apiCfg := api.Config{
		Store: env.st, Engine: env.engine, Inventory: inv, Playbooks: env.pbs, Log: a.log, Mount: mount,
		CheckNodes: env.checkProfiles,
		Defaults:   store.RunLimits{MaxParallel: a.cfg.MaxParallel, PerRack: a.cfg.PerRack},
	}
	env.apiCommands(&apiCfg) // plan, restore, audit (client_cmds.go)
	srv, err := api.New(apiCfg)
	if err != nil {
		ln.Close()
		return err
	}

	// This process's worker, on every site's shared queue of its inventory.
	queues := []string{store.DefaultQueue}
	seen := map[string]bool{store.DefaultQueue: true}
	for _, n := range inv.Nodes {
		if q := store.QueueFor(n.Labels[agent.SiteLabel]); !seen[q] {
			seen[q] = true
			queues = append(queues, q)
		}
	}
	w, err := env.engine.StartWorker(ctx, agent.WorkerOptions{Queues: queues, MaxWorkers: a.cfg.MaxParallel})
	if err != nil {
		ln.Close()
		return failedError(err)
	}

	// Reimaging windows (docs/windows.md): every controller runs the
	// scheduler; the store gives each occurrence to one of them.
	stopWindows, err := env.startWindows(ctx, inv, obs, w.ID())
	if err != nil {
		ln.Close()
		return failedError(err)
	}
	defer stopWindows()

	hs := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelDebug),
	}
	httpDone := make(chan error, 1)
	go func() {
		var err error
		if tls {
			err = hs.ServeTLS(ln, a.cfg.Server.TLSCert, a.cfg.Server.TLSKey)
		} else {
			err = hs.Serve(ln)
		}
		httpDone <- err
	}()
	scheme := "http"
	if tls {
		scheme = "https"
	}
	a.log.Info("reprov serve started", "api", scheme+"://"+ln.Addr().String()+api.Prefix, "landing", a.cfg.Landing.URL,
		"controller", w.ID(), "queues", queues, "nodes", len(inv.Nodes), "store", env.st.String())
	if o.ready != nil {
		o.ready(ln.Addr().String())
	}

	// Runs whose watcher went away are marked finished once their jobs
	// have all ended.
	sweepCtx, stopSweep := context.WithCancel(context.WithoutCancel(ctx))
	var sweep sync.WaitGroup
	sweep.Add(1)
	go func() {
		defer sweep.Done()
		sweepRuns(sweepCtx, env.st, a.log)
	}()

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-httpDone:
		a.log.Error("the API stopped", "err", serveErr)
	}
	a.log.Info("stopping: no new run is accepted; nodes in flight are handed over at their next step boundary")
	srv.Drain()
	stopSweep()
	sweep.Wait()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*a.cfg.Store.Lease+30*time.Second)
	defer cancel()
	if err := w.Stop(sctx); err != nil {
		a.log.Error("stop the worker", "err", err)
	}
	hctx, hcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer hcancel()
	if err := hs.Shutdown(hctx); err != nil {
		// Event streams stay open until their clients go: close them.
		_ = hs.Close()
	}
	a.log.Info("reprov serve stopped", "controller", w.ID())
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return failedError(fmt.Errorf("API: %w", serveErr))
	}
	return nil
}

// serveLanding starts serve's landing endpoint. It is the one place serve
// starts it, so the rebinding keeper replaces it in one line.
func (env *engineEnv) serveLanding(ctx context.Context) (stop func(), err error) {
	return env.startLanding(ctx)
}

// sweepRunsEvery is how often serve looks for runs to mark finished.
const sweepRunsEvery = 30 * time.Second

func sweepRuns(ctx context.Context, st *store.Store, log *slog.Logger) {
	t := time.NewTicker(sweepRunsEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ids, err := st.FinishEndedRuns(ctx, time.Minute)
		if err != nil && ctx.Err() == nil {
			log.Warn("finishing ended runs", "err", err)
		}
		for _, id := range ids {
			log.Info("run finished", "run", id)
		}
	}
}

// stateLog logs every step transition of the engine, one line each, with
// node, job and run.
type stateLog struct {
	log *slog.Logger
	st  *store.Store
	mu  sync.Mutex
	run map[int64]int64 // job → run
}

func newStateLog(log *slog.Logger) *stateLog {
	return &stateLog{log: log, run: map[int64]int64{}}
}

func (l *stateLog) runOf(jobID int64) int64 {
	l.mu.Lock()
	id, ok := l.run[jobID]
	l.mu.Unlock()
	if ok || l.st == nil {
		return id
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	j, err := l.st.NodeJob(ctx, jobID)
	if err != nil {
		return 0
	}
	l.mu.Lock()
	if len(l.run) > 100_000 {
		clear(l.run)
	}
	l.run[jobID] = j.RunID
	l.mu.Unlock()
	return j.RunID
}

func (l *stateLog) event(e agent.Event) {
	attrs := []any{"node", e.Node, "job", e.JobID, "run", l.runOf(e.JobID), "step", e.Step, "phase", e.Phase}
	if e.Result != "" {
		attrs = append(attrs, "result", e.Result)
	}
	if e.Note != "" {
		attrs = append(attrs, "note", e.Note)
	}
	msg := "step"
	if e.Phase == "end" {
		msg = "job ended"
	}
	l.log.Info(msg, attrs...)
}

// newMetrics is serve's Prometheus registry and the observer the engine
// and the landing endpoint report to.
func (env *engineEnv) newMetrics(inv *inventory.Inventory) (*prometheus.Registry, *metrics.Observer, error) {
	return metrics.NewRegistry(metrics.Config{Store: env.st, Inventory: func() *inventory.Inventory { return inv },
		Reasons: agent.Reasons(), Log: env.a.log})
}

// statusHandlers are the status page ("/", "/nodes/NAME", "/login") and
// the Prometheus metrics of reg ("/metrics") that serve mounts next to the
// API.
func (env *engineEnv) statusHandlers(inv *inventory.Inventory, tls bool, reg prometheus.Gatherer) (func(*http.ServeMux), error) {
	a := env.a
	invFunc := func() *inventory.Inventory { return inv }
	page, err := web.New(web.Config{
		Source: &web.StoreSource{Store: env.st, Inventory: invFunc},
		Verify: func(ctx context.Context, token string) (string, bool) {
			t, err := env.st.VerifyToken(ctx, token)
			if err != nil {
				return "", false
			}
			return string(t.Role), true
		},
		Public:       a.cfg.Server.PublicPage,
		SecureCookie: tls,
		Log:          a.log,
	})
	if err != nil {
		return nil, err
	}
	token := ""
	if ref := a.cfg.Server.MetricsToken; ref != "" {
		if token, err = inventory.NewSecret(ref).Resolve(); err != nil {
			return nil, usagef("server.metrics_token: %w", err)
		}
	}
	mh := metrics.Handler(reg, token)
	return func(mux *http.ServeMux) {
		mux.Handle("/metrics", mh)
		mux.Handle("/", page)
	}, nil
}
