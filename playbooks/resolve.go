package playbooks

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/reprov/reprov/internal/suggest"
)

// defaultTimeouts apply to every timeout a playbook (and what it extends)
// does not set. docs/playbooks.md lists them.
var defaultTimeouts = Timeouts{
	Precheck:    2 * time.Minute,
	OOBBoot:     time.Minute,
	Power:       2 * time.Minute,
	WaitLanding: 15 * time.Minute,
	Inband:      5 * time.Minute,
	Reboot:      5 * time.Minute,
}

// schemaDefaults returns the values of every key a playbook without extends
// does not set. Paths has no default; Escalate defaults to whether both
// paths are used (decided after merging).
func schemaDefaults() *Playbook {
	return &Playbook{
		Timeouts:    defaultTimeouts,
		PowerAction: PowerCycle,
		BootMode:    BootNode,
		Wipe:        WipePolicy{BootSector: WipeMBR, UEFI: UEFIBootNext},
	}
}

// resolved is a spec with its base merged in.
type resolved struct {
	pb  *Playbook
	set map[string]Position
	ok  bool
}

// resolver merges every spec with the playbook it extends (or the schema
// defaults) and checks the result as a whole.
type resolver struct {
	builtins map[string]*spec
	final    map[string]*spec
	done     map[*spec]*resolved
	stack    []*spec
	probs    []Problem
}

