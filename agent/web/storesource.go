package web

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/agent/window"
	"github.com/reprov/reprov/inventory"
)

// StoreSource is the Source read from the job store and the inventory. The
// inventory gives every node its cell (idle when it never had a job); the
// store gives each node's latest job. Nodes the store knows but the
// inventory no longer lists are shown too, marked unknown.
type StoreSource struct {
	// Store is the job store (required).
	Store *store.Store
	// Inventory returns the current inventory; nil or a nil result: the
	// store's nodes only. A func so that a reloaded inventory is picked up.
	Inventory func() *inventory.Inventory
	// RecentRuns is how many of the newest runs are looked at for the runs
	// panel (default 20): every active one among them is shown, and the
	// newest finished one when none is active.
	RecentRuns int
	// JobsPerNode is how many jobs a node's page lists (default 20).
	JobsPerNode int
	// Now is the clock (default time.Now).
	Now func() time.Time
}

var _ Source = (*StoreSource)(nil)

func (s *StoreSource) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *StoreSource) inventory() *inventory.Inventory {
	if s.Inventory == nil {
		return nil
	}
	return s.Inventory()
}

// Fleet implements Source.
func (s *StoreSource) Fleet(ctx context.Context) (Fleet, error) {
	jobs, err := s.Store.LatestJobs(ctx)
	if err != nil {
		return Fleet{}, err
	}
	latest := make(map[string]store.NodeJob, len(jobs))
	for _, j := range jobs {
		latest[j.Node] = j
	}
	var cells []Cell
	seen := make(map[string]bool)
	if inv := s.inventory(); inv != nil {
		cells = make([]Cell, 0, len(inv.Nodes)+len(jobs))
		for _, n := range inv.Nodes {
			seen[n.Name] = true
			c := Cell{Node: n.Name, Rack: n.Rack, State: StateIdle}
			if j, ok := latest[n.Name]; ok {
				c = cellOf(j)
				c.Rack = n.Rack
			}
			cells = append(cells, c)
		}
	}
	for _, j := range jobs {
		if seen[j.Node] {
			continue
		}
		c := cellOf(j)
		c.Unknown = s.inventory() != nil
		cells = append(cells, c)
	}
	runs, err := s.runs(ctx)
	if err != nil {
		return Fleet{}, err
	}
	return BuildFleet(cells, runs, s.now()), nil
}

func cellOf(j store.NodeJob) Cell {
	return Cell{Node: j.Node, Rack: j.Rack, State: StateOf(j.State), Step: j.Step, Reason: j.Reason, Path: j.Path,
		LandingSource: j.LandingSource, JobID: j.ID, RunID: j.RunID, Updated: j.Updated}
}

func (s *StoreSource) runs(ctx context.Context) ([]RunProgress, error) {
	n := s.RecentRuns
	if n <= 0 {
		n = 20
	}
	recent, err := s.Store.Runs(ctx, n)
	if err != nil {
		return nil, err
	}
	var show []store.Run
	for _, r := range recent {
		if r.State == store.RunRunning || r.State == store.RunScheduled {
			show = append(show, r)
		}
	}
	if len(show) == 0 && len(recent) > 0 {
		show = recent[:1]
	}
	ids := make([]int64, len(show))
	for i, r := range show {
		ids[i] = r.ID
	}
	counts, err := s.Store.RunJobCounts(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make([]RunProgress, len(show))
	for i, r := range show {
		out[i] = RunProgress{ID: r.ID, State: r.State, CreatedBy: r.CreatedBy, Selection: r.Selection, Created: r.Created,
			Jobs: counts[r.ID]}
		if out[i].Jobs == nil {
			out[i].Jobs = map[store.JobState]int64{}
		}
	}
	return out, nil
}

// Node implements Source.
func (s *StoreSource) Node(ctx context.Context, name string) (NodeDetail, error) {
	d := NodeDetail{Name: name, Generated: s.now(), Current: Cell{Node: name, State: StateIdle}}
	if inv := s.inventory(); inv != nil {
		for _, n := range inv.Nodes {
			if n.Name == name {
				d.InInv, d.Rack = true, n.Rack
				break
			}
		}
	}
	limit := s.JobsPerNode
	if limit <= 0 {
		limit = 20
	}
	jobs, err := s.Store.NodeJobs(ctx, store.JobFilter{Node: name, Limit: limit})
	if err != nil {
		return NodeDetail{}, err
	}
	if len(jobs) == 0 && !d.InInv {
		return NodeDetail{}, fmt.Errorf("node %q: %w", name, ErrNoSuchNode)
	}
	d.Jobs = jobs
	if d.Quirks, err = s.Store.Quirks(ctx, name); err != nil {
		return NodeDetail{}, err
	}
	if len(jobs) == 0 {
		d.Current.Rack = d.Rack
		return d, nil
	}
	latest := jobs[0]
	d.Latest = &latest
	d.Current = cellOf(latest)
	if d.Rack == "" {
		d.Rack = latest.Rack
	}
	d.Current.Rack, d.Current.Unknown = d.Rack, !d.InInv && s.inventory() != nil
	d.Evidence = indentJSON(latest.Evidence)
	if d.Steps, err = s.Store.Steps(ctx, latest.ID); err != nil {
		return NodeDetail{}, err
	}
	if d.Landings, err = s.Store.Landings(ctx, latest.ID); err != nil {
		return NodeDetail{}, err
	}
	if d.Sectors, err = s.Store.SectorRecords(ctx, name, latest.RunID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return NodeDetail{}, err
	}
	return d, nil
}

// Audit implements Source: the node's records of the store's shared audit
// trail, which every controller's audit log mirrors (docs/architecture.md,
// "Audit").
func (s *StoreSource) Audit(ctx context.Context, node string, limit int) ([]AuditEntry, error) {
	return storeAudit(ctx, s.Store, node, limit)
}

// Windows implements Source: every reimaging window with its next start
// and its latest occurrence (docs/windows.md).
func (s *StoreSource) Windows(ctx context.Context) ([]Window, error) {
	recs, err := s.Store.Windows(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Window, 0, len(recs))
	for _, r := range recs {
		st, err := window.Describe(ctx, s.Store, r, s.now(), 0)
		if err != nil {
			return nil, err
		}
		w := Window{Name: st.Name, Selection: st.Spec.Selection.Text(), Next: st.Next}
		if l := st.Last; l != nil {
			w.LastRunID = l.RunID
			w.LastResult = string(l.State)
			if sum := l.Summary(); sum != "" {
				w.LastResult += ": " + sum
			}
		}
		out = append(out, w)
	}
	return out, nil
}
