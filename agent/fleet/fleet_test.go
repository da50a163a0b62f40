package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/inventory"
)

// fleetOf builds nodes: racks[i] nodes in rack "r<i>" for each entry, then
// unracked nodes without a rack, in inventory order rack by rack.
func fleetOf(racks []int, unracked int) []inventory.Node {
	var nodes []inventory.Node
	for r, n := range racks {
		for i := range n {
			nodes = append(nodes, inventory.Node{Name: fmt.Sprintf("r%d-n%02d", r, i), Rack: fmt.Sprintf("r%d", r)})
		}
	}
	for i := range unracked {
		nodes = append(nodes, inventory.Node{Name: fmt.Sprintf("loose-%02d", i)})
	}
	return nodes
}

// tracker follows the nodes inside an operation that waits for a token.
type tracker struct {
	mu             sync.Mutex
	inside         int
	maxInside      int
	rackInside     map[string]int
	maxRackInside  map[string]int
	finished       map[string]int
	started        []string
	gate           chan struct{}
	sawCancelledCx bool
}

func newTracker() *tracker {
	return &tracker{rackInside: map[string]int{}, maxRackInside: map[string]int{},
		finished: map[string]int{}, gate: make(chan struct{})}
}

func (tr *tracker) op(ctx context.Context, n inventory.Node) (any, error) {
	tr.mu.Lock()
	tr.inside++
	tr.maxInside = max(tr.maxInside, tr.inside)
	tr.rackInside[n.Rack]++
	tr.maxRackInside[n.Rack] = max(tr.maxRackInside[n.Rack], tr.rackInside[n.Rack])
	tr.started = append(tr.started, n.Name)
	tr.mu.Unlock()

	<-tr.gate

	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.inside--
	tr.rackInside[n.Rack]--
	tr.finished[n.Rack]++
	if ctx.Err() != nil {
		tr.sawCancelledCx = true
		return nil, ctx.Err()
	}
	return n.Name + " done", nil
}

// settled reports whether as many nodes are inside as the limits allow.
func (tr *tracker) settled(nodes []inventory.Node, maxPar, perRack int) bool {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	total := map[string]int{}
	for _, n := range nodes {
		total[n.Rack]++
	}
	want := 0
	for rack, t := range total {
		left := t - tr.finished[rack]
		if rack != "" && perRack > 0 {
			left = min(left, perRack)
		}
		want += left
	}
	return tr.inside == min(want, maxPar)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRunNeverExceedsLimits(t *testing.T) {
	for _, tc := range []struct {
		name          string
		racks         []int
		unracked      int
		maxPar, perRk int
	}{
		{"overall", nil, 40, 5, 0},
		{"per rack", []int{10, 10, 10}, 0, 100, 2},
		{"both", []int{12, 3, 7, 1}, 5, 6, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nodes := fleetOf(tc.racks, tc.unracked)
			tr := newTracker()
			r := &Runner{MaxParallel: tc.maxPar, PerRack: tc.perRk}
			resc := make(chan []Result, 1)
			go func() { resc <- r.Run(context.Background(), nodes, "power status", tr.op) }()
			for range nodes {
				waitFor(t, "the runner to fill its slots", func() bool { return tr.settled(nodes, tc.maxPar, tc.perRk) })
				tr.gate <- struct{}{}
			}
			res := <-resc

			if tr.maxInside > tc.maxPar {
				t.Errorf("%d nodes in flight at once, limit %d", tr.maxInside, tc.maxPar)
			}
			peak := 0
			for _, n := range tc.racks {
				if tc.perRk > 0 {
					n = min(n, tc.perRk)
				}
				peak += n
			}
			if peak = min(peak+tc.unracked, tc.maxPar); tr.maxInside != peak {
				t.Errorf("at most %d nodes in flight, want the limits' peak %d reached", tr.maxInside, peak)
			}
			for rack, m := range tr.maxRackInside {
				if rack != "" && tc.perRk > 0 && m > tc.perRk {
					t.Errorf("rack %s had %d nodes in flight, limit %d", rack, m, tc.perRk)
				}
			}
			if tc.perRk > 0 && tr.maxRackInside["r0"] != tc.perRk {
				t.Errorf("rack r0 peaked at %d in flight, want the rack limit %d reached", tr.maxRackInside["r0"], tc.perRk)
			}
			for i, r := range res {
				if r.Node != nodes[i].Name || r.Status != StatusOK || r.Detail != nodes[i].Name+" done" {
					t.Errorf("result %d = %+v, want %s ok in inventory order", i, r, nodes[i].Name)
				}
			}
		})
	}
}

