package inventory

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// maxProblems caps how many problems one file reports, so that a file of
// the wrong kind does not bury the terminal.
const maxProblems = 1000

// String formats the position as "file:line", "file" when the line is not
// known, or "line N" when the file is not.
func (p Position) String() string {
	switch {
	case p.File == "" && p.Line == 0:
		return ""
	case p.Line == 0:
		return p.File
	case p.File == "":
		return "line " + strconv.Itoa(p.Line)
	}
	return p.File + ":" + strconv.Itoa(p.Line)
}

// Problem is one error found in an inventory file. Its Error method reads
//
//	fleet.yaml:41: node web-014: bmc.address: unknown scheme "ipmj"
//
// and never contains a credential's value.
type Problem struct {
	// Pos is the file (as given to Load) and line of the offending value or key.
	Pos Position
	// Node names the node concerned: its name, "#N" for the N-th entry when
	// it has no usable name, "" for file-level and defaults problems. When the
	// same problem affects several nodes (an inherited value), it reads
	// "web-01 and 9 more".
	Node string
	// Field is the native field path ("bmc.address", "defaults.ssh.port"),
	// "" when the problem is not about one field.
	Field string
	// Msg says what is wrong, and where it helps, what would be right.
	Msg string
}

// Error implements error.
func (p Problem) Error() string { return formatDiag(p.Pos, p.Node, p.Field, p.Msg) }

// Warning is something valid but risky or lossy in an inventory file. It
// reads like a Problem.
type Warning struct {
	Pos   Position
	Node  string
	Field string
	Msg   string
}

// String formats the warning like Problem.Error.
func (w Warning) String() string { return formatDiag(w.Pos, w.Node, w.Field, w.Msg) }

func formatDiag(pos Position, node, field, msg string) string {
	var b strings.Builder
	if s := pos.String(); s != "" {
		b.WriteString(s)
		b.WriteString(": ")
	}
	if node != "" {
		b.WriteString("node ")
		b.WriteString(node)
		b.WriteString(": ")
	}
	if field != "" {
		b.WriteString(field)
		b.WriteString(": ")
	}
	b.WriteString(msg)
	return b.String()
}

// ValidationError is every problem found in one inventory file. Load reports
// all of them in one run.
type ValidationError struct {
	Problems []Problem
}

// Error lists the problems, one per line.
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the problems, so that errors.As finds a Problem.
func (e *ValidationError) Unwrap() []error {
	errs := make([]error, len(e.Problems))
	for i, p := range e.Problems {
		errs[i] = p
	}
	return errs
}

// diags collects the problems and warnings of one file — and of the files
// it draws values from (an Ansible inventory's group_vars/ and host_vars/):
// a line of such a file is fileLine(index, line), index from addFile.
type diags struct {
	file     string
	problems []Problem
	warnings []Warning
	// truncated is set once maxProblems was reached.
	truncated bool
	// more are the other files, by index-1.
	more []string
}

// fileLineShift places the index of another file above the line numbers.
const fileLineShift = 24

// addFile registers another file and returns its index for fileLine.
func (d *diags) addFile(name string) int {
	d.more = append(d.more, name)
	return len(d.more)
}

// fileLine is line of the file addFile numbered index.
func fileLine(index, line int) int { return index<<fileLineShift | line }

// pos is the position of an encoded line.
func (d *diags) pos(line int) Position {
	if i := line >> fileLineShift; i > 0 && i <= len(d.more) {
		return Position{File: d.more[i-1], Line: line & (1<<fileLineShift - 1)}
	}
	return Position{File: d.file, Line: line}
}

func (d *diags) problem(line int, node, field, format string, args ...any) {
	if len(d.problems) >= maxProblems {
		d.truncated = true
		return
	}
	d.problems = append(d.problems, Problem{
		Pos: d.pos(line), Node: node, Field: field,
		Msg: fmt.Sprintf(format, args...),
	})
}

func (d *diags) warn(line int, node, field, format string, args ...any) {
	if len(d.warnings) >= maxProblems {
		return
	}
	d.warnings = append(d.warnings, Warning{
		Pos: d.pos(line), Node: node, Field: field,
		Msg: fmt.Sprintf(format, args...),
	})
}

// byPos orders positions: the file's own first, then the others by name,
// each by line.
func (d *diags) byPos(a, b Position) int {
	return cmp.Or(cmp.Compare(boolInt(a.File != d.file), boolInt(b.File != d.file)), cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line))
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// err returns the collected problems as a *ValidationError, or nil.
func (d *diags) err() error {
	if len(d.problems) == 0 {
		return nil
	}
	ps := collapse(d.problems, func(p Problem) diagKey { return diagKey{p.Pos, p.Field, p.Msg} },
		func(p *Problem, node string) { p.Node = node }, func(p Problem) string { return p.Node })
	slices.SortStableFunc(ps, func(a, b Problem) int { return d.byPos(a.Pos, b.Pos) })
	if d.truncated {
		ps = append(ps, Problem{Pos: Position{File: d.file}, Msg: fmt.Sprintf("stopped after %d problems; fix these first", maxProblems)})
	}
	return &ValidationError{Problems: ps}
}

// finalWarnings returns the warnings, collapsed and sorted like problems.
func (d *diags) finalWarnings() []Warning {
	ws := collapse(d.warnings, func(w Warning) diagKey { return diagKey{w.Pos, w.Field, w.Msg} },
		func(w *Warning, node string) { w.Node = node }, func(w Warning) string { return w.Node })
	slices.SortStableFunc(ws, func(a, b Warning) int { return d.byPos(a.Pos, b.Pos) })
	return ws
}

type diagKey struct {
	pos   Position
	field string
	msg   string
}

// collapse merges diagnostics that differ only by node (a value inherited
// from defaults or an Ansible group, wrong in the same way for every node)
// into one that names the first node and counts the others.
func collapse[T any](in []T, key func(T) diagKey, setNode func(*T, string), node func(T) string) []T {
	if len(in) < 2 {
		return in
	}
	type keyNode struct {
		diagKey
		node string
	}
	index := make(map[diagKey]int, len(in))
	seen := make(map[keyNode]bool, len(in))
	counts := make([]int, 0, len(in))
	out := make([]T, 0, len(in))
	for _, x := range in {
		k := key(x)
		kn := keyNode{k, node(x)}
		if seen[kn] {
			continue // the same problem of the same node, said once
		}
		seen[kn] = true
		if i, ok := index[k]; ok {
			counts[i]++
			continue
		}
		index[k] = len(out)
		out = append(out, x)
		counts = append(counts, 0)
	}
	for i := range out {
		if counts[i] > 0 && node(out[i]) != "" {
			setNode(&out[i], fmt.Sprintf("%s and %d more", node(out[i]), counts[i]))
		}
	}
	return out
}
