package inventory

import (
	"strings"
	"unicode/utf8"

	yaml "go.yaml.in/yaml/v3"
)

// The fast path reads native YAML inventories written in the plain subset
// of YAML that inventories use — block and single-line flow mappings and
// sequences of plain, single- and double-quoted scalars, and comments —
// into the same yaml.Node values yaml.v3 would build, so that the one
// decoder sees the same tree and reports the same problems at the same
// lines. The node list is not kept whole: each entry of the top-level
// nodes list is built in a reused arena, decoded, and dropped.
//
// Anything outside the subset (anchors, aliases, tags, block scalars,
// multi-line scalars and flow collections, document markers, tabs, CR,
// non-ASCII text, unusual indentation, syntax errors) declines the fast
// path, and the file is read again by yaml.v3, so that such a file keeps
// today's results and messages (docs/performance.md).

// declined is the panic value with which the fast parser gives up.
type declined struct{}

// restart is the panic value with which streaming gives up: the file is
// in the subset, but its top-level keys are in an order (defaults after
// nodes) that needs the whole tree first.
type restart struct{}

// loaded is the outcome of a load.
type loaded struct {
	inv      *Inventory
	warnings []Warning
	err      error
}

// loadFastYAML loads a native YAML inventory through the fast path. ok is
// false when the file is outside the fast path's subset; the caller then
// reads it with yaml.v3. src is sourceAuto or sourceNative.
func loadFastYAML(name string, data []byte, src source) (r loaded, ok bool) {
	if !fastBytesOK(data) {
		return loaded{}, false
	}
	text := string(data)
	for _, stream := range []bool{true, false} {
		dg := &diags{file: name}
		nodes, res := fastDecode(dg, text, len(data), src, stream)
		switch res {
		case fastRestart:
			continue
		case fastDeclined:
			return loaded{}, false
		}
		if err := dg.err(); err != nil {
			return loaded{warnings: dg.finalWarnings(), err: err}, true
		}
		return loaded{inv: &Inventory{Source: name, Nodes: nodes}, warnings: dg.finalWarnings()}, true
	}
	return loaded{}, false
}

// fastBytesOK reports whether data has only the bytes the fast path reads:
// printable ASCII, spaces and newlines.
func fastBytesOK(data []byte) bool {
	for _, c := range data {
		if (c < ' ' && c != '\n') || c >= 0x7f {
			return false
		}
	}
	return true
}

type fastResult int

const (
	fastDone fastResult = iota
	fastDeclined
	fastRestart
)

// fastDecode parses and decodes text. With stream, the entries of a block
// node list are decoded as they are parsed.
func fastDecode(dg *diags, text string, size int, src source, stream bool) (nodes []Node, res fastResult) {
	p := &fastParser{src: text, line: 1, keep: &nodeArena{}, scratch: &nodeArena{}}
	p.ar = p.keep
	d := newDecoder(dg, size)
	defer func() {
		switch r := recover(); r.(type) {
		case nil:
		case declined:
			nodes, res = nil, fastDeclined
		case restart:
			nodes, res = nil, fastRestart
		default:
			panic(r)
		}
	}()
	p.nextLine()
	if p.ind < 0 {
		return d.native(nil), fastDone // an empty document
	}
	if c := p.at(p.pos); stream && p.ind == 0 && !p.atDash() && c != '[' && c != '{' {
		if k, isKey := p.maybeKey(); isKey {
			nodes = p.streamTop(d, src, k)
			if dg.truncated {
				// Problems were found in another order than yaml.v3's
				// path finds them; which ones are kept would differ.
				panic(declined{})
			}
			return nodes, fastDone
		}
		// Not a mapping: parse again below.
		p = &fastParser{src: text, line: 1, keep: p.keep, scratch: p.scratch}
		p.ar = p.keep
		p.nextLine()
	}
	root := p.root()
	if src == sourceAuto && (isAnsibleList(root) || looksAnsible(root)) {
		panic(declined{})
	}
	return d.native(root), fastDone
}

