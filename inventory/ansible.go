package inventory

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"

	yaml "go.yaml.in/yaml/v3"
)

// AnsibleOptions tunes how the hosts of an Ansible inventory become nodes.
type AnsibleOptions struct {
	// RackVar is the host variable that holds the rack (default "rack").
	RackVar string
	// RackGroupPattern is a regular expression with one capture group: a
	// host without RackVar that is in a matching group gets the captured
	// text as its rack (default `^rack[_-]?(.+)$`: group rack_r12 → r12).
	RackGroupPattern string
}

// Defaults of AnsibleOptions.
const (
	DefaultRackVar          = "rack"
	DefaultRackGroupPattern = `^rack[_-]?(.+)$`
)

// ansibleConfig is AnsibleOptions checked and compiled.
type ansibleConfig struct {
	rackVar   string
	rackGroup *regexp.Regexp
}

func (o AnsibleOptions) compile() (*ansibleConfig, error) {
	c := &ansibleConfig{rackVar: o.RackVar}
	if c.rackVar == "" {
		c.rackVar = DefaultRackVar
	}
	pattern := o.RackGroupPattern
	if pattern == "" {
		pattern = DefaultRackGroupPattern
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("rack group pattern %q: %w", pattern, err)
	}
	if re.NumSubexp() < 1 {
		return nil, fmt.Errorf("rack group pattern %q needs a capture group (the rack), like %s", pattern, DefaultRackGroupPattern)
	}
	c.rackGroup = re
	return c, nil
}

// maxHostsPerPattern bounds the expansion of host ranges (web[0001:9999]),
// maxHosts the hosts of one inventory.
const (
	maxHostsPerPattern = 100_000
	maxHosts           = 1_000_000
)

// ansibleInv is an Ansible inventory as read from YAML or INI: groups with
// their hosts, children and variables, and hosts with theirs. Every variable
// value is a *yaml.Node carrying the line it was defined on.
type ansibleInv struct {
	dg        *diags
	cfg       *ansibleConfig
	groups    map[string]*ansGroup
	groupList []*ansGroup
	hosts     map[string]*ansHost
	hostList  []*ansHost
	expanded  int // host names added so far, for maxHosts
	// groupFileVars and hostFileVars are the variables of group_vars/ and
	// host_vars/ beside the inventory file (ansible_vars.go).
	groupFileVars map[string][]ansVar
	hostFileVars  map[string][]ansVar
}

type ansGroup struct {
	name     string
	line     int
	vars     []ansVar
	children []string
	isChild  map[string]bool
	parents  []string
	depth    int
}

type ansHost struct {
	name   string
	line   int
	groups []string
	vars   []ansVar
}

type ansVar struct {
	name  string
	value *yaml.Node
}

func newAnsible(dg *diags, cfg *ansibleConfig) *ansibleInv {
	if cfg == nil {
		cfg, _ = AnsibleOptions{}.compile()
	}
	a := &ansibleInv{dg: dg, cfg: cfg, groups: map[string]*ansGroup{}, hosts: map[string]*ansHost{}}
	a.group("all", 0)
	a.group("ungrouped", 0)
	return a
}

func (a *ansibleInv) group(name string, line int) *ansGroup {
	g, ok := a.groups[name]
	if !ok {
		g = &ansGroup{name: name, line: line}
		a.groups[name] = g
		a.groupList = append(a.groupList, g)
	}
	if g.line == 0 {
		g.line = line
	}
	return g
}

func (a *ansibleInv) link(parent, child string) {
	if parent == child {
		return
	}
	p, c := a.groups[parent], a.groups[child]
	if p.isChild == nil {
		p.isChild = map[string]bool{}
	}
	if !p.isChild[child] {
		p.isChild[child] = true
		p.children = append(p.children, child)
		c.parents = append(c.parents, parent)
	}
}

func (a *ansibleInv) addHost(group, name string, line int, vars []ansVar) {
	h, ok := a.hosts[name]
	if !ok {
		h = &ansHost{name: name, line: line}
		a.hosts[name] = h
		a.hostList = append(a.hostList, h)
	}
	if !slices.Contains(h.groups, group) {
		h.groups = append(h.groups, group)
	}
	h.vars = append(h.vars, vars...)
}

