// Package webtest fills a job store with nodes in known states through the
// store's own API, for the tests of the status page, the metrics and
// `reprov status`. It is imported by tests only.
package webtest

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/inventory"
)

// Node is a node to put in the store.
type Node struct {
	Name string
	Rack string
	Site string
	// State is the job's state; "" gives the node no job (idle).
	State store.JobState
	// Step is recorded as an intent with an ok outcome (running and ended
	// jobs); the job's current step.
	Step string
	// Path is the job's path (oob, inband).
	Path string
	// Reason is why it ended (failed, cancelled, interrupted).
	Reason string
	// Landing is the landing source recorded for a landed job (default ipxe).
	Landing store.LandingSource
	// Resumes re-queues the job this many times before it is claimed (each
	// adds a generation, like a takeover).
	Resumes int
	// HandedOver records a handed_over mark on the job before Step.
	HandedOver bool
}

// Owner is the controller the seeded running jobs are held by.
const Owner = "webtest/job-1"

// Seed submits one run holding every node that has a State and walks each
// job to its state with the store's API. Nodes with an active job are
// attached to, as reinstall does.
func Seed(ctx context.Context, st *store.Store, by string, nodes []Node) (store.Run, error) {
	q, err := st.NewQueue(store.QueueConfig{ID: "webtest"})
	if err != nil {
		return store.Run{}, err
	}
	var sub []store.SubmitNode
	want := make(map[string]Node)
	for i, n := range nodes {
		if n.State == "" {
			continue
		}
		want[n.Name] = n
		sub = append(sub, store.SubmitNode{Node: n.Name, Rack: n.Rack, Site: n.Site,
			MACs: []string{fmt.Sprintf("02:00:00:%02x:%02x:%02x", i>>16&0xff, i>>8&0xff, i&0xff)}})
	}
	run, res, err := q.Submit(ctx, store.RunSpec{CreatedBy: by, Selection: "webtest"}, sub, store.SubmitOpts{})
	if err != nil {
		return run, err
	}
	for _, r := range res {
		if r.Attached {
			continue
		}
		if err := walk(ctx, st, q, r.Job, want[r.Node]); err != nil {
			return run, fmt.Errorf("seed node %s: %w", r.Node, err)
		}
	}
	return run, nil
}

func walk(ctx context.Context, st *store.Store, q *store.Queue, job store.NodeJob, n Node) error {
	var err error
	for range n.Resumes {
		if job, err = q.Resume(ctx, job.ID, store.EnqueueOpts{}); err != nil {
			return err
		}
	}
	if n.State == store.JobQueued {
		return nil
	}
	if job, err = st.ClaimNodeJob(ctx, job.ID, job.Generation, Owner, time.Hour); err != nil {
		return err
	}
	if n.Path != "" {
		if err := st.SetPath(ctx, job.ID, n.Path); err != nil {
			return err
		}
	}
	steps := []string{}
	if n.HandedOver {
		steps = append(steps, "handed_over")
	}
	if n.Step != "" {
		steps = append(steps, n.Step)
	}
	for _, s := range steps {
		in, err := st.RecordStep(ctx, store.Step{JobID: job.ID, Name: s, Phase: store.PhaseIntent, Owner: Owner})
		if err != nil {
			return err
		}
		if _, err := st.RecordStep(ctx, store.Step{Phase: store.PhaseOutcome, IntentID: in.ID, Result: store.ResultOK}); err != nil {
			return err
		}
	}
	switch n.State {
	case store.JobRunning:
		return nil
	case store.JobLanded:
		return land(ctx, st, job, n.Landing)
	}
	_, err = st.FinishNode(ctx, job.ID, store.Finish{State: n.State, Reason: n.Reason, Owner: Owner})
	return err
}

func land(ctx context.Context, st *store.Store, job store.NodeJob, source store.LandingSource) error {
	if source == "" {
		source = store.LandingIPXE
	}
	ev, _ := json.Marshal(map[string]string{"node": job.Node, "source": string(source)})
	// The engine arms a job's landing right before its kick; a landing
	// counts only after that.
	if err := st.ArmLanding(ctx, job.ID, Owner); err != nil {
		return err
	}
	if _, err := st.MarkLanded(ctx, job.ID, source, ev); err != nil {
		return err
	}
	_, err := st.FinishNode(ctx, job.ID, store.Finish{State: store.JobLanded, Evidence: ev})
	return err
}

// Land lands node's active job now (the netboot chain saw it through
// iPXE), as the landing endpoint and the engine would.
func Land(ctx context.Context, st *store.Store, node string) error {
	job, err := st.ActiveJob(ctx, node)
	if err != nil {
		return err
	}
	return land(ctx, st, job, store.LandingIPXE)
}

// Inventory is an inventory listing the nodes with their racks.
func Inventory(nodes []Node) *inventory.Inventory {
	inv := &inventory.Inventory{Source: "webtest"}
	for _, n := range nodes {
		inv.Nodes = append(inv.Nodes, inventory.Node{Name: n.Name, Rack: n.Rack})
	}
	return inv
}

// Fleet returns a small fleet in every state: 3 racks × 6 nodes.
func Fleet() []Node {
	var out []Node
	add := func(rack string, i int, n Node) {
		n.Name, n.Rack = fmt.Sprintf("%s-n%02d", rack, i), rack
		out = append(out, n)
	}
	for r, rack := range []string{"r1", "r2", "r3"} {
		add(rack, 1, Node{State: store.JobLanded, Path: "oob", Step: "wait_landing"})
		add(rack, 2, Node{State: store.JobLanded, Path: "inband", Step: "wait_landing", Landing: store.LandingCallback, Resumes: r % 2, HandedOver: r == 2})
		add(rack, 3, Node{State: store.JobFailed, Path: "oob", Step: "precheck", Reason: "precheck: BMC unreachable: dial udp 127.0.0.1:623: connection refused"})
		add(rack, 4, Node{State: store.JobRunning, Path: "oob", Step: "wait_landing"})
		add(rack, 5, Node{State: store.JobQueued})
		add(rack, 6, Node{})
	}
	out[16].State, out[16].Reason = store.JobInterrupted, "interrupted"
	out[17].State, out[17].Reason = store.JobCancelled, "cancelled by operator"
	return out
}
