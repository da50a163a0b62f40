package inventory

import (
	"fmt"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/reprov/reprov/internal/suggest"
)

// nodeMeta is what the decoder knows about one node beyond its values:
// where each field was set, and whether it came from defaults.
type nodeMeta struct {
	entry     int    // 1-based position in nodes
	line      int    // line of the entry
	set       uint64 // leaves given or inherited
	inherited uint64 // leaves taken from defaults
	lines     [nLeaves]int32
	macLines  []int32
	bmcKey    string // normalized BMC address, "" if none or invalid
}

func (m *nodeMeta) has(leaf int) bool { return m.set&(1<<leaf) != 0 }

func (m *nodeMeta) mark(leaf, line int) {
	m.set |= 1 << leaf
	m.lines[leaf] = int32(min(line, 1<<31-1))
}

// nodeCtx is the node being decoded.
type nodeCtx struct {
	label    string // Problem.Node: the name, "#N", or "" for defaults
	prefix   string // "defaults." for defaults, else ""
	defaults bool
	node     *Node
	meta     *nodeMeta
}

// decoder turns a native tree (parsed YAML or JSON, converted TOML, or the
// tree an importer built) into validated nodes. It is the one validation path
// of every format.
type decoder struct {
	*diags
	// origins is set for importer-built trees: a value node's LineComment
	// then names where it came from ("Ansible variable ipmi_host"), and
	// problems say so.
	origins bool
	// budget bounds the nodes the walk visits, so that YAML aliases cannot
	// make a small file expensive.
	budget     int
	overBudget bool
	// statted records the credential files already checked for permissions.
	statted map[string]bool
}

func newDecoder(dg *diags, inputSize int) *decoder {
	return &decoder{diags: dg, budget: 64*inputSize + 100_000, statted: map[string]bool{}}
}

// spend consumes one unit of the budget and reports whether it is exhausted.
func (d *decoder) spend() bool {
	if d.budget > 0 {
		d.budget--
		return false
	}
	if !d.overBudget {
		d.overBudget = true
		d.problem(0, "", "", "the file expands too much through YAML aliases; stopped reading it")
	}
	return true
}

// resolve follows YAML aliases.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 64; i++ {
		n = n.Alias
	}
	if n != nil && n.Kind == yaml.AliasNode {
		return nil
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func isMergeKey(k *yaml.Node) bool {
	return k.Kind == yaml.ScalarNode && k.Value == "<<" && k.ShortTag() == "!!merge"
}

// eachPair calls fn for each key and value of mapping m, aliases resolved.
// YAML merge keys (<<: *anchor) are expanded, explicit keys winning. A key
// given twice is reported through dup and skipped.
func (d *decoder) eachPair(m *yaml.Node, dup func(k *yaml.Node, firstLine int), fn func(k, v *yaml.Node)) {
	hasMerge := false
	for i := 0; i+1 < len(m.Content); i += 2 {
		if isMergeKey(m.Content[i]) {
			hasMerge = true
			break
		}
	}
	var smallBuf [16]*yaml.Node
	small := smallBuf[:0]  // keys seen, for small mappings
	var big map[string]int // key → line, for large ones
	if len(m.Content) > 32 || hasMerge {
		big = make(map[string]int, len(m.Content)/2)
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := resolve(m.Content[i]), resolve(m.Content[i+1])
		if k == nil || isMergeKey(k) {
			continue
		}
		if k.Kind == yaml.ScalarNode {
			first, seen := 0, false
			if big != nil {
				if first, seen = big[k.Value]; !seen {
					big[k.Value] = k.Line
				}
			} else {
				for _, s := range small {
					if s.Value == k.Value {
						first, seen = s.Line, true
						break
					}
				}
				if !seen {
					small = append(small, k)
				}
			}
			if seen {
				dup(k, first)
				continue
			}
		}
		fn(k, v)
	}
	if !hasMerge {
		return
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if k := m.Content[i]; isMergeKey(k) {
			d.merge(resolve(m.Content[i+1]), big, fn, 0)
		}
	}
}

// merge feeds fn the pairs of a merge-key source not already in seen.
func (d *decoder) merge(src *yaml.Node, seen map[string]int, fn func(k, v *yaml.Node), depth int) {
	if src == nil || depth > 8 || d.spend() {
		return
	}
	switch src.Kind {
	case yaml.SequenceNode:
		for _, e := range src.Content {
			d.merge(resolve(e), seen, fn, depth+1)
		}
	case yaml.MappingNode:
		var nested []*yaml.Node
		for i := 0; i+1 < len(src.Content); i += 2 {
			k, v := resolve(src.Content[i]), resolve(src.Content[i+1])
			if k == nil {
				continue
			}
			if isMergeKey(k) {
				nested = append(nested, v)
				continue
			}
			if k.Kind == yaml.ScalarNode {
				if _, ok := seen[k.Value]; ok {
					continue
				}
				seen[k.Value] = k.Line
			}
			fn(k, v)
		}
		for _, v := range nested {
			d.merge(v, seen, fn, depth+1)
		}
	}
}

// describe names a value's type for messages. It never shows the value.
func describe(n *yaml.Node) string {
	if n == nil {
		return "nothing"
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.DocumentNode:
		return "a document"
	}
	switch t := n.ShortTag(); t {
	case "!!str":
		return "a string"
	case "!!int":
		return "an integer"
	case "!!float":
		return "a number with a fraction"
	case "!!bool":
		return "a boolean"
	case "!!null":
		return "nothing"
	case "!!timestamp":
		return "a date"
	case "!!binary":
		return "binary data"
	default:
		return "a value tagged " + t
	}
}

// scalarString returns a scalar as written, for string fields: strings,
// numbers and dates are taken as text; booleans and collections are not.
func scalarString(n *yaml.Node) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		return "", false
	}
	switch n.ShortTag() {
	case "!!str", "!!int", "!!float", "!!timestamp":
		return n.Value, true
	}
	return "", false
}

