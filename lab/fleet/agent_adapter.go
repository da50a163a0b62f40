package fleet

import (
	"context"
	"io"

	"github.com/reprov/reprov/agent/inband/agentcmd"
	"github.com/reprov/reprov/agent/inband/host"
)

// runAgent runs a pushed reprov-agent's command line on the node: the very
// `reprov agent` command tree (agentcmd) with this node's virtual Host,
// printing the same versioned JSON results (docs/inband.md). The tree keeps
// no local files when given a Host: the controller passes --no-audit,
// --saved-sha256 and --from -, as it does for a real node.
//
// A pushed reprov (the controller pushes itself when no reprov-agent build
// is found) is run as `reprov agent STEP …`: the leading "agent" is the
// same tree.
func (n *Node) runAgent(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "agent" {
		args = args[1:]
	}
	cmd := agentcmd.New(agentcmd.Options{
		Use:     "reprov-agent",
		Version: "lab",
		Host:    func() (host.Host, error) { return &vhost{n: n}, nil },
	})
	return agentcmd.Main(ctx, cmd, args, stdin, stdout, stderr)
}