// streamTop parses the top-level block mapping whose first key is k,
// decoding the entries of a block node list as they come.
func (p *fastParser) streamTop(d *decoder, src source, k *yaml.Node) []Node {
	rootLine := k.Line
	var (
		top      topLevel
		def      defaults
		es       *entries
		seen     []*yaml.Node
		decided  bool // a defaults or nodes key was seen: not Ansible
		ansible  bool // an Ansible-looking key was seen before that
		streamed bool
	)
	for {
		first := 0
		for _, s := range seen {
			if s.Value == k.Value {
				first = s.Line
				break
			}
		}
		if k.Value == "_meta" && src == sourceAuto {
			panic(declined{}) // possibly `ansible-inventory --list` output
		}
		var v *yaml.Node
		if first == 0 && k.Value == "nodes" {
			n := 0
			emit := func(e *yaml.Node) {
				if es == nil {
					es = newEntries(p.countEntries())
				}
				n++
				es.entry(d, e, n)
			}
			v = p.mappingValue(0, k, emit)
			streamed = es != nil
		} else {
			v = p.mappingValue(0, k, nil)
		}
		if !decided {
			switch k.Value {
			case "nodes", "defaults":
				decided = true
			case "all":
				ansible = true
			}
			if !decided && v.Kind == yaml.MappingNode {
				for i := 0; i+1 < len(v.Content); i += 2 {
					switch v.Content[i].Value {
					case "hosts", "children", "vars":
						ansible = true
					}
				}
			}
		}
		if first != 0 {
			d.topDup(k, first)
		} else {
			seen = append(seen, k)
			switch k.Value {
			case "defaults":
				if streamed {
					panic(restart{}) // defaults are decoded before nodes
				}
				d.decodeDefaults(&def, v)
			case "nodes":
				if !streamed {
					top.nodes = v
				}
			default:
				d.topKey(&top, k, v)
			}
		}
		p.ar = p.keep
		if p.ind != 0 {
			if p.ind > 0 {
				panic(declined{})
			}
			break
		}
		var isKey bool
		if p.atDash() {
			panic(declined{})
		}
		if k, isKey = p.maybeKey(); !isKey {
			panic(declined{})
		}
	}
	if !decided && ansible && src == sourceAuto {
		panic(declined{})
	}
	if streamed {
		return es.finish(d, &def)
	}
	return d.nodeList(rootLine, top.nodes, &def)
}

// nodeArena hands out yaml.Nodes and Content slices from reused chunks.
type nodeArena struct {
	nodes    [][]yaml.Node
	ni, nj   int
	ptrs     [][]*yaml.Node
	pi, pj   int
	recycled bool
}

const arenaChunk = 256

func (a *nodeArena) node() *yaml.Node {
	if a.nj == arenaChunk {
		a.ni++
		a.nj = 0
	}
	if a.ni == len(a.nodes) {
		a.nodes = append(a.nodes, make([]yaml.Node, arenaChunk))
	}
	n := &a.nodes[a.ni][a.nj]
	a.nj++
	if a.recycled {
		*n = yaml.Node{}
	}
	return n
}

// content returns a copy of ns in the arena.
func (a *nodeArena) content(ns []*yaml.Node) []*yaml.Node {
	k := len(ns)
	if k == 0 {
		return nil
	}
	if a.pi < len(a.ptrs) && a.pj+k > len(a.ptrs[a.pi]) {
		a.pi++
		a.pj = 0
	}
	for a.pi < len(a.ptrs) && k > len(a.ptrs[a.pi]) {
		a.pi++ // a chunk too small for this one
	}
	if a.pi == len(a.ptrs) {
		a.ptrs = append(a.ptrs, make([]*yaml.Node, max(k, arenaChunk)))
		a.pj = 0
	}
	c := a.ptrs[a.pi][a.pj : a.pj+k : a.pj+k]
	copy(c, ns)
	a.pj += k
	return c
}

// reset makes every node and slice of the arena available again.
func (a *nodeArena) reset() {
	a.ni, a.nj, a.pi, a.pj = 0, 0, 0, 0
	a.recycled = true
}

// fastParser reads the fast path's YAML subset. It panics with declined
// on anything else.
type fastParser struct {
	src    string
	pos    int // the next byte
	line   int // 1-based line of pos
	lstart int // offset of the line's first byte
	// ind is the indentation of the line at pos once advance has moved
	// there, -1 at the end.
	ind   int
	depth int
	// keep holds the nodes that live through the parse, scratch those of
	// one streamed entry; ar is the one in use.
	keep, scratch, ar *nodeArena
	stack             []*yaml.Node // children of the collections being built
}

