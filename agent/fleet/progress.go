package fleet

import (
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/mattn/go-isatty"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// progress reports finished nodes while a run goes on.
type progress interface {
	finished(Result)
	close()
}

// newProgress picks the progress display: none without a writer, a bar on
// a terminal, plain lines otherwise.
func (r *Runner) newProgress(op string, total int) progress {
	switch {
	case r.Progress == nil || total == 0:
		return nopProgress{}
	case r.forceBar || isTerminal(r.Progress):
		return newBarProgress(r.Progress, op, total, r.forceBar)
	}
	return &lineProgress{w: r.Progress, op: op, total: total}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && isatty.IsTerminal(f.Fd())
}

type nopProgress struct{}

func (nopProgress) finished(Result) {}
func (nopProgress) close()          {}

// lineProgress writes one line per finished node:
//
//	[3/40] power cycle web-014: failed (authentication failed)
type lineProgress struct {
	w     io.Writer
	op    string
	total int
	n     int
}

func (p *lineProgress) finished(r Result) {
	p.n++
	fmt.Fprintf(p.w, "[%d/%d] %s %s: %s\n", p.n, p.total, p.op, r.Node, statusText(r))
}

func (p *lineProgress) close() {}

func statusText(r Result) string {
	if r.Reason == "" {
		return string(r.Status)
	}
	return fmt.Sprintf("%s (%s)", r.Status, r.Reason)
}

// barProgress draws one bar for the run with a tally, and prints each node
// that did not end ok above it.
type barProgress struct {
	p   *mpb.Progress
	bar *mpb.Bar
	op  string

	mu     sync.Mutex
	counts Counts
}

func newBarProgress(w io.Writer, op string, total int, force bool) *barProgress {
	bp := &barProgress{op: op}
	opts := []mpb.ContainerOption{mpb.WithOutput(w), mpb.WithWidth(40)}
	if force {
		opts = append(opts, mpb.WithAutoRefresh())
	}
	bp.p = mpb.New(opts...)
	bp.bar = bp.p.AddBar(int64(total),
		mpb.PrependDecorators(
			decor.Name(op, decor.WCSyncSpaceR),
			decor.CountersNoUnit("%d/%d", decor.WCSyncSpace),
		),
		mpb.AppendDecorators(decor.Any(func(decor.Statistics) string { return bp.tally() })),
	)
	return bp
}

func (p *barProgress) tally() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	parts := []string{fmt.Sprintf("ok %d", p.counts.OK)}
	if p.counts.Failed > 0 {
		parts = append(parts, fmt.Sprintf("failed %d", p.counts.Failed))
	}
	if p.counts.Skipped > 0 {
		parts = append(parts, fmt.Sprintf("skipped %d", p.counts.Skipped))
	}
	if p.counts.Interrupted > 0 {
		parts = append(parts, fmt.Sprintf("interrupted %d", p.counts.Interrupted))
	}
	return strings.Join(parts, ", ")
}

func (p *barProgress) finished(r Result) {
	p.mu.Lock()
	switch r.Status {
	case StatusOK:
		p.counts.OK++
	case StatusFailed:
		p.counts.Failed++
	case StatusSkipped:
		p.counts.Skipped++
	case StatusInterrupted:
		p.counts.Interrupted++
	}
	p.mu.Unlock()
	if r.Status == StatusFailed {
		fmt.Fprintf(p.p, "%s %s: %s\n", p.op, r.Node, statusText(r))
	}
	p.bar.Increment()
}

func (p *barProgress) close() {
	// Every node was counted, so the bar is complete and Wait returns.
	p.p.Wait()
}