func scalarInt(n *yaml.Node) (int, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		return 0, false
	}
	v, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
	if err != nil || v != int64(int(v)) {
		return 0, false
	}
	return int(v), true
}

func scalarBool(n *yaml.Node) (bool, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
		return false, false
	}
	v, err := strconv.ParseBool(strings.ToLower(n.Value))
	return v, err == nil
}

// listElems returns a list's elements, or a scalar as a list of one.
func listElems(n *yaml.Node) ([]*yaml.Node, bool) {
	switch n.Kind {
	case yaml.SequenceNode:
		if !slices.ContainsFunc(n.Content, func(e *yaml.Node) bool { return e == nil || e.Kind == yaml.AliasNode }) {
			return n.Content, true // nothing to resolve: no copy
		}
		out := make([]*yaml.Node, 0, len(n.Content))
		for _, e := range n.Content {
			if e = resolve(e); e != nil {
				out = append(out, e)
			}
		}
		return out, true
	case yaml.ScalarNode:
		return []*yaml.Node{n}, true
	}
	return nil, false
}

// fieldProblem reports a problem with the value v of field f.
func (d *decoder) fieldProblem(c *nodeCtx, f *field, v *yaml.Node, format string, args ...any) {
	d.problem(v.Line, c.label, c.prefix+f.path, "%s", d.withOrigin(fmt.Sprintf(format, args...), v))
}

func (d *decoder) fieldWarning(c *nodeCtx, f *field, v *yaml.Node, format string, args ...any) {
	d.warn(v.Line, c.label, c.prefix+f.path, "%s", d.withOrigin(fmt.Sprintf(format, args...), v))
}

func (d *decoder) withOrigin(msg string, v *yaml.Node) string {
	if d.origins && v.LineComment != "" {
		return msg + " (from " + v.LineComment + ")"
	}
	return msg
}

// native decodes a whole native tree: defaults merged, every value checked,
// every node checked against the others.
func (d *decoder) native(root *yaml.Node) []Node {
	root = resolve(root)
	if root == nil || isNull(root) {
		d.warn(0, "", "", "the inventory has no nodes")
		return nil
	}
	if root.Kind != yaml.MappingNode {
		d.problem(root.Line, "", "", "the top level must be a mapping with the keys defaults and nodes, not %s", describe(root))
		return nil
	}
	var top topLevel
	d.eachPair(root, func(k *yaml.Node, first int) {
		d.topDup(k, first)
	}, func(k, v *yaml.Node) {
		d.topKey(&top, k, v)
	})
	var def defaults
	d.decodeDefaults(&def, top.defaults)
	return d.nodeList(root.Line, top.nodes, &def)
}

// topLevel is what the top-level mapping gave: the values of defaults and
// nodes.
type topLevel struct {
	defaults, nodes *yaml.Node
}

var topKeys = []string{"defaults", "nodes"}

// topDup reports a top-level key given twice.
func (d *decoder) topDup(k *yaml.Node, first int) {
	d.problem(k.Line, "", k.Value, "key appears twice (first at line %d)", first)
}

// topKey takes one top-level pair (not a repeated key).
func (d *decoder) topKey(top *topLevel, k, v *yaml.Node) {
	switch {
	case k.Kind != yaml.ScalarNode:
		d.problem(k.Line, "", "", "keys must be strings, not %s", describe(k))
	case k.Value == "defaults":
		top.defaults = v
	case k.Value == "nodes":
		top.nodes = v
	case strings.HasPrefix(k.Value, "x-"):
		// An extension key: a place for YAML anchors, ignored.
	default:
		hint := suggest.DidYouMean(k.Value, topKeys)
		if hint == "" {
			hint = " (the top level has defaults, nodes and x-… keys for YAML anchors)"
		}
		d.problem(k.Line, "", k.Value, "unknown key%s", hint)
	}
}

// defaults is the decoded defaults section.
type defaults struct {
	node Node
	meta nodeMeta
}