// maxFastDepth bounds nesting; yaml.v3 allows more, and reports its limit.
const maxFastDepth = 100

// maxFastKey bounds keys; yaml.v3 wants a key's ':' within 1024 characters.
const maxFastKey = 1000

func (p *fastParser) col() int { return p.pos - p.lstart }

func (p *fastParser) at(i int) byte {
	if i < len(p.src) {
		return p.src[i]
	}
	return 0
}

// blankz reports whether the byte at i is a space, a newline or the end.
func (p *fastParser) blankz(i int) bool {
	return i >= len(p.src) || p.src[i] == ' ' || p.src[i] == '\n'
}

// atDash reports whether pos is at a block sequence entry indicator.
func (p *fastParser) atDash() bool {
	return p.at(p.pos) == '-' && p.blankz(p.pos+1)
}

func (p *fastParser) skipSpaces() {
	for p.pos < len(p.src) && p.src[p.pos] == ' ' {
		p.pos++
	}
}

// advance ends the current line (spaces and a comment may follow what was
// read) and moves to the next line with content.
func (p *fastParser) advance() {
	p.skipSpaces()
	switch c := p.at(p.pos); {
	case p.pos >= len(p.src):
	case c == '\n':
		p.newline()
	case c == '#' && (p.pos == p.lstart || p.src[p.pos-1] == ' '):
		p.skipComment()
	default:
		panic(declined{})
	}
	p.nextLine()
}

// nextLine moves from the start of a line to the next line with content,
// and sets ind.
func (p *fastParser) nextLine() {
	for {
		i := p.pos
		for i < len(p.src) && p.src[i] == ' ' {
			i++
		}
		if i >= len(p.src) {
			p.pos = i
			p.ind = -1
			return
		}
		switch p.src[i] {
		case '\n':
			p.pos = i
			p.newline()
			continue
		case '#':
			p.pos = i
			p.skipComment()
			continue
		}
		if i == p.lstart {
			if c := p.src[i]; c == '%' || strings.HasPrefix(p.src[i:], "---") || strings.HasPrefix(p.src[i:], "...") {
				panic(declined{}) // a directive or a document marker
			}
		}
		p.pos = i
		p.ind = i - p.lstart
		return
	}
}

func (p *fastParser) newline() {
	p.pos++
	p.line++
	p.lstart = p.pos
}

// skipComment skips a comment and the newline after it.
func (p *fastParser) skipComment() {
	if i := strings.IndexByte(p.src[p.pos:], '\n'); i >= 0 {
		p.pos += i
		p.newline()
		return
	}
	p.pos = len(p.src)
}

func (p *fastParser) enter() {
	if p.depth++; p.depth > maxFastDepth {
		panic(declined{})
	}
}

func (p *fastParser) scalar(line, col int, value string, style yaml.Style, tag string) *yaml.Node {
	n := p.ar.node()
	n.Kind, n.Style, n.Tag, n.Value, n.Line, n.Column = yaml.ScalarNode, style, tag, value, line, col+1
	return n
}

func (p *fastParser) collection(kind yaml.Kind, style yaml.Style, line, col int) *yaml.Node {
	n := p.ar.node()
	tag := "!!seq"
	if kind == yaml.MappingNode {
		tag = "!!map"
	}
	n.Kind, n.Style, n.Tag, n.Line, n.Column = kind, style, tag, line, col+1
	return n
}

// done sets n's Content to the children pushed since base.
func (p *fastParser) done(n *yaml.Node, base int) {
	n.Content = p.ar.content(p.stack[base:])
	clear(p.stack[base:])
	p.stack = p.stack[:base]
}

// root parses the whole document as a tree.
func (p *fastParser) root() *yaml.Node {
	col := p.ind
	var n *yaml.Node
	switch c := p.src[p.pos]; {
	case p.atDash():
		n = p.blockSeq(col, false, nil)
	case c == '[' || c == '{':
		n = p.flowNode()
		p.advance()
	default:
		k, isKey := p.maybeKey()
		if isKey {
			n = p.blockMapping(col, k)
		} else {
			n = k
			p.advance()
		}
	}
	if p.ind >= 0 {
		panic(declined{})
	}
	return n
}

