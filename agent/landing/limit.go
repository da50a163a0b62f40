package landing

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxSources bounds the per-source limiters kept; sources idle for
// sourceIdle are forgotten first.
const (
	maxSources = 4096
	sourceIdle = time.Minute
)

// limiter is a token bucket per source address. A netbooting node asks
// once per boot and its installer calls back once: a source far above
// that is a loop or a flood, and gets 429 (netboot clients retry).
type limiter struct {
	rate  rate.Limit
	burst int

	mu  sync.Mutex
	src map[netip.Addr]*source
}

type source struct {
	l    *rate.Limiter
	seen time.Time
}

func newLimiter(r rate.Limit, burst int) *limiter {
	return &limiter{rate: r, burst: burst, src: make(map[netip.Addr]*source)}
}

// allow reports whether a request from a may go on at now.
func (l *limiter) allow(a netip.Addr, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.src[a]
	if s == nil {
		if len(l.src) >= maxSources {
			for k, v := range l.src {
				if now.Sub(v.seen) > sourceIdle {
					delete(l.src, k)
				}
			}
			if len(l.src) >= maxSources {
				// Every source is busy: start over rather than grow.
				clear(l.src)
			}
		}
		s = &source{l: rate.NewLimiter(l.rate, l.burst)}
		l.src[a] = s
	}
	s.seen = now
	return s.l.AllowN(now, 1)
}
