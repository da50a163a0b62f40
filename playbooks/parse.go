package playbooks

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	yaml "go.yaml.in/yaml/v3"

	"github.com/reprov/reprov/internal/suggest"
)

// DefaultHookTimeout bounds a hook that does not set its own timeout.
const DefaultHookTimeout = 2 * time.Minute

// maxFileSize bounds one playbook file; anything larger is not a playbook.
const maxFileSize = 1 << 20

// maxProblems caps how many problems one file reports, so that a file of
// the wrong kind does not bury the terminal.
const maxProblems = 1000

// The schema's keys, in the order docs/playbooks.md lists them.
var (
	topKeys     = []string{"name", "description", "extends", "paths", "timeouts", "power_action", "boot_mode", "escalate", "wipe", "install", "pre_hooks", "post_hooks"}
	timeoutKeys = []string{"precheck", "oob_boot", "power", "wait_landing", "inband", "reboot"}
	wipeKeys    = []string{"boot_sector", "uefi"}
	installKeys = []string{"kernel", "initrd", "cmdline"}
	hookKeys    = []string{"name", "run", "timeout"}
)

// The enums' values, in the order messages list them.
var (
	pathValues        = []Path{PathOOB, PathInband}
	powerActionValues = []PowerAction{PowerCycle, PowerReset, PowerOffOn}
	bootModeValues    = []BootMode{BootLegacy, BootUEFI, BootNode}
	bootSectorValues  = []BootSectorWipe{WipeNone, WipeMBR, WipeMBRGPT}
	uefiValues        = []UEFIHandling{UEFIBootNext, UEFIWipe}
)

// nameRE is what a playbook name may look like.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// yamlLineRE finds the line in a yaml.v3 syntax error.
var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// source is one file to parse.
type source struct {
	// file is the name shown in positions.
	file string
	// dir is the OS directory the file is in (hooks run there); "" if none.
	dir     string
	builtin bool
	data    []byte
	// readErr is why the file could not be read, if it could not.
	readErr error
}

// spec is one parsed playbook document: the values it sets and where.
type spec struct {
	name       string
	doc        Position
	extends    string
	extendsPos Position
	pb         Playbook
	// set maps each field key the document sets ("paths",
	// "timeouts.precheck", "wipe.uefi", …) to where it is set.
	set map[string]Position
	// bad reports problems in the document itself.
	bad bool
	// overrides is the built-in this operator document replaces.
	overrides *spec
}

// parser parses the documents of one source and collects problems.
type parser struct {
	src       *source
	probs     []Problem
	cur       *spec
	truncated bool
}

func (ps *parser) pos(n *yaml.Node) Position {
	line := 0
	if n != nil {
		line = n.Line
	}
	return Position{File: ps.src.file, Line: line, Builtin: ps.src.builtin}
}

