package inventory

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/reprov/reprov/internal/suggest"
)

// Selector says which nodes a command acts on. Names is a union; Racks and
// Labels narrow it (or the whole inventory when no name is given). Nothing
// asked at all is an error, so that no command acts on the whole fleet by
// accident: All must be said.
type Selector struct {
	// Names are node names, hostlist ranges ("web-[01-12]",
	// "rack[1-2]-n[01-40]") or shell globs ("web-*", "web-?", "[a-c]"), as
	// expandHostlist reads them. Each must match at least one node.
	Names []string
	// Racks keeps nodes in one of these racks (names, ranges or globs).
	Racks []string
	// Labels is a kubectl-style label selector: a=b, a==b, a!=b,
	// a in (x,y), a notin (x,y), a (has the label), !a (has not), joined by
	// commas, all of which must hold.
	Labels string
	// All selects every node (then narrowed by Racks and Labels, if given).
	All bool
}

// ErrNoSelection is returned by Select when the selector asks for nothing.
var ErrNoSelection = errors.New("no nodes selected: give node names, --rack, --selector or --all")

// ErrNoMatch is wrapped by Select's errors when a name or the whole
// selection matches no node.
var ErrNoMatch = errors.New("no node matches")

// ErrSelectorSyntax is wrapped by errors parsing a label selector.
var ErrSelectorSyntax = errors.New("label selector")

// IsEmpty reports whether the selector asks for nothing.
func (s Selector) IsEmpty() bool {
	return len(s.Names) == 0 && len(s.Racks) == 0 && strings.TrimSpace(s.Labels) == "" && !s.All
}

// Select returns the selected nodes in inventory order.
func (inv *Inventory) Select(s Selector) ([]Node, error) {
	if s.IsEmpty() {
		return nil, ErrNoSelection
	}
	ls, err := ParseLabelSelector(s.Labels)
	if err != nil {
		return nil, err
	}
	compiled := map[string]namePattern{}
	for _, p := range slices.Concat(s.Names, s.Racks) {
		np, err := compilePattern(p)
		if err != nil {
			return nil, err
		}
		compiled[p] = np
	}
	matches := func(pat, name string) bool { return compiled[pat].matches(name) }

	picked := make([]bool, len(inv.Nodes))
	if len(s.Names) == 0 {
		for i := range picked {
			picked[i] = true
		}
	}
	var unmatched []string
	for _, pat := range s.Names {
		hit := false
		for i := range inv.Nodes {
			if matches(pat, inv.Nodes[i].Name) {
				picked[i], hit = true, true
			}
		}
		if !hit {
			unmatched = append(unmatched, pat)
		}
	}
	if len(unmatched) > 0 {
		return nil, inv.unmatchedNames(unmatched)
	}

	var out []Node
	for i := range inv.Nodes {
		n := &inv.Nodes[i]
		if !picked[i] {
			continue
		}
		if len(s.Racks) > 0 && !slices.ContainsFunc(s.Racks, func(p string) bool { return matches(p, n.Rack) }) {
			continue
		}
		if !ls.Matches(n.Labels) {
			continue
		}
		out = append(out, *n)
	}
	if len(out) == 0 {
		return nil, noMatchError(inv, s, ls)
	}
	return out, nil
}

// namePattern is a selection pattern expanded: the names it lists exactly
// and the globs left for path.Match.
type namePattern struct {
	exact map[string]bool
	globs []string
}

