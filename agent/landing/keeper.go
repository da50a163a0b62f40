package landing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"
)

// Sessions is the part of the job store a Keeper records its endpoint
// sessions in (*store.Store), for store.EndpointCoverage.
type Sessions interface {
	EndpointBound(ctx context.Context, controller, listen string) (int64, error)
	EndpointHeartbeat(ctx context.Context, id int64) error
	EndpointReleased(ctx context.Context, id int64) error
}

// Defaults of KeeperConfig.
const (
	DefaultBindRetry = 500 * time.Millisecond
	DefaultHeartbeat = time.Second
)

// KeeperConfig configures a Keeper.
type KeeperConfig struct {
	// Server is the endpoint to serve.
	Server *Server
	// Listen is landing.listen.
	Listen string
	// Controller names this process in the endpoint sessions (e.g.
	// host/pid).
	Controller string
	// Sessions records the sessions (nil: not recorded).
	Sessions Sessions
	// BindRetry is how often a keeper whose address is in use tries again
	// (default 500 ms); Heartbeat how often a bound keeper says so in the
	// store (default 1 s).
	BindRetry time.Duration
	Heartbeat time.Duration
	// Log receives the keeper's records (nil discards).
	Log *slog.Logger
}

// Keeper keeps a landing endpoint on landing.listen for as long as some
// reprov process sharing the store runs the engine ("rebind and retry",
// docs/netboot.md): every such process runs one; the first binds the
// address, the others retry every BindRetry and one of them takes the
// address over within about a second after the holder lets it go (exits,
// is killed). While bound, it writes a heartbeat to the store every
// Heartbeat, so store.EndpointCoverage can tell whether an endpoint was
// there while a job waited for its landing.
type Keeper struct {
	cfg    KeeperConfig
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}

	mu    sync.Mutex
	bound net.Addr
}

// Keep starts keeping cfg.Server on cfg.Listen until ctx ends or Stop. It
// fails at once when the address cannot be bound for another reason than
// being in use (a bad address, no permission): that is a configuration
// error. An address in use is another endpoint's (another reprov on the
// same store, or a standing one): Keep waits for it in the background.
func Keep(ctx context.Context, cfg KeeperConfig) (*Keeper, error) {
	if cfg.Server == nil {
		return nil, errors.New("landing keeper: no server")
	}
	if cfg.BindRetry <= 0 {
		cfg.BindRetry = DefaultBindRetry
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil && !errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("landing.listen %s: %w", cfg.Listen, err)
	}
	kctx, cancel := context.WithCancel(ctx)
	k := &Keeper{cfg: cfg, log: log, cancel: cancel, done: make(chan struct{})}
	go k.run(kctx, ln)
	return k, nil
}

// Stop lets the address go (in-flight requests get up to 5 s) and records
// the session's end. Another process's keeper then takes the address.
func (k *Keeper) Stop() {
	k.cancel()
	<-k.done
}

// Addr is the address the keeper is bound to, nil while it waits.
func (k *Keeper) Addr() net.Addr {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.bound
}

func (k *Keeper) setBound(a net.Addr) {
	k.mu.Lock()
	k.bound = a
	k.mu.Unlock()
}

// run binds (or waits to bind) and serves until ctx ends.
func (k *Keeper) run(ctx context.Context, ln net.Listener) {
	defer close(k.done)
	waiting := false
	for {
		if ln == nil {
			var err error
			ln, err = net.Listen("tcp", k.cfg.Listen)
			if err != nil {
				if !waiting {
					waiting = true
					k.logInUse(ctx, err)
				} else {
					k.log.Debug("landing.listen still in use: retrying", "listen", k.cfg.Listen, "every", k.cfg.BindRetry)
				}
				if !k.sleep(ctx) {
					return
				}
				continue
			}
			if waiting {
				k.log.Info("landing endpoint: took over landing.listen", "listen", ln.Addr().String())
			}
		}
		waiting = false
		k.serve(ctx, ln)
		ln = nil
		if !k.sleep(ctx) {
			return
		}
	}
}

// sleep waits BindRetry; false when ctx ended first.
func (k *Keeper) sleep(ctx context.Context) bool {
	t := time.NewTimer(k.cfg.BindRetry)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// logInUse says once that the address is taken and by what.
func (k *Keeper) logInUse(ctx context.Context, err error) {
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if perr := Probe(pctx, k.cfg.Server.base.String()); perr != nil {
		k.log.Warn("landing.listen is in use and landing.url does not answer as a reprov landing endpoint: landings will not be seen until it is freed; retrying",
			"listen", k.cfg.Listen, "url", k.cfg.Server.base.String(), "err", err, "probe", perr)
		return
	}
	k.log.Info("landing.listen is in use by another reprov landing endpoint: using it, and taking it over when it is freed",
		"listen", k.cfg.Listen, "url", k.cfg.Server.base.String())
}

// serve serves on ln, with the session heartbeat, until ctx ends or the
// server fails.
func (k *Keeper) serve(ctx context.Context, ln net.Listener) {
	k.setBound(ln.Addr())
	defer k.setBound(nil)
	k.log.Debug("landing endpoint listening", "listen", ln.Addr().String())
	sctx, cancel := context.WithCancel(ctx)
	hb := make(chan struct{})
	go func() { defer close(hb); k.heartbeat(sctx, ln.Addr().String()) }()
	err := k.cfg.Server.Serve(sctx, ln)
	cancel()
	<-hb
	if err != nil {
		k.log.Error("landing endpoint stopped; binding again", "listen", k.cfg.Listen, "err", err)
	}
}

// heartbeat records the session while ctx lasts, then its end.
func (k *Keeper) heartbeat(ctx context.Context, listen string) {
	if k.cfg.Sessions == nil {
		return
	}
	var (
		id     int64
		failed bool
	)
	beat := func() {
		bctx, cancel := context.WithTimeout(ctx, k.cfg.Heartbeat*5)
		defer cancel()
		var err error
		if id == 0 {
			id, err = k.cfg.Sessions.EndpointBound(bctx, k.cfg.Controller, listen)
		} else {
			err = k.cfg.Sessions.EndpointHeartbeat(bctx, id)
		}
		switch {
		case err != nil && ctx.Err() == nil && !failed:
			failed = true
			k.log.Warn("landing endpoint: cannot record its heartbeat in the store; retrying", "err", err)
		case err == nil && failed:
			failed = false
			k.log.Info("landing endpoint: heartbeat recorded again")
		}
	}
	beat()
	t := time.NewTicker(k.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if id != 0 {
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				defer cancel()
				if err := k.cfg.Sessions.EndpointReleased(rctx, id); err != nil {
					k.log.Warn("landing endpoint: cannot record its release in the store", "err", err)
				}
			}
			return
		case <-t.C:
			beat()
		}
	}
}
