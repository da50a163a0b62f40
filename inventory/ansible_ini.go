package inventory

import (
	"bytes"
	"errors"
	"regexp"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// ansibleFromINI reads an Ansible INI inventory:
//
//	[group]              hosts, one per line: name [key=value ...]
//	[group:vars]         key=value
//	[group:children]     group names
//
// Hosts before the first section are ungrouped. Values are typed as
// Ansible's literal_eval would: 22 is a number, True a boolean, ['a','b'] a
// list, anything else a string.
func ansibleFromINI(dg *diags, data []byte, cfg *ansibleConfig) *yaml.Node {
	a := newAnsible(dg, cfg)
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	group, section := "ungrouped", "hosts"
	lineNo := 0
	for raw := range strings.Lines(string(data)) {
		lineNo++
		line := strings.TrimSpace(raw)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if len(dg.problems) >= maxProblems {
			break
		}
		if line[0] == '[' {
			end := strings.IndexByte(line, ']')
			if end < 0 || !isComment(line[end+1:]) {
				dg.problem(lineNo, "", "", "malformed section header (want [group], [group:vars] or [group:children])")
				group, section = "", "skip"
				continue
			}
			name, kind, _ := strings.Cut(line[1:end], ":")
			name = strings.TrimSpace(name)
			if name == "" || strings.ContainsAny(name, " \t") {
				dg.problem(lineNo, "", "", "section [%s]: not a valid group name", line[1:end])
				group, section = "", "skip"
				continue
			}
			switch kind {
			case "", "hosts":
				section = "hosts"
			case "vars", "children":
				section = kind
			default:
				dg.problem(lineNo, "", "", "section [%s] has unknown type %q (want vars or children)", line[1:end], kind)
				group, section = "", "skip"
				continue
			}
			group = name
			a.group(name, lineNo)
			continue
		}
		switch section {
		case "skip":
		case "hosts":
			tokens, err := shellSplit(line)
			if err != nil {
				dg.problem(lineNo, "", "", "%v", err)
				continue
			}
			if len(tokens) == 0 {
				continue
			}
			var vars []ansVar
			ok := true
			for _, t := range tokens[1:] {
				k, v, found := strings.Cut(t, "=")
				if !found || k == "" {
					dg.problem(lineNo, "", "", "host %s: expected key=value after the host name, got a word without =", tokens[0])
					ok = false
					break
				}
				vars = append(vars, ansVar{name: k, value: pyLiteral(v, lineNo)})
			}
			if ok {
				a.addPattern(group, tokens[0], lineNo, vars)
			}
		case "children":
			child := strings.Fields(line)[0]
			if isComment(child) {
				continue
			}
			a.group(child, lineNo)
			a.link(group, child)
		case "vars":
			k, v, found := strings.Cut(line, "=")
			k = strings.TrimSpace(k)
			if !found || k == "" || strings.ContainsAny(k, " \t") {
				dg.problem(lineNo, "", "", "[%s:vars]: expected key=value", group)
				continue
			}
			g := a.groups[group]
			g.vars = append(g.vars, ansVar{name: k, value: pyLiteral(strings.TrimSpace(v), lineNo)})
		}
	}
	return a.native()
}

func isComment(s string) bool {
	s = strings.TrimSpace(s)
	return s == "" || s[0] == '#' || s[0] == ';'
}

var errNoClosingQuote = errors.New("no closing quotation mark")

// shellSplit splits a host line like Python's shlex.split(comments=True):
// words separated by blanks, '…' literal, "…" with \" and \\ escapes, a
// backslash escaping the next character, # starting a comment.
func shellSplit(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '#':
			if inWord {
				out = append(out, cur.String())
			}
			return out, nil
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, errNoClosingQuote
			}
			cur.WriteString(s[i+1 : i+1+end])
			i += end + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\' || s[i+1] == '$' || s[i+1] == '`') {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, errNoClosingQuote
			}
			inWord = true
		case c == '\\':
			if i+1 < len(s) {
				i++
				cur.WriteByte(s[i])
			}
			inWord = true
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out, nil
}

var (
	pyInt   = regexp.MustCompile(`^[+-]?(0|[1-9][0-9_]*)$`)
	pyFloat = regexp.MustCompile(`^[+-]?([0-9]+\.[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$`)
)

// pyLiteral types an INI value as Ansible does (Python's literal_eval, else
// a string).
func pyLiteral(s string, line int) *yaml.Node {
	scalar := func(tag, v string) *yaml.Node {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: v, Line: line}
	}
	switch {
	case s == "True" || s == "False":
		return scalar("!!bool", strings.ToLower(s))
	case s == "None":
		return scalar("!!null", "")
	case pyInt.MatchString(s):
		return scalar("!!int", strings.ReplaceAll(s, "_", ""))
	case pyFloat.MatchString(s):
		return scalar("!!float", s)
	case len(s) >= 2 && (s[0] == '\'' && s[len(s)-1] == '\'' || s[0] == '"' && s[len(s)-1] == '"'):
		if v, ok := pyString(s); ok {
			return scalar("!!str", v)
		}
	case len(s) >= 2 && (s[0] == '[' && s[len(s)-1] == ']' || s[0] == '(' && s[len(s)-1] == ')'):
		if items, ok := pyList(s[1 : len(s)-1]); ok {
			seq := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: line}
			for _, it := range items {
				seq.Content = append(seq.Content, pyLiteral(it, line))
			}
			return seq
		}
	}
	return scalar("!!str", s)
}

// pyString unquotes a Python string literal with simple escapes.
func pyString(s string) (string, bool) {
	q := s[0]
	body := s[1 : len(s)-1]
	var b strings.Builder
	for i := 0; i < len(body); i++ {
		c := body[i]
		if c == q {
			return "", false
		}
		if c == '\\' && i+1 < len(body) {
			i++
			switch body[i] {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			default:
				b.WriteByte(body[i])
			}
			continue
		}
		b.WriteByte(c)
	}
	return b.String(), true
}

// pyList splits the inside of a Python list literal into its items; every
// item must itself be a literal (a bare word makes literal_eval fail).
func pyList(s string) ([]string, bool) {
	var items []string
	var cur strings.Builder
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			cur.WriteByte(c)
			if c == '\\' && i+1 < len(s) {
				i++
				cur.WriteByte(s[i])
			} else if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
			cur.WriteByte(c)
		case c == '[' || c == ']' || c == '(' || c == ')' || c == '{' || c == '}':
			return nil, false // nested collections are not imported
		case c == ',':
			items = append(items, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	if quote != 0 {
		return nil, false
	}
	if last := strings.TrimSpace(cur.String()); last != "" {
		items = append(items, last)
	} else if len(items) > 0 && items[len(items)-1] == "" {
		return nil, false
	}
	for _, it := range items {
		if it == "" {
			return nil, false
		}
		if n := pyLiteral(it, 0); n.Tag == "!!str" && !(it[0] == '\'' || it[0] == '"') {
			return nil, false
		}
	}
	return items, true
}
