// Package fleet is reprov's one fan-out runner: it works on many nodes at
// once within limits — overall parallelism, per rack, and (through the
// bmc.Limiter its callers share) per BMC — interleaving racks so no rack
// is hammered, stopping after a budget of failures, and stopping cleanly on
// cancellation. Every command that acts on nodes (power, bootdev, bmc info,
// reinstall) runs through it and reports one Result row per node.
package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/reprov/reprov/inventory"
)

// DefaultMaxParallel is the parallelism of a Runner that sets none.
const DefaultMaxParallel = 64

// Status is how a node's operation ended.
type Status string

// Statuses of a Result.
const (
	// StatusOK: the operation succeeded.
	StatusOK Status = "ok"
	// StatusFailed: the operation failed; Reason and Error say why.
	StatusFailed Status = "failed"
	// StatusSkipped: the operation was deliberately not carried out (dry
	// run, failure budget exhausted, refused by a check).
	StatusSkipped Status = "skipped"
	// StatusInterrupted: the run was cancelled before or while the node
	// was worked on.
	StatusInterrupted Status = "interrupted"
)

// Result is the outcome of one operation on one node: the one row type
// every fleet command reports.
type Result struct {
	Node   string `json:"node"`
	Rack   string `json:"rack,omitempty"`
	Op     string `json:"op"`
	Status Status `json:"status"`
	// Reason is a short category of a failure or skip, e.g.
	// "BMC refused the credentials" or "no answer after 4 tries".
	Reason string `json:"reason,omitempty"`
	// Error is the full error text (never holding a secret).
	Error string `json:"error,omitempty"`
	// Detail is what the operation returned (power state, identity, ...).
	Detail any `json:"detail,omitempty"`
	// Duration is how long the node's operation took (0 if not started).
	Duration time.Duration `json:"-"`
}

// MarshalJSON writes the Result with its duration in milliseconds
// ("duration_ms").
func (r Result) MarshalJSON() ([]byte, error) {
	type plain Result
	return json.Marshal(struct {
		plain
		DurationMS int64 `json:"duration_ms"`
	}{plain(r), r.Duration.Milliseconds()})
}

// Func is an operation on one node. Its result becomes Result.Detail; its
// error is classified into Status and Reason (Classify).
type Func func(ctx context.Context, n inventory.Node) (any, error)

// Runner runs an operation over many nodes. The zero value is usable:
// DefaultMaxParallel nodes at once, no rack limit, no failure budget, no
// progress output.
type Runner struct {
	// MaxParallel bounds how many nodes are worked on at once (0: DefaultMaxParallel).
	MaxParallel int
	// PerRack bounds how many nodes of one rack are worked on at once (0:
	// no limit). Nodes without a rack are not limited by it.
	PerRack int
	// MaxFailures stops starting new nodes once this many have failed (0:
	// no budget). Nodes not started then are skipped.
	MaxFailures int
	// CancelInFlight passes the run's cancellation on to nodes already
	// started. By default a started node runs to completion (its own
	// timeouts bound it) when the run is cancelled, so that every started
	// node ends in a known state; the reinstall engine, which records its
	// steps, sets it to stop at the next step.
	CancelInFlight bool
	// Progress receives progress: a bar (mpb) when it is a terminal,
	// otherwise one line per finished node. nil: none.
	Progress io.Writer
	// Log receives a debug record per finished node. nil: none.
	Log *slog.Logger
	// Classify maps an operation's error to a status and reason (nil: Classify).
	Classify func(error) (Status, string)

	// forceBar draws the progress bar on a non-terminal (tests).
	forceBar bool
}

