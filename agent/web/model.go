package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/reprov/reprov/agent/store"
)

// ErrNoSuchNode is returned by Source.Node for a node neither the inventory
// nor the store knows; the page answers 404.
var ErrNoSuchNode = errors.New("no such node")

// Source is what the page, `reprov status` and the node pages show. The
// store-backed implementation is StoreSource; tests and benchmarks use
// synthetic ones. Implementations must be safe for concurrent use.
type Source interface {
	// Fleet returns every node's cell, grouped by rack, and the runs worth
	// showing (active ones first).
	Fleet(ctx context.Context) (Fleet, error)
	// Node returns one node's page (ErrNoSuchNode if unknown).
	Node(ctx context.Context, name string) (NodeDetail, error)
	// Audit returns the node's latest audit records, newest first, at most
	// limit of them.
	Audit(ctx context.Context, node string, limit int) ([]AuditEntry, error)
	// Windows returns the reimaging windows with their next occurrence and
	// last result.
	Windows(ctx context.Context) ([]Window, error)
}

// State is a node's state on the page: its latest job's state, or idle
// when it never had one.
type State string

// Node states, in the order of the legend.
const (
	StateRunning     State = "running"
	StateQueued      State = "queued"
	StateFailed      State = "failed"
	StateInterrupted State = "interrupted"
	StateCancelled   State = "cancelled"
	StateLanded      State = "landed"
	StateIdle        State = "idle" // never run
)

// States lists every node state in legend order.
func States() []State {
	return []State{StateRunning, StateQueued, StateFailed, StateInterrupted, StateCancelled, StateLanded, StateIdle}
}

// StateOf maps a job state to the node's state.
func StateOf(js store.JobState) State {
	switch js {
	case store.JobQueued:
		return StateQueued
	case store.JobRunning:
		return StateRunning
	case store.JobLanded:
		return StateLanded
	case store.JobFailed:
		return StateFailed
	case store.JobCancelled:
		return StateCancelled
	case store.JobInterrupted:
		return StateInterrupted
	}
	return StateIdle
}

// Cell is one node on the rack grid.
type Cell struct {
	Node          string
	Rack          string
	State         State
	Step          string // the latest step (running and stopped jobs)
	Reason        string // why it ended (failed, cancelled, interrupted)
	Path          string
	LandingSource store.LandingSource
	JobID         int64
	RunID         int64
	Updated       time.Time
	// Unknown is set for a node the store has a job for but the inventory
	// no longer lists.
	Unknown bool
}

// Title is the cell's tooltip: the node, its state and the last result
// with its reason.
func (c Cell) Title() string {
	var b strings.Builder
	b.WriteString(c.Node)
	b.WriteString(": ")
	b.WriteString(string(c.State))
	switch {
	case c.State == StateRunning && c.Step != "":
		b.WriteString(" (" + c.Step + ")")
	case c.State == StateLanded && c.LandingSource != "":
		b.WriteString(" (" + string(c.LandingSource) + ")")
	}
	if c.Reason != "" {
		b.WriteString(": ")
		b.WriteString(clip(c.Reason, 160))
	}
	if c.JobID != 0 {
		fmt.Fprintf(&b, " · job %d", c.JobID)
	}
	if c.Unknown {
		b.WriteString(" · not in the inventory")
	}
	return b.String()
}

func clip(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && s[cut]&0xC0 == 0x80 { // do not split a UTF-8 sequence
		cut--
	}
	return s[:cut] + "…"
}

// Counts counts nodes by state.
type Counts map[State]int

// Rack is one rack's grid.
type Rack struct {
	Name   string // "" for nodes without a rack
	Cells  []Cell
	Counts Counts
}

// Label is the rack's heading.
func (r Rack) Label() string {
	if r.Name == "" {
		return "(no rack)"
	}
	return r.Name
}

// Grid is the rack's cells as HTML: one link per node, coloured by its
// state class, its tooltip the Title. Written directly rather than through
// html/template: at 10,000 nodes the template's per-cell escaping is most
// of the rendering time. Every value is escaped here.
func (r Rack) Grid() template.HTML {
	var b strings.Builder
	b.Grow(len(r.Cells) * 96)
	for _, c := range r.Cells {
		b.WriteString(`<a class="s-`)
		b.WriteString(template.HTMLEscapeString(string(c.State)))
		b.WriteString(`" href="nodes/`)
		b.WriteString(template.HTMLEscapeString(url.PathEscape(c.Node)))
		b.WriteString(`" title="`)
		b.WriteString(template.HTMLEscapeString(c.Title()))
		b.WriteString(`"></a>`)
	}
	return template.HTML(b.String()) //nolint:gosec // every value above is escaped
}

// RunProgress is one run with its jobs counted by state.
type RunProgress struct {
	ID        int64
	State     store.RunState
	CreatedBy string
	Selection string
	Created   time.Time
	Jobs      map[store.JobState]int64
}

// Total is the run's number of jobs.
func (r RunProgress) Total() int64 {
	var n int64
	for _, c := range r.Jobs {
		n += c
	}
	return n
}

// Done is the run's number of ended jobs.
func (r RunProgress) Done() int64 {
	return r.Total() - r.Jobs[store.JobQueued] - r.Jobs[store.JobRunning]
}

