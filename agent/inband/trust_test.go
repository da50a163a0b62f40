package inband_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/reprov/reprov/agent/inband"
	"github.com/reprov/reprov/agent/inband/host/fixture"
	"github.com/reprov/reprov/agent/inband/steps"
)

// TestPlanHasNoSideEffects: plan mode loads no kernel module, writes
// nothing, and — in push mode too — copies no agent to the node: it reads
// it with read-only POSIX commands through the real sshd: every command
// it sent is checked (no mkdir, no write, no agent). The node here is this
// machine, whose temporary directories other tests of the package push
// agents into at the same time, so they are not compared (CI failed on
// that race).
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
			if p.Identity.Check == nil || p.Identity.Check.Err() != nil {
				t.Fatalf("plan did not check the identity: %+v", p.Identity)
			}
			if len(p.Disk.Ranges) == 0 {
				t.Fatalf("plan did not read the ranges it would zero: %+v", p.Disk)
			}
			bad := []string{"modprobe -- ", "modprobe.log", "dd if=/dev/zero", " of=", "efibootmgr -n", "bootparam set",
				"reprov-agent", "mkdir", "cat >", "chmod", "rm -rf", "> ", ">>"}
			for _, c := range spy.commands() {
				for _, b := range bad {
					if strings.Contains(c, b) && !strings.Contains(c, ">/dev/null") {
						t.Errorf("plan ran %q (%s)", c, b)
					}
				}
			}
			if err := s.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			for _, rec := range r.records() {
				t.Errorf("plan wrote an audit record: %+v", rec)
			}
			if mode == inband.ModePush {
				var steps []string
				for _, st := range p.Steps {
					steps = append(steps, st.Step)
				}
				// The plan still shows the push the real run would make.
				if len(steps) == 0 || steps[0] != "push-agent" {
					t.Errorf("push-mode plan steps %v, want push-agent first", steps)
				}
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

// TestRestoreChecksIdentityAndAttempts: restore runs the identity interlock
// first; a second pass writes its own saved file (holding the zeroes of
// the first), which restore refuses and LatestSaved skips.
func TestRestoreChecksIdentityAndAttempts(t *testing.T) {
	attempt := 0
	r := newRig(t, rigOpts{config: func(c *inband.Config) { attempt++; c.Attempt = strconv.Itoa(attempt) }})
	ctx := context.Background()
	first, err := r.session(nil).Reinstall(ctx)
	if err != nil {
		t.Fatalf("first pass: %v", err)
	}
	// The old OS came back (the board ignored the override): a second pass.
	second, err := r.session(nil).Reinstall(ctx)
	if err != nil {
		t.Fatalf("second pass: %v", err)
	}
	if first.SavedFile == second.SavedFile {
		t.Fatalf("both passes saved to %s", first.SavedFile)
	}
	if !inband.RestorableSaved(first.SavedFile) || inband.RestorableSaved(second.SavedFile) {
		t.Fatalf("restorable: first %t, second %t; want the first only", inband.RestorableSaved(first.SavedFile), inband.RestorableSaved(second.SavedFile))
	}
	if got, err := inband.LatestSaved(r.stateDir, r.node.Name); err != nil || got != first.SavedFile {
		t.Fatalf("latest restorable save %q %v, want the first pass's %s", got, err, first.SavedFile)
	}
	zeroed := r.read()
	if _, err := r.session(nil).Restore(ctx, second.SavedFile, true); !errors.Is(err, steps.ErrRestoreRefused) || !strings.Contains(err.Error(), "only zeroes") {
		t.Fatalf("restore of the zero copy: %v, want a refusal", err)
	}

	// The wrong node answers at the address: the identity check refuses.
	good := r.node
	r.node.Serial = "OTHER-SERIAL"
	r.node.MACs = []string{"02:00:00:00:00:99"}
	_, err = r.session(nil).Restore(ctx, first.SavedFile, true)
	var ie *steps.IdentityError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "restore refused before anything was written") {
		t.Fatalf("restore on the wrong node: %v, want an identity error", err)
	}
	if !bytes.Equal(r.read(), zeroed) {
		t.Fatal("a restore refused for identity wrote to the disk")
	}

	r.node = good
	rr, err := r.session(nil).Restore(ctx, first.SavedFile, false)
	if err != nil || !rr.Verified || !bytes.Equal(r.read(), r.orig) {
		t.Fatalf("restore on the right node: %+v %v", rr, err)
	}
}
