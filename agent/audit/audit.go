// Package audit is reprov's two-phase audit log: every power change, boot
// override and destructive in-band step is written as an intent, synced to
// disk, before it runs, and as an outcome after. The log is a JSON-lines
// file in the state dir (audit.jsonl) that operators can read with jq; with
// a Sink (the job store) every record also goes to the shared trail that
// `reprov audit` shows across controllers.
//
// An intent with no outcome means the process died while the act may have
// happened: resume must settle it by looking, never by repeating it blindly
// (docs/architecture.md, "Audit").
//
// # The rule
//
// Every audited act goes through [Log.Do], which follows one rule:
//
//   - An intent that cannot be recorded (file, fsync or sink failed, or the
//     log is poisoned, see below): the act does not run, and Do returns an
//     error wrapping [ErrIntentNotRecorded] that names the node and the
//     action.
//   - An outcome that cannot be recorded does not change the act's result:
//     Do returns the act's own error (nil when it succeeded), so no caller
//     ever repeats an act that happened. The failure is logged, and it
//     poisons the log: every later intent fails with ErrIntentNotRecorded
//     ("an earlier outcome could not be recorded"). A controller that cannot
//     record stops acting.
//
// A sink failure counts as a failure to record: the act must not run
// unrecorded in the shared trail. When an intent reached the file but not
// the sink, a skipped outcome is written to the file (only), so the local
// log does not show an unsettled intent for an act that never ran.
//
// # Group commit
//
// One writer: records are queued; the first caller to find no write in
// flight becomes the leader, writes every queued record and fsyncs once;
// once the previous batch is through the sink it hands the file to the
// next queued caller, hands its batch to the sink in one call (batches
// reach the sink in the order they reached the file) and wakes every
// caller of the batch. Every record written while an
// fsync is in flight is covered by the next single fsync, and the next
// batch's write and fsync overlap this batch's sink. Durability is
// unchanged: an intent returns only once its record is on disk and in the
// sink. [Pending.Then] writes an outcome and the next act's intent
// together: one wait instead of two for a sequence of acts on one node.
package audit

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"
)

// Phases of a record.
const (
	PhaseIntent  = "intent"
	PhaseOutcome = "outcome"
)

// Results of an outcome.
const (
	ResultOK      = "ok"
	ResultFailed  = "failed"
	ResultSkipped = "skipped"
)

// ErrIntentNotRecorded is wrapped by every error that stopped an act
// because its intent could not be recorded.
var ErrIntentNotRecorded = errors.New("audit intent not recorded")

// ErrClosed is wrapped by the errors of writes to a closed log.
var ErrClosed = errors.New("audit log is closed")

// Record is one line of the audit log. Detail must never hold a secret.
type Record struct {
	Time   time.Time      `json:"time"`
	ID     string         `json:"id"`
	Phase  string         `json:"phase"`
	Run    string         `json:"run,omitempty"`
	Node   string         `json:"node"`
	Action string         `json:"action"`
	Detail map[string]any `json:"detail,omitempty"`
	Result string         `json:"result,omitempty"`
	Error  string         `json:"error,omitempty"`
	// Controller is who wrote the record ("host/pid").
	Controller string `json:"controller,omitempty"`
	// Job is the store's node job the act belongs to (0: ad-hoc command).
	Job int64 `json:"job_id,omitempty"`
}

// Sink receives every batch of records after it is on disk, e.g. the job
// store's shared trail. One call per batch; an error fails every record of
// the batch (see the package doc for what that means).
type Sink interface {
	Append(ctx context.Context, recs []Record) error
}

// SinkFunc adapts a function to a Sink.
type SinkFunc func(ctx context.Context, recs []Record) error

// Append calls f.
func (f SinkFunc) Append(ctx context.Context, recs []Record) error { return f(ctx, recs) }

