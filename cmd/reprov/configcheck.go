package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/reprov/reprov/internal/suggest"
)

// valueKind is the type of a configuration key's value.
type valueKind int

const (
	kindString         valueKind = iota
	kindEnum                     // one of configKey.enum
	kindPositiveInt              // an integer ≥ 1
	kindCount                    // an integer ≥ 0
	kindDuration                 // a positive Go duration: 5s, 1m
	kindList                     // a list of strings (comma-separated in the environment)
	kindBool                     // true or false
	kindDurationOrZero           // a Go duration ≥ 0 (0: off)
)

// outputFormats are the values of output (-o).
var outputFormats = []string{"table", "wide", "json", "yaml"}

// configProblem is one problem of the configuration, located where the
// operator can fix it: the file and line, the flag, or the variable.
//
//	reprov.yaml:12: landing.probe_interval: "5 seconds" is not a duration (e.g. 5s, 1m)
//	--output: "xml" is not table, wide, json or yaml
//	REPROV_STORE_LEASE: "0s" is not a positive duration (e.g. 30s, 1m)
type configProblem struct {
	// Where is "file:line", "--flag" or "REPROV_VARIABLE".
	Where string
	// Key is the configuration key ("" for a problem of the whole file).
	Key string
	Msg string
}

func (p configProblem) Error() string {
	var b strings.Builder
	if p.Where != "" {
		b.WriteString(p.Where + ": ")
	}
	if p.Key != "" {
		b.WriteString(p.Key + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// ConfigError is every problem found in the configuration, reported at
// once, one per line.
type ConfigError struct {
	Problems []configProblem
}

func (e *ConfigError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// configProblems collects problems; err returns nil when there is none.
type configProblems []configProblem

func (ps *configProblems) add(where, key, format string, args ...any) {
	*ps = append(*ps, configProblem{Where: where, Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (ps configProblems) err() error {
	if len(ps) == 0 {
		return nil
	}
	return &ConfigError{Problems: ps}
}

// keyByName returns the configuration key named name.
func keyByName(name string) (configKey, bool) {
	for _, k := range configKeys() {
		if k.key == name {
			return k, true
		}
	}
	return configKey{}, false
}

func configKeyNames() []string {
	var names []string
	for _, k := range configKeys() {
		names = append(names, k.key)
	}
	return names
}

// checkScalar checks one value given as text (a flag, a variable, a
// scalar in the file) and returns what is wrong with it, or "".
func checkScalar(k configKey, s string) string {
	switch k.kind {
	case kindEnum:
		if slices.Contains(k.enum, s) {
			return ""
		}
		return fmt.Sprintf("%q is not %s%s", s, orList(k.enum), suggest.DidYouMean(s, k.enum))
	case kindPositiveInt, kindCount:
		n, err := strconv.Atoi(strings.TrimSpace(s))
		switch {
		case err != nil:
			return fmt.Sprintf("%q is not a whole number", s)
		case k.kind == kindPositiveInt && n < 1:
			return fmt.Sprintf("%d is not a positive number (at least 1)", n)
		case n < 0:
			return fmt.Sprintf("%d is negative (0 means no limit)", n)
		}
	case kindDuration, kindDurationOrZero:
		d, err := time.ParseDuration(strings.TrimSpace(s))
		switch {
		case err != nil:
			return fmt.Sprintf("%q is not a duration (e.g. 5s, 1m)", s)
		case d < 0 || (d == 0 && k.kind == kindDuration):
			return fmt.Sprintf("%q is not a positive duration (e.g. 5s, 1m)", s)
		}
	case kindBool:
		if _, err := strconv.ParseBool(strings.TrimSpace(s)); err != nil {
			return fmt.Sprintf("%q is not true or false", s)
		}
	}
	return ""
}

// orList formats values as "a, b or c".
func orList(values []string) string {
	switch len(values) {
	case 0:
		return "anything"
	case 1:
		return values[0]
	}
	return strings.Join(values[:len(values)-1], ", ") + " or " + values[len(values)-1]
}

// checkConfigFile reads a YAML or JSON config file with positions and
// returns every problem in it: syntax, unknown keys (with did-you-mean),
// values of the wrong type or out of range. TOML files are checked by
// value only, after decoding (see checkValues).
func checkConfigFile(path string) error {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".toml":
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	var doc yaml.Node
	var ps configProblems
	if err := yaml.Unmarshal(data, &doc); err != nil {
		line, msg := yamlErrorLine(err)
		ps.add(at(path, line), "", "%s", msg)
		return ps.err()
	}
	if len(doc.Content) == 0 {
		return nil // an empty file sets nothing
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
			return nil
		}
		ps.add(at(path, root.Line), "", "the config file must be a mapping of keys (docs/configuration.md), not %s", kindName(root))
		return ps.err()
	}
	walkConfig(path, "", root, &ps)
	return ps.err()
}

func walkConfig(path, prefix string, m *yaml.Node, ps *configProblems) {
	names := configKeyNames()
	seen := map[string]int{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		kn, vn := m.Content[i], m.Content[i+1]
		name := prefix + strings.ToLower(kn.Value)
		if first, dup := seen[name]; dup {
			ps.add(at(path, kn.Line), name, "given twice (first on line %d)", first)
			continue
		}
		seen[name] = kn.Line
		if k, ok := keyByName(name); ok {
			checkNode(path, k, vn, ps)
			continue
		}
		if isSection(name) {
			if vn.Kind != yaml.MappingNode {
				ps.add(at(path, vn.Line), name, "a section: give its keys under it (%s)", strings.Join(sectionKeys(name), ", "))
				continue
			}
			walkConfig(path, name+".", vn, ps)
			continue
		}
		hint := suggest.DidYouMean(name, names)
		if hint == "" {
			hint = " (docs/configuration.md lists every key)"
		}
		ps.add(at(path, kn.Line), "", "unknown key %q%s", name, hint)
	}
}

func isSection(name string) bool { return len(sectionKeys(name)) > 0 }

func sectionKeys(name string) []string {
	var keys []string
	for _, k := range configKeyNames() {
		if strings.HasPrefix(k, name+".") {
			keys = append(keys, k)
		}
	}
	return keys
}

// checkNode checks the value of key k in the file.
func checkNode(path string, k configKey, v *yaml.Node, ps *configProblems) {
	if v.Kind == yaml.AliasNode && v.Alias != nil {
		v = v.Alias
	}
	where := at(path, v.Line)
	if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!null" {
		return // unset: the default applies
	}
	if k.kind == kindList {
		switch v.Kind {
		case yaml.SequenceNode:
			for _, e := range v.Content {
				if e.Kind != yaml.ScalarNode {
					ps.add(at(path, e.Line), k.key, "an entry is %s, not a string", kindName(e))
				}
			}
		case yaml.ScalarNode:
			// A comma-separated string, as in the environment.
		default:
			ps.add(where, k.key, "%s is not a list of strings", kindName(v))
		}
		return
	}
	if v.Kind != yaml.ScalarNode {
		ps.add(where, k.key, "%s is not a single value", kindName(v))
		return
	}
	if msg := checkScalar(k, v.Value); msg != "" {
		ps.add(where, k.key, "%s", msg)
	}
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return "a value"
}

func at(path string, line int) string {
	if line <= 0 {
		return path
	}
	return path + ":" + strconv.Itoa(line)
}

var yamlLineRE = regexp.MustCompile(`^yaml: (?:line (\d+): )?`)

// yamlErrorLine splits a YAML syntax error into its line and message.
func yamlErrorLine(err error) (int, string) {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		err = errors.New(te.Errors[0])
	}
	msg := err.Error()
	m := yamlLineRE.FindStringSubmatch(msg)
	if m == nil {
		return 0, msg
	}
	line, _ := strconv.Atoi(m[1])
	return line, strings.TrimPrefix(msg, m[0])
}
