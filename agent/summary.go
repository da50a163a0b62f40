package agent

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/reprov/reprov/agent/fleet"
	"github.com/reprov/reprov/agent/store"
)

// Summary tallies a run's results the way an operator reads them. Every
// group of nodes has one shape (Group), in JSON too: failed and skipped by
// reason, and the interrupted, resumed and learned nodes; a list with no
// node is [] (never null).
type Summary struct {
	Nodes int `json:"nodes"`
	// LandedOOB and LandedInband count the nodes that landed by each path.
	LandedOOB    int `json:"landed_oob"`
	LandedInband int `json:"landed_inband"`
	// Escalated counts the landed nodes that went in-band after the board
	// was caught ignoring the override.
	Escalated int `json:"escalated"`
	// Failed groups the failed nodes by reason.
	Failed []Group `json:"failed"`
	// Skipped groups the nodes not worked (busy, failure budget) by reason.
	Skipped []Group `json:"skipped"`
	// Interrupted groups the nodes stopped by Ctrl-C (one group, reason
	// "interrupted").
	Interrupted []Group `json:"interrupted"`
	// Learned groups the nodes by the quirk learned about them in the run
	// (reason: the quirk, e.g. ignores-oob-pxe, device-only-bmc).
	Learned []Group `json:"learned"`
	// Resumed groups the nodes whose earlier job was continued (one group,
	// reason "resumed").
	Resumed []Group `json:"resumed"`
	// Proposals are advice about models.
	Proposals []string `json:"proposals"`
}

// Group is one group of a summary: the nodes that ended the same way for
// the same reason.
type Group struct {
	Reason string   `json:"reason"`
	Count  int      `json:"count"`
	Nodes  []string `json:"nodes"`
}

// groups turns reason → nodes into groups sorted by reason.
func groups(m map[string][]string) []Group {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]Group, 0, len(keys))
	for _, k := range keys {
		out = append(out, Group{Reason: k, Count: len(m[k]), Nodes: m[k]})
	}
	return out
}

// Summarize tallies results (whose Detail is a *NodeReport).
func Summarize(results []fleet.Result) Summary {
	s := Summary{Nodes: len(results), Proposals: []string{}}
	failed, skipped, learned := map[string][]string{}, map[string][]string{}, map[string][]string{}
	var interrupted, resumed []string
	for _, r := range results {
		rep, _ := r.Detail.(*NodeReport)
		if rep == nil {
			rep = &NodeReport{Node: r.Node, Reason: r.Reason}
		}
		if rep.Resumed {
			resumed = append(resumed, r.Node)
		}
		for _, q := range rep.Learned {
			if !slices.Contains(learned[q], r.Node) {
				learned[q] = append(learned[q], r.Node)
			}
		}
		if rep.Proposal != "" && !slices.Contains(s.Proposals, rep.Proposal) {
			s.Proposals = append(s.Proposals, rep.Proposal)
		}
		switch r.Status {
		case fleet.StatusOK:
			if rep.Path == "inband" {
				s.LandedInband++
			} else {
				s.LandedOOB++
			}
			if rep.Escalated {
				s.Escalated++
			}
		case fleet.StatusFailed:
			reason := r.Reason
			if reason == "" {
				reason = "error"
			}
			failed[reason] = append(failed[reason], r.Node)
		case fleet.StatusSkipped:
			reason := r.Reason
			if i := strings.Index(reason, ": "); i > 0 && strings.HasPrefix(reason, ReasonBusy) {
				reason = ReasonBusy
			}
			skipped[reason] = append(skipped[reason], r.Node)
		case fleet.StatusInterrupted:
			interrupted = append(interrupted, r.Node)
		}
	}
	s.Failed, s.Skipped, s.Learned = groups(failed), groups(skipped), groups(learned)
	s.Interrupted, s.Resumed = []Group{}, []Group{}
	if len(interrupted) > 0 {
		s.Interrupted = groups(map[string][]string{ReasonInterrupted: interrupted})
	}
	if len(resumed) > 0 {
		s.Resumed = groups(map[string][]string{"resumed": resumed})
	}
	return s
}

// FailedCount is the number of failed nodes.
func (s Summary) FailedCount() int { return count(s.Failed) }

// SkippedCount is the number of skipped nodes.
func (s Summary) SkippedCount() int { return count(s.Skipped) }

// InterruptedCount is the number of interrupted nodes.
func (s Summary) InterruptedCount() int { return count(s.Interrupted) }

func count(gs []Group) int {
	n := 0
	for _, g := range gs {
		n += g.Count
	}
	return n
}

// nodesOf lists the nodes of groups.
func nodesOf(gs []Group) []string {
	var out []string
	for _, g := range gs {
		out = append(out, g.Nodes...)
	}
	return out
}

// learnedText says what a learned quirk means for the next run.
var learnedText = map[string]string{
	store.QuirkIgnoresOOBPXE: "the board ignores the out-of-band PXE override (next run goes in-band first)",
	store.QuirkDeviceOnlyBMC: "the BMC keeps the boot device but clears the valid bit: set bmc.options.verify: device-only",
}

// Text writes the summary for an operator.
func (s Summary) Text(w io.Writer, run store.Run) {
	fmt.Fprintf(w, "run %d: %d nodes\n", run.ID, s.Nodes)
	fmt.Fprintf(w, "  landed out-of-band: %d\n", s.LandedOOB)
	fmt.Fprintf(w, "  landed in-band:     %d", s.LandedInband)
	if s.Escalated > 0 {
		fmt.Fprintf(w, " (%d escalated: the board ignored the out-of-band override)", s.Escalated)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  failed:             %d\n", s.FailedCount())
	writeGroups(w, s.Failed)
	if n := s.SkippedCount(); n > 0 {
		fmt.Fprintf(w, "  skipped:            %d\n", n)
		writeGroups(w, s.Skipped)
	}
	if n := s.InterruptedCount(); n > 0 {
		fmt.Fprintf(w, "  interrupted:        %d (reprov reinstall --resume with the same selection continues them)\n      %s\n", n, strings.Join(nodesOf(s.Interrupted), ", "))
	}
	if len(s.Resumed) > 0 {
		fmt.Fprintf(w, "  resumed earlier jobs: %s\n", strings.Join(nodesOf(s.Resumed), ", "))
	}
	for _, g := range s.Learned {
		what := learnedText[g.Reason]
		if what == "" {
			what = g.Reason
		}
		fmt.Fprintf(w, "  learned: %s: %s\n", what, strings.Join(g.Nodes, ", "))
	}
	for _, p := range s.Proposals {
		fmt.Fprintf(w, "  proposal: %s\n", p)
	}
}

func writeGroups(w io.Writer, gs []Group) {
	for _, g := range gs {
		fmt.Fprintf(w, "    %s (%d): %s\n", g.Reason, g.Count, strings.Join(g.Nodes, ", "))
	}
}