// maybeKey reads a scalar in block context, and reports whether a ':'
// follows it (pos is then past the ':'), making it a mapping key.
func (p *fastParser) maybeKey() (*yaml.Node, bool) {
	start := p.pos
	var n *yaml.Node
	switch p.src[p.pos] {
	case '"', '\'':
		n = p.quoted()
		p.skipSpaces()
	case '[', '{':
		panic(declined{}) // a flow collection as a key, or after one
	default:
		n = p.plain(false)
	}
	if p.at(p.pos) == ':' && p.blankz(p.pos+1) {
		if p.pos-start > maxFastKey {
			panic(declined{})
		}
		p.pos++
		return n, true
	}
	return n, false
}

// blockMapping parses a block mapping at column col whose first key k has
// been read (with its ':').
func (p *fastParser) blockMapping(col int, k *yaml.Node) *yaml.Node {
	p.enter()
	n := p.collection(yaml.MappingNode, 0, k.Line, col)
	base := len(p.stack)
	for {
		v := p.mappingValue(col, k, nil)
		p.stack = append(p.stack, k, v)
		if p.ind != col {
			if p.ind > col {
				panic(declined{})
			}
			break
		}
		if p.atDash() {
			panic(declined{})
		}
		var isKey bool
		if k, isKey = p.maybeKey(); !isKey {
			panic(declined{})
		}
	}
	p.done(n, base)
	p.depth--
	return n
}

// mappingValue parses the value of key k of the block mapping at column
// col; pos is past the ':'. It returns with advance done. With emit, a
// block sequence value is not built: emit gets each entry as it is read,
// in the scratch arena, which is reset after each.
func (p *fastParser) mappingValue(col int, k *yaml.Node, emit func(*yaml.Node)) *yaml.Node {
	p.skipSpaces()
	switch c := p.at(p.pos); {
	case p.pos >= len(p.src) || c == '\n' || c == '#':
		p.advance()
		switch {
		case p.ind > col && p.atDash():
			return p.blockSeq(p.ind, false, emit)
		case p.ind > col:
			k2, isKey := p.maybeKey()
			if !isKey {
				panic(declined{}) // a scalar on the next line, maybe over several
			}
			return p.blockMapping(p.ind, k2)
		case p.ind == col && p.atDash():
			return p.blockSeq(col, true, emit)
		}
		return p.scalar(k.Line, k.Column-1, "", 0, "!!null")
	case c == '[' || c == '{':
		n := p.flowNode()
		p.advance()
		return n
	case p.atDash():
		panic(declined{})
	}
	n, isKey := p.maybeKey()
	if isKey {
		panic(declined{}) // "mapping values are not allowed in this context"
	}
	p.advance()
	return n
}

// blockSeq parses a block sequence whose first '-' is at pos, column col.
// indentless is set for a sequence at its parent mapping's indentation.
func (p *fastParser) blockSeq(col int, indentless bool, emit func(*yaml.Node)) *yaml.Node {
	p.enter()
	n := p.collection(yaml.SequenceNode, 0, p.line, col)
	base := len(p.stack)
	outer := p.ar
	if emit != nil {
		p.ar = p.scratch
	}
	for {
		dashLine := p.line
		p.pos++
		p.skipSpaces()
		var e *yaml.Node
		switch c := p.at(p.pos); {
		case p.pos >= len(p.src) || c == '\n' || c == '#':
			p.advance()
			switch {
			case p.ind > col && p.atDash():
				e = p.blockSeq(p.ind, false, nil)
			case p.ind > col:
				k, isKey := p.maybeKey()
				if !isKey {
					panic(declined{})
				}
				e = p.blockMapping(p.ind, k)
			default:
				e = p.scalar(dashLine, col+1, "", 0, "!!null")
			}
		case p.atDash():
			e = p.blockSeq(p.col(), false, nil)
		case c == '[' || c == '{':
			e = p.flowNode()
			p.advance()
		default:
			ecol := p.col()
			k, isKey := p.maybeKey()
			if isKey {
				e = p.blockMapping(ecol, k)
			} else {
				e = k
				p.advance()
			}
		}
		if emit != nil {
			emit(e)
			p.scratch.reset()
		} else {
			p.stack = append(p.stack, e)
		}
		if p.ind == col && p.atDash() {
			continue
		}
		if p.ind > col || p.ind == col && !indentless {
			panic(declined{})
		}
		break
	}
	p.ar = outer
	p.done(n, base)
	p.depth--
	return n
}

