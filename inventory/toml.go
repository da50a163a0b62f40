package inventory

import (
	"errors"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
	yaml "go.yaml.in/yaml/v3"
)

// tomlConv converts a TOML document into the same position-carrying tree
// the YAML parser produces (*yaml.Node), so that one decoder validates both.
// TOML's own rules (no key defined twice, no table defined twice, inline
// tables closed) are checked here, each problem with its line.
type tomlConv struct {
	dg       *diags
	data     []byte
	newlines []int // offsets of '\n', for line numbers
	root     *yaml.Node
	// tables records how each mapping was made.
	tables map[*yaml.Node]tableKind
	// index finds keys in large tables without scanning them.
	index map[*yaml.Node]map[string]int
}

type tableKind uint8

const (
	tableImplicit tableKind = iota // made as a parent of a dotted key or header
	tableHeader                    // defined by [header]
	tableDotted                    // defined by dotted keys (a.b = 1)
	tableInline                    // an inline table {…}: closed
	tableArray                     // an element of an array of tables
)

func tomlToYAML(dg *diags, data []byte) *yaml.Node {
	c := &tomlConv{dg: dg, data: data, tables: map[*yaml.Node]tableKind{}, index: map[*yaml.Node]map[string]int{}}
	for i, b := range data {
		if b == '\n' {
			c.newlines = append(c.newlines, i)
		}
	}
	c.root = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: 1}
	c.tables[c.root] = tableHeader
	var p unstable.Parser
	p.Reset(data)
	failed := false
	next := func() (more bool) {
		// The parser is not ours: a panic in it must not take reprov down.
		defer func() {
			if r := recover(); r != nil {
				failed, more = true, false
			}
		}()
		return p.NextExpression()
	}
	current := c.root
	for next() {
		e := p.Expression()
		switch e.Kind {
		case unstable.KeyValue:
			c.keyValue(current, e)
		case unstable.Table:
			current = c.table(e)
		case unstable.ArrayTable:
			current = c.arrayTable(e)
		}
		if len(dg.problems) >= maxProblems {
			break
		}
	}
	if failed {
		dg.problem(0, "", "", "the TOML parser failed on this file")
		return nil
	}
	if err := p.Error(); err != nil {
		line := 0
		var perr *unstable.ParserError
		if errors.As(err, &perr) {
			line = c.lineOfSlice(perr.Highlight)
		}
		dg.problem(line, "", "", "%s", err.Error())
		return nil
	}
	return c.root
}

// lineAt returns the 1-based line of a byte offset.
func (c *tomlConv) lineAt(off int) int {
	return sort.SearchInts(c.newlines, off) + 1
}

func (c *tomlConv) lineOf(r unstable.Range) int { return c.lineAt(int(r.Offset)) }

// lineOfSlice finds the line of a sub-slice of the input (a parser error's
// highlight), clamping anything else to the end.
func (c *tomlConv) lineOfSlice(b []byte) int {
	off := cap(c.data) - cap(b)
	if b == nil || off < 0 || off > len(c.data) {
		off = len(c.data)
	}
	return c.lineAt(off)
}

type tomlKey struct {
	name string
	line int
}

func (c *tomlConv) keyParts(e *unstable.Node) []tomlKey {
	var parts []tomlKey
	it := e.Key()
	for it.Next() {
		k := it.Node()
		parts = append(parts, tomlKey{name: string(k.Data), line: c.lineOf(k.Raw)})
	}
	return parts
}

func dotted(parts []tomlKey) string {
	names := make([]string, len(parts))
	for i, p := range parts {
		names[i] = p.name
	}
	return strings.Join(names, ".")
}

// lookup finds key in table m, through an index once the table is large.
func (c *tomlConv) lookup(m *yaml.Node, key string) (k, v *yaml.Node) {
	const indexFrom = 32 // keys
	if len(m.Content) < 2*indexFrom {
		return lookup(m, key)
	}
	idx, ok := c.index[m]
	if !ok {
		idx = make(map[string]int, len(m.Content)/2)
		for i := 0; i+1 < len(m.Content); i += 2 {
			if _, dup := idx[m.Content[i].Value]; !dup {
				idx[m.Content[i].Value] = i
			}
		}
		c.index[m] = idx
	}
	if i, ok := idx[key]; ok {
		return m.Content[i], m.Content[i+1]
	}
	return nil, nil
}