func (r *resolver) problem(s *spec, pos Position, field, format string, args ...any) {
	r.probs = append(r.probs, Problem{Pos: pos, Playbook: s.name, Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (r *resolver) resolve(s *spec) *resolved {
	if res, ok := r.done[s]; ok {
		return res
	}
	if i := slices.Index(r.stack, s); i >= 0 {
		names := make([]string, 0, len(r.stack)-i+1)
		for _, c := range r.stack[i:] {
			names = append(names, c.name)
		}
		last := r.stack[len(r.stack)-1]
		r.problem(last, last.extendsPos, "extends", "cycle: %s", strings.Join(append(names, s.name), " → "))
		return &resolved{}
	}
	r.stack = append(r.stack, s)
	defer func() { r.stack = r.stack[:len(r.stack)-1] }()

	base := &resolved{pb: schemaDefaults(), set: map[string]Position{}, ok: true}
	switch {
	case s.extends == "":
	case s.extends == s.name:
		b := r.builtins[s.name]
		if b == nil || b == s {
			r.problem(s, s.extendsPos, "extends", "a playbook cannot extend itself (only an operator playbook that overrides a built-in may extend the built-in of its own name)")
			base = &resolved{}
		} else {
			base = r.resolve(b)
		}
	default:
		b := r.final[s.extends]
		if b == nil {
			known := slices.DeleteFunc(slices.Sorted(maps.Keys(r.final)), func(n string) bool { return n == s.name })
			r.problem(s, s.extendsPos, "extends", "no playbook named %q%s; known: %s", s.extends, suggest.DidYouMean(s.extends, known), strings.Join(known, ", "))
			base = &resolved{}
		} else {
			base = r.resolve(b)
		}
	}
	res := &resolved{}
	r.done[s] = res
	if s.bad || !base.ok {
		// The problems are reported where they are; checking the whole
		// would only repeat them.
		return res
	}

	pb := base.pb.Clone()
	set := maps.Clone(base.set)
	for key, pos := range s.set {
		copyField(pb, &s.pb, key)
		set[key] = pos
	}
	pb.Name = s.name
	pb.Extends = s.extends
	pb.Source = s.doc
	pb.Overrides = nil
	if s.overrides != nil {
		o := s.overrides.doc
		pb.Overrides = &o
	}
	if _, ok := set["escalate"]; !ok {
		pb.Escalate = pb.Uses(PathOOB) && pb.Uses(PathInband)
	}
	res.pb, res.set = pb, set
	res.ok = r.check(s, pb, set)
	return res
}

// at returns where s itself sets the first of keys, or where s begins.
func at(s *spec, keys ...string) Position {
	for _, k := range keys {
		if p, ok := s.set[k]; ok {
			return p
		}
	}
	return s.doc
}

// check validates a merged playbook as a whole; problems are reported
// against s, the document being resolved.
func (r *resolver) check(s *spec, pb *Playbook, set map[string]Position) bool {
	n := len(r.probs)
	if len(pb.Paths) == 0 {
		if _, ok := set["paths"]; !ok {
			r.problem(s, s.doc, "paths", "is required (e.g. paths: [oob, inband]), or extends: another playbook")
		}
	}
	if pb.Escalate && !pb.Uses(PathInband) {
		r.problem(s, at(s, "escalate", "paths"), "escalate", "true needs %q in paths (add it, or set escalate: false)", PathInband)
	}
	if pb.Wipe.UEFI == UEFIWipe && pb.Wipe.BootSector == WipeNone {
		r.problem(s, at(s, "wipe.uefi", "wipe.boot_sector"), "wipe.uefi", "%q needs wipe.boot_sector %s or %s", UEFIWipe, WipeMBR, WipeMBRGPT)
	}
	if pb.Install.Kernel == "" && (len(pb.Install.Initrds) > 0 || pb.Install.Cmdline != "") {
		r.problem(s, at(s, "install.initrd", "install.cmdline"), "install.kernel", "is required when install sets initrd or cmdline")
	}
	return len(r.probs) == n
}

// copyField copies the field named by key from src to dst.
func copyField(dst, src *Playbook, key string) {
	switch key {
	case "description":
		dst.Description = src.Description
	case "paths":
		dst.Paths = slices.Clone(src.Paths)
	case "timeouts.precheck":
		dst.Timeouts.Precheck = src.Timeouts.Precheck
	case "timeouts.oob_boot":
		dst.Timeouts.OOBBoot = src.Timeouts.OOBBoot
	case "timeouts.power":
		dst.Timeouts.Power = src.Timeouts.Power
	case "timeouts.wait_landing":
		dst.Timeouts.WaitLanding = src.Timeouts.WaitLanding
	case "timeouts.inband":
		dst.Timeouts.Inband = src.Timeouts.Inband
	case "timeouts.reboot":
		dst.Timeouts.Reboot = src.Timeouts.Reboot
	case "power_action":
		dst.PowerAction = src.PowerAction
	case "boot_mode":
		dst.BootMode = src.BootMode
	case "escalate":
		dst.Escalate = src.Escalate
	case "wipe.boot_sector":
		dst.Wipe.BootSector = src.Wipe.BootSector
	case "wipe.uefi":
		dst.Wipe.UEFI = src.Wipe.UEFI
	case "install.kernel":
		dst.Install.Kernel = src.Install.Kernel
	case "install.initrd":
		dst.Install.Initrds = slices.Clone(src.Install.Initrds)
	case "install.cmdline":
		dst.Install.Cmdline = src.Install.Cmdline
	case "pre_hooks":
		dst.PreHooks = cloneHooks(src.PreHooks)
	case "post_hooks":
		dst.PostHooks = cloneHooks(src.PostHooks)
	default:
		panic("playbooks: copyField: unknown key " + key)
	}
}

// build parses the sources (built-ins first) and resolves every playbook.
func build(srcs []*source) (*Set, []Problem) {
	var probs []Problem
	r := &resolver{builtins: map[string]*spec{}, final: map[string]*spec{}, done: map[*spec]*resolved{}}
	operator := map[string]*spec{}
	var all []*spec
	for _, src := range srcs {
		specs, ps := parseSource(src)
		probs = append(probs, ps...)
		for _, s := range specs {
			if s.name == "" {
				continue // reported; nothing can refer to it
			}
			all = append(all, s)
			defined := operator
			if src.builtin {
				defined = r.builtins
			}
			if first, dup := defined[s.name]; dup {
				probs = append(probs, Problem{Pos: s.doc, Playbook: s.name, Field: "name", Msg: fmt.Sprintf("is already defined at %s", first.doc)})
				s.bad = true
				continue
			}
			defined[s.name] = s
			if !src.builtin {
				s.overrides = r.builtins[s.name]
			}
		}
	}
	maps.Copy(r.final, r.builtins)
	maps.Copy(r.final, operator)

	// Resolve in file order so that problems come out in a stable order;
	// overridden built-ins are still checked.
	for _, s := range all {
		r.resolve(s)
	}
	probs = append(probs, r.probs...)
	if len(probs) > 0 {
		sortProblems(probs)
		return nil, probs
	}
	set := &Set{byName: make(map[string]*Playbook, len(r.final))}
	for name, s := range r.final {
		set.byName[name] = r.done[s].pb
	}
	return set, nil
}