// countEntries estimates the entries of the block sequence being read:
// the lines from pos on that start with '-' at the sequence's column.
func (p *fastParser) countEntries() int {
	prefix := "\n" + strings.Repeat(" ", p.col()) + "-"
	return 2 + strings.Count(p.src[p.pos:], prefix)
}

// flowNode parses a flow collection or a scalar in flow context, on one line.
func (p *fastParser) flowNode() *yaml.Node {
	switch p.at(p.pos) {
	case '[':
		return p.flowSeq()
	case '{':
		return p.flowMap()
	case '"', '\'':
		return p.quoted()
	}
	return p.plain(true)
}

func (p *fastParser) flowSeq() *yaml.Node {
	p.enter()
	n := p.collection(yaml.SequenceNode, yaml.FlowStyle, p.line, p.col())
	base := len(p.stack)
	p.pos++
	p.skipSpaces()
	if p.at(p.pos) == ']' {
		p.pos++
	} else {
		for {
			p.stack = append(p.stack, p.flowNode())
			p.skipSpaces()
			if p.flowNext(']') {
				break
			}
		}
	}
	p.done(n, base)
	p.depth--
	return n
}

// flowNext reads what follows a flow collection's element: a ',' (and
// reports false) or the closing bracket (and reports true).
func (p *fastParser) flowNext(end byte) bool {
	switch p.at(p.pos) {
	case ',':
		p.pos++
		p.skipSpaces()
		if c := p.at(p.pos); c == end || c == ',' {
			panic(declined{}) // a trailing comma, or an empty element
		}
		return false
	case end:
		p.pos++
		return true
	}
	panic(declined{})
}

func (p *fastParser) flowMap() *yaml.Node {
	p.enter()
	n := p.collection(yaml.MappingNode, yaml.FlowStyle, p.line, p.col())
	base := len(p.stack)
	p.pos++
	p.skipSpaces()
	if p.at(p.pos) == '}' {
		p.pos++
	} else {
		for {
			start := p.pos
			var k *yaml.Node
			switch p.at(p.pos) {
			case '"', '\'':
				k = p.quoted()
				p.skipSpaces()
			case '[', '{':
				panic(declined{})
			default:
				k = p.plain(true)
			}
			if p.at(p.pos) != ':' || p.pos-start > maxFastKey {
				panic(declined{})
			}
			p.pos++
			p.skipSpaces()
			if c := p.at(p.pos); c == ',' || c == '}' || c == '\n' || c == '#' || p.pos >= len(p.src) {
				panic(declined{}) // an empty value
			}
			p.stack = append(p.stack, k, p.flowNode())
			p.skipSpaces()
			if p.flowNext('}') {
				break
			}
		}
	}
	p.done(n, base)
	p.depth--
	return n
}

// plain reads a plain scalar on the current line. In block context it
// ends at ": ", a comment or the line's end; in flow context also at a
// flow indicator.
func (p *fastParser) plain(flow bool) *yaml.Node {
	start, col := p.pos, p.col()
	c := p.at(p.pos)
	switch c {
	case '-':
		if n := p.at(p.pos + 1); !isAlnum(n) && n != '.' {
			panic(declined{})
		}
	case '?', ':', ',', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '\'', '"', '%', '@', '`', ' ', '\n', 0:
		panic(declined{})
	}
	end := p.pos
	i := p.pos
loop:
	for i < len(p.src) {
		switch p.src[i] {
		case '\n':
			break loop
		case ':':
			if p.blankz(i + 1) {
				break loop
			}
		case ' ':
			if p.at(i+1) == '#' {
				break loop
			}
			i++
			continue
		case ',', '[', ']', '{', '}':
			if flow {
				break loop
			}
		case '?':
			if flow {
				panic(declined{})
			}
		}
		i++
		end = i
	}
	p.pos = i
	v := p.src[start:end]
	if v == "<<" {
		panic(declined{}) // a merge key
	}
	return p.scalar(p.line, col, v, 0, plainTag(v))
}