// Options are the optional settings of a Log.
type Options struct {
	// Sink, when set, receives every record after it is on disk.
	Sink Sink
	// SinkTimeout bounds one Sink.Append (default 30 s). The sink runs on a
	// context detached from the callers' cancellation: a record on disk is
	// not left out of the shared trail because one caller gave up.
	SinkTimeout time.Duration
	// Controller tags every record with who wrote it (default
	// DefaultController()).
	Controller string
	// Log receives failures to record an outcome (default: discarded).
	Log *slog.Logger
}

// DefaultController is "host/pid", the Controller of a Log opened without
// one.
func DefaultController() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "unknown-host"
	}
	return fmt.Sprintf("%s/%d", h, os.Getpid())
}

// file is what the log writes to: an *os.File, or a test's fake.
type file interface {
	io.Writer
	Sync() error
	Close() error
}

// Log appends records to a JSON-lines file, group-committed. It is safe for
// concurrent use.
type Log struct {
	run  string
	opts Options
	log  *slog.Logger
	now  func() time.Time

	later sync.WaitGroup // outcomes queued by FinishLater

	mu       sync.Mutex
	idle     sync.Cond // signalled when a batch is done
	f        file      // nil once closed
	pending  []*request
	writing  bool          // a leader is writing a batch to the file
	inFlight int           // batches written or being written, not yet through the sink
	sinkTail chan struct{} // closed when the last batch taken is through the sink
	torn     bool          // the last write failed: the file may end mid-line
	poisoned error         // set when an outcome could not be recorded
}

// request is one record waiting for the group commit.
type request struct {
	rec Record
	// localOnly keeps the record out of the sink (the skipped outcome of an
	// intent the sink never got).
	localOnly bool
	done      chan result // buffered 1
	res       result      // the result, for the requests of the caller that led
}

type result struct {
	err  error
	lead bool // the receiver is the next leader
}

// Open opens (creating if needed, mode 0600) the audit log at path. run
// tags every record with the run it belongs to ("" for ad-hoc commands).
// At most one Options may be given.
func Open(path, run string, opts ...Options) (*Log, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	return newLog(f, run, o), nil
}

func newLog(f file, run string, o Options) *Log {
	if o.Controller == "" {
		o.Controller = DefaultController()
	}
	if o.SinkTimeout <= 0 {
		o.SinkTimeout = 30 * time.Second
	}
	lg := o.Log
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	l := &Log{f: f, run: run, opts: o, log: lg, now: time.Now}
	l.idle.L = &l.mu
	return l
}

// Entry is one audited act.
type Entry struct {
	Node, Action string
	Detail       map[string]any // never a secret
	Job          int64          // the store's node job, 0 for ad-hoc commands
	// Fence, when set, is called right before the intent is written; an
	// error stops everything: no intent, no act (the engine checks its
	// lease here). Do returns the fence's error, wrapped with node and
	// action.
	Fence func(ctx context.Context) error
}

// SkipError is an act's error saying that it deliberately did not act
// (a dry run, a refused check): Do records the outcome as skipped with
// Reason instead of failed, and returns the SkipError unchanged.
type SkipError struct {
	Reason string
	Err    error // may be nil
}

func (e *SkipError) Error() string {
	if e.Err != nil {
		return e.Err.Error()
	}
	return "skipped: " + e.Reason
}

// Unwrap returns the underlying error.
func (e *SkipError) Unwrap() error { return e.Err }

// Do records the intent (durable before the act), runs act, records the
// outcome: ok when act returns nil, skipped for a *SkipError, failed
// otherwise, with act's outcome map as the detail. It returns act's error
// unchanged, or, when the fence or the intent failed, an error naming node
// and action (wrapping ErrIntentNotRecorded for the intent) without running
// act. See the package doc for the rule on failed outcome records.
func (l *Log) Do(ctx context.Context, e Entry, act func(ctx context.Context) (outcome map[string]any, err error)) error {
	if e.Fence != nil {
		if err := e.Fence(ctx); err != nil {
			return fmt.Errorf("node %s: %s not attempted: %w", e.Node, e.Action, err)
		}
	}
	p, err := l.Begin(ctx, e)
	if err != nil {
		return err
	}
	out, actErr := act(ctx)
	_ = p.Finish(ctx, actErr, out) // logged and poisons the log; never changes the act's result
	return actErr
}

