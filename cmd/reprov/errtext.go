package main

import (
	"strings"
)

// dedupeChain removes the repeated links of an error chain, which wrapping
// at several layers produces: "identity mismatch: node X: identity
// mismatch: serial …" reads "identity mismatch: node X: serial …". Each
// line of a multi-line error is treated on its own.
func dedupeChain(msg string) string {
	lines := strings.Split(msg, "\n")
	for i, line := range lines {
		parts := strings.Split(line, ": ")
		seen := make(map[string]bool, len(parts))
		kept := parts[:0]
		for _, p := range parts {
			key := strings.TrimSpace(p)
			if key != "" && seen[key] {
				continue
			}
			seen[key] = true
			kept = append(kept, p)
		}
		lines[i] = strings.Join(kept, ": ")
	}
	return strings.Join(lines, "\n")
}

// shorten cuts s to at most n runes, marking the cut with "…" (tables;
// -o wide and -o json keep the whole text).
func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
