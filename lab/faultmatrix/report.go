package faultmatrix

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
)

// Table prints the report: fault → nodes → expected → observed → verdict,
// the invariants and every node not as expected.
func (r *Report) Table(w io.Writer) {
	fmt.Fprintf(w, "fault matrix %q: %d nodes in %s on %s (load before %s, after %s)\n\n", r.Matrix, r.Nodes,
		r.Duration.Round(time.Second), r.Machine, r.LoadBefore, r.LoadAfter)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FAULT\tNODES\tEXPECTED\tOBSERVED\tVERDICT")
	for _, row := range r.Rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", row.Fault, nodeList(row.Nodes), row.Expected, row.Observed, row.Verdict)
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, inv := range r.Invariants {
		v := "held"
		if !inv.Held {
			v = fmt.Sprintf("VIOLATED (%d)", len(inv.Violations))
		}
		fmt.Fprintf(w, "invariant: %-72s %s\n", inv.Name, v)
		for i, s := range inv.Violations {
			if i == 10 {
				fmt.Fprintf(w, "    … %d more\n", len(inv.Violations)-10)
				break
			}
			fmt.Fprintf(w, "    %s\n", s)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s: %d\n", n.Name, len(n.Violations))
		for _, s := range firstN(n.Violations, 10) {
			fmt.Fprintf(w, "    %s\n", s)
		}
	}
	fmt.Fprintln(w)
	for _, c := range r.Controllers {
		end := fmt.Sprintf("exit %d", c.Exit)
		if c.Killed {
			end = fmt.Sprintf("SIGKILLed at %.0f %% of the nodes started", 100*c.KilledAt)
		}
		if c.TimedOut {
			end = "killed by the matrix, " + c.Stopped
		}
		fmt.Fprintf(w, "controller: reprov %s: %s after %s\n", strings.Join(c.Args[2:], " "), end, c.Duration.Round(time.Millisecond))
	}
	if r.LandingOutage != "" {
		fmt.Fprintf(w, "landing endpoint: %s\n", r.LandingOutage)
	}
	bad := 0
	for _, n := range r.Results {
		if !n.OK {
			if bad == 0 {
				fmt.Fprintln(w, "\nnodes not in their expected terminal state:")
			}
			bad++
			fmt.Fprintf(w, "  %s (%s): %s — reason %q (%s)\n", n.Node, n.Fault, n.Why, n.Reason, n.Duration.Round(time.Millisecond))
		}
	}
	ok := len(r.Results) - bad
	fmt.Fprintf(w, "\n%d/%d nodes in their expected terminal state (%.1f %%)\n", ok, len(r.Results), 100*float64(ok)/float64(max(1, len(r.Results))))
}

// Markdown is the report as docs/reliability.md shows it.
func (r *Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Matrix `%s`: %d nodes in %s", r.Matrix, r.Nodes, r.Duration.Round(time.Second))
	if r.Commit != "" {
		fmt.Fprintf(&b, ", commit `%s`", r.Commit)
	}
	fmt.Fprintf(&b, ", %s, load average %s before and %s after (1, 5, 15 min), %s.\n\n", r.Machine, r.LoadBefore, r.LoadAfter, r.Started.UTC().Format("2006-01-02 15:04 UTC"))
	b.WriteString("| fault | nodes | expected | observed | verdict |\n|---|---|---|---|---|\n")
	for _, row := range r.Rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", row.Fault, nodeList(row.Nodes), row.Expected, row.Observed, row.Verdict)
	}
	b.WriteString("\n| invariant | verdict |\n|---|---|\n")
	for _, inv := range r.Invariants {
		v := "held"
		if !inv.Held {
			v = fmt.Sprintf("**violated** (%d): %s", len(inv.Violations), strings.Join(firstN(inv.Violations, 5), "; "))
		}
		fmt.Fprintf(&b, "| %s | %s |\n", inv.Name, v)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "| %s | %d %s |\n", n.Name, len(n.Violations), strings.Join(firstN(n.Violations, 5), "; "))
	}
	b.WriteString("\n")
	for _, c := range r.Controllers {
		end := fmt.Sprintf("exit %d", c.Exit)
		if c.Killed {
			end = fmt.Sprintf("SIGKILLed at %.0f %% of the nodes started", 100*c.KilledAt)
		}
		if c.TimedOut {
			end = "killed by the matrix, " + c.Stopped
		}
		fmt.Fprintf(&b, "- controller `reprov %s`: %s after %s\n", strings.Join(c.Args[2:], " "), end, c.Duration.Round(time.Millisecond))
	}
	if r.LandingOutage != "" {
		fmt.Fprintf(&b, "- landing endpoint: %s\n", r.LandingOutage)
	}
	bad := 0
	for _, n := range r.Results {
		if !n.OK {
			if bad == 0 {
				b.WriteString("\nNodes not in their expected terminal state:\n\n")
			}
			bad++
			if bad <= 25 {
				fmt.Fprintf(&b, "- `%s` (%s): %s — reason \"%s\"\n", n.Node, n.Fault, n.Why, n.Reason)
			}
		}
	}
	if bad > 25 {
		fmt.Fprintf(&b, "- … %d more (fault-matrix.json has every node with its step record)\n", bad-25)
	}
	ok := len(r.Results) - bad
	fmt.Fprintf(&b, "\n**%d/%d nodes in their expected terminal state (%.1f %%).**\n", ok, len(r.Results), 100*float64(ok)/float64(max(1, len(r.Results))))
	return b.String()
}

// Write writes fault-matrix.json and fault-matrix.md into dir.
func (r *Report) Write(dir string) error {
	j, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "fault-matrix.json"), append(j, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "fault-matrix.md"), []byte(r.Markdown()), 0o644)
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("… %d more", len(s)-n))
	}
	return s
}

// nodeList shortens a long node list: the first three, then the count.
func nodeList(names []string) string {
	if len(names) <= 4 {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s, … (%d)", strings.Join(names[:3], ", "), len(names))
}
