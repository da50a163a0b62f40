package inventory

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// Ansible reads the variables of a group from group_vars/GROUP and of a
// host from host_vars/HOST beside the inventory file: a YAML (or JSON) file
// named GROUP, GROUP.yml, GROUP.yaml or GROUP.json, or a directory GROUP/
// whose files are read in lexical order (subdirectories too). Their
// precedence, lowest first: the inventory file's group variables, then
// group_vars/all, then group_vars of the other groups (parents before
// children, as for the inventory's own group variables), the inventory
// file's host variables, host_vars. Problems name the variable file and its
// line.

// maxVarFile bounds one variable file.
const maxVarFile = 16 << 20

// varFileExts are the extensions Ansible reads variables from.
var varFileExts = []string{"", ".yml", ".yaml", ".json"}

// readVarDirs reads group_vars/ and host_vars/ beside the inventory file
// into a.groupFileVars and a.hostFileVars.
func (a *ansibleInv) readVarDirs() {
	if a.dg.file == "" {
		return
	}
	dir := filepath.Dir(a.dg.file)
	a.groupFileVars = a.readVarDir(filepath.Join(dir, "group_vars"), "group", func(name string) bool { _, ok := a.groups[name]; return ok })
	a.hostFileVars = a.readVarDir(filepath.Join(dir, "host_vars"), "host", func(name string) bool { _, ok := a.hosts[name]; return ok })
}

// readVarDir reads the variable files of dir, by the group or host they
// are for; an entry for no group or host of the inventory is a warning.
func (a *ansibleInv) readVarDir(dir, kind string, known func(string) bool) map[string][]ansVar {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			a.dg.warn(0, "", "", "%s: %v; its variables are not read", dir, err)
		}
		return nil
	}
	out := map[string][]ansVar{}
	for _, e := range entries {
		if ignoredVarFile(e.Name()) {
			continue
		}
		name, ext := e.Name(), ""
		if !e.IsDir() {
			ext = filepath.Ext(name)
			if !slices.Contains(varFileExts, strings.ToLower(ext)) {
				continue
			}
			name = strings.TrimSuffix(name, ext)
		}
		p := filepath.Join(dir, e.Name())
		if !known(name) {
			a.dg.warn(0, "", "", "%s: there is no %s %s in the inventory; its variables are not used", p, kind, name)
			continue
		}
		if e.IsDir() {
			out[name] = append(out[name], a.readVarTree(p)...)
		} else {
			out[name] = append(out[name], a.readVarFile(p)...)
		}
	}
	return out
}

// ignoredVarFile: hidden files and editor or package leftovers, as Ansible
// skips them.
func ignoredVarFile(name string) bool {
	if strings.HasPrefix(name, ".") || strings.HasSuffix(name, "~") {
		return true
	}
	for _, ext := range []string{".orig", ".bak", ".retry", ".pyc", ".pyo", ".swp"} {
		if strings.HasSuffix(name, ext) {
			return true
		}
	}
	return false
}

// readVarTree reads every variable file under dir, in lexical order.
func (a *ansibleInv) readVarTree(dir string) []ansVar {
	var vars []ansVar
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			a.dg.warn(0, "", "", "%s: %v; not read", p, err)
			return nil
		}
		if p == dir {
			return nil
		}
		if ignoredVarFile(e.Name()) {
			if e.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if e.IsDir() || !slices.Contains(varFileExts, strings.ToLower(filepath.Ext(e.Name()))) {
			return nil
		}
		vars = append(vars, a.readVarFile(p)...)
		return nil
	})
	if err != nil {
		a.dg.warn(0, "", "", "%s: %v", dir, err)
	}
	return vars
}

// readVarFile reads one YAML or JSON file of variables (a mapping). Its
// values carry their lines in that file.
func (a *ansibleInv) readVarFile(p string) []ansVar {
	fi, err := os.Stat(p)
	if err != nil {
		a.dg.warn(0, "", "", "%s: %v; not read", p, err)
		return nil
	}
	if fi.Size() > maxVarFile {
		a.dg.problem(fileLine(a.dg.addFile(p), 0), "", "", "variable file larger than %d MiB", maxVarFile>>20)
		return nil
	}
	data, err := os.ReadFile(p)
	if err != nil {
		a.dg.warn(0, "", "", "%s: %v; not read", p, err)
		return nil
	}
	idx := a.dg.addFile(p)
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte("$ANSIBLE_VAULT")) {
		a.dg.warn(fileLine(idx, 1), "", "", "the variable file is vault-encrypted; not read (set what reprov needs in the native inventory)")
		return nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		line := 0
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			line = yamlErrorLine(err)
		}
		a.dg.problem(fileLine(idx, line), "", "", "not a YAML file of variables: %v", err)
		return nil
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil // empty file
		}
		root = root.Content[0]
	}
	renumber(root, idx, map[*yaml.Node]bool{})
	root = resolve(root)
	if root == nil || isNull(root) {
		return nil
	}
	if root.Kind != yaml.MappingNode {
		a.dg.problem(root.Line, "", "", "a variable file must be a mapping of variables, not %s", describe(root))
		return nil
	}
	var vars []ansVar
	first := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := resolve(root.Content[i]), root.Content[i+1]
		if k == nil || k.Kind != yaml.ScalarNode || v == nil {
			continue
		}
		if l, dup := first[k.Value]; dup {
			a.dg.problem(k.Line, "", "", "variable %s defined twice (first at line %d)", k.Value, l&(1<<fileLineShift-1))
			continue
		}
		first[k.Value] = k.Line
		vars = append(vars, ansVar{name: k.Value, value: v})
	}
	return vars
}

// renumber moves every line of the tree into the variable file idx.
func renumber(n *yaml.Node, idx int, seen map[*yaml.Node]bool) {
	if n == nil || seen[n] {
		return
	}
	seen[n] = true
	n.Line = fileLine(idx, n.Line)
	for _, c := range n.Content {
		renumber(c, idx, seen)
	}
	renumber(n.Alias, idx, seen)
}

// yamlErrorLine is the line a YAML syntax error names ("yaml: line 3: …").
func yamlErrorLine(err error) int {
	s := err.Error()
	_, rest, ok := strings.Cut(s, "line ")
	if !ok {
		return 0
	}
	n := 0
	for _, c := range rest {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	return n
}