// lookup finds key in mapping m.
func lookup(m *yaml.Node, key string) (k, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i], m.Content[i+1]
		}
	}
	return nil, nil
}

func (c *tomlConv) addKey(m *yaml.Node, k tomlKey, v *yaml.Node) {
	if idx, ok := c.index[m]; ok {
		idx[k.name] = len(m.Content)
	}
	m.Content = append(m.Content,
		&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k.name, Line: k.line},
		v)
}

func (c *tomlConv) newTable(line int, kind tableKind) *yaml.Node {
	m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: line}
	c.tables[m] = kind
	return m
}

// scratch is where the values of a broken table go, so that parsing goes on
// and later problems are still found.
func (c *tomlConv) scratch(line int) *yaml.Node { return c.newTable(line, tableHeader) }

// descend walks the parent keys of a header or dotted key from m, making
// implicit tables; an array of tables stands for its last element.
func (c *tomlConv) descend(m *yaml.Node, parts []tomlKey, fromKeyValue bool) (*yaml.Node, bool) {
	for i, p := range parts {
		_, v := c.lookup(m, p.name)
		switch {
		case v == nil:
			kind := tableImplicit
			if fromKeyValue {
				kind = tableDotted
			}
			t := c.newTable(p.line, kind)
			c.addKey(m, p, t)
			m = t
		case v.Kind == yaml.MappingNode:
			if kind := c.tables[v]; kind == tableInline {
				c.dg.problem(p.line, "", dotted(parts[:i+1]), "cannot add to the inline table of line %d", v.Line)
				return nil, false
			} else if fromKeyValue && kind == tableHeader && v != m {
				c.dg.problem(p.line, "", dotted(parts[:i+1]), "cannot add keys to a table defined elsewhere (line %d)", v.Line)
				return nil, false
			}
			m = v
		case v.Kind == yaml.SequenceNode && c.isArrayOfTables(v) && !fromKeyValue:
			m = v.Content[len(v.Content)-1]
		default:
			c.dg.problem(p.line, "", dotted(parts[:i+1]), "already a value (line %d), not a table", v.Line)
			return nil, false
		}
	}
	return m, true
}

func (c *tomlConv) isArrayOfTables(v *yaml.Node) bool {
	return len(v.Content) > 0 && c.tables[v.Content[len(v.Content)-1]] == tableArray
}

func (c *tomlConv) keyValue(m *yaml.Node, e *unstable.Node) {
	parts := c.keyParts(e)
	if len(parts) == 0 {
		return
	}
	parent, ok := c.descend(m, parts[:len(parts)-1], true)
	if !ok {
		return
	}
	last := parts[len(parts)-1]
	if k, _ := c.lookup(parent, last.name); k != nil {
		c.dg.problem(last.line, "", dotted(parts), "key defined twice (first at line %d)", k.Line)
		return
	}
	v := c.value(e.Value(), last.line)
	c.addKey(parent, last, v)
}

func (c *tomlConv) table(e *unstable.Node) *yaml.Node {
	parts := c.keyParts(e)
	if len(parts) == 0 {
		return c.scratch(0)
	}
	last := parts[len(parts)-1]
	parent, ok := c.descend(c.root, parts[:len(parts)-1], false)
	if !ok {
		return c.scratch(last.line)
	}
	_, v := c.lookup(parent, last.name)
	switch {
	case v == nil:
		t := c.newTable(last.line, tableHeader)
		c.addKey(parent, last, t)
		return t
	case v.Kind == yaml.MappingNode && c.tables[v] == tableImplicit:
		c.tables[v] = tableHeader
		v.Line = last.line
		return v
	case v.Kind == yaml.MappingNode && c.tables[v] == tableInline:
		c.dg.problem(last.line, "", dotted(parts), "cannot add to the inline table of line %d", v.Line)
	case v.Kind == yaml.MappingNode:
		c.dg.problem(last.line, "", dotted(parts), "table defined twice (first at line %d)", v.Line)
	default:
		c.dg.problem(last.line, "", dotted(parts), "already a value (line %d), not a table", v.Line)
	}
	return c.scratch(last.line)
}

