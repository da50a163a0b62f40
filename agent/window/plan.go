package window

import (
	"fmt"

	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/inventory"
)

// Node is a node a window selected: its name and rack.
type Node struct {
	Name string
	Rack string
}

// Plan orders an occurrence's nodes into batches, rack-aware: the racks
// take turns (the first node of each rack, then the second of each…, racks
// and nodes in the order given), so a batch spreads over as many racks as
// it can instead of taking one rack down whole; the order is then cut into
// batches of batch.Of(len(nodes)) nodes (all in one batch when batch is
// zero). Batches are numbered from 1.
func Plan(nodes []Node, batch Amount) []store.WindowNode {
	var racks []string
	byRack := map[string][]Node{}
	for _, n := range nodes {
		if _, ok := byRack[n.Rack]; !ok {
			racks = append(racks, n.Rack)
		}
		byRack[n.Rack] = append(byRack[n.Rack], n)
	}
	order := make([]Node, 0, len(nodes))
	for i := 0; len(order) < len(nodes); i++ {
		for _, r := range racks {
			if rs := byRack[r]; i < len(rs) {
				order = append(order, rs[i])
			}
		}
	}
	size := batch.Of(len(nodes))
	if size <= 0 {
		size = max(len(nodes), 1)
	}
	out := make([]store.WindowNode, len(order))
	for i, n := range order {
		out[i] = store.WindowNode{Node: n.Name, Rack: n.Rack, Batch: i/size + 1, Position: i + 1, State: store.WindowNodePending}
	}
	return out
}

// SelectNodes resolves a window's selection in an inventory and checks
// its playbook: a window's --playbook must be the playbook of every node
// it selects (workers work a node only with its inventory entry).
func SelectNodes(inv *inventory.Inventory, sp Spec) ([]inventory.Node, error) {
	sel := sp.Selection
	nodes, err := inv.Select(inventory.Selector{Names: sel.Names, Racks: sel.Racks, Labels: sel.Selector, All: sel.All})
	if err != nil {
		return nil, err
	}
	if sp.Playbook != "" {
		for _, n := range nodes {
			if n.Playbook != sp.Playbook {
				return nil, fmt.Errorf("--playbook %s: node %s has playbook %q: a window reinstalls nodes with their inventory's playbook (select the nodes whose playbook is %s, e.g. with --selector)",
					sp.Playbook, n.Name, n.Playbook, sp.Playbook)
			}
		}
	}
	return nodes, nil
}