// expandHostPattern expands Ansible host ranges: web[01:20].example.com,
// db-[a:f], node[0:100:10]; several ranges multiply.
func expandHostPattern(p string) ([]string, error) {
	open := strings.IndexByte(p, '[')
	if open < 0 {
		return []string{p}, nil
	}
	end := strings.IndexByte(p[open:], ']')
	if end < 0 {
		return nil, fmt.Errorf("host pattern %q: missing ]", p)
	}
	end += open
	head, inner, tail := p[:open], p[open+1:end], p[end+1:]
	parts := strings.Split(inner, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return nil, fmt.Errorf("host pattern %q: want [begin:end] or [begin:end:step]", p)
	}
	beg, last := parts[0], parts[1]
	step := 1
	if len(parts) == 3 {
		s, err := strconv.Atoi(parts[2])
		if err != nil || s < 1 {
			return nil, fmt.Errorf("host pattern %q: step must be a positive integer", p)
		}
		step = s
	}
	if beg == "" {
		beg = "0"
	}
	var items []string
	if isDigits(beg) && isDigits(last) {
		width := 0
		if len(beg) > 1 && beg[0] == '0' {
			if len(beg) != len(last) {
				return nil, fmt.Errorf("host pattern %q: begin and end must have the same width", p)
			}
			width = len(beg)
		}
		b, err1 := strconv.Atoi(beg)
		e, err2 := strconv.Atoi(last)
		if err1 != nil || err2 != nil || b > e || (e-b)/step >= maxHostsPerPattern {
			return nil, fmt.Errorf("host pattern %q: invalid or too large range", p)
		}
		for i := b; i <= e; i += step {
			items = append(items, fmt.Sprintf("%0*d", width, i))
		}
	} else if len(beg) == 1 && len(last) == 1 && isLetter(beg[0]) && isLetter(last[0]) {
		const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		b, e := strings.IndexByte(letters, beg[0]), strings.IndexByte(letters, last[0])
		if b > e {
			return nil, fmt.Errorf("host pattern %q: range goes backwards", p)
		}
		for i := b; i <= e; i += step {
			items = append(items, letters[i:i+1])
		}
	} else {
		return nil, fmt.Errorf("host pattern %q: a range is numbers [01:20] or single letters [a:f]", p)
	}
	rest, err := expandHostPattern(tail)
	if err != nil {
		return nil, err
	}
	if len(items)*len(rest) > maxHostsPerPattern {
		return nil, fmt.Errorf("host pattern %q expands to more than %d hosts", p, maxHostsPerPattern)
	}
	out := make([]string, 0, len(items)*len(rest))
	for _, it := range items {
		for _, r := range rest {
			out = append(out, head+it+r)
		}
	}
	return out, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// splitHostPort splits an inventory host "name:port" (Ansible's form); a
// name with several colons (IPv6) has no port.
func splitInventoryHost(s string) (host, port string) {
	if strings.Count(s, ":") == 1 && !strings.Contains(s, "]") {
		host, port, _ = strings.Cut(s, ":")
		return host, port
	}
	return s, ""
}

// ---- YAML inventories ----------------------------------------------------

// ansibleFromYAML reads an Ansible YAML inventory (all/children/hosts/vars)
// and returns the native tree of its hosts.
func ansibleFromYAML(dg *diags, root *yaml.Node, cfg *ansibleConfig) *yaml.Node {
	a := newAnsible(dg, cfg)
	d := newDecoder(dg, 1<<20)
	d.eachPair(root, func(k *yaml.Node, first int) {
		dg.problem(k.Line, "", k.Value, "group defined twice at the top level (first at line %d)", first)
	}, func(k, v *yaml.Node) {
		if k.Kind != yaml.ScalarNode {
			dg.problem(k.Line, "", "", "group names must be strings, not %s", describe(k))
			return
		}
		parent := "all"
		if k.Value == "all" {
			parent = ""
		}
		a.yamlGroup(d, k.Value, k.Line, v, parent, 0)
	})
	return a.native()
}

func (a *ansibleInv) yamlGroup(d *decoder, name string, line int, n *yaml.Node, parent string, depth int) {
	if depth > 64 || d.spend() {
		a.dg.problem(line, "", "", "group %s: groups nested too deeply (a loop through YAML aliases?)", name)
		return
	}
	a.group(name, line)
	if parent != "" {
		a.link(parent, name)
	}
	if n == nil || isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		a.dg.problem(n.Line, "", "", "group %s: want a mapping with hosts, children and vars, got %s", name, describe(n))
		return
	}
	dup := func(k *yaml.Node, first int) {
		a.dg.problem(k.Line, "", "", "group %s: %s defined twice (first at line %d)", name, k.Value, first)
	}
	d.eachPair(n, dup, func(k, v *yaml.Node) {
		if v == nil || isNull(v) {
			return
		}
		switch k.Value {
		case "hosts":
			if v.Kind != yaml.MappingNode {
				a.dg.problem(v.Line, "", "", "group %s: hosts must be a mapping of host names (to their variables), not %s", name, describe(v))
				return
			}
			d.eachPair(v, dup, func(hk, hv *yaml.Node) {
				hostname, ok := scalarString(hk)
				if !ok {
					a.dg.problem(hk.Line, "", "", "group %s: host names must be strings, not %s", name, describe(hk))
					return
				}
				var vars []ansVar
				if hv != nil && !isNull(hv) {
					if hv.Kind != yaml.MappingNode {
						a.dg.problem(hv.Line, "", "", "host %s: want a mapping of variables, got %s", hostname, describe(hv))
						return
					}
					vars = a.yamlVars(d, hv)
				}
				a.addPattern(name, hostname, hk.Line, vars)
			})
		case "children":
			if v.Kind != yaml.MappingNode {
				a.dg.problem(v.Line, "", "", "group %s: children must be a mapping of group names, not %s", name, describe(v))
				return
			}
			d.eachPair(v, dup, func(ck, cv *yaml.Node) {
				child, ok := scalarString(ck)
				if !ok {
					a.dg.problem(ck.Line, "", "", "group %s: group names must be strings, not %s", name, describe(ck))
					return
				}
				a.yamlGroup(d, child, ck.Line, cv, name, depth+1)
			})
		case "vars":
			if v.Kind != yaml.MappingNode {
				a.dg.problem(v.Line, "", "", "group %s: vars must be a mapping, not %s", name, describe(v))
				return
			}
			g := a.groups[name]
			g.vars = append(g.vars, a.yamlVars(d, v)...)
		default:
			a.dg.warn(k.Line, "", "", "group %s: unexpected key %q ignored (want hosts, children or vars)", name, k.Value)
		}
	})
}

