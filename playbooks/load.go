package playbooks

import (
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/reprov/reprov/internal/suggest"
)

//go:embed builtin/*.yaml
var builtinFiles embed.FS

// builtinDir is the directory of the built-ins inside builtinFiles.
const builtinDir = "builtin"

// BuiltinFS returns the embedded built-in playbook files, builtin/NAME.yaml
// (e.g. for `reprov playbooks show` to print one as written).
func BuiltinFS() fs.FS { return builtinFiles }

func trimBuiltinDir(f string) string { return strings.TrimPrefix(f, builtinDir+"/") }

// Set is a loaded, validated collection of playbooks, looked up by name.
// It is read-only and safe for concurrent use.
type Set struct {
	byName map[string]*Playbook
}

// Get returns the playbook called name; "" means DefaultName. An unknown
// name is an error wrapping ErrUnknownPlaybook that lists the known ones.
// The Playbook is shared: Clone it before changing it.
func (s *Set) Get(name string) (*Playbook, error) {
	if name == "" {
		name = DefaultName
	}
	if p, ok := s.byName[name]; ok {
		return p, nil
	}
	known := s.Names()
	return nil, fmt.Errorf("%w %q%s; known: %s", ErrUnknownPlaybook, name, suggest.DidYouMean(name, known), strings.Join(known, ", "))
}

// List returns every playbook, sorted by name.
func (s *Set) List() []*Playbook {
	out := make([]*Playbook, 0, len(s.byName))
	for _, n := range s.Names() {
		out = append(out, s.byName[n])
	}
	return out
}

// Names returns the playbook names, sorted.
func (s *Set) Names() []string { return slices.Sorted(maps.Keys(s.byName)) }

// Load returns the built-in playbooks together with the operator's files
// in dir: every *.yaml and *.yml directly in it (not in sub-directories;
// names starting with "." are ignored). An operator playbook with a
// built-in's name replaces it (Playbook.Overrides says where the built-in
// is). dir "" loads the built-ins only.
//
// A missing or unreadable dir is an error wrapping the fs error (e.g.
// fs.ErrNotExist). Problems in the files are one *ValidationError holding
// all of them.
func Load(dir string) (*Set, error) {
	srcs, err := builtinSources()
	if err != nil {
		return nil, err
	}
	if dir != "" {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("playbooks directory: %w", err)
		}
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, fmt.Errorf("playbooks directory %s: %w", dir, err)
		}
		for _, e := range entries {
			if !isPlaybookFile(e.Name()) || e.IsDir() {
				continue
			}
			srcs = append(srcs, readOSFile(filepath.Join(dir, e.Name()), abs))
		}
	}
	return finish(srcs)
}

// LoadFS is Load for operator files in the root of fsys. Hooks of those
// files run in the controller's working directory.
func LoadFS(fsys fs.FS) (*Set, error) {
	srcs, err := builtinSources()
	if err != nil {
		return nil, err
	}
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("playbooks: %w", err)
	}
	for _, e := range entries {
		if !isPlaybookFile(e.Name()) || e.IsDir() {
			continue
		}
		src := &source{file: e.Name()}
		src.data, err = readBounded(fsys, e.Name())
		if err != nil {
			src.data = nil
			src.readErr = err
		}
		srcs = append(srcs, src)
	}
	return finish(srcs)
}

// LoadFiles is Load for named files and directories (a directory stands for
// its *.yaml and *.yml files): the built-ins plus these, checked together.
// A file or directory that cannot be read is a problem like any other.
func LoadFiles(paths ...string) (*Set, error) {
	srcs, err := builtinSources()
	if err != nil {
		return nil, err
	}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil || !fi.IsDir() {
			srcs = append(srcs, readOSFile(p, ""))
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			srcs = append(srcs, &source{file: p, readErr: err})
			continue
		}
		for _, e := range entries {
			if isPlaybookFile(e.Name()) && !e.IsDir() {
				srcs = append(srcs, readOSFile(filepath.Join(p, e.Name()), ""))
			}
		}
	}
	return finish(srcs)
}

// Validate checks playbook files and directories together with the
// built-ins, for `reprov playbooks validate FILE...`. It returns every
// problem, ordered by file and line; none means valid.
func Validate(paths ...string) []Problem {
	_, err := LoadFiles(paths...)
	var verr *ValidationError
	if errors.As(err, &verr) {
		return verr.Problems
	}
	if err != nil {
		return []Problem{{Msg: err.Error()}}
	}
	return nil
}

func isPlaybookFile(name string) bool {
	if strings.HasPrefix(name, ".") {
		return false
	}
	ext := path.Ext(name)
	return ext == ".yaml" || ext == ".yml"
}

func builtinSources() ([]*source, error) {
	names, err := fs.Glob(builtinFiles, builtinDir+"/*.yaml")
	if err != nil {
		return nil, fmt.Errorf("playbooks: built-ins: %w", err)
	}
	srcs := make([]*source, 0, len(names))
	for _, n := range names {
		data, err := builtinFiles.ReadFile(n)
		if err != nil {
			return nil, fmt.Errorf("playbooks: built-in %s: %w", n, err)
		}
		srcs = append(srcs, &source{file: n, builtin: true, data: data})
	}
	return srcs, nil
}

// readOSFile reads one operator file; hooks run in hookDir, or the file's
// own directory when hookDir is "".
func readOSFile(name, hookDir string) *source {
	if hookDir == "" {
		if abs, err := filepath.Abs(filepath.Dir(name)); err == nil {
			hookDir = abs
		}
	}
	src := &source{file: name, dir: hookDir}
	f, err := os.Open(name)
	if err != nil {
		src.readErr = err
		return src
	}
	defer f.Close()
	src.data, err = io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		src.readErr = err
	}
	return src
}

func readBounded(fsys fs.FS, name string) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxFileSize+1))
}

// finish builds the set and turns problems into one *ValidationError.
func finish(srcs []*source) (*Set, error) {
	set, probs := build(srcs)
	if len(probs) > 0 {
		return nil, &ValidationError{Problems: probs}
	}
	return set, nil
}
