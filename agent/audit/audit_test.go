package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reprov/reprov/lab/labtool"
)

// fakeFile is a file whose writes and syncs a test controls.
type fakeFile struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	synced    int   // bytes of buf covered by a Sync
	syncs     int   // number of Syncs
	writeErr  error // every Write fails with it (after writing half, when half)
	half      bool  // a failing Write leaves half its bytes (a torn line)
	syncGate  chan struct{}
	inSync    chan struct{} // receives once per Sync entered (when non-nil)
	failAfter int           // when > 0, Writes after this many fail with writeErr
	writes    int
}

func (f *fakeFile) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	if f.writeErr != nil && (f.failAfter == 0 || f.writes > f.failAfter) {
		if f.half {
			f.buf.Write(p[:len(p)/2])
			return len(p) / 2, f.writeErr
		}
		return 0, f.writeErr
	}
	return f.buf.Write(p)
}

func (f *fakeFile) Sync() error {
	if f.inSync != nil {
		f.inSync <- struct{}{}
	}
	if f.syncGate != nil {
		<-f.syncGate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.syncs++
	f.synced = f.buf.Len()
	return nil
}

func (f *fakeFile) Close() error { return nil }

// records parses the synced part of the file; torn lines are skipped.
func (f *fakeFile) records(t *testing.T) []Record {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Record
	for _, line := range strings.Split(string(f.buf.Bytes()[:f.synced]), "\n") {
		var r Record
		if line == "" || json.Unmarshal([]byte(line), &r) != nil {
			continue
		}
		out = append(out, r)
	}
	return out
}

// logBuffer captures a Log's slog output.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newTestLog(f file, o Options) (*Log, *logBuffer) {
	lb := &logBuffer{}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(lb, nil))
	}
	if o.Controller == "" {
		o.Controller = "test-host/1"
	}
	return newLog(f, "run-1", o), lb
}