func (a *ansibleInv) yamlVars(d *decoder, m *yaml.Node) []ansVar {
	var vars []ansVar
	d.eachPair(m, func(k *yaml.Node, first int) {
		a.dg.problem(k.Line, "", "", "variable %s defined twice (first at line %d)", k.Value, first)
	}, func(k, v *yaml.Node) {
		if k.Kind == yaml.ScalarNode && v != nil {
			vars = append(vars, ansVar{name: k.Value, value: v})
		}
	})
	return vars
}

// addPattern adds the hosts of an inventory host pattern to a group.
func (a *ansibleInv) addPattern(group, pattern string, line int, vars []ansVar) {
	name, port := splitInventoryHost(pattern)
	if port != "" {
		if !isDigits(port) {
			a.dg.problem(line, "", "", "host %q: port %q is not a number", pattern, port)
			return
		}
		vars = append([]ansVar{{name: "ansible_port", value: &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: port, Line: line}}}, vars...)
	}
	names, err := expandHostPattern(name)
	if err != nil {
		a.dg.problem(line, "", "", "%v", err)
		return
	}
	if a.expanded += len(names); a.expanded > maxHosts {
		a.dg.problem(line, "", "", "more than %d hosts; stopped reading the inventory", maxHosts)
		return
	}
	for _, n := range names {
		a.addHost(group, n, line, vars)
	}
}

// ---- hosts to nodes ------------------------------------------------------

// resolveDepths gives every group its depth below "all" (top-level groups
// become children of all) and reports loops.
func (a *ansibleInv) resolveDepths() {
	for _, g := range a.groupList {
		if g.name != "all" && len(g.parents) == 0 {
			a.link("all", g.name)
		}
	}
	// Longest path from "all", by relaxation; a loop keeps it changing.
	for round := 0; ; round++ {
		changed := false
		for _, g := range a.groupList {
			for _, c := range g.children {
				if cg := a.groups[c]; cg.depth < g.depth+1 {
					cg.depth = g.depth + 1
					changed = true
				}
			}
		}
		if !changed {
			return
		}
		if round > len(a.groupList) {
			for _, g := range a.groupList {
				if g.depth > len(a.groupList) {
					a.dg.problem(g.line, "", "", "group %s is its own ancestor (a loop in children)", g.name)
					return
				}
			}
			return
		}
	}
}