func (ps *parser) addf(n *yaml.Node, field, format string, args ...any) {
	name := ""
	if ps.cur != nil {
		name = ps.cur.name
		ps.cur.bad = true
	}
	if len(ps.probs) >= maxProblems {
		ps.truncated = true
		return
	}
	ps.probs = append(ps.probs, Problem{Pos: ps.pos(n), Playbook: name, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// parseSource parses every document of src. It never panics: a panic of the
// YAML library on hostile input becomes a problem.
func parseSource(src *source) (specs []*spec, probs []Problem) {
	ps := &parser{src: src}
	if src.readErr != nil {
		err := src.readErr
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		ps.addf(nil, "", "cannot read: %v", err)
		return nil, ps.probs
	}
	if len(src.data) > maxFileSize {
		ps.addf(nil, "", "file is larger than %d bytes", maxFileSize)
		return nil, ps.probs
	}
	docs, err := decodeDocuments(src.data)
	if err != nil {
		line, msg := yamlErrorLine(err)
		ps.probs = append(ps.probs, Problem{Pos: Position{File: src.file, Line: line, Builtin: src.builtin}, Msg: "YAML: " + msg})
		return nil, ps.probs
	}
	var roots []*yaml.Node
	for _, d := range docs {
		if len(d.Content) == 0 {
			continue
		}
		r := deref(d.Content[0])
		if r == nil || (r.Kind == yaml.ScalarNode && r.ShortTag() == "!!null") {
			continue // an empty document, e.g. after a trailing ---
		}
		roots = append(roots, r)
	}
	if len(roots) == 0 {
		ps.addf(nil, "", "no playbook in this file")
		return nil, ps.probs
	}
	for _, r := range roots {
		s := ps.parseDocument(r, len(roots) == 1)
		if s != nil {
			specs = append(specs, s)
		}
	}
	if ps.truncated {
		ps.probs = append(ps.probs, Problem{Pos: Position{File: src.file, Builtin: src.builtin}, Msg: fmt.Sprintf("stopped after %d problems; fix these first", maxProblems)})
	}
	return specs, ps.probs
}

// yamlParserErrors are the messages of the YAML library's parser (as
// opposed to its scanner). yaml.v3 reports their line 0-based — the line
// of the construct being parsed, or of the problem — and leaves it out
// when that is 0; scanner errors it reports 1-based.
var yamlParserErrors = []string{
	"did not find expected <stream-start>",
	"did not find expected <document start>",
	"found undefined tag handle",
	"did not find expected node content",
	"did not find expected '-' indicator",
	"did not find expected key",
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"found duplicate %YAML directive",
	"found incompatible YAML document",
	"found duplicate %TAG directive",
}

// yamlErrorLine splits a YAML syntax error into its 1-based line (0 when
// unknown) and message.
func yamlErrorLine(err error) (int, string) {
	msg := err.Error()
	line := 0
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	if slices.Contains(yamlParserErrors, msg) {
		line++
	}
	return line, msg
}

// decodeDocuments reads every YAML document of data as a node tree.
func decodeDocuments(data []byte) (docs []*yaml.Node, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: the parser failed on this input: %v", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var d yaml.Node
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		docs = append(docs, &d)
	}
}

// deref follows aliases to the anchored node.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode; i++ {
		if i > 100 {
			return nil
		}
		n = n.Alias
	}
	return n
}

// parseDocument parses one playbook document. single reports whether it is
// the only document of its file (then name may default to the file name).
func (ps *parser) parseDocument(root *yaml.Node, single bool) *spec {
	s := &spec{doc: ps.pos(root), set: map[string]Position{}}
	ps.cur = s
	defer func() { ps.cur = nil }()
	if root.Kind != yaml.MappingNode {
		ps.addf(root, "", "a playbook must be a mapping of keys (name, paths, timeouts, …), not %s", kindName(root))
		return nil
	}
	// The name first, so that every problem of the document can carry it.
	var nameNode *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		if k := deref(root.Content[i]); k != nil && k.Kind == yaml.ScalarNode && k.Value == "name" {
			nameNode = deref(root.Content[i+1])
			break
		}
	}
	switch {
	case nameNode != nil:
		if v, ok := ps.scalar(nameNode, "name"); ok {
			if nameRE.MatchString(v) {
				s.name = v
			} else {
				ps.addf(nameNode, "name", "%q is not a valid name (letters, digits, '.', '_', '-'; at most 63; starting with a letter or digit)", v)
			}
		}
	case single:
		stem := strings.TrimSuffix(path.Base(strings.ReplaceAll(ps.src.file, "\\", "/")), path.Ext(ps.src.file))
		if nameRE.MatchString(stem) {
			s.name = stem
		} else {
			ps.addf(root, "name", "is required (the file name %q is not a valid playbook name)", stem)
		}
	default:
		ps.addf(root, "name", "is required when a file holds several playbooks")
	}

	ps.mapping(root, "", topKeys, func(key string, k, v *yaml.Node) {
		switch key {
		case "name":
			// Done above.
		case "description":
			if d, ok := ps.scalar(v, key); ok {
				s.pb.Description = d
				s.set[key] = ps.pos(k)
			}
		case "extends":
			if e, ok := ps.scalar(v, key); ok {
				if !nameRE.MatchString(e) {
					ps.addf(v, key, "%q is not a playbook name", e)
					return
				}
				s.extends, s.extendsPos = e, ps.pos(v)
			}
		case "paths":
			ps.parsePaths(s, k, v)
		case "timeouts":
			ps.mapping(v, key, timeoutKeys, func(tk string, k2, v2 *yaml.Node) {
				field := key + "." + tk
				d, ok := ps.duration(v2, field)
				if !ok {
					return
				}
				switch tk {
				case "precheck":
					s.pb.Timeouts.Precheck = d
				case "oob_boot":
					s.pb.Timeouts.OOBBoot = d
				case "power":
					s.pb.Timeouts.Power = d
				case "wait_landing":
					s.pb.Timeouts.WaitLanding = d
				case "inband":
					s.pb.Timeouts.Inband = d
				case "reboot":
					s.pb.Timeouts.Reboot = d
				}
				s.set[field] = ps.pos(k2)
			})
		case "power_action":
			if a, ok := enum(ps, v, key, powerActionValues); ok {
				s.pb.PowerAction = a
				s.set[key] = ps.pos(k)
			}
		case "boot_mode":
			if m, ok := enum(ps, v, key, bootModeValues); ok {
				s.pb.BootMode = m
				s.set[key] = ps.pos(k)
			}
		case "escalate":
			if b, ok := ps.boolean(v, key); ok {
				s.pb.Escalate = b
				s.set[key] = ps.pos(k)
			}
		case "wipe":
			ps.parseWipe(s, k, v)
		case "install":
			ps.parseInstall(s, v)
		case "pre_hooks":
			s.pb.PreHooks = ps.parseHooks(v, key)
			s.set[key] = ps.pos(k)
		case "post_hooks":
			s.pb.PostHooks = ps.parseHooks(v, key)
			s.set[key] = ps.pos(k)
		}
	})
	return s
}