func TestDoRecordsIntentBeforeActAndOutcomeAfter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := Open(path, "run-7", Options{Controller: "ctl-a/42"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	err = l.Do(ctx, Entry{Node: "n1", Action: "power cycle", Detail: map[string]any{"bmc": "127.0.0.1"}, Job: 9},
		func(ctx context.Context) (map[string]any, error) {
			recs, err := Read(path)
			if err != nil || len(recs) != 1 || recs[0].Phase != PhaseIntent || recs[0].Node != "n1" {
				t.Errorf("during the act the file holds %+v, %v; want the intent", recs, err)
			}
			return map[string]any{"state": "on"}, nil
		})
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	recs, err := Read(path)
	if err != nil || len(recs) != 2 {
		t.Fatalf("records %+v, %v", recs, err)
	}
	in, out := recs[0], recs[1]
	if in.ID != out.ID || out.Phase != PhaseOutcome || out.Result != ResultOK || out.Detail["state"] != "on" {
		t.Errorf("outcome %+v does not settle intent %+v", out, in)
	}
	for _, r := range recs {
		if r.Run != "run-7" || r.Controller != "ctl-a/42" || r.Job != 9 || r.Action != "power cycle" {
			t.Errorf("record %+v: want run-7, ctl-a/42, job 9", r)
		}
	}
	if len(Unsettled(recs)) != 0 {
		t.Errorf("unsettled: %+v", Unsettled(recs))
	}
}

func TestDoReturnsActErrorAndSkip(t *testing.T) {
	f := &fakeFile{}
	l, _ := newTestLog(f, Options{})
	boom := errors.New("BMC said no")
	if err := l.Do(context.Background(), Entry{Node: "n1", Action: "power off"},
		func(context.Context) (map[string]any, error) { return nil, boom }); err != boom {
		t.Errorf("Do = %v, want the act's error unchanged", err)
	}
	skip := &SkipError{Reason: "dry run", Err: errors.New("dry run: not executed")}
	if err := l.Do(context.Background(), Entry{Node: "n2", Action: "power off"},
		func(context.Context) (map[string]any, error) { return nil, skip }); err != skip {
		t.Errorf("Do = %v, want the SkipError unchanged", err)
	}
	recs := f.records(t)
	if len(recs) != 4 || recs[1].Result != ResultFailed || recs[1].Error != "BMC said no" ||
		recs[3].Result != ResultSkipped || recs[3].Error != "dry run" {
		t.Errorf("records %+v: want failed then skipped outcomes", recs)
	}
}

func TestIntentNotRecordedStopsTheAct(t *testing.T) {
	for _, tc := range []struct {
		name string
		log  func(t *testing.T) *Log
	}{
		{"write fails", func(t *testing.T) *Log {
			l, _ := newTestLog(&fakeFile{writeErr: errors.New("no space left on device")}, Options{})
			return l
		}},
		{"closed", func(t *testing.T) *Log {
			l, err := Open(filepath.Join(t.TempDir(), "audit.jsonl"), "")
			if err != nil {
				t.Fatal(err)
			}
			l.Close()
			return l
		}},
		{"file closed under the log", func(t *testing.T) *Log {
			fh, err := os.OpenFile(filepath.Join(t.TempDir(), "audit.jsonl"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			fh.Close()
			return newLog(fh, "", Options{})
		}},
		{"sink fails", func(t *testing.T) *Log {
			l, _ := newTestLog(&fakeFile{}, Options{Sink: SinkFunc(func(context.Context, []Record) error {
				return errors.New("store unreachable")
			})})
			return l
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := tc.log(t)
			ran := false
			err := l.Do(context.Background(), Entry{Node: "n7", Action: "wipe boot sector"},
				func(context.Context) (map[string]any, error) { ran = true; return nil, nil })
			if ran {
				t.Error("the act ran although its intent was not recorded")
			}
			if !errors.Is(err, ErrIntentNotRecorded) || !strings.Contains(err.Error(), "n7") ||
				!strings.Contains(err.Error(), "wipe boot sector") {
				t.Errorf("Do = %v; want ErrIntentNotRecorded naming n7 and the action", err)
			}
		})
	}
}

func TestFenceStopsBeforeTheIntent(t *testing.T) {
	f := &fakeFile{}
	l, _ := newTestLog(f, Options{})
	lost := errors.New("lease lost")
	ran := false
	err := l.Do(context.Background(), Entry{Node: "n1", Action: "power cycle",
		Fence: func(context.Context) error { return lost }},
		func(context.Context) (map[string]any, error) { ran = true; return nil, nil })
	if ran || !errors.Is(err, lost) || !strings.Contains(err.Error(), "n1") {
		t.Errorf("Do = %v (ran %v); want the fence's error, no act", err, ran)
	}
	if recs := f.records(t); len(recs) != 0 {
		t.Errorf("records %+v; want none", recs)
	}
}

func TestOutcomeNotRecordedPoisons(t *testing.T) {
	for _, actErr := range []error{nil, errors.New("BMC said no")} {
		t.Run(fmt.Sprint(actErr), func(t *testing.T) {
			// The intent (first write) succeeds, the outcome fails.
			f := &fakeFile{writeErr: errors.New("I/O error"), failAfter: 1}
			l, logs := newTestLog(f, Options{})
			ran := 0
			err := l.Do(context.Background(), Entry{Node: "n1", Action: "power cycle"},
				func(context.Context) (map[string]any, error) { ran++; return nil, actErr })
			if ran != 1 || err != actErr {
				t.Errorf("Do = %v after %d acts; want the act's result %v unchanged", err, ran, actErr)
			}
			if !strings.Contains(logs.String(), "audit outcome not recorded") || !strings.Contains(logs.String(), "I/O error") {
				t.Errorf("log %q does not say the outcome was lost", logs.String())
			}
			err = l.Do(context.Background(), Entry{Node: "n2", Action: "power on"},
				func(context.Context) (map[string]any, error) { ran++; return nil, nil })
			if ran != 1 || !errors.Is(err, ErrIntentNotRecorded) || !strings.Contains(err.Error(), "an earlier outcome could not be recorded") {
				t.Errorf("later Do = %v (acts %d); want the poisoned log to refuse", err, ran)
			}
		})
	}
}

func TestSinkOutcomeFailurePoisons(t *testing.T) {
	var calls int
	sink := SinkFunc(func(_ context.Context, recs []Record) error {
		calls++
		if recs[0].Phase == PhaseOutcome {
			return errors.New("store unreachable")
		}
		return nil
	})
	f := &fakeFile{}
	l, logs := newTestLog(f, Options{Sink: sink})
	if err := l.Do(context.Background(), Entry{Node: "n1", Action: "power cycle"},
		func(context.Context) (map[string]any, error) { return nil, nil }); err != nil {
		t.Errorf("Do = %v; the act succeeded", err)
	}
	if !strings.Contains(logs.String(), "store unreachable") {
		t.Errorf("log %q does not name the sink's error", logs.String())
	}
	err := l.Do(context.Background(), Entry{Node: "n1", Action: "power on"},
		func(context.Context) (map[string]any, error) { t.Error("act ran on a poisoned log"); return nil, nil })
	if !errors.Is(err, ErrIntentNotRecorded) {
		t.Errorf("Do = %v; want ErrIntentNotRecorded", err)
	}
	if calls != 2 {
		t.Errorf("sink called %d times, want 2 (intent, outcome)", calls)
	}
}

func TestSinkIntentFailureSettledLocally(t *testing.T) {
	var got [][]Record
	sink := SinkFunc(func(_ context.Context, recs []Record) error {
		got = append(got, recs)
		return errors.New("store unreachable")
	})
	f := &fakeFile{}
	l, _ := newTestLog(f, Options{Sink: sink})
	err := l.Do(context.Background(), Entry{Node: "n1", Action: "power cycle"},
		func(context.Context) (map[string]any, error) { t.Error("act ran"); return nil, nil })
	if !errors.Is(err, ErrIntentNotRecorded) || !strings.Contains(err.Error(), "store unreachable") {
		t.Errorf("Do = %v", err)
	}
	recs := f.records(t)
	if len(recs) != 2 || recs[1].Result != ResultSkipped || len(Unsettled(recs)) != 0 {
		t.Errorf("local records %+v: want the intent settled as skipped", recs)
	}
	if len(got) != 1 {
		t.Errorf("sink got %d batches, want only the intent's", len(got))
	}
	// A sink failure for an intent does not poison: the next act may run
	// once the sink is back.
	l.opts.Sink = SinkFunc(func(context.Context, []Record) error { return nil })
	if err := l.Do(context.Background(), Entry{Node: "n1", Action: "power cycle"},
		func(context.Context) (map[string]any, error) { return nil, nil }); err != nil {
		t.Errorf("Do after the sink recovered = %v", err)
	}
}

func TestTornWriteDoesNotEatTheNextRecord(t *testing.T) {
	f := &fakeFile{writeErr: errors.New("I/O error"), half: true}
	l, _ := newTestLog(f, Options{})
	if _, err := l.Intent("n1", "power cycle", nil); !errors.Is(err, ErrIntentNotRecorded) {
		t.Fatalf("Intent = %v", err)
	}
	f.mu.Lock()
	f.writeErr = nil
	f.mu.Unlock()
	p, err := l.Intent("n2", "power on", nil)
	if err != nil {
		t.Fatal(err)
	}
	recs := f.records(t)
	if len(recs) != 1 || recs[0].ID != p.ID() {
		t.Errorf("records %+v: want n2's intent readable after the torn line", recs)
	}
}

// TestGroupCommit: every record queued while a sync is in flight is
// covered by the next single sync, and the sink gets it as one batch.
func TestGroupCommit(t *testing.T) {
	f := &fakeFile{syncGate: make(chan struct{}), inSync: make(chan struct{}, 8)}
	var batches []int
	var smu sync.Mutex
	sink := SinkFunc(func(_ context.Context, recs []Record) error {
		smu.Lock()
		defer smu.Unlock()
		batches = append(batches, len(recs))
		return nil
	})
	l, _ := newTestLog(f, Options{Sink: sink})
	const n = 20
	errs := make(chan error, n+1)
	go func() { _, err := l.Intent("leader", "power cycle", nil); errs <- err }()
	<-f.inSync // the leader is syncing its batch of one
	for i := range n {
		go func() { _, err := l.Intent(fmt.Sprintf("n%d", i), "power cycle", nil); errs <- err }()
	}
	labtool.Eventually(t, 10*time.Second, "every record queued behind the sync", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.pending) == n
	})
	close(f.syncGate)
	for range n + 1 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if f.syncs != 2 || len(f.records(t)) != n+1 {
		t.Errorf("%d syncs for %d records; want 2", f.syncs, len(f.records(t)))
	}
	if fmt.Sprint(batches) != fmt.Sprint([]int{1, n}) {
		t.Errorf("sink batches %v, want [1 %d]", batches, n)
	}
}

// countingFile counts the syncs of a real file.
type countingFile struct {
	*os.File
	mu    sync.Mutex
	syncs int
}

func (c *countingFile) Sync() error {
	c.mu.Lock()
	c.syncs++
	c.mu.Unlock()
	return c.File.Sync()
}

// serialLog is the pre-group-commit log (one lock across write and sync),
// kept here as the benchmark's baseline.
type serialLog struct {
	mu sync.Mutex
	f  *countingFile
}

func (s *serialLog) intent(node string) error {
	id, err := newID()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := json.Marshal(Record{Time: time.Now().UTC(), ID: id, Phase: PhaseIntent, Node: node, Action: "power cycle"})
	if err != nil {
		return err
	}
	if _, err := s.f.Write(append(b, '\n')); err != nil {
		return err
	}
	return s.f.Sync()
}

// BenchmarkAuditIntent writes intents from 64 goroutines to a real file:
// serial (one lock across each fsync, as before) and group (group commit),
// reporting records/s and fsyncs per record.
func BenchmarkAuditIntent(b *testing.B) {
	open := func(b *testing.B) *countingFile {
		fh, err := os.OpenFile(filepath.Join(b.TempDir(), "audit.jsonl"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { fh.Close() })
		return &countingFile{File: fh}
	}
	report := func(b *testing.B, f *countingFile) {
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		b.ReportMetric(float64(f.syncs)/float64(b.N), "fsyncs/record")
	}
	b.Run("serial", func(b *testing.B) {
		s := &serialLog{f: open(b)}
		b.SetParallelism((64 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := s.intent("n1"); err != nil {
					b.Error(err)
					return
				}
			}
		})
		report(b, s.f)
	})
	b.Run("group", func(b *testing.B) {
		f := open(b)
		l := newLog(f, "", Options{Controller: "bench/1"})
		b.SetParallelism((64 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := l.Intent("n1", "power cycle", nil); err != nil {
					b.Error(err)
					return
				}
			}
		})
		report(b, f)
	})
}
