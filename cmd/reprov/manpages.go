package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// newManPagesCmd is the hidden `reprov man-pages DIR`: one man page per
// command (reprov.1, reprov-reinstall.1, …), written by cobra/doc from the
// command tree itself, so they never disagree with --help. `make install`
// runs it.
func newManPagesCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:    "man-pages DIR",
		Short:  "Write reprov's man pages (section 1) to DIR",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		// No configuration is read: packaging runs it on a build machine.
		PersistentPreRunE: func(*cobra.Command, []string) error { return nil },
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := os.MkdirAll(args[0], 0o755); err != nil {
				return usagef("man-pages: %w", err)
			}
			header := &doc.GenManHeader{Title: "REPROV", Section: "1", Source: "reprov " + buildVersion().Version, Manual: "reprov manual"}
			if err := doc.GenManTree(cmd.Root(), header, args[0]); err != nil {
				return fmt.Errorf("man-pages: %w", err)
			}
			return nil
		},
	}
}
