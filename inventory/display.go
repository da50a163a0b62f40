package inventory

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrNoBMCAddress is returned by Node.BMCAddress for a node without one.
var ErrNoBMCAddress = errors.New("no bmc.address")

// BMCAddress parses the node's bmc.address.
func (n Node) BMCAddress() (BMCAddress, error) {
	if n.BMC.Address == "" {
		return BMCAddress{}, fmt.Errorf("node %s: %w", n.Name, ErrNoBMCAddress)
	}
	a, err := ParseBMCAddress(n.BMC.Address)
	if err != nil {
		return BMCAddress{}, fmt.Errorf("node %s: bmc.address: %w", n.Name, err)
	}
	return a, nil
}

// Node returns the node with this name.
func (inv *Inventory) Node(name string) (Node, bool) {
	for i := range inv.Nodes {
		if inv.Nodes[i].Name == name {
			return inv.Nodes[i], true
		}
	}
	return Node{}, false
}

// Racks returns the racks of the inventory, sorted, without duplicates.
func (inv *Inventory) Racks() []string {
	var racks []string
	for i := range inv.Nodes {
		if r := inv.Nodes[i].Rack; r != "" {
			racks = append(racks, r)
		}
	}
	slices.Sort(racks)
	return slices.Compact(racks)
}

// TableHeader returns the column names of TableRow.
func TableHeader() []string {
	return []string{"NAME", "RACK", "BMC", "SSH", "MACS", "PLAYBOOK", "LABELS"}
}

// TableRow returns the node as a row for `reprov inventory list`: name,
// rack, BMC address, SSH user@address[:port], MACs, playbook and labels
// (k=v, sorted). Empty cells are "-". It contains no credential.
func (n Node) TableRow() []string {
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	ssh := n.SSH.Address
	if ssh != "" {
		if strings.Contains(ssh, ":") && n.SSH.Port != 0 {
			ssh = "[" + ssh + "]"
		}
		if n.SSH.User != "" {
			ssh = n.SSH.User + "@" + ssh
		}
		if n.SSH.Port != 0 {
			ssh = fmt.Sprintf("%s:%d", ssh, n.SSH.Port)
		}
	}
	keys := make([]string, 0, len(n.Labels))
	for k := range n.Labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	labels := make([]string, len(keys))
	for i, k := range keys {
		labels[i] = k + "=" + n.Labels[k]
	}
	return []string{
		n.Name, dash(n.Rack), dash(n.BMC.Address), dash(ssh),
		dash(strings.Join(n.MACs, ",")), dash(n.Playbook), dash(strings.Join(labels, ",")),
	}
}
