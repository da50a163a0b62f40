package playbooks

import (
	"cmp"
	"errors"
	"slices"
	"strings"
)

// ErrUnknownPlaybook is wrapped by Set.Get for a name no playbook has.
var ErrUnknownPlaybook = errors.New("unknown playbook")

// Problem is one thing wrong in a playbook file.
type Problem struct {
	// Pos is where: file and line (line 0 for a whole-file problem).
	Pos Position
	// Playbook is the name of the playbook concerned, "" when not known.
	Playbook string
	// Field is the key path, e.g. "timeouts.wait_landing" or "pre_hooks[1].run".
	Field string
	// Msg says what is wrong.
	Msg string
}

// Error returns `FILE:LINE: playbook NAME: FIELD: MSG`, leaving out the
// parts that are not known.
func (p Problem) Error() string {
	var b strings.Builder
	b.WriteString(p.Pos.String())
	b.WriteString(": ")
	if p.Playbook != "" {
		b.WriteString("playbook ")
		b.WriteString(p.Playbook)
		b.WriteString(": ")
	}
	if p.Field != "" {
		b.WriteString(p.Field)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// ValidationError is returned by the loaders when any file has problems. It
// holds all problems of all files, ordered by file and line.
type ValidationError struct {
	Problems []Problem
}

// Error lists every problem, one per line.
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

// sortProblems orders problems by file, line and then as found; built-ins first.
func sortProblems(ps []Problem) {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		if a.Pos.Builtin != b.Pos.Builtin {
			if a.Pos.Builtin {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(a.Pos.File, b.Pos.File), cmp.Compare(a.Pos.Line, b.Pos.Line))
	})
}
