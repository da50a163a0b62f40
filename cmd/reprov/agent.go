package main

import (
	"github.com/spf13/cobra"

	"github.com/reprov/reprov/agent/inband/agentcmd"
)

// newAgentCmd is `reprov agent …`: the in-band steps run on the node
// itself, for runbooks. The same tree is the slim cmd/reprov-agent that the
// controller pushes. It reads no configuration (its PersistentPreRunE
// replaces the root's) and has its own -o text|json.
func newAgentCmd(a *app) *cobra.Command {
	return agentcmd.New(agentcmd.Options{Use: "agent", Version: buildVersion().Version, Logger: a.log})
}