// Run runs fn on every node within r's limits and returns one Result per
// node, in the order of nodes. Nodes are started rack by rack in turn
// (round-robin over racks, in order of first appearance), each rack's
// nodes in inventory order.
//
// When ctx is cancelled no further node is started and the nodes not
// started are reported interrupted; Run returns once the started nodes
// have finished (see CancelInFlight). When the failure budget is spent,
// the nodes not started are reported skipped.
func (r *Runner) Run(ctx context.Context, nodes []inventory.Node, op string, fn Func) []Result {
	maxPar := r.MaxParallel
	if maxPar <= 0 {
		maxPar = DefaultMaxParallel
	}
	classify := r.Classify
	if classify == nil {
		classify = Classify
	}
	log := r.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	nodeCtx := ctx
	if !r.CancelInFlight {
		nodeCtx = context.WithoutCancel(ctx)
	}

	results := make([]Result, len(nodes))
	for i, n := range nodes {
		results[i] = Result{Node: n.Name, Rack: n.Rack, Op: op}
	}
	prog := r.newProgress(op, len(nodes))
	sched := newScheduler(nodes, r.PerRack)

	type finished struct {
		i   int
		res Result
	}
	done := make(chan finished)
	inFlight, failures := 0, 0
	var stop Status // "" while nodes are still being started
	stopReason := ""
	ctxDone := ctx.Done()

	for {
		for stop == "" && inFlight < maxPar {
			if ctx.Err() != nil {
				stop, stopReason = StatusInterrupted, "interrupted before start"
				break
			}
			i, ok := sched.next()
			if !ok {
				break
			}
			inFlight++
			n := nodes[i]
			prog.started(n.Name)
			go func() {
				done <- finished{i, runOne(nodeCtx, n, op, fn, classify, log)}
			}()
		}
		if inFlight == 0 {
			break
		}
		if stop != "" {
			ctxDone = nil
		}
		select {
		case f := <-done:
			inFlight--
			sched.finished(f.i)
			results[f.i] = f.res
			prog.finished(f.res)
			log.Debug("fleet: node finished", "op", op, "node", f.res.Node, "status", f.res.Status,
				"reason", f.res.Reason, "duration", f.res.Duration)
			if f.res.Status == StatusFailed {
				failures++
				if r.MaxFailures > 0 && failures >= r.MaxFailures && stop == "" {
					stop = StatusSkipped
					stopReason = fmt.Sprintf("not started: failure budget exhausted (%d failed)", failures)
				}
			}
		case <-ctxDone:
			stop, stopReason = StatusInterrupted, "interrupted before start"
		}
	}
	for _, i := range sched.notStarted() {
		results[i].Status = stop
		results[i].Reason = stopReason
		prog.finished(results[i])
	}
	prog.close()
	return results
}

// runOne runs fn on one node and turns its outcome into a Result. A panic
// in fn fails the node instead of the whole run.
func runOne(ctx context.Context, n inventory.Node, op string, fn Func, classify func(error) (Status, string), log *slog.Logger) (res Result) {
	start := time.Now()
	res = Result{Node: n.Name, Rack: n.Rack, Op: op}
	defer func() {
		if p := recover(); p != nil {
			log.Error("fleet: operation panicked", "op", op, "node", n.Name, "panic", p, "stack", string(debug.Stack()))
			res.Status, res.Reason, res.Error = StatusFailed, "internal error", fmt.Sprintf("panic: %v", p)
		}
		res.Duration = time.Since(start)
	}()
	detail, err := fn(ctx, n)
	res.Detail = detail
	res.Status, res.Reason = classify(err)
	if err != nil {
		res.Error = err.Error()
	}
	return res
}

// Counts tallies results by status.
type Counts struct {
	OK, Failed, Skipped, Interrupted int
}

// Count tallies results by status.
func Count(results []Result) Counts {
	var c Counts
	for _, r := range results {
		switch r.Status {
		case StatusOK:
			c.OK++
		case StatusFailed:
			c.Failed++
		case StatusSkipped:
			c.Skipped++
		case StatusInterrupted:
			c.Interrupted++
		}
	}
	return c
}

// SkipError marks an operation deliberately not carried out on a node
// (refused by a check, nothing to do). Classify reports it as skipped.
type SkipError struct{ Reason string }

// Error implements error.
func (e *SkipError) Error() string { return "skipped: " + e.Reason }

// Skip returns an error that makes the node's result "skipped" with reason.
func Skip(reason string) error { return &SkipError{Reason: reason} }

// Reasoner is implemented by errors that know their own short reason
// category, such as the reinstall engine's "did not land". Classify uses
// it before its own categories.
type Reasoner interface {
	Reason() string
}