// decodeDefaults decodes the value of the defaults key, if any.
func (d *decoder) decodeDefaults(def *defaults, v *yaml.Node) {
	if v == nil || isNull(v) {
		return
	}
	if v.Kind != yaml.MappingNode {
		d.problem(v.Line, "", "defaults", "want a mapping of node fields, got %s", describe(v))
		return
	}
	c := nodeCtx{prefix: "defaults.", defaults: true, node: &def.node, meta: &def.meta}
	d.decodeMapping(&c, nativeSchema.node, "", v)
}

// nodeList decodes the value of the nodes key (rootLine is the line of the
// top-level mapping): every entry, then defaults merged and every node
// checked against the others.
func (d *decoder) nodeList(rootLine int, nodesNode *yaml.Node, def *defaults) []Node {
	if nodesNode == nil || isNull(nodesNode) {
		d.warn(rootLine, "", "", "the inventory has no nodes")
		return nil
	}
	if nodesNode.Kind != yaml.SequenceNode {
		d.problem(nodesNode.Line, "", "nodes", "want a list of nodes, got %s", describe(nodesNode))
		return nil
	}
	if len(nodesNode.Content) == 0 && !d.origins {
		d.warn(nodesNode.Line, "", "nodes", "the inventory has no nodes")
	}
	es := newEntries(len(nodesNode.Content))
	for i, e := range nodesNode.Content {
		if !es.entry(d, resolve(e), i+1) {
			break
		}
	}
	return es.finish(d, def)
}

// entries are the nodes decoded so far, with their metadata.
type entries struct {
	nodes   []Node
	metas   []nodeMeta
	stopped bool // the decoder's budget ran out
}

func newEntries(n int) *entries {
	return &entries{nodes: make([]Node, 0, n), metas: make([]nodeMeta, 0, n)}
}

// entry decodes e, the entry-th element of the node list, and reports
// whether to go on.
func (es *entries) entry(d *decoder, e *yaml.Node, entry int) bool {
	if es.stopped || d.spend() {
		es.stopped = true
		return false
	}
	if e == nil {
		return true
	}
	if e.Kind != yaml.MappingNode {
		d.problem(e.Line, "#"+strconv.Itoa(entry), "", "want a node (a mapping with name, bmc, ssh, ...), got %s", describe(e))
		return true
	}
	es.nodes = append(es.nodes, Node{Pos: Position{File: d.file, Line: e.Line}})
	es.metas = append(es.metas, nodeMeta{entry: entry, line: e.Line})
	c := nodeCtx{label: entryLabel(e, entry), node: &es.nodes[len(es.nodes)-1], meta: &es.metas[len(es.metas)-1]}
	d.decodeMapping(&c, nativeSchema.node, "", e)
	return true
}

// finish merges defaults into the decoded nodes and checks them.
func (es *entries) finish(d *decoder, def *defaults) []Node {
	nodes, metas := es.nodes, es.metas
	for i := range nodes {
		d.inherit(&nodes[i], &metas[i], &def.node, &def.meta)
		d.checkNode(&nodes[i], &metas[i])
	}
	d.crossCheck(nodes, metas)
	return nodes
}

// entryLabel names a node entry for problems: its name when it has a usable
// one, else "#N".
func entryLabel(m *yaml.Node, entry int) string {
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := resolve(m.Content[i]), resolve(m.Content[i+1])
		if k != nil && v != nil && k.Kind == yaml.ScalarNode && k.Value == "name" {
			if s, ok := scalarString(v); ok && validName(s) {
				return s
			}
			break
		}
	}
	return "#" + strconv.Itoa(entry)
}

// decodeMapping decodes the keys of m as the fields fs (under prefix).
func (d *decoder) decodeMapping(c *nodeCtx, fs []*field, prefix string, m *yaml.Node) {
	d.eachPair(m, func(k *yaml.Node, first int) {
		d.problem(k.Line, c.label, c.prefix+prefix+k.Value, "key appears twice (first at line %d)", first)
	}, func(k, v *yaml.Node) {
		if k.Kind != yaml.ScalarNode {
			d.problem(k.Line, c.label, strings.TrimSuffix(c.prefix+prefix, "."), "keys must be strings, not %s", describe(k))
			return
		}
		var f *field
		for _, x := range fs {
			if x.key == k.Value {
				f = x
				break
			}
		}
		if f == nil {
			hint := suggest.DidYouMean(k.Value, keys(fs))
			if hint == "" {
				hint = " (want " + orList(keys(fs)) + ")"
			}
			d.problem(k.Line, c.label, c.prefix+prefix+k.Value, "unknown key%s", hint)
			return
		}
		if f.leaf == fName && c.defaults {
			d.problem(k.Line, "", "defaults.name", "a node name cannot have a default")
			return
		}
		d.decodeField(c, f, v)
	})
}