func TestRunInterleavesRacks(t *testing.T) {
	nodes := fleetOf([]int{3, 2, 1}, 0)
	var order []string
	r := &Runner{MaxParallel: 1}
	res := r.Run(context.Background(), nodes, "power status", func(_ context.Context, n inventory.Node) (any, error) {
		order = append(order, n.Name)
		return nil, nil
	})
	want := []string{"r0-n00", "r1-n00", "r2-n00", "r0-n01", "r1-n01", "r0-n02"}
	if !slices.Equal(order, want) {
		t.Errorf("start order %v, want racks interleaved %v", order, want)
	}
	for i, r := range res {
		if r.Node != nodes[i].Name || r.Rack != nodes[i].Rack || r.Op != "power status" {
			t.Errorf("result %d = %+v, want node %s in inventory order", i, r, nodes[i].Name)
		}
	}
}

func TestRunFailureBudgetStopsStartingNodes(t *testing.T) {
	nodes := fleetOf(nil, 10)
	calls := 0
	r := &Runner{MaxParallel: 1, MaxFailures: 2}
	res := r.Run(context.Background(), nodes, "power cycle", func(_ context.Context, n inventory.Node) (any, error) {
		calls++
		if n.Name == "loose-02" || n.Name == "loose-03" {
			return nil, fmt.Errorf("connect %s: %w", n.Name, bmc.ErrAuthentication)
		}
		return nil, nil
	})
	if calls != 4 {
		t.Errorf("%d nodes started, want 4 (stop after the 2nd failure)", calls)
	}
	for i, r := range res {
		switch {
		case i < 2 && r.Status != StatusOK,
			(i == 2 || i == 3) && (r.Status != StatusFailed || r.Reason != "BMC refused the credentials"),
			i > 3 && (r.Status != StatusSkipped || !strings.Contains(r.Reason, "failure budget")):
			t.Errorf("result %d: %+v", i, r)
		}
	}
}

func TestRunFailureBudgetLetsInFlightFinish(t *testing.T) {
	nodes := fleetOf(nil, 10)
	tr := newTracker()
	r := &Runner{MaxParallel: 3, MaxFailures: 1}
	resc := make(chan []Result, 1)
	go func() {
		resc <- r.Run(context.Background(), nodes, "power cycle", func(ctx context.Context, n inventory.Node) (any, error) {
			_, _ = tr.op(ctx, n)
			return nil, errors.New("boom")
		})
	}()
	waitFor(t, "3 nodes in flight", func() bool { tr.mu.Lock(); defer tr.mu.Unlock(); return tr.inside == 3 })
	for range 3 {
		tr.gate <- struct{}{}
	}
	res := <-resc
	c := Count(res)
	if c.Failed != 3 || c.Skipped != 7 {
		t.Errorf("counts %+v, want the 3 in flight failed and 7 skipped", c)
	}
}

func TestRunCancellation(t *testing.T) {
	for _, cancelInFlight := range []bool{false, true} {
		t.Run(fmt.Sprint("CancelInFlight=", cancelInFlight), func(t *testing.T) {
			nodes := fleetOf([]int{3, 3}, 0)
			tr := newTracker()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			r := &Runner{MaxParallel: 2, CancelInFlight: cancelInFlight}
			resc := make(chan []Result, 1)
			go func() { resc <- r.Run(ctx, nodes, "power off", tr.op) }()
			waitFor(t, "2 nodes in flight", func() bool { tr.mu.Lock(); defer tr.mu.Unlock(); return tr.inside == 2 })
			cancel()
			tr.gate <- struct{}{}
			tr.gate <- struct{}{}
			res := <-resc

			if len(tr.started) != 2 {
				t.Errorf("%d nodes started, want only the 2 in flight at cancellation", len(tr.started))
			}
			wantInFlight := StatusOK
			if cancelInFlight {
				wantInFlight = StatusInterrupted
			}
			for _, r := range res {
				want := StatusInterrupted
				if slices.Contains(tr.started, r.Node) {
					want = wantInFlight
				}
				if r.Status != want {
					t.Errorf("%s: status %s, want %s", r.Node, r.Status, want)
				}
			}
			if tr.sawCancelledCx != cancelInFlight {
				t.Errorf("in-flight operations saw a cancelled context: %v, want %v", tr.sawCancelledCx, cancelInFlight)
			}
		})
	}
}

func TestRunAlreadyCancelledStartsNothing(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := (&Runner{}).Run(ctx, fleetOf([]int{2}, 1), "power on", func(context.Context, inventory.Node) (any, error) {
		t.Error("a node was started after cancellation")
		return nil, nil
	})
	for _, r := range res {
		if r.Status != StatusInterrupted {
			t.Errorf("%s: %s, want interrupted", r.Node, r.Status)
		}
	}
}

