package fleet

import "io"

// Display is the Runner's progress display for work the Runner does not
// run itself: reinstall follows its run's jobs in the store, whichever
// controller works them, and reports each node as it ends.
type Display interface {
	// Finished reports a node's result.
	Finished(Result)
	// Close ends the display.
	Close()
}

// NewDisplay returns the display a Runner would use for op over total
// nodes on w: none without a writer, a bar on a terminal, plain lines
// otherwise.
func NewDisplay(w io.Writer, op string, total int) Display {
	r := &Runner{Progress: w}
	return display{r.newProgress(op, total)}
}

type display struct{ p progress }

func (d display) Finished(r Result) { d.p.finished(r) }
func (d display) Close()            { d.p.close() }