// mapping checks that n is a mapping with known, unique keys and calls fn
// for each pair. field is the key path of n ("" at the top).
func (ps *parser) mapping(n *yaml.Node, field string, known []string, fn func(key string, k, v *yaml.Node)) {
	n = deref(n)
	if n == nil || n.Kind != yaml.MappingNode {
		if n != nil && n.ShortTag() == "!!null" {
			return // "timeouts:" with nothing under it sets nothing
		}
		ps.addf(n, field, "must be a mapping with keys %s, not %s", strings.Join(known, ", "), kindName(n))
		return
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		if k == nil || v == nil {
			ps.addf(n.Content[i], field, "alias nests too deep")
			continue
		}
		if k.Kind != yaml.ScalarNode {
			ps.addf(k, field, "keys must be plain words, not %s", kindName(k))
			continue
		}
		key := k.Value
		full := join(field, key)
		if key == "<<" {
			ps.addf(k, full, "YAML merge keys are not supported; use extends: to build on another playbook")
			continue
		}
		if !slices.Contains(known, key) {
			where := "a playbook"
			if field != "" {
				where = field
			}
			ps.addf(k, full, "unknown key in %s%s; known keys: %s", where, suggest.DidYouMean(key, known), strings.Join(known, ", "))
			continue
		}
		if first, dup := seen[key]; dup {
			ps.addf(k, full, "duplicate key (first at line %d)", first)
			continue
		}
		seen[key] = k.Line
		fn(key, k, v)
	}
}

// scalar returns the text of a scalar node; null is "".
func (ps *parser) scalar(n *yaml.Node, field string) (string, bool) {
	n = deref(n)
	if n == nil || n.Kind != yaml.ScalarNode {
		ps.addf(n, field, "must be a single value, not %s", kindName(n))
		return "", false
	}
	if n.ShortTag() == "!!null" {
		return "", true
	}
	return n.Value, true
}

// boolean returns a YAML boolean (true or false).
func (ps *parser) boolean(n *yaml.Node, field string) (bool, bool) {
	n = deref(n)
	v, ok := ps.scalar(n, field)
	if !ok {
		return false, false
	}
	if n.ShortTag() != "!!bool" {
		ps.addf(n, field, "%q is not true or false", v)
		return false, false
	}
	b, err := strconv.ParseBool(strings.ToLower(v))
	if err != nil {
		ps.addf(n, field, "%q is not true or false", v)
		return false, false
	}
	return b, true
}

// duration returns a positive Go duration ("90s", "10m", "1h30m").
func (ps *parser) duration(n *yaml.Node, field string) (time.Duration, bool) {
	v, ok := ps.scalar(n, field)
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		if _, nerr := strconv.ParseFloat(v, 64); nerr == nil && v != "0" {
			ps.addf(n, field, "%q is not a duration (missing unit: %q?)", v, v+"s")
		} else {
			ps.addf(n, field, "%q is not a duration", v)
		}
		return 0, false
	}
	if d <= 0 {
		ps.addf(n, field, "must be positive, not %q", v)
		return 0, false
	}
	return d, true
}

// enum returns n's value when it is one of allowed.
func enum[T ~string](ps *parser, n *yaml.Node, field string, allowed []T) (T, bool) {
	v, ok := ps.scalar(n, field)
	if !ok {
		return "", false
	}
	names := make([]string, len(allowed))
	for i, a := range allowed {
		names[i] = string(a)
	}
	if slices.Contains(names, v) {
		return T(v), true
	}
	ps.addf(n, field, "%q is not one of %s%s", v, strings.Join(names, ", "), suggest.DidYouMean(v, names))
	return "", false
}

