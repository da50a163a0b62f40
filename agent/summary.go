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

// Summary tallies a run's results the way an operator reads them.
type Summary struct {
	Nodes int `json:"nodes"`
	// LandedOOB and LandedInband count the nodes that landed by each path.
	LandedOOB    int `json:"landed_oob"`
	LandedInband int `json:"landed_inband"`
	// Escalated counts the landed nodes that went in-band after the board
	// was caught ignoring the override.
	Escalated int `json:"escalated"`
	// Failed lists the failed nodes by reason.
	Failed map[string][]string `json:"failed"`
	// Skipped lists the nodes not worked (busy, failure budget) by reason.
	Skipped map[string][]string `json:"skipped"`
	// Interrupted lists the nodes stopped by Ctrl-C.
	Interrupted []string `json:"interrupted"`
	// Learned lists the nodes whose board was learned to ignore the
	// out-of-band override.
	Learned []string `json:"learned,omitempty"`
	// Resumed lists the nodes whose earlier job was continued.
	Resumed []string `json:"resumed,omitempty"`
	// Proposals are advice about models.
	Proposals []string `json:"proposals,omitempty"`
}

// Summarize tallies results (whose Detail is a *NodeReport).
func Summarize(results []fleet.Result) Summary {
	s := Summary{Nodes: len(results), Failed: map[string][]string{}, Skipped: map[string][]string{}}
	for _, r := range results {
		rep, _ := r.Detail.(*NodeReport)
		if rep == nil {
			rep = &NodeReport{Node: r.Node, Reason: r.Reason}
		}
		if rep.Resumed {
			s.Resumed = append(s.Resumed, r.Node)
		}
		if len(rep.Learned) > 0 {
			s.Learned = append(s.Learned, r.Node)
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
			s.Failed[reason] = append(s.Failed[reason], r.Node)
		case fleet.StatusSkipped:
			reason := r.Reason
			if i := strings.Index(reason, ": "); i > 0 && strings.HasPrefix(reason, ReasonBusy) {
				reason = ReasonBusy
			}
			s.Skipped[reason] = append(s.Skipped[reason], r.Node)
		case fleet.StatusInterrupted:
			s.Interrupted = append(s.Interrupted, r.Node)
		}
	}
	return s
}

// FailedCount is the number of failed nodes.
func (s Summary) FailedCount() int { return count(s.Failed) }

// SkippedCount is the number of skipped nodes.
func (s Summary) SkippedCount() int { return count(s.Skipped) }

func count(m map[string][]string) int {
	n := 0
	for _, v := range m {
		n += len(v)
	}
	return n
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
	if len(s.Interrupted) > 0 {
		fmt.Fprintf(w, "  interrupted:        %d (reprov reinstall --resume with the same selection continues them)\n      %s\n", len(s.Interrupted), strings.Join(s.Interrupted, ", "))
	}
	if len(s.Resumed) > 0 {
		fmt.Fprintf(w, "  resumed earlier jobs: %s\n", strings.Join(s.Resumed, ", "))
	}
	if len(s.Learned) > 0 {
		fmt.Fprintf(w, "  learned: the board ignores the out-of-band PXE override (next run goes in-band first): %s\n", strings.Join(s.Learned, ", "))
	}
	for _, p := range s.Proposals {
		fmt.Fprintf(w, "  proposal: %s\n", p)
	}
}

func writeGroups(w io.Writer, m map[string][]string) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "    %s (%d): %s\n", k, len(m[k]), strings.Join(m[k], ", "))
	}
}
