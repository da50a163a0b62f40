package inband_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/reprov/reprov/agent/inband"
	"github.com/reprov/reprov/agent/inband/host/fixture"
)

// TestPlanHasNoSideEffects: plan mode pushes no agent, loads no kernel
// module and writes nothing, in both agent modes.
func TestPlanHasNoSideEffects(t *testing.T) {
	for _, mode := range []string{inband.ModePush, inband.ModeCommands} {
		t.Run(mode, func(t *testing.T) {
			// No /dev/ipmi0: reading the BMC address would want modprobe.
			r := newRig(t, rigOpts{mode: mode, fixture: func(n *fixture.Node) { n.IPMIDevice = false }})
			spy := &spyConn{inner: r.dial()}
			s := r.session(spy)
			p, err := s.Plan(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !p.Connected || p.Disk.Resolved == nil || p.Disk.Resolved.Path != r.image {
				t.Fatalf("plan did not read the node: %+v", p.Disk)
			}
			if err := s.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			for _, c := range spy.commands() {
				for _, bad := range []string{"reprov-agent", "modprobe", "mkdir", "cat >", "dd if=/dev/zero", "efibootmgr -n", "bootparam set"} {
					if contains([]string{c}, bad) {
						t.Errorf("plan ran %q (%s)", c, bad)
					}
				}
			}
			for _, rec := range r.records() {
				t.Errorf("plan wrote an audit record: %+v", rec)
			}
			log := r.layout.ModprobeLog
			if log == "" {
				log = filepath.Join(r.layout.Root, "modprobe.log")
			}
			if _, err := os.Stat(log); !os.IsNotExist(err) {
				t.Errorf("plan loaded a kernel module (%s exists)", log)
			}
			r.assertUntouched()
		})
	}
}