func (c *tomlConv) arrayTable(e *unstable.Node) *yaml.Node {
	parts := c.keyParts(e)
	if len(parts) == 0 {
		return c.scratch(0)
	}
	last := parts[len(parts)-1]
	parent, ok := c.descend(c.root, parts[:len(parts)-1], false)
	if !ok {
		return c.scratch(last.line)
	}
	_, v := c.lookup(parent, last.name)
	t := c.newTable(last.line, tableArray)
	switch {
	case v == nil:
		seq := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: last.line, Content: []*yaml.Node{t}}
		c.addKey(parent, last, seq)
	case v.Kind == yaml.SequenceNode && c.isArrayOfTables(v):
		v.Content = append(v.Content, t)
	default:
		c.dg.problem(last.line, "", dotted(parts), "already a value (line %d), not an array of tables", v.Line)
		return c.scratch(last.line)
	}
	return t
}

// value converts a TOML value; line is where it starts when the value
// itself has no position (arrays).
func (c *tomlConv) value(n *unstable.Node, line int) *yaml.Node {
	if n == nil {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: line}
	}
	if n.Kind != unstable.Array { // arrays carry no position: keep the key's line
		line = c.lineOf(n.Raw)
	}
	scalar := func(tag, value string) *yaml.Node {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: value, Line: line}
	}
	switch n.Kind {
	case unstable.String:
		return scalar("!!str", string(n.Data))
	case unstable.Bool:
		return scalar("!!bool", string(n.Data))
	case unstable.Integer:
		v, err := tomlInt(string(n.Data))
		if err != nil {
			c.dg.problem(line, "", "", "%q: %v", string(n.Data), err)
			return scalar("!!str", string(n.Data))
		}
		return scalar("!!int", strconv.FormatInt(v, 10))
	case unstable.Float:
		return scalar("!!float", string(n.Data))
	case unstable.LocalDate, unstable.LocalTime, unstable.LocalDateTime, unstable.DateTime:
		return scalar("!!timestamp", string(n.Data))
	case unstable.Array:
		seq := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: line}
		it := n.Children()
		for it.Next() {
			if child := it.Node(); child.Kind != unstable.Comment {
				seq.Content = append(seq.Content, c.value(child, line))
			}
		}
		return seq
	case unstable.InlineTable:
		t := c.newTable(line, tableInline)
		c.tables[t] = tableDotted // filled like dotted keys, closed below
		it := n.Children()
		for it.Next() {
			if kv := it.Node(); kv.Kind == unstable.KeyValue {
				c.keyValue(t, kv)
			}
		}
		c.closeInline(t)
		return t
	}
	return scalar("!!str", string(n.Data))
}

// closeInline marks an inline table and the tables its dotted keys made as
// closed to later additions.
func (c *tomlConv) closeInline(t *yaml.Node) {
	c.tables[t] = tableInline
	for i := 1; i < len(t.Content); i += 2 {
		if v := t.Content[i]; v.Kind == yaml.MappingNode && c.tables[v] == tableDotted {
			c.closeInline(v)
		}
	}
}

// tomlInt parses a TOML integer: decimal (no leading zeros), 0x, 0o or 0b,
// with underscores between digits.
func tomlInt(raw string) (int64, error) {
	s := strings.ReplaceAll(raw, "_", "")
	neg := false
	body := s
	if body != "" && (body[0] == '+' || body[0] == '-') {
		neg = body[0] == '-'
		body = body[1:]
	}
	base := 10
	switch {
	case strings.HasPrefix(body, "0x"):
		base, body = 16, body[2:]
	case strings.HasPrefix(body, "0o"):
		base, body = 8, body[2:]
	case strings.HasPrefix(body, "0b"):
		base, body = 2, body[2:]
	case len(body) > 1 && body[0] == '0':
		return 0, errors.New("integers must not have leading zeros")
	}
	if base != 10 && s != body && (s[0] == '+' || s[0] == '-') {
		return 0, errors.New("only decimal integers may have a sign")
	}
	u, err := strconv.ParseUint(body, base, 64)
	if err != nil {
		return 0, errors.New("not a valid integer")
	}
	if neg {
		if u > uint64(math.MaxInt64)+1 {
			return 0, errors.New("integer out of range")
		}
		return -int64(u), nil //nolint:gosec // range checked
	}
	if u > math.MaxInt64 {
		return 0, errors.New("integer out of range")
	}
	return int64(u), nil
}