// decodeField decodes value v of field f into the node.
func (d *decoder) decodeField(c *nodeCtx, f *field, v *yaml.Node) {
	if v == nil || d.spend() || isNull(v) {
		return // null: not set
	}
	switch f.kind {
	case kSection:
		if v.Kind != yaml.MappingNode {
			d.fieldProblem(c, f, v, "want a mapping of %s, got %s", orList(keys(f.sub)), describe(v))
			return
		}
		d.decodeMapping(c, f.sub, f.path+".", v)
		return
	case kString:
		s, ok := scalarString(v)
		if !ok {
			d.fieldProblem(c, f, v, "want a string, got %s", describe(v))
			return
		}
		*f.ptr(c.node).(*string) = s
	case kEnum:
		s, ok := scalarString(v)
		if !ok {
			d.fieldProblem(c, f, v, "want one of %s, got %s", orList(f.enum), describe(v))
			return
		}
		lower := strings.ToLower(s)
		if !slices.Contains(f.enum, lower) {
			d.fieldProblem(c, f, v, "unknown value %q (want %s)%s", s, orList(f.enum), suggest.DidYouMean(s, f.enum))
			return
		}
		*f.ptr(c.node).(*string) = lower
	case kInt:
		n, ok := scalarInt(v)
		if !ok {
			d.fieldProblem(c, f, v, "want an integer, got %s", describe(v))
			return
		}
		*f.ptr(c.node).(*int) = n
	case kBool:
		b, ok := scalarBool(v)
		if !ok {
			d.fieldProblem(c, f, v, "want true or false, got %s", describe(v))
			return
		}
		*f.ptr(c.node).(*bool) = b
	case kDuration:
		var dur time.Duration
		if n, ok := scalarInt(v); ok && n == 0 {
			dur = 0
		} else if s, ok := scalarString(v); ok && v.ShortTag() == "!!str" {
			var err error
			if dur, err = time.ParseDuration(s); err != nil {
				d.fieldProblem(c, f, v, "%q is not a duration (write it like \"500ms\", \"2s\" or \"1m30s\")", s)
				return
			}
			if dur < 0 {
				d.fieldProblem(c, f, v, "must not be negative")
				return
			}
		} else {
			d.fieldProblem(c, f, v, "want a duration like \"2s\" (a number needs a unit), got %s", describe(v))
			return
		}
		*f.ptr(c.node).(*time.Duration) = dur
	case kStringList:
		elems, ok := listElems(v)
		if !ok {
			d.fieldProblem(c, f, v, "want a list of strings, got %s", describe(v))
			return
		}
		out := make([]string, 0, len(elems))
		for _, e := range elems {
			s, ok := scalarString(e)
			if !ok {
				d.fieldProblem(c, f, e, "want a string in the list, got %s", describe(e))
				return
			}
			out = append(out, s)
		}
		if len(out) == 0 {
			return
		}
		*f.ptr(c.node).(*[]string) = out
	case kIntList:
		elems, ok := listElems(v)
		if !ok {
			d.fieldProblem(c, f, v, "want a list of integers, got %s", describe(v))
			return
		}
		out := make([]int, 0, len(elems))
		for _, e := range elems {
			n, ok := scalarInt(e)
			if !ok {
				d.fieldProblem(c, f, e, "want an integer in the list, got %s", describe(e))
				return
			}
			out = append(out, n)
		}
		if len(out) == 0 {
			return
		}
		*f.ptr(c.node).(*[]int) = out
	case kLabels:
		if !d.decodeLabels(c, f, v) {
			return
		}
	case kSecret:
		if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!str" {
			d.fieldProblem(c, f, v, "want a credential reference (env:NAME, file:PATH or plain:VALUE), got %s; the value is not shown", describe(v))
			return
		}
		*f.ptr(c.node).(*Secret) = NewSecret(v.Value)
	}
	c.meta.mark(f.leaf, v.Line)
	if f.check != nil {
		f.check(d, c, f, v)
	}
}

func (d *decoder) decodeLabels(c *nodeCtx, f *field, v *yaml.Node) bool {
	if v.Kind != yaml.MappingNode {
		d.fieldProblem(c, f, v, "want a mapping of label keys to values, got %s", describe(v))
		return false
	}
	dst := f.ptr(c.node).(*map[string]string)
	ok := true
	d.eachPair(v, func(k *yaml.Node, first int) {
		d.problem(k.Line, c.label, c.prefix+f.path+"."+k.Value, "label appears twice (first at line %d)", first)
		ok = false
	}, func(k, val *yaml.Node) {
		key, isStr := scalarString(k)
		if !isStr {
			d.fieldProblem(c, f, k, "label keys must be strings, not %s", describe(k))
			ok = false
			return
		}
		if msg := labelKeyProblem(key); msg != "" {
			d.fieldProblem(c, f, k, "%s", msg)
			ok = false
			return
		}
		var s string
		switch {
		case val == nil || isNull(val):
		case val.Kind == yaml.ScalarNode && val.ShortTag() == "!!bool":
			b, _ := scalarBool(val)
			s = strconv.FormatBool(b)
		default:
			var isStr bool
			if s, isStr = scalarString(val); !isStr {
				d.problem(val.Line, c.label, c.prefix+f.path+"."+key, "%s", d.withOrigin("want a string label value, got "+describe(val), val))
				ok = false
				return
			}
		}
		if msg := labelValueProblem(s); msg != "" {
			d.problem(val.Line, c.label, c.prefix+f.path+"."+key, "%s", d.withOrigin(msg, val))
			ok = false
			return
		}
		if *dst == nil {
			*dst = make(map[string]string)
		}
		(*dst)[key] = s
	})
	return ok && len(*dst) > 0
}

