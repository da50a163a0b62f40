package fleet

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/vbauerster/cupwriter"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// Display shows the progress of a run over many nodes. On a terminal it
// draws one bar for the run (done/total and a tally) and, under it, one
// line per node in flight with its current step; log lines written to the
// Display appear above the bars. Anywhere else it writes plain lines: one
// per finished node, "[3/40] reinstall web-014: failed (reason)", and the
// log lines as they come.
//
// The calls are, from any goroutine:
//
//	d := fleet.NewDisplay(os.Stderr, "reinstall")
//	d.Start(len(nodes))           // once, before the first Step or Done
//	d.Step("web-014", "identify") // a node started or moved to a step
//	d.Done("web-014", fleet.StatusFailed, "precheck: BMC unreachable: …")
//	fmt.Fprintln(d, "log line")   // or slog.NewTextHandler(d, …)
//	d.Close()                     // waits for the bars to be drawn complete
//
// A Display passed as Runner.Progress is driven by the Runner (Start, a
// "started" Step per node, Done); the caller adds its own Steps and
// closes it. Writes after Close go straight to the output.
type Display struct {
	out io.Writer
	op  string
	tty bool

	// mu guards the fields below; it is never held while calling mpb,
	// whose render goroutine calls the decorators, which take smu.
	mu      sync.Mutex
	started bool
	closed  bool
	total   int
	n       int
	counts  Counts
	p       *mpb.Progress
	run     *mpb.Bar
	nodes   map[string]*nodeLine
	refresh time.Duration

	// smu guards counts and the nodeLines' step and since, which the
	// decorators read while drawing.
	smu sync.Mutex
}

// nodeLine is a node in flight on a terminal.
type nodeLine struct {
	bar   *mpb.Bar
	step  string
	since time.Time
}

// NewDisplay returns a Display writing to w, drawing bars when w is a
// terminal (it has an Fd that isatty says is one).
func NewDisplay(w io.Writer, op string) *Display {
	return newDisplay(w, op, IsTerminal(w))
}

func newDisplay(w io.Writer, op string, tty bool) *Display {
	return &Display{out: w, op: op, tty: tty, nodes: map[string]*nodeLine{}, refresh: 150 * time.Millisecond}
}

// IsTerminal reports whether w is a terminal: it has an Fd method (an
// *os.File, or a wrapper that passes it on) and isatty says so.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && isatty.IsTerminal(f.Fd())
}

// Start sets the number of nodes and, on a terminal, draws the run's bar.
// Later calls are ignored.
func (d *Display) Start(total int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.started || d.closed {
		return
	}
	d.started, d.total = true, total
	if !d.tty {
		return
	}
	opts := []mpb.ContainerOption{mpb.WithWidth(40), mpb.WithRefreshRate(d.refresh)}
	if f, ok := d.out.(interface{ Fd() uintptr }); ok && IsTerminal(d.out) {
		// mpb finds the terminal only behind an *os.File; a wrapper
		// (the CLI's locked stderr) passes its Fd on.
		cw := cupwriter.New(d.out, false)
		cw.SetTermFd(int(f.Fd()))
		opts = append(opts, mpb.WithConsoleWriter(cw))
	} else {
		opts = append(opts, mpb.WithOutput(d.out), mpb.WithAutoRefresh())
	}
	d.p = mpb.New(opts...)
	d.run = d.p.AddBar(int64(total),
		mpb.PrependDecorators(
			decor.Name(d.op, decor.WCSyncSpaceR),
			decor.CountersNoUnit("%d/%d", decor.WCSyncSpace),
		),
		mpb.AppendDecorators(decor.Any(func(decor.Statistics) string { return d.tally() })),
	)
}

// Step records that node is at step (a node not yet shown gets its line).
func (d *Display) Step(node, step string) {
	d.mu.Lock()
	if !d.tty || d.p == nil || d.closed {
		d.mu.Unlock()
		return
	}
	if l, ok := d.nodes[node]; ok {
		d.mu.Unlock()
		d.smu.Lock()
		l.step, l.since = step, time.Now()
		d.smu.Unlock()
		return
	}
	l := &nodeLine{step: step, since: time.Now()}
	d.nodes[node] = l
	p := d.p
	d.mu.Unlock()
	bar := p.New(0, mpb.NopStyle(),
		mpb.BarRemoveOnComplete(),
		mpb.PrependDecorators(decor.Any(func(decor.Statistics) string {
			d.smu.Lock()
			defer d.smu.Unlock()
			return fmt.Sprintf("  %s: %s (%s)", node, l.step, time.Since(l.since).Truncate(time.Second))
		})),
	)
	d.mu.Lock()
	l.bar = bar
	gone := d.nodes[node] != l // Done or Close came first
	d.mu.Unlock()
	if gone {
		bar.Abort(true)
	}
}

