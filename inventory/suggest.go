package inventory

import (
	"fmt"
	"strings"
)

// closest returns the candidate nearest to s, or "" when none is near
// enough to be a plausible typo. Case, '-' and '_' differences count as
// near; so does a prefix ("admin" for "administrator").
func closest(s string, candidates []string) string {
	if s == "" {
		return ""
	}
	norm := func(x string) string {
		return strings.NewReplacer("_", "", "-", "", " ", "").Replace(strings.ToLower(x))
	}
	ns := norm(s)
	best, bestDist := "", 1<<30
	for _, c := range candidates {
		nc := norm(c)
		if nc == ns {
			return c
		}
		d := editDistance(ns, nc)
		if len(ns) >= 3 && strings.HasPrefix(nc, ns) {
			d = min(d, 2)
		}
		if d < bestDist {
			best, bestDist = c, d
		}
	}
	limit := 2
	if len(ns) <= 4 {
		limit = 1
	}
	if bestDist <= limit {
		return best
	}
	return ""
}

// didYouMean returns ` (did you mean "x"?)` or "".
func didYouMean(s string, candidates []string) string {
	if c := closest(s, candidates); c != "" {
		return fmt.Sprintf(" (did you mean %q?)", c)
	}
	return ""
}

// editDistance is the Levenshtein distance between a and b, in bytes. Long
// inputs are cut: the result only matters when it is small.
func editDistance(a, b string) int {
	const maxLen = 64
	if len(a) > maxLen {
		a = a[:maxLen]
	}
	if len(b) > maxLen {
		b = b[:maxLen]
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

// orList renders values as `a, b or c` for messages.
func orList(values []string) string {
	switch len(values) {
	case 0:
		return ""
	case 1:
		return values[0]
	}
	return strings.Join(values[:len(values)-1], ", ") + " or " + values[len(values)-1]
}
