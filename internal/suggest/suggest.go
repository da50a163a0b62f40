// Package suggest finds the likely intended word for a typo, for the
// "did you mean" hints of reprov's file:line diagnostics (inventory,
// playbooks). It is a leaf: it imports nothing of reprov.
package suggest

import (
	"fmt"
	"strings"
)

// Closest returns the candidate nearest to s, or "" when none is near
// enough to be a plausible typo. Case, '-' and '_' differences count as
// near; a prefix of three or more letters counts as one edit ("wait" for
// "wait_landing").
func Closest(s string, candidates []string) string {
	if s == "" {
		return ""
	}
	norm := strings.NewReplacer("_", "", "-", "", " ", "")
	ns := norm.Replace(strings.ToLower(s))
	best, bestDist := "", 1<<30
	for _, c := range candidates {
		nc := norm.Replace(strings.ToLower(c))
		if nc == ns {
			return c
		}
		d := EditDistance(ns, nc)
		if len(ns) >= 3 && strings.HasPrefix(nc, ns) {
			d = min(d, 1) // an abbreviation: "wait" for "wait_landing"
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

// DidYouMean returns ` (did you mean "x"?)` for the closest candidate, or "".
func DidYouMean(s string, candidates []string) string {
	if c := Closest(s, candidates); c != "" {
		return fmt.Sprintf(" (did you mean %q?)", c)
	}
	return ""
}

// EditDistance is the Levenshtein distance between a and b, in bytes. Long
// inputs are cut: the result only matters when it is small.
func EditDistance(a, b string) int {
	const maxLen = 64
	a, b = a[:min(len(a), maxLen)], b[:min(len(b), maxLen)]
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