// Done records that node finished with status; reason (may be "") says
// why it did not end ok. A failed node is printed, with its reason, above
// the bars on a terminal; every node is a line otherwise.
func (d *Display) Done(node string, status Status, reason string) {
	d.mu.Lock()
	d.n++
	d.smu.Lock()
	switch status {
	case StatusOK:
		d.counts.OK++
	case StatusFailed:
		d.counts.Failed++
	case StatusSkipped:
		d.counts.Skipped++
	case StatusInterrupted:
		d.counts.Interrupted++
	}
	d.smu.Unlock()
	text := string(status)
	if reason != "" {
		text = fmt.Sprintf("%s (%s)", status, reason)
	}
	if !d.tty || d.p == nil || d.closed {
		n, total := d.n, d.total
		d.mu.Unlock()
		fmt.Fprintf(d.out, "[%d/%d] %s %s: %s\n", n, total, d.op, node, text)
		return
	}
	l := d.nodes[node]
	delete(d.nodes, node)
	p, run := d.p, d.run
	d.mu.Unlock()
	if l != nil && l.bar != nil {
		l.bar.Abort(true)
	}
	if status == StatusFailed {
		fmt.Fprintf(p, "%s %s: %s\n", d.op, node, text)
	}
	run.Increment()
}

// Write prints log lines: above the bars on a terminal, as they come
// otherwise.
func (d *Display) Write(b []byte) (int, error) {
	d.mu.Lock()
	p := d.p
	live := d.tty && p != nil && !d.closed
	d.mu.Unlock()
	if live {
		if n, err := p.Write(b); err == nil {
			return n, nil
		}
	}
	return d.out.Write(b)
}

// Close completes the bars and waits until they are drawn; the output is
// then free for what follows (the results table). Safe to call twice.
func (d *Display) Close() {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.closed = true
	p, run := d.p, d.run
	var lines []*nodeLine
	for _, l := range d.nodes {
		lines = append(lines, l)
	}
	d.nodes = map[string]*nodeLine{}
	d.mu.Unlock()
	if p == nil {
		return
	}
	for _, l := range lines {
		if l.bar != nil {
			l.bar.Abort(true)
		}
	}
	if !run.Completed() {
		run.Abort(false)
	}
	p.Wait()
}

func (d *Display) tally() string {
	d.smu.Lock()
	defer d.smu.Unlock()
	parts := []string{fmt.Sprintf("ok %d", d.counts.OK)}
	if d.counts.Failed > 0 {
		parts = append(parts, fmt.Sprintf("failed %d", d.counts.Failed))
	}
	if d.counts.Skipped > 0 {
		parts = append(parts, fmt.Sprintf("skipped %d", d.counts.Skipped))
	}
	if d.counts.Interrupted > 0 {
		parts = append(parts, fmt.Sprintf("interrupted %d", d.counts.Interrupted))
	}
	return strings.Join(parts, ", ")
}

// progress is what the Runner drives.
type progress interface {
	started(node string)
	finished(Result)
	close()
}

// newProgress picks the progress display: none without a writer; the
// caller's Display when Progress is one (the caller closes it); else a
// Display of its own on the writer (bars on a terminal, plain lines
// otherwise).
func (r *Runner) newProgress(op string, total int) progress {
	switch {
	case r.Progress == nil:
		return nopProgress{}
	}
	if d, ok := r.Progress.(*Display); ok {
		d.Start(total)
		return runnerDisplay{d: d}
	}
	if total == 0 {
		return nopProgress{}
	}
	d := newDisplay(r.Progress, op, r.forceBar || IsTerminal(r.Progress))
	d.Start(total)
	return runnerDisplay{d: d, own: true}
}

type nopProgress struct{}

func (nopProgress) started(string)  {}
func (nopProgress) finished(Result) {}
func (nopProgress) close()          {}

// runnerDisplay adapts a Display to the Runner.
type runnerDisplay struct {
	d   *Display
	own bool // the Runner made it, so the Runner closes it
}

func (r runnerDisplay) started(node string) { r.d.Step(node, "started") }
func (r runnerDisplay) finished(res Result) { r.d.Done(res.Node, res.Status, res.Reason) }
func (r runnerDisplay) close() {
	if r.own {
		r.d.Close()
	}
}