// ancestors returns the groups a host is in, directly or through children,
// ordered as Ansible applies their variables: shallow first, then by
// ansible_group_priority, then by name.
func (a *ansibleInv) ancestors(h *ansHost) []*ansGroup {
	seen := map[string]bool{}
	var out []*ansGroup
	var visit func(name string)
	visit = func(name string) {
		if seen[name] {
			return
		}
		seen[name] = true
		g := a.groups[name]
		out = append(out, g)
		for _, p := range g.parents {
			visit(p)
		}
	}
	for _, g := range h.groups {
		visit(g)
	}
	visit("all")
	slices.SortStableFunc(out, func(x, y *ansGroup) int {
		return cmp.Or(cmp.Compare(x.depth, y.depth), cmp.Compare(a.groupPriority(x), a.groupPriority(y)), cmp.Compare(x.name, y.name))
	})
	return out
}

// groupPriority is the group's ansible_group_priority (default 1), from
// the inventory file or group_vars/.
func (a *ansibleInv) groupPriority(g *ansGroup) int {
	p := 1
	for _, v := range slices.Concat(g.vars, a.groupFileVars[g.name]) {
		if v.name == "ansible_group_priority" {
			if n, ok := scalarInt(v.value); ok {
				p = n
			}
		}
	}
	return p
}

// native builds the native tree of all hosts.
func (a *ansibleInv) native() *yaml.Node {
	a.resolveDepths()
	a.readVarDirs()
	seq := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: 1}
	for _, h := range a.hostList {
		seq.Content = append(seq.Content, a.hostNode(h))
	}
	if len(a.hostList) == 0 {
		a.dg.warn(0, "", "", "the Ansible inventory has no hosts")
	}
	return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: 1, Content: []*yaml.Node{
		{Kind: yaml.ScalarNode, Tag: "!!str", Value: "nodes", Line: 1}, seq,
	}}
}

