package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/reprov/reprov/inventory"
)

func newInventoryCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "inventory",
		Short: "Validate, list and import the node inventory",
	}
	cmd.AddCommand(newInventoryValidateCmd(a), newInventoryListCmd(a), newInventoryImportCmd(a))
	return cmd
}

// inventoryValidateOptions are the options of `reprov inventory validate`.
type inventoryValidateOptions struct {
	// File overrides the configured inventory.
	File string
}

func newInventoryValidateCmd(a *app) *cobra.Command {
	var o inventoryValidateOptions
	return &cobra.Command{
		Use:   "validate [FILE]",
		Short: "Check an inventory and report every problem with file:line (exit 1 when there are any)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.File = args[0]
			}
			return runInventoryValidate(a, o)
		},
	}
}

// validateReport is the JSON form of a validation run.
type validateReport struct {
	File     string            `json:"file"`
	Valid    bool              `json:"valid"`
	Nodes    int               `json:"nodes"`
	Problems []validateProblem `json:"problems"`
	Warnings []validateProblem `json:"warnings"`
}

type validateProblem struct {
	Line    int    `json:"line,omitempty"`
	Node    string `json:"node,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
	Text    string `json:"text"`
}

func runInventoryValidate(a *app, o inventoryValidateOptions) error {
	file := o.File
	if file == "" {
		file = a.cfg.Inventory
	}
	if file == "" {
		return usagef("inventory validate: give FILE or --inventory")
	}
	inv, warnings, err := inventory.Load(file)
	rep := validateReport{File: file, Problems: []validateProblem{}, Warnings: []validateProblem{}}
	for _, w := range warnings {
		rep.Warnings = append(rep.Warnings, validateProblem{Line: w.Pos.Line, Node: w.Node, Field: w.Field, Message: w.Msg, Text: w.String()})
	}
	var verr *inventory.ValidationError
	switch {
	case errors.As(err, &verr):
		for _, p := range verr.Problems {
			rep.Problems = append(rep.Problems, validateProblem{Line: p.Pos.Line, Node: p.Node, Field: p.Field, Message: p.Msg, Text: p.Error()})
		}
	case err != nil:
		// Not a validation finding: the file could not be read at all.
		return usageError(err)
	default:
		rep.Nodes = len(inv.Nodes)
	}
	rep.Valid = len(rep.Problems) == 0
	if a.jsonOutput() {
		if err := a.writeJSON(rep); err != nil {
			return err
		}
	} else {
		for _, w := range rep.Warnings {
			fmt.Fprintf(a.stdout, "warning: %s\n", w.Text)
		}
		for _, p := range rep.Problems {
			fmt.Fprintln(a.stdout, p.Text)
		}
		if rep.Valid {
			fmt.Fprintf(a.stdout, "%s: %d nodes, valid\n", file, rep.Nodes)
		} else {
			fmt.Fprintf(a.stdout, "%s: %d problems\n", file, len(rep.Problems))
		}
	}
	if !rep.Valid {
		return errSomeFailed
	}
	return nil
}

// inventoryListOptions are the options of `reprov inventory list`.
type inventoryListOptions struct {
	Selection selection
}

func newInventoryListCmd(a *app) *cobra.Command {
	var o inventoryListOptions
	cmd := &cobra.Command{
		Use:   "list [NODE-GLOB...]",
		Short: "List the selected nodes (all when nothing is selected)",
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Selection.Names = args
			return runInventoryList(a, o)
		},
	}
	addSelectionFlags(cmd, &o.Selection)
	return cmd
}

func runInventoryList(a *app, o inventoryListOptions) error {
	s := o.Selection
	if len(s.Names) == 0 && len(s.Racks) == 0 && s.Selector == "" {
		s.All = true // listing is read-only: no selection means everything
	}
	nodes, err := a.selectNodes(s)
	if err != nil {
		return err
	}
	if a.jsonOutput() {
		if nodes == nil {
			nodes = []inventory.Node{}
		}
		return a.writeJSON(nodes)
	}
	rows := make([][]string, 0, len(nodes))
	for _, n := range nodes {
		proto, host := "", ""
		if addr, err := inventory.ParseBMCAddress(n.BMC.Address); err == nil {
			proto, host = addr.Protocol, addr.Host
			if proto == "" {
				proto = "detect"
			}
			if addr.Port != 0 {
				host += ":" + strconv.Itoa(addr.Port)
			}
		}
		sshAddr := n.SSH.Address
		if sshAddr != "" && n.SSH.Port != 0 && n.SSH.Port != 22 {
			sshAddr += ":" + strconv.Itoa(n.SSH.Port)
		}
		rows = append(rows, []string{n.Name, n.Rack, proto, host, sshAddr, n.Playbook})
	}
	return a.table([]string{"NAME", "RACK", "BMC", "BMC HOST", "SSH", "PLAYBOOK"}, rows)
}

// inventoryImportOptions are the options of `reprov inventory import`.
type inventoryImportOptions struct {
	From             string
	File             string
	Format           string
	Out              string
	RackVar          string
	RackGroupPattern string
	KeepLiterals     bool
}

func newInventoryImportCmd(a *app) *cobra.Command {
	var o inventoryImportOptions
	cmd := &cobra.Command{
		Use:   "import --from ansible|netbox-csv FILE",
		Short: "Convert an Ansible inventory or a NetBox CSV export to the native format",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.File = args[0]
			return runInventoryImport(a, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.From, "from", "", "source format: ansible or netbox-csv (required)")
	f.StringVar(&o.Format, "format", "yaml", "native format to write: yaml, json or toml")
	f.StringVar(&o.Out, "out", "", "write to this file instead of stdout")
	f.StringVar(&o.RackVar, "rack-var", "", "Ansible host variable that gives the rack (default \"rack\")")
	f.StringVar(&o.RackGroupPattern, "rack-group-pattern", "", "regexp with one capture group: Ansible group name → rack (default ^rack[_-]?(.+)$)")
	f.BoolVar(&o.KeepLiterals, "keep-literals", false, "write literal passwords found in the source as plain: references (otherwise refuse)")
	return cmd
}

func runInventoryImport(a *app, o inventoryImportOptions) error {
	switch o.From {
	case "ansible", "netbox-csv":
	case "":
		return usagef("inventory import: --from is required (ansible or netbox-csv)")
	default:
		return usagef("inventory import: --from %q: want ansible or netbox-csv", o.From)
	}
	switch o.Format {
	case "yaml", "json", "toml":
	default:
		return usagef("inventory import: --format %q: want yaml, json or toml", o.Format)
	}
	inv, warnings, err := inventory.Import(o.File, o.From, inventory.ImportOptions{
		Ansible: inventory.AnsibleOptions{RackVar: o.RackVar, RackGroupPattern: o.RackGroupPattern},
	})
	a.printWarnings(warnings)
	if err != nil {
		return failedError(err)
	}
	var w io.Writer = a.stdout
	var f *os.File
	if o.Out != "" {
		f, err = os.OpenFile(o.Out, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return usagef("inventory import: %w", err)
		}
		w = f
	}
	err = inventory.WriteNativeOptions(w, inv, o.Format, inventory.WriteOptions{KeepLiterals: o.KeepLiterals})
	if f != nil {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(o.Out)
		}
	}
	if err != nil {
		return failedError(err)
	}
	if o.Out != "" {
		fmt.Fprintf(a.stderr, "wrote %d nodes to %s\n", len(inv.Nodes), o.Out)
	}
	return nil
}