// inherit merges defaults into a node: what the node sets wins; labels are
// merged key-wise.
func (d *decoder) inherit(n *Node, m *nodeMeta, def *Node, dm *nodeMeta) {
	if dm.set == 0 {
		return
	}
	for leaf, f := range nativeSchema.leaves {
		if !dm.has(leaf) {
			continue
		}
		if m.has(leaf) && leaf != fLabels {
			continue
		}
		copyLeaf(f, n, def)
		if !m.has(leaf) {
			m.mark(leaf, int(dm.lines[leaf]))
			m.inherited |= 1 << leaf
		}
	}
	if m.inherited&(1<<fMACs) != 0 {
		m.macLines = dm.macLines
	}
	if m.inherited&(1<<fBMCAddress) != 0 {
		m.bmcKey = dm.bmcKey
	}
}

// fieldOf returns the problem field path of a leaf for a node: prefixed
// with "defaults." when the value was inherited.
func (m *nodeMeta) fieldOf(leaf int) string {
	if m.inherited&(1<<leaf) != 0 {
		return "defaults." + nativeSchema.leaves[leaf].path
	}
	return nativeSchema.leaves[leaf].path
}

func (m *nodeMeta) label(n *Node) string {
	if n.Name != "" && validName(n.Name) {
		return n.Name
	}
	return "#" + strconv.Itoa(m.entry)
}

// checkNode checks what needs the merged node.
func (d *decoder) checkNode(n *Node, m *nodeMeta) {
	label := m.label(n)
	if !m.has(fName) {
		d.problem(m.line, label, "name", "missing: every node needs a unique name")
	}
	if slices.Contains(n.BMC.Options.CipherSuites, 0) {
		line := int(m.lines[fCipherSuites])
		if n.BMC.Options.AllowInsecureIPMI {
			d.warn(line, label, m.fieldOf(fCipherSuites), "cipher suite 0 has no authentication, integrity or encryption")
		} else {
			d.problem(line, label, m.fieldOf(fCipherSuites), "cipher suite 0 has no authentication or encryption; it needs bmc.options.allow_insecure_ipmi: true")
		}
	}
	if n.BMC.Address == "" && n.SSH.Address == "" {
		d.warn(m.line, label, "", "neither bmc.address nor ssh.address is set: reprov cannot reach this node")
	}
}

// crossCheck finds what must be unique across nodes: names, MACs, BMC
// addresses (and warns about shared serial numbers).
func (d *decoder) crossCheck(nodes []Node, metas []nodeMeta) {
	// Lines are int32 in nodeMeta already; so are they here, which keeps
	// the maps of a large fleet smaller.
	type seenAt struct {
		idx  int32
		line int32
	}
	nMACs := 0
	for i := range nodes {
		nMACs += len(nodes[i].MACs)
	}
	names := make(map[string]seenAt, len(nodes))
	macs := make(map[string]seenAt, nMACs)
	bmcs := make(map[string]seenAt, len(nodes))
	serials := make(map[string]seenAt, len(nodes))
	inheritedDup := map[int]int{} // leaf → nodes beyond the first sharing an inherited value
	for i := range nodes {
		n, m := &nodes[i], &metas[i]
		label := m.label(n)
		if m.has(fName) && n.Name != "" {
			if first, ok := names[n.Name]; ok {
				d.problem(int(m.lines[fName]), label, "name", "duplicate node name %q (first defined at line %d)", n.Name, first.line)
			} else {
				names[n.Name] = seenAt{int32(i), m.lines[fName]}
			}
		}
		for j, mac := range n.MACs {
			line := int(m.lines[fMACs])
			if j < len(m.macLines) {
				line = int(m.macLines[j])
			}
			if first, ok := macs[mac]; ok {
				if m.inherited&(1<<fMACs) != 0 && metas[first.idx].inherited&(1<<fMACs) != 0 {
					inheritedDup[fMACs]++
					continue
				}
				d.problem(line, label, m.fieldOf(fMACs), "MAC %s is also listed for node %s (line %d)", mac, metas[first.idx].label(&nodes[first.idx]), first.line)
			} else {
				macs[mac] = seenAt{int32(i), int32(line)}
			}
		}
		if m.bmcKey != "" {
			line := int(m.lines[fBMCAddress])
			if first, ok := bmcs[m.bmcKey]; ok {
				if m.inherited&(1<<fBMCAddress) != 0 && metas[first.idx].inherited&(1<<fBMCAddress) != 0 {
					inheritedDup[fBMCAddress]++
				} else {
					d.problem(line, label, m.fieldOf(fBMCAddress), "%s is also the BMC of node %s (line %d)", n.BMC.Address, metas[first.idx].label(&nodes[first.idx]), first.line)
				}
			} else {
				bmcs[m.bmcKey] = seenAt{int32(i), int32(line)}
			}
		}
		if n.Serial != "" {
			line := int(m.lines[fSerial])
			if first, ok := serials[n.Serial]; ok {
				if m.inherited&(1<<fSerial) == 0 {
					d.warn(line, label, "serial", "serial %q is also node %s's (line %d): the identity check cannot tell them apart", n.Serial, metas[first.idx].label(&nodes[first.idx]), first.line)
				} else {
					inheritedDup[fSerial]++
				}
			} else {
				serials[n.Serial] = seenAt{int32(i), int32(line)}
			}
		}
	}
	for _, leaf := range []int{fMACs, fBMCAddress} {
		if k := inheritedDup[leaf]; k > 0 {
			line := 0
			for i := range metas {
				if metas[i].inherited&(1<<leaf) != 0 {
					line = int(metas[i].lines[leaf])
					break
				}
			}
			d.problem(line, "", "defaults."+nativeSchema.leaves[leaf].path, "gives %d nodes the same value, which must identify one node", k+1)
		}
	}
	if k := inheritedDup[fSerial]; k > 0 {
		for i := range metas {
			if metas[i].inherited&(1<<fSerial) != 0 {
				d.warn(int(metas[i].lines[fSerial]), "", "defaults.serial", "gives %d nodes the same serial: the identity check cannot tell them apart", k+1)
				break
			}
		}
	}
}