// hostNode turns one host into a native node entry.
func (a *ansibleInv) hostNode(h *ansHost) *yaml.Node {
	groups := a.ancestors(h)
	// Ansible's precedence, lowest first: the inventory file's group
	// variables, group_vars/ (all first, parents before children), the
	// inventory file's host variables, host_vars/.
	vars := map[string]*yaml.Node{}
	for _, g := range groups {
		for _, v := range g.vars {
			vars[v.name] = v.value
		}
	}
	for _, g := range groups {
		for _, v := range a.groupFileVars[g.name] {
			vars[v.name] = v.value
		}
	}
	for _, v := range h.vars {
		vars[v.name] = v.value
	}
	for _, v := range a.hostFileVars[h.name] {
		vars[v.name] = v.value
	}
	b := &nativeBuilder{dg: a.dg, node: h.name, m: newMapping(h.line)}
	b.set("name", scalarNode("!!str", h.name, h.line, "the inventory host name"))

	get := func(names ...string) (string, *yaml.Node) {
		for _, n := range names {
			if v, ok := vars[n]; ok && v != nil && !isNull(v) {
				return n, v
			}
		}
		return "", nil
	}
	// rack: a variable, else a rack group.
	if name, v := get(a.cfg.rackVar); v != nil {
		b.setVar("rack", name, v)
	} else {
		var best *ansGroup
		rack := ""
		for _, g := range groups {
			if m := a.cfg.rackGroup.FindStringSubmatch(g.name); m != nil && m[1] != "" {
				if best != nil && rack != m[1] {
					a.dg.warn(g.line, h.name, "rack", "host is in rack groups %s and %s; using %s", best.name, g.name, g.name)
				}
				best, rack = g, m[1]
			}
		}
		if best != nil {
			b.set("rack", scalarNode("!!str", rack, best.line, "Ansible group "+best.name))
		}
	}
	// labels: the groups, then reprov_labels.
	labels := newMapping(h.line)
	haveLabel := map[string]bool{}
	for _, g := range groups {
		if g.name == "all" || g.name == "ungrouped" {
			continue
		}
		haveLabel["group."+g.name] = true
		labels.Content = append(labels.Content,
			scalarNode("!!str", "group."+g.name, g.line, "Ansible group "+g.name),
			scalarNode("!!str", "true", g.line, "Ansible group "+g.name))
	}
	if name, v := get("reprov_labels"); v != nil {
		if v.Kind != yaml.MappingNode {
			b.problem(v, "labels", name, "want a mapping of labels, got %s", describe(v))
		} else {
			for i := 0; i+1 < len(v.Content); i += 2 {
				k, lv := resolve(v.Content[i]), resolve(v.Content[i+1])
				if k == nil || lv == nil {
					continue
				}
				if haveLabel[k.Value] {
					continue
				}
				haveLabel[k.Value] = true
				labels.Content = append(labels.Content, withOrigin(k, "Ansible variable "+name), withOrigin(lv, "Ansible variable "+name))
			}
		}
	}
	if len(labels.Content) > 0 {
		b.set("labels", labels)
	}
	// bmc
	if name, v := get("reprov_bmc_address"); v != nil {
		b.setVar("bmc.address", name, v)
	} else if name, v := get("ipmi_host"); v != nil {
		if host, ok := b.text(v, "bmc.address", name); ok {
			addr := host
			if !strings.Contains(host, "://") {
				if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
					host = "[" + host + "]"
				}
				addr = "ipmi://" + host
				if pname, pv := get("ipmi_port"); pv != nil {
					if port, ok := b.text(pv, "bmc.address", pname); ok {
						addr += ":" + port
					}
				}
			}
			b.set("bmc.address", scalarNode("!!str", addr, v.Line, "Ansible variable "+name))
		}
	} else if _, v := get("ipmi_port"); v != nil {
		a.dg.warn(v.Line, h.name, "bmc.address", "ipmi_port is set but ipmi_host is not; no BMC address imported")
	}
	if name, v := get("ipmi_user", "ipmi_username"); v != nil {
		b.setVar("bmc.username", name, v)
	}
	if name, v := get("ipmi_password"); v != nil {
		b.setSecret("bmc.password", name, v)
	}
	// ssh
	if name, v := get("ansible_host", "ansible_ssh_host"); v != nil {
		b.setVar("ssh.address", name, v)
	} else {
		b.set("ssh.address", scalarNode("!!str", h.name, h.line, "the inventory host name"))
	}
	if name, v := get("ansible_port", "ansible_ssh_port"); v != nil {
		if v.Kind == yaml.ScalarNode && isDigits(v.Value) {
			c := *v
			c.Tag = "!!int"
			v = &c
		}
		b.setVar("ssh.port", name, v)
	}
	if name, v := get("ansible_user", "ansible_ssh_user"); v != nil {
		b.setVar("ssh.user", name, v)
	}
	if name, v := get("ansible_ssh_private_key_file", "ansible_private_key_file"); v != nil {
		b.setVar("ssh.identity", name, v)
	}
	if name, v := get("ansible_password", "ansible_ssh_pass", "ansible_ssh_password"); v != nil {
		b.setSecret("ssh.password", name, v)
	}
	// identity, boot, playbook
	if name, v := get("macs", "mac"); v != nil {
		if v.Kind == yaml.ScalarNode && strings.ContainsAny(v.Value, ", ;") {
			v = splitList(v)
		}
		b.setVar("macs", name, v)
	}
	if name, v := get("serial"); v != nil {
		b.setVar("serial", name, v)
	}
	if name, v := get("reprov_boot_mode"); v != nil {
		b.setVar("boot.mode", name, v)
	}
	if name, v := get("reprov_boot_disk"); v != nil {
		b.setVar("boot.disk", name, v)
	}
	if name, v := get("reprov_playbook"); v != nil {
		b.setVar("playbook", name, v)
	}
	return b.m
}

// splitList turns "a, b c;d" into a list node.
func splitList(v *yaml.Node) *yaml.Node {
	seq := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: v.Line, LineComment: v.LineComment}
	for f := range strings.FieldsFuncSeq(v.Value, func(r rune) bool { return r == ',' || r == ';' || unicode.IsSpace(r) }) {
		seq.Content = append(seq.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: f, Line: v.Line, LineComment: v.LineComment})
	}
	return seq
}

// ---- building native trees ----------------------------------------------

func newMapping(line int) *yaml.Node {
	return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: line}
}

func scalarNode(tag, value string, line int, origin string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: value, Line: line, LineComment: origin}
}