// Pending is an intent that awaits its outcome.
type Pending struct {
	log    *Log
	id     string
	node   string
	action string
	job    int64
}

// ID is the intent's record ID, shared by its outcome.
func (p Pending) ID() string { return p.id }

// Begin records e's intent and syncs it (and hands it to the sink), so the
// record survives a crash during the act: the two-step form of Do. The act
// must not start if Begin returns an error, which then wraps
// ErrIntentNotRecorded and names node and action. Begin does not call
// e.Fence (Do does).
func (l *Log) Begin(ctx context.Context, e Entry) (Pending, error) {
	return l.begin(ctx, e, nil)
}

// begin records e's intent, after the outcome before when not nil, in one
// write.
func (l *Log) begin(ctx context.Context, e Entry, before *request) (Pending, error) {
	notRecorded := func(err error) error {
		return fmt.Errorf("node %s: %s not attempted: %w: %w", e.Node, e.Action, ErrIntentNotRecorded, err)
	}
	id, err := newID()
	if err != nil {
		if before != nil {
			_ = l.submit(ctx, before)
		}
		return Pending{}, notRecorded(err)
	}
	intent := &request{rec: Record{ID: id, Phase: PhaseIntent, Node: e.Node, Action: e.Action, Detail: e.Detail, Job: e.Job}}
	reqs := []*request{intent}
	if before != nil {
		reqs = []*request{before, intent}
	}
	errs := l.submit(ctx, reqs...)
	if err := errs[len(errs)-1]; err != nil {
		var se *sinkError
		if errors.As(err, &se) {
			// On disk but not in the shared trail: settle it locally, the
			// act will not run.
			skip := &request{localOnly: true, rec: Record{ID: id, Phase: PhaseOutcome, Node: e.Node, Action: e.Action, Job: e.Job,
				Result: ResultSkipped, Error: "intent not recorded in the audit sink: not attempted"}}
			if lerr := l.submit(ctx, skip)[0]; lerr != nil {
				l.log.ErrorContext(ctx, "audit: settling an intent the sink refused", "node", e.Node, "action", e.Action, "err", lerr)
			}
		}
		return Pending{}, notRecorded(err)
	}
	return Pending{log: l, id: id, node: e.Node, action: e.Action, job: e.Job}, nil
}

// Intent is Begin for an ad-hoc act (no job, background context).
func (l *Log) Intent(node, action string, detail map[string]any) (Pending, error) {
	return l.Begin(context.Background(), Entry{Node: node, Action: action, Detail: detail})
}

// Finish records the outcome of the intent: ok when actErr is nil,
// skipped for a *SkipError, failed otherwise. A failure to record it is
// logged and poisons the log (see the package doc); it is returned for
// callers of the two-step form, which must not turn it into the act's
// result either.
func (p Pending) Finish(ctx context.Context, actErr error, detail map[string]any) error {
	return p.log.submit(ctx, p.outcome(actErr, detail))[0]
}

// outcome is the outcome record of the intent.
func (p Pending) outcome(actErr error, detail map[string]any) *request {
	rec := Record{ID: p.id, Phase: PhaseOutcome, Node: p.node, Action: p.action, Job: p.job, Detail: detail, Result: ResultOK}
	var skip *SkipError
	switch {
	case errors.As(actErr, &skip):
		rec.Result, rec.Error = ResultSkipped, skip.Reason
	case actErr != nil:
		rec.Result, rec.Error = ResultFailed, actErr.Error()
	}
	return &request{rec: rec}
}

// Then records the outcome of the intent (as Finish does) and the intent
// of the next act in one write: the outcome is on disk before the next
// intent, and the next act must not start if Then returns an error, which
// then wraps ErrIntentNotRecorded and names next's node and action, as
// Begin's does. A failure to record the outcome follows the outcome rule
// (logged, poisons the log, never the first act's result) and also fails
// the next intent, written with it. Then does not call next.Fence.
func (p Pending) Then(ctx context.Context, actErr error, detail map[string]any, next Entry) (Pending, error) {
	return p.log.begin(ctx, next, p.outcome(actErr, detail))
}

