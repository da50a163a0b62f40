package inventory

import (
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
)

// ErrPattern is wrapped by the errors of a selection pattern (node name or
// rack) that is neither a valid hostlist range nor a valid glob.
var ErrPattern = errors.New("pattern")

// maxExpansion bounds how many glob patterns one selection pattern expands
// to, so that "n[0-999999999]" is an error rather than a memory spike.
const maxExpansion = 100_000

// maxRangeDigits bounds the digits of a range bound (fits a uint64).
const maxRangeDigits = 18

// expandHostlist expands the hostlist ranges of a selection pattern, as
// FreeIPMI and pdsh do, into shell-glob patterns for path.Match.
//
// A bracket whose contents are only digits, '-' and ',' is a range list:
// "web-[01-03,10]" is web-01, web-02, web-03, web-10; the width of each
// range's low bound is kept as zero padding ("[01-10]" gives 01…10,
// "[1-10]" gives 1…10, "[7]" gives 7 alone). Several brackets multiply:
// "rack[1-2]-n[01-02]" is four names. Any other bracket is a glob
// character class ("[a-c]", "[!x]" or "[^x]": not x); a class with a ','
// is refused, since it is a range or brace list typed wrong, never an
// intended class. "*" and "?" and backslash escapes are left to path.Match.
// Errors wrap ErrPattern and name the pattern and the 1-based column.
func expandHostlist(pat string) ([]string, error) {
	out := []string{""}
	var lit strings.Builder
	flush := func() {
		if lit.Len() == 0 {
			return
		}
		for i := range out {
			out[i] += lit.String()
		}
		lit.Reset()
	}
	for i := 0; i < len(pat); i++ {
		switch c := pat[i]; c {
		case '\\':
			if i+1 == len(pat) {
				return nil, patternError(pat, i, "a trailing \\ escapes nothing")
			}
			lit.WriteByte(c)
			lit.WriteByte(pat[i+1])
			i++
		case ']':
			return nil, patternError(pat, i, "] without [")
		case '[':
			end := closingBracket(pat, i+1)
			if end < 0 {
				return nil, patternError(pat, i, "[ is not closed")
			}
			body := pat[i+1 : end]
			switch {
			case body == "":
				return nil, patternError(pat, i, "empty []")
			case isRangeBody(body):
				nums, err := parseRanges(pat, i+1, body)
				if err != nil {
					return nil, err
				}
				flush()
				if len(out)*len(nums) > maxExpansion {
					return nil, patternError(pat, i, fmt.Sprintf("expands to more than %d names", maxExpansion))
				}
				next := make([]string, 0, len(out)*len(nums))
				for _, prefix := range out {
					for _, n := range nums {
						next = append(next, prefix+n)
					}
				}
				out = next
			default:
				class := body
				if class[0] == '!' {
					class = "^" + class[1:]
				}
				if j := strings.IndexByte(class, ','); j >= 0 {
					return nil, patternError(pat, i+1+j, "',' in a bracket that is not a numeric range: write ranges as [1-3,10] (digits only), or a glob class without ','")
				}
				if _, err := path.Match("["+class+"]", ""); err != nil || class == "^" || hasDescendingRange(class) {
					return nil, patternError(pat, i, "["+body+"] is neither a numeric range nor a valid glob class")
				}
				lit.WriteString("[" + class + "]")
			}
			i = end
		default:
			lit.WriteByte(c)
		}
	}
	flush()
	// Ranges only insert digits: the first pattern is valid iff all are.
	if _, err := path.Match(out[0], ""); err != nil {
		return nil, fmt.Errorf("%w %q: %w", ErrPattern, pat, err)
	}
	return out, nil
}

// closingBracket returns the index of the ']' closing a bracket whose
// contents start at from, skipping backslash escapes; -1 when none.
func closingBracket(s string, from int) int {
	for j := from; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case ']':
			return j
		}
	}
	return -1
}

// hasDescendingRange reports whether a glob class has a range such as
// "z-a", which path.Match accepts and which matches nothing.
func hasDescendingRange(class string) bool {
	class = strings.TrimPrefix(class, "^")
	for i := 0; i < len(class); i++ {
		if class[i] == '\\' && i+1 < len(class) {
			i++
		}
		if i+2 < len(class) && class[i+1] == '-' {
			lo, hi := class[i], class[i+2]
			if hi == '\\' && i+3 < len(class) {
				hi = class[i+3]
				i++
			}
			if hi < lo {
				return true
			}
			i += 2
		}
	}
	return false
}

// isRangeBody reports whether a bracket's contents are a range list: only
// digits, '-' and ','.
func isRangeBody(body string) bool {
	for i := 0; i < len(body); i++ {
		if c := body[i]; (c < '0' || c > '9') && c != '-' && c != ',' {
			return false
		}
	}
	return true
}

// parseRanges expands "01-03,10" into its numbers as strings, each range
// padded to the width of its low bound. at is the column of body in pat.
func parseRanges(pat string, at int, body string) ([]string, error) {
	var nums []string
	off := 0
	for _, item := range strings.Split(body, ",") {
		col := at + off
		off += len(item) + 1
		if item == "" {
			return nil, patternError(pat, col, "empty item in range list ["+body+"]")
		}
		loS, hiS, isRange := strings.Cut(item, "-")
		if !isRange {
			hiS = loS
		}
		if loS == "" || hiS == "" || strings.Contains(hiS, "-") {
			return nil, patternError(pat, col, fmt.Sprintf("range %q is not N or N-M", item))
		}
		if len(loS) > maxRangeDigits || len(hiS) > maxRangeDigits {
			return nil, patternError(pat, col, fmt.Sprintf("range %q has more than %d digits", item, maxRangeDigits))
		}
		lo, _ := strconv.ParseUint(loS, 10, 64)
		hi, _ := strconv.ParseUint(hiS, 10, 64)
		if hi < lo {
			return nil, patternError(pat, col, fmt.Sprintf("range %q goes down", item))
		}
		if hi-lo >= maxExpansion || len(nums)+int(hi-lo) >= maxExpansion {
			return nil, patternError(pat, col, fmt.Sprintf("expands to more than %d names", maxExpansion))
		}
		width := len(loS)
		for n := lo; ; n++ {
			nums = append(nums, fmt.Sprintf("%0*d", width, n))
			if n == hi {
				break
			}
		}
	}
	return nums, nil
}

func patternError(pat string, i int, msg string) error {
	return fmt.Errorf("%w %q: at column %d: %s", ErrPattern, pat, i+1, msg)
}