// ---- value checks -------------------------------------------------------

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f })
}

// validName reports whether s can name a node: letters, digits, '.', '_'
// and '-', starting with a letter or digit.
func validName(s string) bool {
	if s == "" || len(s) > 253 || !isAlnum(s[0]) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '.' && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func checkName(d *decoder, c *nodeCtx, f *field, v *yaml.Node) {
	if s := c.node.Name; !validName(s) {
		d.fieldProblem(c, f, v, "%q is not a valid node name (use letters, digits, '.', '_' and '-', starting with a letter or digit)", s)
		c.node.Name = "" // still counted as given: "missing" would be wrong
	}
}

func checkRack(d *decoder, c *nodeCtx, f *field, v *yaml.Node) {
	s := c.node.Rack
	switch {
	case s == "":
		d.fieldProblem(c, f, v, "empty rack name (leave the key out instead)")
	case hasControl(s) || strings.ContainsAny(s, ",") || strings.TrimSpace(s) != s:
		d.fieldProblem(c, f, v, "%q is not a valid rack name (no commas, control characters or leading/trailing spaces)", s)
	}
}

// labelKeyProblem checks a label key: an optional DNS-style prefix and '/',
// then letters, digits, '-', '_' and '.', starting and ending alphanumeric.
func labelKeyProblem(k string) string {
	prefix, name, hasPrefix := strings.Cut(k, "/")
	if !hasPrefix {
		name, prefix = prefix, ""
	}
	if hasPrefix && (prefix == "" || !validHost(prefix) && !validLabelName(prefix)) {
		return fmt.Sprintf("label key %q: the part before / must be a DNS name", k)
	}
	if !validLabelName(name) {
		return fmt.Sprintf("label key %q: use letters, digits, '-', '_' and '.', starting and ending with a letter or digit", k)
	}
	return ""
}

func validLabelName(s string) bool {
	if s == "" || len(s) > 253 || !isAlnum(s[0]) || !isAlnum(s[len(s)-1]) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

func labelValueProblem(v string) string {
	if v == "" || validLabelName(v) {
		return ""
	}
	return fmt.Sprintf("label value %q: use letters, digits, '-', '_' and '.', starting and ending with a letter or digit (so that selectors can match it)", v)
}

func checkBMCAddress(d *decoder, c *nodeCtx, f *field, v *yaml.Node) {
	a, err := ParseBMCAddress(c.node.BMC.Address)
	if err != nil {
		d.fieldProblem(c, f, v, "%v", err)
		return
	}
	c.meta.bmcKey = a.key()
}

func checkUsername(d *decoder, c *nodeCtx, f *field, v *yaml.Node) {
	s := *f.ptr(c.node).(*string)
	switch {
	case s == "":
		d.fieldProblem(c, f, v, "empty user name (leave the key out instead)")
	case hasControl(s):
		d.fieldProblem(c, f, v, "the user name contains control characters")
	}
}

func checkPath(d *decoder, c *nodeCtx, f *field, v *yaml.Node) {
	s := *f.ptr(c.node).(*string)
	switch {
	case s == "":
		d.fieldProblem(c, f, v, "empty path (leave the key out instead)")
	case hasControl(s):
		d.fieldProblem(c, f, v, "the path contains control characters")
	}
}

// secretProblem checks a credential reference. Its messages never contain
// the value.
func secretProblem(ref string) string {
	kind, arg, ok := strings.Cut(ref, ":")
	const want = "write env:NAME, file:PATH or plain:VALUE; the value is not shown"
	if !ok {
		return "not a credential reference (" + want + ")"
	}
	switch kind {
	case "env":
		if !validEnvName(arg) {
			return "env: needs an environment variable name (letters, digits and _, not starting with a digit)"
		}
	case "file":
		if arg == "" || hasControl(arg) {
			return "file: needs a path"
		}
	case "plain":
		if arg == "" {
			return "plain: needs a value"
		}
	default:
		return "not a credential reference (" + want + ")"
	}
	return ""
}

func validEnvName(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '_' {
			return false
		}
	}
	return true
}

func checkSecret(d *decoder, c *nodeCtx, f *field, v *yaml.Node) {
	s := f.ptr(c.node).(*Secret)
	if msg := secretProblem(s.ref); msg != "" {
		d.fieldProblem(c, f, v, "%s", msg)
		*s = Secret{}
		return
	}
	switch kind, arg, _ := strings.Cut(s.ref, ":"); kind {
	case "plain":
		if !d.origins {
			d.fieldWarning(c, f, v, "a plain: literal keeps the credential in the inventory file; prefer env:NAME or file:PATH")
		}
	case "file":
		p := expandHome(arg)
		if d.statted[p] {
			return
		}
		d.statted[p] = true
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm()&0o044 != 0 {
			d.fieldWarning(c, f, v, "credential file %s is readable by group or others (mode %04o); chmod 600 it", p, fi.Mode().Perm())
		}
	}
}

func checkCipherSuites(d *decoder, c *nodeCtx, f *field, v *yaml.Node) {
	elems, _ := listElems(v)
	for i, cs := range c.node.BMC.Options.CipherSuites {
		switch cs {
		case 3, 17, 0:
		default:
			at := v
			if i < len(elems) {
				at = elems[i]
			}
			d.fieldProblem(c, f, at, "cipher suite %d is not allowed (use 17 or 3; 0 only with allow_insecure_ipmi: true)", cs)
		}
	}
}

func checkAllowInsecureIPMI(d *decoder, c *nodeCtx, f *field, v *yaml.Node) {
	if c.node.BMC.Options.AllowInsecureIPMI {
		d.fieldWarning(c, f, v, "permits IPMI cipher suite 0 and IPMI 1.5: anyone on the BMC network can read and forge commands")
	}
}

func checkInsecureTLS(d *decoder, c *nodeCtx, f *field, v *yaml.Node) {
	if c.node.BMC.Options.InsecureTLS {
		d.fieldWarning(c, f, v, "the Redfish TLS certificate is not verified; prefer ca_file")
	}
}

func checkMaxConcurrent(d *decoder, c *nodeCtx, f *field, v *yaml.Node) {
	if n := c.node.BMC.Options.MaxConcurrent; n < 1 || n > 64 {
		d.fieldProblem(c, f, v, "%d is out of range (1-64; default 1)", n)
	}
}

func checkTimeout(d *decoder, c *nodeCtx, f *field, v *yaml.Node) {
	if c.node.BMC.Options.Timeout == 0 {
		d.fieldProblem(c, f, v, "must be positive (leave it out for the default 5s)")
	}
}

func checkRetries(d *decoder, c *nodeCtx, f *field, v *yaml.Node) {
	if n := c.node.BMC.Options.Retries; n < 0 || n > 100 {
		d.fieldProblem(c, f, v, "%d is out of range (0-100; default 3)", n)
	}
}

func checkSSHAddress(d *decoder, c *nodeCtx, f *field, v *yaml.Node) {
	s := c.node.SSH.Address
	if validHost(s) {
		return
	}
	if h, p, err := splitHostPortLoose(s); err == nil && p != 0 {
		d.fieldProblem(c, f, v, "%q has a port: write address: %s and port: %d", s, h, p)
		return
	}
	d.fieldProblem(c, f, v, "%q is not a valid host name or IP address", s)
}

func checkSSHPort(d *decoder, c *nodeCtx, f *field, v *yaml.Node) {
	if p := c.node.SSH.Port; p < 1 || p > 65535 {
		d.fieldProblem(c, f, v, "port %d is out of range (1-65535)", p)
	}
}

func checkSSHUser(d *decoder, c *nodeCtx, f *field, v *yaml.Node) {
	s := c.node.SSH.User
	if s == "" || hasControl(s) || strings.ContainsAny(s, " @:") {
		d.fieldProblem(c, f, v, "%q is not a valid user name", s)
	}
}

func checkJumpHost(d *decoder, c *nodeCtx, f *field, v *yaml.Node) {
	s := c.node.SSH.JumpHost
	hostPort := s
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		user := s[:i]
		hostPort = s[i+1:]
		if user == "" || hasControl(user) || strings.ContainsAny(user, " @:") {
			d.fieldProblem(c, f, v, "%q: not a valid user name before @ (want user@host[:port])", s)
			return
		}
	}
	if _, _, err := splitHostPortLoose(hostPort); err != nil {
		d.fieldProblem(c, f, v, "%q: %v (want user@host[:port])", s, err)
	}
}

