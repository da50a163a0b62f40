package main

import (
	"fmt"
	"io/fs"
	"strings"

	"github.com/spf13/cobra"

	"github.com/reprov/reprov/playbooks"
)

// playbooksValidateOptions are the options of `reprov playbooks validate`.
type playbooksValidateOptions struct {
	Paths []string
}

// playbooksShowOptions are the options of `reprov playbooks show`.
type playbooksShowOptions struct {
	Name string
}

func newPlaybooksCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "playbooks",
		Short: "List, show and validate playbooks (per-board reinstall strategies)",
		Long: `Playbooks are the per-board strategies of reinstall: paths and their order,
timeouts, power action, boot mode, escalation, wipe policy, install profile and
hooks (docs/playbooks.md). The built-ins are embedded; operator playbooks are the
*.yaml files in playbooks.dir.`,
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List every playbook: name, source, paths",
		Args:  cobra.NoArgs,
		RunE:  func(*cobra.Command, []string) error { return runPlaybooksList(a) },
	}
	var so playbooksShowOptions
	show := &cobra.Command{
		Use:   "show NAME",
		Short: "Show one playbook with every key resolved",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			so.Name = args[0]
			return runPlaybooksShow(a, so)
		},
	}
	var vo playbooksValidateOptions
	validate := &cobra.Command{
		Use:   "validate FILE|DIR...",
		Short: "Check playbook files together with the built-ins; every problem with its file and line (exit 1 on problems)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			vo.Paths = args
			return runPlaybooksValidate(a, vo)
		},
	}
	cmd.AddCommand(list, show, validate)
	return cmd
}

func runPlaybooksList(a *app) error {
	set, err := a.loadPlaybooks()
	if err != nil {
		return err
	}
	if a.jsonOutput() {
		return a.writeJSON(set.List())
	}
	var rows [][]string
	for _, p := range set.List() {
		src := p.Source.String()
		if p.Overrides != nil {
			src += " (overrides " + p.Overrides.String() + ")"
		}
		rows = append(rows, []string{p.Name, pathList(p.Paths), fmt.Sprint(p.Escalate), src, p.Description})
	}
	return a.table([]string{"NAME", "PATHS", "ESCALATE", "SOURCE", "DESCRIPTION"}, rows)
}

func pathList(ps []playbooks.Path) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = string(p)
	}
	return strings.Join(s, ",")
}

func runPlaybooksShow(a *app, o playbooksShowOptions) error {
	set, err := a.loadPlaybooks()
	if err != nil {
		return err
	}
	p, err := set.Get(o.Name)
	if err != nil {
		return usageError(err)
	}
	if a.jsonOutput() {
		return a.writeJSON(p)
	}
	w := a.stdout
	fmt.Fprintf(w, "# %s, every key resolved\n", p.Source)
	if p.Overrides != nil {
		fmt.Fprintf(w, "# overrides the built-in at %s\n", p.Overrides)
	}
	fmt.Fprintf(w, "name: %s\n", p.Name)
	if p.Description != "" {
		fmt.Fprintf(w, "description: %s\n", p.Description)
	}
	if p.Extends != "" {
		fmt.Fprintf(w, "extends: %s\n", p.Extends)
	}
	fmt.Fprintf(w, "paths: [%s]\n", strings.ReplaceAll(pathList(p.Paths), ",", ", "))
	fmt.Fprintf(w, "escalate: %t\n", p.Escalate)
	t := p.Timeouts
	fmt.Fprintf(w, "timeouts:\n  precheck: %s\n  oob_boot: %s\n  power: %s\n  wait_landing: %s\n  inband: %s\n  reboot: %s\n",
		t.Precheck, t.OOBBoot, t.Power, t.WaitLanding, t.Inband, t.Reboot)
	fmt.Fprintf(w, "power_action: %s\nboot_mode: %s\n", p.PowerAction, p.BootMode)
	fmt.Fprintf(w, "wipe:\n  boot_sector: %s\n  uefi: %s\n", p.Wipe.BootSector, p.Wipe.UEFI)
	if p.Install.IsZero() {
		fmt.Fprintln(w, "install: {}   # the landing endpoint's default (landing.kernel, landing.initrd, landing.cmdline)")
	} else {
		fmt.Fprintf(w, "install:\n  kernel: %s\n", p.Install.Kernel)
		if len(p.Install.Initrds) > 0 {
			fmt.Fprintf(w, "  initrd: [%s]\n", strings.Join(p.Install.Initrds, ", "))
		}
		if p.Install.Cmdline != "" {
			fmt.Fprintf(w, "  cmdline: %q\n", p.Install.Cmdline)
		}
	}
	for _, hs := range []struct {
		key   string
		hooks []playbooks.Hook
	}{{"pre_hooks", p.PreHooks}, {"post_hooks", p.PostHooks}} {
		if len(hs.hooks) == 0 {
			continue
		}
		fmt.Fprintf(w, "%s:\n", hs.key)
		for _, h := range hs.hooks {
			run := fmt.Sprintf("%q", h.Shell)
			if h.Shell == "" {
				run = fmt.Sprintf("%q", h.Argv)
			}
			fmt.Fprintf(w, "  - name: %q\n    run: %s\n    timeout: %s   # %s\n", h.Name, run, h.Timeout, h.Pos)
		}
	}
	if p.Source.Builtin {
		if b, err := fs.ReadFile(playbooks.BuiltinFS(), p.Source.File); err == nil {
			fmt.Fprintf(w, "\n# as written (%s):\n", p.Source.File)
			for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
				fmt.Fprintf(w, "#   %s\n", line)
			}
		}
	}
	return nil
}

// validateResult is `playbooks validate` in JSON.
type validateResult struct {
	Valid    bool     `json:"valid"`
	Problems []string `json:"problems"`
}

func runPlaybooksValidate(a *app, o playbooksValidateOptions) error {
	probs := playbooks.Validate(o.Paths...)
	lines := make([]string, len(probs))
	for i, p := range probs {
		lines[i] = p.Error()
	}
	if a.jsonOutput() {
		if err := a.writeJSON(validateResult{Valid: len(probs) == 0, Problems: append([]string{}, lines...)}); err != nil {
			return err
		}
	} else {
		for _, l := range lines {
			fmt.Fprintln(a.stdout, l)
		}
		if len(probs) == 0 {
			fmt.Fprintf(a.stdout, "ok: %s valid (checked with the built-ins)\n", strings.Join(o.Paths, ", "))
		} else {
			fmt.Fprintf(a.stdout, "%d problem(s)\n", len(probs))
		}
	}
	if len(probs) > 0 {
		return errSomeFailed
	}
	return nil
}
