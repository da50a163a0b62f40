package audit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/reprov/reprov/lab/labtool"
)

// A sequence of acts on one node: Then writes the first act's outcome and
// the next act's intent in one write and one sync, outcome first.
func TestThenWritesOutcomeAndNextIntentTogether(t *testing.T) {
	f := &fakeFile{}
	var batches [][]string
	sink := SinkFunc(func(_ context.Context, recs []Record) error {
		var b []string
		for _, r := range recs {
			b = append(b, r.Action+" "+r.Phase)
		}
		batches = append(batches, b)
		return nil
	})
	l, _ := newTestLog(f, Options{Sink: sink})
	ctx := context.Background()
	p, err := l.Begin(ctx, Entry{Node: "n1", Action: "set boot override"})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := p.Then(ctx, nil, map[string]any{"verified": "full"}, Entry{Node: "n1", Action: "power cycle"})
	if err != nil {
		t.Fatal(err)
	}
	if err := p2.Finish(ctx, errors.New("BMC said no"), nil); err != nil {
		t.Fatal(err)
	}
	if f.syncs != 3 {
		t.Errorf("%d syncs for 4 records in 3 writes, want 3", f.syncs)
	}
	want := "[[set boot override intent] [set boot override outcome power cycle intent] [power cycle outcome]]"
	if fmt.Sprint(batches) != want {
		t.Errorf("sink batches %v, want %s", batches, want)
	}
	recs := f.records(t)
	if len(recs) != 4 || recs[1].ID != p.ID() || recs[1].Result != ResultOK || recs[1].Detail["verified"] != "full" ||
		recs[2].ID != p2.ID() || recs[2].Phase != PhaseIntent || recs[3].Result != ResultFailed || recs[3].Error != "BMC said no" {
		t.Errorf("records %+v", recs)
	}
}

// A log poisoned by an earlier lost outcome refuses Then's next intent,
// but still records the outcome Then carries.
func TestThenOnPoisonedLogRecordsTheOutcomeOnly(t *testing.T) {
	f := &fakeFile{}
	l, _ := newTestLog(f, Options{})
	ctx := context.Background()
	p, err := l.Begin(ctx, Entry{Node: "n1", Action: "set boot override"})
	if err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	l.poisoned = &errPoisoned{cause: errors.New("disk full")}
	l.mu.Unlock()
	_, err = p.Then(ctx, nil, nil, Entry{Node: "n1", Action: "power cycle"})
	if !errors.Is(err, ErrIntentNotRecorded) {
		t.Fatalf("Then on a poisoned log: %v, want ErrIntentNotRecorded", err)
	}
	recs := f.records(t)
	if len(recs) != 2 || recs[1].Phase != PhaseOutcome || recs[1].ID != p.ID() {
		t.Errorf("records %+v, want the intent and its outcome only", recs)
	}
}

// The next batch is written and synced while the sink still holds the
// previous one, and batches reach the sink in file order; no caller returns
// before its record is in the sink.
func TestSinkOverlapsTheNextWrite(t *testing.T) {
	f := &fakeFile{}
	gate := make(chan struct{})
	inSink := make(chan struct{}, 4)
	var mu sync.Mutex
	var order []string
	sink := SinkFunc(func(_ context.Context, recs []Record) error {
		inSink <- struct{}{}
		if recs[0].Node == "first" {
			<-gate
		}
		mu.Lock()
		defer mu.Unlock()
		for _, r := range recs {
			order = append(order, r.Node)
		}
		return nil
	})
	l, _ := newTestLog(f, Options{Sink: sink})
	errs := make(chan error, 2)
	go func() { _, err := l.Intent("first", "power cycle", nil); errs <- err }()
	<-inSink // the first batch is on disk, in the sink
	go func() { _, err := l.Intent("second", "power cycle", nil); errs <- err }()
	labtool.Eventually(t, 10*time.Second, "the second record synced while the sink holds the first", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.syncs == 2
	})
	select {
	case err := <-errs:
		t.Fatalf("an intent returned before its record reached the sink (err %v)", err)
	default:
	}
	close(gate)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if fmt.Sprint(order) != "[first second]" {
		t.Errorf("sink order %v, want [first second]", order)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// FinishLater returns before the outcome is on disk; Close waits for it.
func TestFinishLaterIsWrittenByClose(t *testing.T) {
	f := &fakeFile{}
	l, _ := newTestLog(f, Options{})
	p, err := l.Begin(context.Background(), Entry{Node: "n1", Action: "power cycle"})
	if err != nil {
		t.Fatal(err)
	}
	f.syncGate = make(chan struct{})
	f.inSync = make(chan struct{}, 1)
	p.FinishLater(context.Background(), nil, nil) // returns although the sync is held
	<-f.inSync
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) before the outcome was synced", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(f.syncGate)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if recs := f.records(t); len(recs) != 2 || recs[1].Phase != PhaseOutcome || recs[1].Result != ResultOK {
		t.Errorf("records %+v, want the intent and its ok outcome", recs)
	}
}
