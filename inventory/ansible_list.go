package inventory

import (
	yaml "go.yaml.in/yaml/v3"
)

// isAnsibleList reports whether root is the output of `ansible-inventory
// --list` (the form of dynamic inventories): groups whose hosts and
// children are lists, and the host variables under _meta.hostvars.
func isAnsibleList(root *yaml.Node) bool {
	root = resolve(root)
	if root == nil || root.Kind != yaml.MappingNode {
		return false
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if k := resolve(root.Content[i]); k != nil && k.Value == "_meta" {
			return true
		}
	}
	return false
}

// ansibleListToYAML turns `ansible-inventory --list` JSON into the tree of
// a YAML Ansible inventory (all: children: GROUP: hosts: HOST: vars), so
// that one code path reads both. Lines are kept: problems point into the
// JSON file.
func ansibleListToYAML(dg *diags, root *yaml.Node) *yaml.Node {
	groups := map[string]*yaml.Node{}
	hostvars := map[string]*yaml.Node{}
	var order []string
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := resolve(root.Content[i]), resolve(root.Content[i+1])
		if k == nil || v == nil {
			continue
		}
		if k.Value == "_meta" {
			if hv := mappingValue(v, "hostvars"); hv != nil && hv.Kind == yaml.MappingNode {
				for j := 0; j+1 < len(hv.Content); j += 2 {
					hostvars[hv.Content[j].Value] = resolve(hv.Content[j+1])
				}
			}
			continue
		}
		if v.Kind != yaml.MappingNode {
			dg.problem(v.Line, "", "", "group %s: want an object with hosts, children and vars, got %s", k.Value, describe(v))
			continue
		}
		groups[k.Value] = v
		order = append(order, k.Value)
	}
	seenHost := map[string]bool{}
	var build func(name string, depth int) *yaml.Node
	build = func(name string, depth int) *yaml.Node {
		g := groups[name]
		out := newMapping(0)
		if g == nil || depth > 64 {
			return out
		}
		out.Line = g.Line
		if hosts := mappingValue(g, "hosts"); hosts != nil && hosts.Kind == yaml.SequenceNode {
			hm := newMapping(hosts.Line)
			for _, h := range hosts.Content {
				vars := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: h.Line}
				if hv := hostvars[h.Value]; hv != nil && !seenHost[h.Value] {
					vars = hv
				}
				seenHost[h.Value] = true
				hm.Content = append(hm.Content, h, vars)
			}
			out.Content = append(out.Content, scalarNode("!!str", "hosts", hosts.Line, ""), hm)
		}
		if vars := mappingValue(g, "vars"); vars != nil {
			out.Content = append(out.Content, scalarNode("!!str", "vars", vars.Line, ""), vars)
		}
		if ch := mappingValue(g, "children"); ch != nil && ch.Kind == yaml.SequenceNode {
			cm := newMapping(ch.Line)
			for _, c := range ch.Content {
				cm.Content = append(cm.Content, c, build(c.Value, depth+1))
			}
			out.Content = append(out.Content, scalarNode("!!str", "children", ch.Line, ""), cm)
		}
		return out
	}
	// Groups that are nobody's child hang under all (ungrouped included).
	isChild := map[string]bool{}
	for _, name := range order {
		if ch := mappingValue(groups[name], "children"); ch != nil && ch.Kind == yaml.SequenceNode {
			for _, c := range ch.Content {
				isChild[c.Value] = true
			}
		}
	}
	top := newMapping(root.Line)
	if _, ok := groups["all"]; ok {
		top.Content = append(top.Content, scalarNode("!!str", "all", groups["all"].Line, ""), build("all", 0))
	}
	for _, name := range order {
		if name != "all" && !isChild[name] {
			top.Content = append(top.Content, scalarNode("!!str", name, groups[name].Line, ""), build(name, 0))
		}
	}
	return top
}

// mappingValue returns the value of key in mapping m, or nil.
func mappingValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if k := resolve(m.Content[i]); k != nil && k.Value == key {
			return resolve(m.Content[i+1])
		}
	}
	return nil
}