// FinishLater queues the outcome of the intent as Finish records it and
// returns at once: for the last act of a sequence, whose caller has
// nothing more to do on the node. Close waits until it is written. A
// failure to record it is logged and poisons the log, as Finish's does.
func (p Pending) FinishLater(ctx context.Context, actErr error, detail map[string]any) {
	req := p.outcome(actErr, detail)
	p.log.later.Add(1)
	go func() {
		defer p.log.later.Done()
		_ = p.log.submit(context.WithoutCancel(ctx), req)
	}()
}

// Done is Finish with a background context.
func (p Pending) Done(actErr error, detail map[string]any) error {
	return p.Finish(context.Background(), actErr, detail)
}

// Skipped records that the intent was not carried out (dry run, refused check).
func (p Pending) Skipped(reason string) error {
	return p.Finish(context.Background(), &SkipError{Reason: reason}, nil)
}

// sinkError is a record that reached the file but not the sink.
type sinkError struct{ err error }

func (e *sinkError) Error() string { return "audit sink: " + e.err.Error() }
func (e *sinkError) Unwrap() error { return e.err }

// errPoisoned is the cause of every intent refused after a failed outcome.
type errPoisoned struct{ cause error }

func (e *errPoisoned) Error() string {
	return "an earlier outcome could not be recorded: " + e.cause.Error()
}

// submit queues reqs, in order, and returns each one's error once it is
// on disk (and in the sink), or could not be written. The caller that
// finds no write in flight leads: it writes the whole queue, syncs once,
// hands the file on to the next queued caller, then hands the batch to the
// sink after the previous batch, and wakes the batch's callers.
func (l *Log) submit(ctx context.Context, reqs ...*request) []error {
	errs := make([]error, len(reqs))
	l.mu.Lock()
	if l.f == nil {
		l.mu.Unlock()
		for i := range errs {
			errs[i] = ErrClosed
		}
		return errs
	}
	now := l.now().UTC()
	var mine []*request
	for i, r := range reqs {
		if r.rec.Phase == PhaseIntent && l.poisoned != nil {
			errs[i] = l.poisoned
			continue
		}
		r.rec.Time = now
		r.rec.Run = l.run
		r.rec.Controller = l.opts.Controller
		r.done = make(chan result, 1)
		mine = append(mine, r)
	}
	if len(mine) == 0 {
		l.mu.Unlock()
		return errs
	}
	l.pending = append(l.pending, mine...)
	if l.writing {
		l.mu.Unlock()
		// The requests of one call are queued together, so they are in
		// one batch: its leader sets the result of each, or hands
		// leadership to the first of them.
		res := <-mine[0].done
		if res.lead {
			l.lead(ctx, mine)
		} else if len(mine) > 1 {
			mine[0].res = res
			for _, r := range mine[1:] {
				r.res = <-r.done
			}
		} else {
			mine[0].res = res
		}
	} else {
		l.writing = true
		l.mu.Unlock()
		l.lead(ctx, mine)
	}
	k := 0
	for i := range errs {
		if errs[i] == nil {
			errs[i] = mine[k].res.err
			k++
		}
	}
	return errs
}