func (ps *parser) parsePaths(s *spec, k, v *yaml.Node) {
	if v.Kind != yaml.SequenceNode && v.ShortTag() != "!!null" {
		ps.addf(v, "paths", "must be a list, e.g. [oob, inband], not %s", kindName(v))
		return
	}
	s.set["paths"] = ps.pos(k)
	var paths []Path
	firstAt := map[Path]int{}
	for i, e := range v.Content {
		field := fmt.Sprintf("paths[%d]", i)
		p, ok := enum(ps, e, field, pathValues)
		if !ok {
			continue
		}
		if j, dup := firstAt[p]; dup {
			ps.addf(e, field, "%q is repeated (already paths[%d]); each path runs at most once", p, j)
			continue
		}
		firstAt[p] = i
		paths = append(paths, p)
	}
	if len(v.Content) == 0 {
		ps.addf(v, "paths", "must list at least one of oob, inband")
	}
	s.pb.Paths = paths
}

func (ps *parser) parseWipe(s *spec, k, v *yaml.Node) {
	if v.Kind == yaml.ScalarNode && v.ShortTag() != "!!null" {
		// Shorthand: wipe: mbr
		if w, ok := enum(ps, v, "wipe", bootSectorValues); ok {
			s.pb.Wipe.BootSector = w
			s.set["wipe.boot_sector"] = ps.pos(k)
		}
		return
	}
	ps.mapping(v, "wipe", wipeKeys, func(key string, k2, v2 *yaml.Node) {
		field := "wipe." + key
		switch key {
		case "boot_sector":
			if w, ok := enum(ps, v2, field, bootSectorValues); ok {
				s.pb.Wipe.BootSector = w
				s.set[field] = ps.pos(k2)
			}
		case "uefi":
			if u, ok := enum(ps, v2, field, uefiValues); ok {
				s.pb.Wipe.UEFI = u
				s.set[field] = ps.pos(k2)
			}
		}
	})
}

func (ps *parser) parseInstall(s *spec, v *yaml.Node) {
	ps.mapping(v, "install", installKeys, func(key string, k2, v2 *yaml.Node) {
		field := "install." + key
		switch key {
		case "kernel":
			u, ok := ps.scalar(v2, field)
			if !ok {
				return
			}
			if err := checkURL(u); err != nil {
				ps.addf(v2, field, "%v", err)
				return
			}
			s.pb.Install.Kernel = u
			s.set[field] = ps.pos(k2)
		case "initrd":
			var items []*yaml.Node
			switch {
			case v2.Kind == yaml.SequenceNode:
				items = v2.Content
			case v2.ShortTag() == "!!null":
			default:
				items = []*yaml.Node{v2}
			}
			var urls []string
			good := true
			for i, e := range items {
				f := field
				if v2.Kind == yaml.SequenceNode {
					f = fmt.Sprintf("%s[%d]", field, i)
				}
				u, ok := ps.scalar(e, f)
				if !ok {
					good = false
					continue
				}
				if err := checkURL(u); err != nil {
					ps.addf(e, f, "%v", err)
					good = false
					continue
				}
				urls = append(urls, u)
			}
			if good {
				s.pb.Install.Initrds = urls
				s.set[field] = ps.pos(k2)
			}
		case "cmdline":
			c, ok := ps.scalar(v2, field)
			if !ok {
				return
			}
			if i := strings.IndexFunc(c, unicode.IsControl); i >= 0 {
				ps.addf(v2, field, "contains a control character (%q); the command line must be one line", c[i])
				return
			}
			s.pb.Install.Cmdline = c
			s.set[field] = ps.pos(k2)
		}
	})
}

// checkURL accepts an absolute http, https or tftp URL that can be written
// into an iPXE script as it is.
func checkURL(u string) error {
	if u == "" {
		return errors.New("is empty")
	}
	if i := strings.IndexFunc(u, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }); i >= 0 {
		return fmt.Errorf("%q contains whitespace or a control character", u)
	}
	p, err := url.Parse(u)
	if err != nil {
		return fmt.Errorf("%q is not a URL", u)
	}
	switch p.Scheme {
	case "http", "https", "tftp":
	default:
		return fmt.Errorf("%q: want an absolute http://, https:// or tftp:// URL", u)
	}
	if p.Host == "" {
		return fmt.Errorf("%q has no host", u)
	}
	return nil
}