func compilePattern(p string) (namePattern, error) {
	expanded, err := expandHostlist(p)
	if err != nil {
		return namePattern{}, err
	}
	np := namePattern{exact: map[string]bool{}}
	for _, g := range expanded {
		if strings.ContainsAny(g, `*?[\`) {
			np.globs = append(np.globs, g)
		} else {
			np.exact[g] = true
		}
	}
	return np, nil
}

func (np namePattern) matches(name string) bool {
	if np.exact[name] {
		return true
	}
	return slices.ContainsFunc(np.globs, func(g string) bool {
		ok, _ := path.Match(g, name)
		return ok
	})
}

func (inv *Inventory) unmatchedNames(names []string) error {
	parts := make([]string, len(names))
	all := make([]string, len(inv.Nodes))
	for i := range inv.Nodes {
		all[i] = inv.Nodes[i].Name
	}
	for i, n := range names {
		parts[i] = n
		if !strings.ContainsAny(n, "*?[") {
			parts[i] += suggest.DidYouMean(n, all)
		}
	}
	what := "name"
	if len(names) > 1 {
		what = "names"
	}
	return fmt.Errorf("%w %s %s", ErrNoMatch, what, strings.Join(parts, ", "))
}

func noMatchError(inv *Inventory, s Selector, ls LabelSelector) error {
	if len(inv.Nodes) == 0 {
		return fmt.Errorf("%w: the inventory has no nodes", ErrNoMatch)
	}
	var parts []string
	if len(s.Names) > 0 {
		parts = append(parts, plural("name", s.Names))
	}
	if len(s.Racks) > 0 {
		parts = append(parts, plural("rack", s.Racks))
	}
	if !ls.Empty() {
		parts = append(parts, "selector "+ls.String())
	}
	if len(parts) == 0 {
		return fmt.Errorf("%w", ErrNoMatch)
	}
	return fmt.Errorf("%w %s", ErrNoMatch, strings.Join(parts, " and "))
}

func plural(what string, values []string) string {
	if len(values) == 1 {
		return what + " " + values[0]
	}
	return what + "s " + strings.Join(values, ", ")
}

// ---- label selectors -----------------------------------------------------

// LabelSelector is a parsed kubectl-style label selector. The zero value
// matches everything.
type LabelSelector struct {
	reqs []labelReq
}

type labelOp uint8

const (
	opEquals labelOp = iota
	opNotEquals
	opIn
	opNotIn
	opExists
	opNotExists
)

type labelReq struct {
	key    string
	op     labelOp
	values []string
}

// Empty reports whether the selector has no requirement.
func (s LabelSelector) Empty() bool { return len(s.reqs) == 0 }

// Matches reports whether labels satisfy every requirement. As in
// Kubernetes, a!=b and a notin (…) hold for nodes without label a.
func (s LabelSelector) Matches(labels map[string]string) bool {
	for _, r := range s.reqs {
		v, has := labels[r.key]
		var ok bool
		switch r.op {
		case opEquals:
			ok = has && v == r.values[0]
		case opNotEquals:
			ok = !has || v != r.values[0]
		case opIn:
			ok = has && slices.Contains(r.values, v)
		case opNotIn:
			ok = !has || !slices.Contains(r.values, v)
		case opExists:
			ok = has
		case opNotExists:
			ok = !has
		}
		if !ok {
			return false
		}
	}
	return true
}

// String returns the selector in canonical form.
func (s LabelSelector) String() string {
	parts := make([]string, len(s.reqs))
	for i, r := range s.reqs {
		switch r.op {
		case opEquals:
			parts[i] = r.key + "=" + r.values[0]
		case opNotEquals:
			parts[i] = r.key + "!=" + r.values[0]
		case opIn:
			parts[i] = r.key + " in (" + strings.Join(r.values, ",") + ")"
		case opNotIn:
			parts[i] = r.key + " notin (" + strings.Join(r.values, ",") + ")"
		case opExists:
			parts[i] = r.key
		case opNotExists:
			parts[i] = "!" + r.key
		}
	}
	return strings.Join(parts, ",")
}

// ParseLabelSelector parses a kubectl-style label selector:
//
//	role=web,zone!=a,model in (dl360g7,dl380),tier notin (db),gpu,!retired
//
// Errors give the 1-based column of the problem.
func ParseLabelSelector(s string) (LabelSelector, error) {
	p := &selParser{src: s}
	var sel LabelSelector
	p.skipSpace()
	if p.pos == len(s) {
		return sel, nil
	}
	for {
		r, err := p.requirement()
		if err != nil {
			return LabelSelector{}, err
		}
		sel.reqs = append(sel.reqs, r)
		p.skipSpace()
		if p.pos == len(s) {
			return sel, nil
		}
		if s[p.pos] != ',' {
			return LabelSelector{}, p.errorf("expected , between requirements, found %q", p.rest())
		}
		p.pos++
		p.skipSpace()
	}
}

type selParser struct {
	src string
	pos int
}

func (p *selParser) errorf(format string, args ...any) error {
	return fmt.Errorf("%w %q: at column %d: %s", ErrSelectorSyntax, p.src, p.pos+1, fmt.Sprintf(format, args...))
}

func (p *selParser) rest() string {
	r := p.src[p.pos:]
	if len(r) > 12 {
		r = r[:12] + "…"
	}
	return r
}

func (p *selParser) skipSpace() {
	for p.pos < len(p.src) && (p.src[p.pos] == ' ' || p.src[p.pos] == '\t') {
		p.pos++
	}
}

func isSelWordChar(c byte) bool {
	return isAlnum(c) || c == '.' || c == '_' || c == '-' || c == '/'
}

// word reads a label key or value.
func (p *selParser) word() string {
	start := p.pos
	for p.pos < len(p.src) && isSelWordChar(p.src[p.pos]) {
		p.pos++
	}
	return p.src[start:p.pos]
}

func (p *selParser) key() (string, error) {
	p.skipSpace()
	at := p.pos
	k := p.word()
	if k == "" {
		if p.pos == len(p.src) {
			return "", p.errorf("expected a label key, found the end")
		}
		return "", p.errorf("expected a label key, found %q", p.rest())
	}
	if msg := labelKeyProblem(k); msg != "" {
		p.pos = at
		return "", p.errorf("%s", msg)
	}
	return k, nil
}

func (p *selParser) value() (string, error) {
	p.skipSpace()
	at := p.pos
	v := p.word()
	if msg := labelValueProblem(v); msg != "" || strings.Contains(v, "/") {
		p.pos = at
		if msg == "" {
			msg = fmt.Sprintf("label value %q: '/' is not allowed in values", v)
		}
		return "", p.errorf("%s", msg)
	}
	return v, nil
}

func (p *selParser) requirement() (labelReq, error) {
	p.skipSpace()
	if p.pos < len(p.src) && p.src[p.pos] == '!' {
		p.pos++
		k, err := p.key()
		return labelReq{key: k, op: opNotExists}, err
	}
	k, err := p.key()
	if err != nil {
		return labelReq{}, err
	}
	p.skipSpace()
	if p.pos == len(p.src) || p.src[p.pos] == ',' {
		return labelReq{key: k, op: opExists}, nil
	}
	switch {
	case strings.HasPrefix(p.src[p.pos:], "!="):
		p.pos += 2
		v, err := p.value()
		return labelReq{key: k, op: opNotEquals, values: []string{v}}, err
	case strings.HasPrefix(p.src[p.pos:], "=="):
		p.pos += 2
		v, err := p.value()
		return labelReq{key: k, op: opEquals, values: []string{v}}, err
	case p.src[p.pos] == '=':
		p.pos++
		v, err := p.value()
		return labelReq{key: k, op: opEquals, values: []string{v}}, err
	}
	at := p.pos
	switch op := p.word(); op {
	case "in", "notin":
		vs, err := p.valueSet()
		if err != nil {
			return labelReq{}, err
		}
		o := opIn
		if op == "notin" {
			o = opNotIn
		}
		return labelReq{key: k, op: o, values: vs}, nil
	default:
		p.pos = at
		return labelReq{}, p.errorf("expected =, ==, !=, in or notin after %q, found %q", k, p.rest())
	}
}

func (p *selParser) valueSet() ([]string, error) {
	p.skipSpace()
	if p.pos == len(p.src) || p.src[p.pos] != '(' {
		return nil, p.errorf("expected ( after in/notin")
	}
	p.pos++
	var vs []string
	for {
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		vs = append(vs, v)
		p.skipSpace()
		if p.pos == len(p.src) {
			return nil, p.errorf("expected ) to close the value list")
		}
		switch p.src[p.pos] {
		case ',':
			p.pos++
		case ')':
			p.pos++
			return vs, nil
		default:
			return nil, p.errorf("expected , or ) in the value list, found %q", p.rest())
		}
	}
}
