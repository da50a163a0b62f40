package playbooks

import (
	"net/url"
	"slices"
	"strings"

	"github.com/reprov/reprov/inventory"
)

// NodeEnv returns the hook environment of node n in run: its name, rack,
// addresses and MACs, with the variables of n's own credential references
// withheld. A runner that knows the whole inventory should withhold all of
// them: env.Withhold = SecretEnvNames(inv.Nodes...). Set Result (and
// Reason) on the copy used for post-hooks.
func NodeEnv(n *inventory.Node, run string) HookEnv {
	return HookEnv{
		Node:       n.Name,
		Rack:       n.Rack,
		BMCAddress: withoutUserinfo(n.BMC.Address),
		SSHAddress: n.SSH.Address,
		MACs:       slices.Clone(n.MACs),
		Run:        run,
		Withhold:   SecretEnvNames(*n),
	}
}

// SecretEnvNames returns the environment variables named by the nodes'
// env:NAME credential references (BMC and SSH passwords), sorted and
// without duplicates: the variables a hook must not inherit. Pass every
// node of the inventory to withhold all of them from every hook.
func SecretEnvNames(nodes ...inventory.Node) []string {
	var names []string
	for _, n := range nodes {
		for _, s := range []inventory.Secret{n.BMC.Password, n.SSH.Password} {
			if s.Kind() != "env" {
				continue
			}
			if name, ok := strings.CutPrefix(s.Ref(), "env:"); ok && name != "" {
				names = append(names, name)
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// withoutUserinfo drops a user:password@ part from a URL-shaped address.
func withoutUserinfo(addr string) string {
	if !strings.Contains(addr, "@") {
		return addr
	}
	u, err := url.Parse(addr)
	if err != nil || u.User == nil {
		// Not a URL we understand but it has an "@": keep only what
		// follows the last one rather than risk passing a password.
		if i := strings.LastIndex(addr, "@"); i >= 0 {
			scheme := ""
			if j := strings.Index(addr, "://"); j >= 0 && j < i {
				scheme = addr[:j+3]
			}
			return scheme + addr[i+1:]
		}
		return addr
	}
	u.User = nil
	return u.String()
}