func (ps *parser) parseHooks(v *yaml.Node, field string) []Hook {
	if v.ShortTag() == "!!null" {
		return nil
	}
	if v.Kind != yaml.SequenceNode {
		ps.addf(v, field, "must be a list of hooks, not %s", kindName(v))
		return nil
	}
	hooks := make([]Hook, 0, len(v.Content))
	for i, e := range v.Content {
		if h, ok := ps.parseHook(deref(e), fmt.Sprintf("%s[%d]", field, i)); ok {
			hooks = append(hooks, h)
		}
	}
	return hooks
}

func (ps *parser) parseHook(n *yaml.Node, field string) (Hook, bool) {
	h := Hook{Timeout: DefaultHookTimeout, Dir: ps.src.dir, Pos: ps.pos(n)}
	if n == nil {
		ps.addf(n, field, "alias nests too deep")
		return h, false
	}
	if n.Kind == yaml.ScalarNode {
		// Shorthand: a shell command line.
		ok := ps.hookRun(&h, n, field)
		h.Name = defaultHookName(h)
		return h, ok
	}
	if n.Kind != yaml.MappingNode {
		ps.addf(n, field, "must be a command line or a mapping with keys %s, not %s", strings.Join(hookKeys, ", "), kindName(n))
		return h, false
	}
	ok, hasRun := true, false
	ps.mapping(n, field, hookKeys, func(key string, _, v *yaml.Node) {
		f := field + "." + key
		switch key {
		case "name":
			name, good := ps.scalar(v, f)
			switch {
			case !good:
				ok = false
			case strings.TrimSpace(name) == "" || strings.IndexFunc(name, unicode.IsControl) >= 0:
				ps.addf(v, f, "must be a non-empty single line")
				ok = false
			default:
				h.Name = name
			}
		case "run":
			hasRun = true
			ok = ps.hookRun(&h, v, f) && ok
		case "timeout":
			d, good := ps.duration(v, f)
			if good {
				h.Timeout = d
			}
			ok = ok && good
		}
	})
	if !hasRun {
		ps.addf(n, field+".run", "is required: a command line (run by /bin/sh -c) or an argv list")
		return h, false
	}
	if h.Name == "" {
		h.Name = defaultHookName(h)
	}
	return h, ok
}

// defaultHookName names a hook after its command.
func defaultHookName(h Hook) string {
	if h.Shell != "" {
		return shorten(h.Shell, 60)
	}
	return shorten(strings.Join(h.Argv, " "), 60)
}

// hookRun reads a hook's command: a string is a shell command line, a list
// is an argv.
func (ps *parser) hookRun(h *Hook, v *yaml.Node, field string) bool {
	switch v.Kind {
	case yaml.ScalarNode:
		c, ok := ps.scalar(v, field)
		if !ok {
			return false
		}
		if strings.TrimSpace(c) == "" {
			ps.addf(v, field, "is an empty command")
			return false
		}
		h.Shell = c
		return true
	case yaml.SequenceNode:
		if len(v.Content) == 0 {
			ps.addf(v, field, "is an empty command")
			return false
		}
		argv := make([]string, 0, len(v.Content))
		for i, e := range v.Content {
			a, ok := ps.scalar(e, fmt.Sprintf("%s[%d]", field, i))
			if !ok {
				return false
			}
			if strings.ContainsRune(a, 0) {
				ps.addf(e, fmt.Sprintf("%s[%d]", field, i), "contains a NUL byte")
				return false
			}
			argv = append(argv, a)
		}
		if strings.TrimSpace(argv[0]) == "" {
			ps.addf(v.Content[0], field+"[0]", "the program name is empty")
			return false
		}
		h.Argv = argv
		return true
	}
	ps.addf(v, field, "must be a command line or an argv list, not %s", kindName(v))
	return false
}

// shorten cuts s to its first line and at most n runes.
func shorten(s string, n int) string {
	s, _, cut := strings.Cut(strings.TrimSpace(s), "\n")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	if cut {
		return s + " …"
	}
	return s
}

func join(field, key string) string {
	if field == "" {
		return key
	}
	return field + "." + key
}

// kindName describes a node's kind for messages.
func kindName(n *yaml.Node) string {
	if n == nil {
		return "nothing"
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.ShortTag() == "!!null" {
			return "empty"
		}
		return fmt.Sprintf("%q", n.Value)
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	return "an unknown node"
}