// Percent is the share of a job state (or "done" for every ended job) in
// the run, 0–100, for the progress bars.
func (r RunProgress) Percent(what string) float64 {
	t := r.Total()
	if t == 0 {
		return 0
	}
	n := r.Jobs[store.JobState(what)]
	if what == "done" {
		n = r.Done()
	}
	return float64(int(1000*float64(n)/float64(t))) / 10
}

// Active reports whether the run may still start or finish nodes.
func (r RunProgress) Active() bool {
	return r.State == store.RunRunning || r.State == store.RunScheduled
}

// Window is a reimaging window (a recurring run) with its next occurrence
// and the result of its last one. The windows work fills it; until then
// sources return none.
type Window struct {
	Name       string
	Selection  string
	Next       time.Time // zero: none scheduled
	LastRunID  int64
	LastResult string // e.g. "58 landed, 2 failed"; "" if it never ran
}

// Fleet is everything the main page shows.
type Fleet struct {
	Generated time.Time
	Racks     []Rack
	Counts    Counts
	Total     int
	Runs      []RunProgress
}

// NodeDetail is a node's page.
type NodeDetail struct {
	Name      string
	Rack      string
	InInv     bool // the inventory lists the node
	Current   Cell
	Jobs      []store.NodeJob // newest first
	Latest    *store.NodeJob  // the latest job with its evidence (nil: never run)
	Steps     []store.Step    // of the latest job, oldest first
	Landings  []store.Landing // of the latest job
	Quirks    []store.Quirk
	Sectors   []store.SectorRecord // saved before wipes, of the latest job's run
	Evidence  string               // the latest job's evidence, indented JSON
	Generated time.Time
}

// AuditEntry is one record of a node's audit trail.
type AuditEntry struct {
	Time   time.Time
	Phase  string // intent or outcome
	JobID  int64  // the node job the act belongs to (0: an ad-hoc command)
	Action string
	Result string // outcome: ok, failed, skipped
	Detail string // JSON or text; never a secret
	Error  string
	// Controller is who wrote the record ("host/pid").
	Controller string
}

// BuildFleet groups cells into racks (sorted by rack, then node name) and
// counts them. Sources call it after collecting the cells.
func BuildFleet(cells []Cell, runs []RunProgress, now time.Time) Fleet {
	f := Fleet{Generated: now, Counts: Counts{}, Total: len(cells), Runs: runs}
	byRack := make(map[string]int)
	for _, c := range cells {
		i, ok := byRack[c.Rack]
		if !ok {
			i = len(f.Racks)
			byRack[c.Rack] = i
			f.Racks = append(f.Racks, Rack{Name: c.Rack, Counts: Counts{}})
		}
		f.Racks[i].Cells = append(f.Racks[i].Cells, c)
		f.Racks[i].Counts[c.State]++
		f.Counts[c.State]++
	}
	sort.Slice(f.Racks, func(a, b int) bool {
		ra, rb := f.Racks[a].Name, f.Racks[b].Name
		if (ra == "") != (rb == "") {
			return rb == "" // "(no rack)" last
		}
		return naturalLess(ra, rb)
	})
	for _, r := range f.Racks {
		sort.Slice(r.Cells, func(a, b int) bool { return naturalLess(r.Cells[a].Node, r.Cells[b].Node) })
	}
	return f
}

// naturalLess orders names with numbers by value: rack-2 before rack-10.
func naturalLess(a, b string) bool {
	for a != "" && b != "" {
		da, db := digits(a), digits(b)
		if da > 0 && db > 0 {
			na, nb := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if len(na) != len(nb) {
				return len(na) < len(nb)
			}
			if na != nb {
				return na < nb
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

func digits(s string) int {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return n
}

// Summary is the fleet in numbers: racks × states, the totals and the
// runs. It is `reprov status -o json`.
type Summary struct {
	Generated time.Time    `json:"generated"`
	Total     int          `json:"total"`
	States    Counts       `json:"states"`
	Racks     []RackCounts `json:"racks"`
	Runs      []RunCounts  `json:"runs"`
}

// RackCounts is one rack's nodes by state.
type RackCounts struct {
	Rack   string `json:"rack"`
	Total  int    `json:"total"`
	States Counts `json:"states"`
}

// RunCounts is one run's jobs by state.
type RunCounts struct {
	ID        int64                    `json:"id"`
	State     store.RunState           `json:"state"`
	CreatedBy string                   `json:"created_by,omitempty"`
	Selection string                   `json:"selection,omitempty"`
	Created   time.Time                `json:"created"`
	Total     int64                    `json:"total"`
	Jobs      map[store.JobState]int64 `json:"jobs"`
}

// Summary returns the fleet's numbers.
func (f Fleet) Summary() Summary {
	s := Summary{Generated: f.Generated, Total: f.Total, States: f.Counts, Racks: []RackCounts{}, Runs: []RunCounts{}}
	for _, r := range f.Racks {
		s.Racks = append(s.Racks, RackCounts{Rack: r.Name, Total: len(r.Cells), States: r.Counts})
	}
	for _, r := range f.Runs {
		s.Runs = append(s.Runs, RunCounts{ID: r.ID, State: r.State, CreatedBy: r.CreatedBy, Selection: r.Selection,
			Created: r.Created, Total: r.Total(), Jobs: r.Jobs})
	}
	return s
}

// indentJSON pretty-prints raw JSON for the node page ("" when empty).
func indentJSON(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var out strings.Builder
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return string(raw)
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return string(raw)
	}
	out.Write(b)
	return out.String()
}