// withOrigin returns a shallow copy of v whose LineComment names its origin.
// Ansible's !unsafe strings become plain strings.
func withOrigin(v *yaml.Node, origin string) *yaml.Node {
	c := *v
	c.LineComment = origin
	c.HeadComment, c.FootComment = "", ""
	if c.Kind == yaml.ScalarNode && c.Tag == "!unsafe" {
		c.Tag = "!!str"
	}
	if c.Kind == yaml.SequenceNode {
		c.Content = make([]*yaml.Node, 0, len(v.Content))
		for _, e := range v.Content {
			if e = resolve(e); e != nil {
				c.Content = append(c.Content, withOrigin(e, origin))
			}
		}
	}
	return &c
}

// nativeBuilder assembles one node's native mapping from imported values.
type nativeBuilder struct {
	dg   *diags
	node string
	m    *yaml.Node
}

// set puts v at a dotted path, making the sections on the way.
func (b *nativeBuilder) set(path string, v *yaml.Node) {
	m := b.m
	parts := strings.Split(path, ".")
	for _, p := range parts[:len(parts)-1] {
		_, sub := lookup(m, p)
		if sub == nil {
			sub = newMapping(v.Line)
			m.Content = append(m.Content, scalarNode("!!str", p, v.Line, ""), sub)
		}
		m = sub
	}
	last := parts[len(parts)-1]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == last {
			m.Content[i+1] = v
			return
		}
	}
	m.Content = append(m.Content, scalarNode("!!str", last, v.Line, ""), v)
}

func (b *nativeBuilder) problem(v *yaml.Node, field, varName, format string, args ...any) {
	b.dg.problem(v.Line, b.node, field, "%s (from Ansible variable %s)", fmt.Sprintf(format, args...), varName)
}

// usable reports whether an Ansible value can be imported as is: templates
// and vault-encrypted values cannot (and are not shown).
func (b *nativeBuilder) usable(v *yaml.Node, field, varName string) bool {
	if v.Tag == "!vault" || v.Kind == yaml.ScalarNode && strings.HasPrefix(strings.TrimSpace(v.Value), "$ANSIBLE_VAULT") {
		b.dg.warn(v.Line, b.node, field, "Ansible variable %s is vault-encrypted; not imported (set %s in the native inventory)", varName, field)
		return false
	}
	if v.Kind == yaml.ScalarNode && (strings.Contains(v.Value, "{{") || strings.Contains(v.Value, "{%")) {
		b.dg.warn(v.Line, b.node, field, "Ansible variable %s is a Jinja template, which reprov does not evaluate; not imported", varName)
		return false
	}
	return true
}

// setVar imports an Ansible variable's value as is.
func (b *nativeBuilder) setVar(path, varName string, v *yaml.Node) {
	if !b.usable(v, path, varName) {
		return
	}
	b.set(path, withOrigin(v, "Ansible variable "+varName))
}

// text returns a scalar variable's text.
func (b *nativeBuilder) text(v *yaml.Node, field, varName string) (string, bool) {
	if !b.usable(v, field, varName) {
		return "", false
	}
	s, ok := scalarString(v)
	if !ok {
		b.problem(v, field, varName, "want a string, got %s", describe(v))
	}
	return s, ok
}

// setSecret imports a credential: an env:/file: reference stays one; a
// literal becomes plain:… with a warning. The value is never shown.
func (b *nativeBuilder) setSecret(path, varName string, v *yaml.Node) {
	if !b.usable(v, path, varName) {
		return
	}
	if v.Kind != yaml.ScalarNode || v.ShortTag() == "!!null" {
		b.problem(v, path, varName, "want a string, got %s; the value is not shown", describe(v))
		return
	}
	ref := v.Value
	kind, _, _ := strings.Cut(ref, ":")
	switch kind {
	case "env", "file":
	case "plain":
		b.dg.warn(v.Line, b.node, path, "Ansible variable %s is a literal credential; imported as plain: (not shown); prefer env:NAME or file:PATH", varName)
	default:
		ref = "plain:" + ref
		b.dg.warn(v.Line, b.node, path, "Ansible variable %s is a literal credential; imported as plain: (not shown); prefer env:NAME or file:PATH", varName)
	}
	b.set(path, scalarNode("!!str", ref, v.Line, "Ansible variable "+varName))
}
