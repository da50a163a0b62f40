package main

import (
	_ "embed"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
)

//go:embed examples/fleet.yaml
var exampleInventory []byte

// demoOptions are the options of `reprov demo`.
type demoOptions struct{}

func newDemoCmd(a *app) *cobra.Command {
	var o demoOptions
	return &cobra.Command{
		Use:   "demo",
		Short: "Run the main job on an embedded example rack (nothing real is touched)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(a, o)
		},
	}
}

// runDemo loads and lists the embedded example inventory in a fresh
// temporary state dir. The simulated rack and the reinstall engine replace
// this with a full reinstall run.
func runDemo(a *app, _ demoOptions) error {
	dir, err := os.MkdirTemp("", "reprov-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "fleet.yaml")
	if err := os.WriteFile(path, exampleInventory, 0o600); err != nil {
		return err
	}
	a.cfg.Inventory = path
	a.cfg.StateDir = filepath.Join(dir, "state")
	fmt.Fprintf(a.stderr, "demo: example inventory (state dir %s)\n", a.cfg.StateDir)
	if err := runInventoryValidate(a, inventoryValidateOptions{File: path}); err != nil {
		return err
	}
	return runInventoryList(a, inventoryListOptions{Selection: selection{All: true}})
}
