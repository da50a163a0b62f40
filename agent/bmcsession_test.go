package agent_test

import (
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reprov/reprov/agent"
	"github.com/reprov/reprov/agent/fleet"
	labfleet "github.com/reprov/reprov/lab/fleet"
)

// TestBMCRebootAfterTheOverrideLands: the BMC reboots itself right after
// the boot override is written (its sessions dropped, silent for 3 s).
// The engine waits it out with a new session, writes the same override
// again and power-cycles once: the node lands out-of-band, no in-band
// wipe, one power action.
func TestBMCRebootAfterTheOverrideLands(t *testing.T) {
	r := newRig(t, rigOpts{mix: []labfleet.ModelCount{{Model: labfleet.ModelIPMI, Count: 1}},
		faults: map[string][]labfleet.Fault{"ipmi-001": {labfleet.FaultBMCReboot}}})
	ctx := ctxT(t, 2*time.Minute)
	var logs strings.Builder
	rep, err := r.engine(func(c *agent.Config) { c.Log = slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, nil)) }).Reinstall(ctx, r.nodes, agent.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res := rep.Results[0]
	nr := reportOf(t, rep)["ipmi-001"]
	if res.Status != fleet.StatusOK || nr.Path != "oob" {
		t.Fatalf("ipmi-001: %s by path %q (%s), want landed oob\n%s\n%s", res.Status, nr.Path, res.Error, r.events, logs.String())
	}
	n := r.lab.Node("ipmi-001")
	if got := n.IPMIBMC().Reboots(); got != 1 {
		t.Errorf("the BMC rebooted %d times, want 1 (the fault fired)", got)
	}
	power, wipes := 0, 0
	for _, rec := range checkAudit(t, r.stateDir+"/audit.jsonl") {
		switch {
		case rec.Phase == "intent" && strings.HasPrefix(rec.Action, agent.ActionPowerPrefix):
			power++
		case rec.Phase == "intent" && strings.Contains(rec.Action, "wipe"):
			wipes++
		}
	}
	if power != 1 || wipes != 0 {
		t.Errorf("%d power actions and %d wipes audited, want 1 and 0", power, wipes)
	}
	if s := n.Status(); s.BootCount != 1 {
		t.Errorf("the node booted %d times, want 1", s.BootCount)
	}
}

// syncWriter serialises writes of concurrent loggers.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
