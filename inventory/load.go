package inventory

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// Input formats, as Load and Import know them.
const (
	formatYAML = "yaml" // native YAML or JSON, or an Ansible YAML inventory
	formatTOML = "toml" // native TOML
	formatINI  = "ini"  // Ansible INI inventory
	formatCSV  = "csv"  // NetBox device export
)

// Load reads an inventory file and validates it. The format follows the
// extension: .yaml, .yml and .json are the native format (an Ansible YAML
// inventory is recognized by its content), .toml is native TOML, .ini, .cfg
// and extensionless files (an Ansible "hosts" file) are Ansible INI
// inventories, .csv is a NetBox device export. An unknown extension is
// recognized by content.
//
// Every problem of the file is reported at once, as a *ValidationError whose
// Problems carry the path as given and the line. Warnings (risky but valid
// settings) are returned either way.
func Load(path string) (*Inventory, []Warning, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read inventory: %w", err)
	}
	return LoadBytes(path, data)
}

// LoadBytes is Load for data already read; name is used as the file name in
// problems and to choose the format.
func LoadBytes(name string, data []byte) (*Inventory, []Warning, error) {
	cfg, err := AnsibleOptions{}.compile()
	if err != nil {
		return nil, nil, err
	}
	return load(name, data, sourceAuto, cfg)
}

// source is what kind of inventory a file is taken to be.
type source int

const (
	sourceAuto    source = iota // by extension, then content
	sourceNative                // reprov's format (YAML, JSON, TOML)
	sourceAnsible               // an Ansible inventory (YAML or INI)
	sourceNetBox                // a NetBox device CSV export
)

func load(name string, data []byte, src source, cfg *ansibleConfig) (*Inventory, []Warning, error) {
	return loadWith(name, data, src, cfg, false)
}

// loadWith is load; onlyYAMLv3 turns the fast path for native YAML off, for
// the tests and benchmarks that compare the two.
func loadWith(name string, data []byte, src source, cfg *ansibleConfig, onlyYAMLv3 bool) (*Inventory, []Warning, error) {
	format := formatFor(name, data)
	switch {
	case src == sourceNetBox:
		format = formatCSV
	case src == sourceAnsible && format != formatYAML:
		format = formatINI
	case src == sourceNative && (format == formatINI || format == formatCSV):
		return nil, nil, fmt.Errorf("inventory %s: not a native inventory (want .yaml, .yml, .json or .toml)", name)
	}
	if format == formatYAML && !onlyYAMLv3 && (src == sourceAuto || src == sourceNative) && !strings.EqualFold(filepath.Ext(name), ".json") {
		// The fast path; it declines files outside its subset of YAML.
		if r, ok := loadFastYAML(name, data, src); ok {
			return r.inv, r.warnings, r.err
		}
	}
	dg := &diags{file: name}
	var root *yaml.Node
	origins := false
	switch format {
	case formatYAML:
		if strings.EqualFold(filepath.Ext(name), ".json") && !checkJSON(dg, data) {
			break
		}
		root = parseYAML(dg, data)
		if root != nil && src != sourceNative && isAnsibleList(root) {
			// `ansible-inventory --list` JSON: a dynamic inventory's output.
			root = ansibleListToYAML(dg, root)
			src = sourceAnsible
		}
		if root != nil && (src == sourceAnsible || src == sourceAuto && looksAnsible(root)) {
			root = ansibleFromYAML(dg, root, cfg)
			origins = true
		}
	case formatTOML:
		root = tomlToYAML(dg, data)
	case formatINI:
		root = ansibleFromINI(dg, data, cfg)
		origins = true
	case formatCSV:
		root = netboxFromCSV(dg, data)
		origins = true
	}
	var nodes []Node
	// Decode whatever parsed, so that value problems are reported along
	// with structural ones (an importer's, TOML's rules).
	if root != nil || len(dg.problems) == 0 {
		d := newDecoder(dg, len(data))
		d.origins = origins
		nodes = d.native(root)
	}
	if err := dg.err(); err != nil {
		return nil, dg.finalWarnings(), err
	}
	return &Inventory{Source: name, Nodes: nodes}, dg.finalWarnings(), nil
}

// formatFor chooses the format of a file by its extension, else by content.
func formatFor(name string, data []byte) string {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return formatYAML
	case ".toml":
		return formatTOML
	case ".ini", ".cfg":
		return formatINI
	case ".csv":
		return formatCSV
	}
	return sniff(data)
}