// lead writes the queue as one batch (l.writing is set by or for the
// caller, whose requests mine are in the queue), then sinks it and sets
// every request's result; the results of mine are left in their res field.
func (l *Log) lead(ctx context.Context, mine []*request) {
	l.mu.Lock()
	batch := l.pending
	l.pending = nil
	f, torn := l.f, l.torn
	prev := l.sinkTail
	through := make(chan struct{})
	l.sinkTail = through
	l.inFlight++
	l.mu.Unlock()

	errs, wrote := l.write(f, torn, batch)

	// The sink gets the batches in the order they reached the file. The
	// file is handed on only once this batch has its turn at the sink:
	// at most two batches are in flight (one at the file, one at the
	// sink), and the queue grows meanwhile into the next batch.
	if prev != nil {
		<-prev
	}
	l.mu.Lock()
	l.torn = !wrote
	l.poison(batch, errs)
	if len(l.pending) > 0 {
		l.pending[0].done <- result{lead: true}
	} else {
		l.writing = false
	}
	l.mu.Unlock()

	l.sink(ctx, batch, errs)
	close(through)

	l.mu.Lock()
	l.poison(batch, errs)
	l.inFlight--
	l.idle.Broadcast()
	l.mu.Unlock()

	for i, q := range batch {
		if errs[i] != nil && q.rec.Phase == PhaseOutcome {
			l.log.Error("audit outcome not recorded: this controller records no more intents",
				"node", q.rec.Node, "action", q.rec.Action, "id", q.rec.ID, "err", errs[i])
		}
		if slices.Contains(mine, q) {
			q.res = result{err: errs[i]}
			continue
		}
		q.done <- result{err: errs[i]}
	}
}

// poison records the first outcome of batch that could not be recorded.
// l.mu is held.
func (l *Log) poison(batch []*request, errs []error) {
	for i, q := range batch {
		if errs[i] != nil && q.rec.Phase == PhaseOutcome && l.poisoned == nil {
			l.poisoned = &errPoisoned{cause: errs[i]}
		}
	}
}

// write writes batch to f and syncs once. It returns each record's error
// and whether the write ended cleanly.
func (l *Log) write(f file, torn bool, batch []*request) ([]error, bool) {
	errs := make([]error, len(batch))
	fail := func(err error) ([]error, bool) {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
		return errs, false
	}
	var buf []byte
	if torn {
		buf = append(buf, '\n') // end a line a failed write may have left half-written
	}
	for i, q := range batch {
		b, err := json.Marshal(q.rec)
		if err != nil {
			errs[i] = fmt.Errorf("audit record: %w", err)
			continue
		}
		buf = append(buf, b...)
		buf = append(buf, '\n')
	}
	if _, err := f.Write(buf); err != nil {
		return fail(fmt.Errorf("write audit log: %w", err))
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("sync audit log: %w", err))
	}
	return errs, true
}

// sink appends the records of batch that are on disk to the sink, in one
// call, and sets the errors of those it refused.
func (l *Log) sink(ctx context.Context, batch []*request, errs []error) {
	if l.opts.Sink == nil {
		return
	}
	var recs []Record
	var idx []int
	for i, q := range batch {
		if errs[i] == nil && !q.localOnly {
			recs = append(recs, q.rec)
			idx = append(idx, i)
		}
	}
	if len(recs) == 0 {
		return
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.opts.SinkTimeout)
	defer cancel()
	if err := l.opts.Sink.Append(sctx, recs); err != nil {
		se := &sinkError{err: err}
		for _, i := range idx {
			errs[i] = se
		}
	}
}

// Close closes the file. Further writes fail with ErrClosed. Close waits
// for the outcomes queued by FinishLater and for a batch in flight.
func (l *Log) Close() error {
	l.later.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	// A leader holds its own reference to the file; closing under it
	// would fail its write. Closing while acts are still being recorded is
	// a caller bug, but must not lose a record: wait for the queue.
	for l.writing || l.inFlight > 0 {
		l.idle.Wait()
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// Read returns every record of the log at path, in order. A torn line
// (a crash mid-write) is ignored.
func Read(path string) ([]Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var recs []Record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for sc.Scan() {
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			continue
		}
		recs = append(recs, r)
	}
	return recs, sc.Err()
}

// Unsettled returns the intents in recs that have no outcome.
func Unsettled(recs []Record) []Record {
	done := make(map[string]bool)
	for _, r := range recs {
		if r.Phase == PhaseOutcome {
			done[r.ID] = true
		}
	}
	var out []Record
	for _, r := range recs {
		if r.Phase == PhaseIntent && !done[r.ID] {
			out = append(out, r)
		}
	}
	return out
}

func newID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("audit id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
