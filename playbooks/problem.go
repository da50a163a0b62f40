package playbooks

import (
	"cmp"
	"errors"
	"fmt"
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

// didYouMean returns ` (did you mean "X"?)` for the candidate closest to
// word, or "" when none is close enough to be a plausible typo. Case, '-'
// and '_' differences count as near; so does a prefix ("wait" for
// "wait_landing"). Same rules as the inventory's.
func didYouMean(word string, candidates []string) string {
	if word == "" {
		return ""
	}
	norm := strings.NewReplacer("_", "", "-", "", " ", "")
	nw := norm.Replace(strings.ToLower(word))
	best, bestD := "", 1<<30
	for _, c := range candidates {
		nc := norm.Replace(strings.ToLower(c))
		d := editDistance(nw, nc)
		if len(nw) >= 3 && strings.HasPrefix(nc, nw) {
			d = 0
		}
		if d < bestD {
			best, bestD = c, d
		}
	}
	limit := 2
	if len(nw) <= 4 {
		limit = 1
	}
	if bestD > limit {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		// Nothing that long is a typo of a key.
		return max(len(a), len(b))
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