var (
	tomlHint   = regexp.MustCompile(`(?m)^\s*(\[\[?\s*(defaults|nodes)[\].]|(defaults|nodes)\s*=)`)
	iniSection = regexp.MustCompile(`^\[[^\[\]]+\]\s*([#;].*)?$`)
)

// sniff recognizes a format by content: native TOML, YAML/JSON, a NetBox
// CSV export (a header row naming a Name column), or an Ansible INI file.
func sniff(data []byte) string {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	if tomlHint.Match(data) {
		return formatTOML
	}
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		switch {
		case strings.HasPrefix(line, "{"), strings.HasPrefix(line, "---"), strings.HasPrefix(line, "- "):
			return formatYAML
		case iniSection.MatchString(line):
			return formatINI
		case strings.Contains(line, ",") && csvHasName(line):
			return formatCSV
		case strings.HasSuffix(line, ":") || strings.Contains(line, ": "):
			return formatYAML
		}
		return formatINI
	}
	return formatYAML
}

func csvHasName(header string) bool {
	for f := range strings.SplitSeq(header, ",") {
		if strings.EqualFold(strings.Trim(strings.TrimSpace(f), `"`), "name") {
			return true
		}
	}
	return false
}

var yamlLineErr = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// checkJSON reports a .json file that is not strict JSON — a trailing
// comma, a comment, a single quote, which the YAML parser would accept —
// as a problem at its line, and returns false then.
func checkJSON(dg *diags, data []byte) bool {
	var v any
	err := json.Unmarshal(data, &v)
	if err == nil {
		return true
	}
	var se *json.SyntaxError
	if !errors.As(err, &se) {
		dg.problem(0, "", "", "not valid JSON: %v", err)
		return false
	}
	off := min(int(se.Offset), len(data))
	msg := se.Error()
	if off > 0 && (data[off-1] == '}' || data[off-1] == ']') {
		before := bytes.TrimRight(data[:off-1], " \t\r\n")
		if len(before) > 0 && before[len(before)-1] == ',' {
			// Point at the comma, not at the bracket after it.
			off, msg = len(before), fmt.Sprintf("trailing comma before %s (JSON allows none)", string(data[off-1]))
		}
	}
	line := 1 + bytes.Count(data[:off], []byte("\n"))
	dg.problem(line, "", "", "not valid JSON: %s", msg)
	return false
}

// parseYAML parses one YAML (or JSON) document into a node tree. Syntax
// errors become problems with their line.
func parseYAML(dg *diags, data []byte) (root *yaml.Node) {
	defer func() {
		if r := recover(); r != nil {
			dg.problem(0, "", "", "the YAML parser failed on this file")
			root = nil
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if !errors.Is(err, io.EOF) {
			yamlProblem(dg, err)
		}
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		dg.problem(extra.Line, "", "", "a second YAML document: an inventory is one document (remove the ---)")
		return nil
	case !errors.Is(err, io.EOF):
		yamlProblem(dg, err)
		return nil
	}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		return doc.Content[0]
	}
	return nil
}

func yamlProblem(dg *diags, err error) {
	msg := err.Error()
	if m := yamlLineErr.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		// yaml.v3 prints the 1-based line for scanner errors but the 0-based
		// one for parser errors, which then is where the enclosing block or
		// flow collection starts (or the problem, for one on the first line).
		if isYAMLParserError(m[2]) {
			line++
		}
		dg.problem(line, "", "", "%s", m[2])
		return
	}
	dg.problem(0, "", "", "%s", strings.TrimPrefix(msg, "yaml: "))
}

func isYAMLParserError(msg string) bool {
	for _, p := range []string{"did not find expected", "found duplicate %", "found incompatible YAML document", "found undefined tag handle"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// looksAnsible reports whether a YAML document is an Ansible inventory
// rather than the native format: no defaults or nodes key, and an "all"
// group or a group with hosts, children or vars.
func looksAnsible(root *yaml.Node) bool {
	root = resolve(root)
	if root == nil || root.Kind != yaml.MappingNode {
		return false
	}
	ansible := false
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := resolve(root.Content[i]), resolve(root.Content[i+1])
		if k == nil || k.Kind != yaml.ScalarNode {
			continue
		}
		switch k.Value {
		case "nodes", "defaults":
			return false
		case "all":
			ansible = true
		}
		if v != nil && v.Kind == yaml.MappingNode {
			for j := 0; j+1 < len(v.Content); j += 2 {
				if gk := resolve(v.Content[j]); gk != nil && gk.Kind == yaml.ScalarNode {
					switch gk.Value {
					case "hosts", "children", "vars":
						ansible = true
					}
				}
			}
		}
	}
	return ansible
}