func checkMACs(d *decoder, c *nodeCtx, f *field, v *yaml.Node) {
	elems, _ := listElems(v)
	in := c.node.MACs
	out := in[:0]
	lines := make([]int32, 0, len(in))
	ok := true
	for i, s := range in {
		at := v
		if i < len(elems) {
			at = elems[i]
		}
		mac, err := NormalizeMAC(s)
		if err != nil {
			d.fieldProblem(c, f, at, "%v", err)
			ok = false
			continue
		}
		if slices.Contains(out, mac) {
			d.fieldWarning(c, f, at, "MAC %s is listed twice", mac)
			continue
		}
		out = append(out, mac)
		lines = append(lines, int32(min(at.Line, 1<<31-1)))
	}
	c.node.MACs = out
	c.meta.macLines = lines
	if !ok || len(out) == 0 {
		c.meta.macLines = nil
	}
}

// NormalizeMAC parses a 48-bit MAC address written with colons, hyphens,
// Cisco-style dots or no separators, and returns it as lower-case colon
// form ("3c:4a:92:11:22:33").
func NormalizeMAC(s string) (string, error) {
	hex := make([]byte, 0, 12)
	switch {
	case len(s) == 17 && (s[2] == ':' || s[2] == '-'):
		sep := s[2]
		for i := 0; i < 17; i++ {
			if i%3 == 2 {
				if s[i] != sep {
					return "", fmt.Errorf("%q is not a MAC address (mixed separators)", s)
				}
				continue
			}
			hex = append(hex, s[i])
		}
	case len(s) == 14 && s[4] == '.' && s[9] == '.':
		hex = append(hex, s[0:4]...)
		hex = append(hex, s[5:9]...)
		hex = append(hex, s[10:14]...)
	case len(s) == 12:
		hex = append(hex, s...)
	default:
		return "", fmt.Errorf("%q is not a MAC address (want 6 bytes like 3c:4a:92:11:22:33)", s)
	}
	var b strings.Builder
	b.Grow(17)
	for i, c := range hex {
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
		case c >= 'A' && c <= 'F':
			c += 'a' - 'A'
		default:
			return "", fmt.Errorf("%q is not a MAC address (not hexadecimal)", s)
		}
		if i > 0 && i%2 == 0 {
			b.WriteByte(':')
		}
		b.WriteByte(c)
	}
	return b.String(), nil
}