func TestRunPanicFailsOnlyThatNode(t *testing.T) {
	res := (&Runner{}).Run(context.Background(), fleetOf(nil, 3), "bmc info", func(_ context.Context, n inventory.Node) (any, error) {
		if n.Name == "loose-01" {
			panic("nil map")
		}
		return nil, nil
	})
	if res[1].Status != StatusFailed || res[1].Reason != "internal error" || !strings.Contains(res[1].Error, "nil map") {
		t.Errorf("panicking node: %+v", res[1])
	}
	if res[0].Status != StatusOK || res[2].Status != StatusOK {
		t.Errorf("other nodes: %+v, %+v", res[0], res[2])
	}
}

type landingErr struct{}

func (landingErr) Error() string  { return "node web-1 booted its old OS again" }
func (landingErr) Reason() string { return "did not land" }

func TestClassify(t *testing.T) {
	opErr := func(err error) error { return &bmc.OpError{Op: "connect", BMC: "10.1.12.14:623", Err: err} }
	for _, tc := range []struct {
		err    error
		status Status
		reason string
	}{
		{nil, StatusOK, ""},
		{opErr(fmt.Errorf("RAKP 2: %w", bmc.ErrAuthentication)), StatusFailed, "BMC refused the credentials"},
		{&bmc.RetryError{Tries: 4, Err: bmc.Temporary(opErr(bmc.ErrNoAnswer))}, StatusFailed, "no answer after 4 tries"},
		{opErr(bmc.ErrCipherSuite), StatusFailed, "cipher suite not offered"},
		{opErr(bmc.ErrReverted), StatusFailed, "override reverted by the BMC"},
		{fmt.Errorf("%w: %w", bmc.ErrPowerOutcomeUnknown, bmc.Temporary(opErr(bmc.ErrNoAnswer))), StatusFailed, "power action outcome unknown"},
		{fmt.Errorf("node a: bmc.password: %w env:X: not set", inventory.ErrSecret), StatusFailed, "credential not available"},
		{fmt.Errorf("node a: %w: no bmc.address", ErrBMCConfig), StatusFailed, "bad BMC configuration"},
		{fmt.Errorf("%w: would power cycle", bmc.ErrDryRun), StatusSkipped, "dry run"},
		{Skip("node has an active job"), StatusSkipped, "node has an active job"},
		{opErr(context.Canceled), StatusInterrupted, "interrupted"},
		{opErr(context.DeadlineExceeded), StatusFailed, "timed out"},
		{landingErr{}, StatusFailed, "did not land"},
		{errors.New("something odd"), StatusFailed, "error"},
	} {
		s, r := Classify(tc.err)
		if s != tc.status || r != tc.reason {
			t.Errorf("Classify(%v) = %s, %q; want %s, %q", tc.err, s, r, tc.status, tc.reason)
		}
	}
}

func TestProgressLines(t *testing.T) {
	var buf bytes.Buffer
	nodes := fleetOf([]int{2}, 1)
	(&Runner{Progress: &buf}).Run(context.Background(), nodes, "power status", func(_ context.Context, n inventory.Node) (any, error) {
		if n.Name == "r0-n01" {
			return nil, bmc.ErrAuthentication
		}
		return nil, nil
	})
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != len(nodes) {
		t.Fatalf("progress %q: want one line per node", buf.String())
	}
	if !strings.Contains(buf.String(), "power status r0-n01: failed (BMC refused the credentials)") {
		t.Errorf("progress %q lacks the failed node and its reason", buf.String())
	}
	if !strings.HasPrefix(lines[len(lines)-1], "[3/3] ") {
		t.Errorf("last line %q: want a [3/3] counter", lines[len(lines)-1])
	}
}

func TestProgressBar(t *testing.T) {
	var buf bytes.Buffer
	r := &Runner{Progress: &buf, forceBar: true}
	r.Run(context.Background(), fleetOf(nil, 4), "power status", func(_ context.Context, n inventory.Node) (any, error) {
		if n.Name == "loose-03" {
			return nil, bmc.ErrNoAnswer
		}
		return nil, nil
	})
	out := buf.String()
	for _, want := range []string{"4/4", "ok 3, failed 1", "loose-03: failed (no answer)"} {
		if !strings.Contains(out, want) {
			t.Errorf("bar output %q lacks %q", out, want)
		}
	}
}

func TestResultJSON(t *testing.T) {
	b, err := json.Marshal(Result{Node: "web-014", Rack: "r12", Op: "power cycle", Status: StatusFailed,
		Reason: "authentication failed", Error: "x", Duration: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m["node"] != "web-014" || m["status"] != "failed" || m["reason"] != "authentication failed" || m["duration_ms"] != 1500.0 {
		t.Errorf("JSON %s", b)
	}
}