// quoted reads a single- or double-quoted scalar on the current line.
func (p *fastParser) quoted() *yaml.Node {
	q := p.src[p.pos]
	col := p.col()
	start := p.pos + 1
	i := start
	var b []byte // the value, once an escape made it differ from the text
	for {
		if i >= len(p.src) || p.src[i] == '\n' {
			panic(declined{}) // over several lines, or not closed
		}
		c := p.src[i]
		if q == '\'' && c == '\'' {
			if p.at(i+1) != '\'' {
				break
			}
			if b == nil {
				b = append([]byte(nil), p.src[start:i]...)
			}
			b = append(b, '\'')
			i += 2
			continue
		}
		if q == '"' && c == '"' {
			break
		}
		if q == '"' && c == '\\' {
			if b == nil {
				b = append([]byte(nil), p.src[start:i]...)
			}
			var n int
			b, n = p.escape(b, i+1)
			i = n
			continue
		}
		if b != nil {
			b = append(b, c)
		}
		i++
	}
	v := p.src[start:i]
	if b != nil {
		v = string(b)
	}
	p.pos = i + 1
	style := yaml.DoubleQuotedStyle
	if q == '\'' {
		style = yaml.SingleQuotedStyle
	}
	return p.scalar(p.line, col, v, style, "!!str")
}

// escape appends the character of the double-quoted escape at i (past the
// backslash) to b, and returns the offset after the escape.
func (p *fastParser) escape(b []byte, i int) ([]byte, int) {
	c := p.at(i)
	digits := 0
	switch c {
	case '0':
		b = append(b, 0)
	case 'a':
		b = append(b, '\a')
	case 'b':
		b = append(b, '\b')
	case 't':
		b = append(b, '\t')
	case 'n':
		b = append(b, '\n')
	case 'v':
		b = append(b, '\v')
	case 'f':
		b = append(b, '\f')
	case 'r':
		b = append(b, '\r')
	case 'e':
		b = append(b, 0x1b)
	case ' ', '"', '/', '\\':
		b = append(b, c)
	case 'N':
		b = utf8.AppendRune(b, 0x85)
	case '_':
		b = utf8.AppendRune(b, 0xa0)
	case 'L':
		b = utf8.AppendRune(b, 0x2028)
	case 'P':
		b = utf8.AppendRune(b, 0x2029)
	case 'x':
		digits = 2
	case 'u':
		digits = 4
	case 'U':
		digits = 8
	default:
		panic(declined{})
	}
	if digits == 0 {
		return b, i + 1
	}
	var r rune
	for j := range digits {
		h := p.at(i + 1 + j)
		switch {
		case h >= '0' && h <= '9':
			r = r<<4 | rune(h-'0')
		case h >= 'a' && h <= 'f':
			r = r<<4 | rune(h-'a'+10)
		case h >= 'A' && h <= 'F':
			r = r<<4 | rune(h-'A'+10)
		default:
			panic(declined{})
		}
	}
	if r >= 0xd800 && r <= 0xdfff || r > 0x10ffff {
		panic(declined{})
	}
	return utf8.AppendRune(b, r), i + 1 + digits
}

// plainTag is the tag yaml.v3 resolves a plain scalar to. The common cases
// are decided here; the rest are left to yaml.v3's own resolver.
func plainTag(v string) string {
	switch c := v[0]; {
	case c >= '0' && c <= '9', c == '-', c == '+', c == '.':
	case strings.IndexByte("yYnNtTfFoO~", c) >= 0:
		switch v {
		case "true", "True", "TRUE", "false", "False", "FALSE":
			return "!!bool"
		case "~", "null", "Null", "NULL":
			return "!!null"
		}
		return "!!str"
	default:
		return "!!str"
	}
	digits, dots, other := 0, 0, false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == '.':
			dots++
		case c >= 'a' && c <= 'f', c >= 'A' && c <= 'F', c == 'x', c == 'X', c == 'o', c == 'O', c == '_', c == '+', c == '-':
		default:
			other = true
		}
	}
	timestamp := len(v) > 4 && v[4] == '-' && digitsOnly(v[:4])
	switch {
	case digits == len(v) && len(v) <= 18 && (v[0] != '0' || len(v) == 1):
		return "!!int"
	case timestamp:
	case other, digits+dots == len(v) && dots >= 2:
		return "!!str"
	}
	n := yaml.Node{Kind: yaml.ScalarNode, Value: v}
	return n.ShortTag()
}

func digitsOnly(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
