package agent_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/reprov/reprov/agent"
	"github.com/reprov/reprov/agent/audit"
	"github.com/reprov/reprov/agent/fleet"
	labfleet "github.com/reprov/reprov/lab/fleet"
)

// TestSwappedSSHAddressesWipeNothing: the inventory has two nodes' SSH
// addresses swapped (a copy-paste slip), so each node's SSH address reaches
// the other machine. The identity interlock reads the machine that answers
// (serial, MACs, BMC address) before anything is written: both nodes stop
// with a reason naming the node and the mismatch; no BMC write, no wipe,
// no reboot, both machines still boot their old OS.
func TestSwappedSSHAddressesWipeNothing(t *testing.T) {
	r := newRig(t, rigOpts{mix: []labfleet.ModelCount{{Model: labfleet.ModelDL360G7, Count: 2}}})
	a, b := &r.nodes[0], &r.nodes[1]
	a.SSH.Address, b.SSH.Address = b.SSH.Address, a.SSH.Address
	a.SSH.Port, b.SSH.Port = b.SSH.Port, a.SSH.Port
	a.SSH.KnownHosts, b.SSH.KnownHosts = b.SSH.KnownHosts, a.SSH.KnownHosts
	for i := range r.nodes {
		r.nodes[i].Playbook = "hp-dl360-g7" // in-band first
	}
	ctx := ctxT(t, time.Minute)
	rep, err := r.engine(func(c *agent.Config) { c.Inventory = r.nodes }).Reinstall(ctx, r.nodes, agent.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			t.Logf("events:\n%s", r.events)
		}
	}()
	for _, res := range rep.Results {
		if res.Status != fleet.StatusFailed || res.Reason != agent.ReasonIdentityMismatch ||
			!strings.Contains(res.Error, res.Node) || !strings.Contains(res.Error, "serial") {
			t.Errorf("%s: %s %q (%s), want failed %q naming the node and the serial", res.Node, res.Status, res.Reason, res.Error, agent.ReasonIdentityMismatch)
		}
		n := r.lab.Node(res.Node)
		if s := n.Status(); s.BootCount != 0 || !n.Bootable() {
			t.Errorf("%s: booted %d times, bootable %t: want untouched", res.Node, s.BootCount, n.Bootable())
		}
	}
	for _, rec := range checkAudit(t, filepath.Join(r.stateDir, "audit.jsonl")) {
		if rec.Phase == audit.PhaseIntent && changesNode(rec.Action) {
			t.Errorf("a write with swapped SSH addresses: %+v", rec)
		}
	}
}
