package main

import (
	"github.com/spf13/cobra"
)

// newRootCmd builds the reprov command tree.
func newRootCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "reprov",
		Short: "Reinstall bare-metal fleets: network boot through the BMC, in-band where boards ignore it, landing proven",
		Long: `reprov makes the selected nodes boot from the network so that they land on the
netboot server: a one-time PXE override through the BMC (IPMI or Redfish) and a
power cycle, an in-band SSH step for boards that ignore the override, and proof
that each node landed — or exactly why not.

Exit codes: 0 success; 1 some node failed (or validate found errors);
2 usage or configuration error; 3 interrupted.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return a.setup(cmd)
		},
	}
	// --version prints what `reprov version` prints (no configuration read).
	root.Version = buildVersion().String()
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	pf := root.PersistentFlags()
	pf.StringVar(&a.configPath, "config", "", "config file (default: ./reprov.yaml, $XDG_CONFIG_HOME/reprov/config.yaml, /etc/reprov/config.yaml)")
	pf.String("inventory", "", "node inventory file (env REPROV_INVENTORY)")
	pf.String("state-dir", "", "state directory: jobs, audit log, learned quirks (env REPROV_STATE_DIR)")
	pf.StringP("output", "o", "table", "output format: table, wide, json or yaml (env REPROV_OUTPUT)")
	pf.BoolVar(&a.noHeaders, "no-headers", false, "tables without their header line, for scripts")
	pf.String("log-level", "info", "log level: debug, info, warn, error (env REPROV_LOG_LEVEL)")
	pf.String("server", "", "go through reprov serve's API at this URL, or the first of several comma-separated that answers (env REPROV_SERVER_URL; server.url)")
	pf.Bool("local", false, "work in-process even when server.url is set")

	root.AddCommand(
		newVersionCmd(a),
		newInventoryCmd(a),
		newPowerCmd(a),
		newBootdevCmd(a),
		newBMCCmd(a),
		newReinstallCmd(a),
		newPlanCmd(a),
		newRestoreCmd(a),
		newJobsCmd(a),
		newStatusCmd(a),
		newAuditCmd(a),
		newPlaybooksCmd(a),
		newDemoCmd(a),
		newAgentCmd(a),
		newLabCmd(a),
		newTokenCmd(a),
		newServeCmd(a),
		newManPagesCmd(a),
		newQuirksCmd(a),
		newWindowCmd(a),
	)
	addCompletions(root, a)
	return root
}