func checkSerial(d *decoder, c *nodeCtx, f *field, v *yaml.Node) {
	s := c.node.Serial
	if strings.TrimSpace(s) == "" || hasControl(s) {
		d.fieldProblem(c, f, v, "empty serial number or control characters in it (leave the key out instead)")
	}
}

// checkGUID accepts a system GUID as 8-4-4-4-12 hex digits (any case,
// optionally in braces) and stores it in lower case. All zeros and all
// FFh are what firmware reports when it has no GUID: never an identity.
func checkGUID(d *decoder, c *nodeCtx, f *field, v *yaml.Node) {
	s := strings.ToLower(strings.TrimSpace(c.node.GUID))
	s = strings.TrimSuffix(strings.TrimPrefix(s, "{"), "}")
	ok := len(s) == 36
	for i := 0; ok && i < len(s); i++ {
		switch ch := s[i]; {
		case i == 8 || i == 13 || i == 18 || i == 23:
			ok = ch == '-'
		default:
			ok = ch >= '0' && ch <= '9' || ch >= 'a' && ch <= 'f'
		}
	}
	if !ok {
		d.fieldProblem(c, f, v, "%q is not a GUID: want 8-4-4-4-12 hex digits, like 4c4c4544-0042-3510-8052-b7c04f4e3232 (dmidecode -s system-uuid)", c.node.GUID)
		return
	}
	if digits := strings.ReplaceAll(s, "-", ""); strings.Trim(digits, "0") == "" || strings.Trim(digits, "f") == "" {
		d.fieldProblem(c, f, v, "%q is a placeholder firmware reports when it has no GUID (leave the key out instead)", c.node.GUID)
		return
	}
	c.node.GUID = s
}

func checkBootDisk(d *decoder, c *nodeCtx, f *field, v *yaml.Node) {
	s := c.node.Boot.Disk
	if !strings.HasPrefix(s, "/dev/") || len(s) <= len("/dev/") || path.Clean(s) != s || hasControl(s) {
		d.fieldProblem(c, f, v, "%q must be an absolute /dev path, like /dev/sda or /dev/disk/by-path/...", s)
	}
}

func checkPlaybook(d *decoder, c *nodeCtx, f *field, v *yaml.Node) {
	s := c.node.Playbook
	if s == "" || hasControl(s) || strings.ContainsAny(s, " \t") {
		d.fieldProblem(c, f, v, "%q is not a playbook name", s)
	}
}

func checkSkipIdentity(d *decoder, c *nodeCtx, f *field, v *yaml.Node) {
	if c.node.SkipIdentityCheck {
		d.fieldWarning(c, f, v, "opts out of the identity check before wiping: a wrong address here wipes the wrong machine")
	}
}
