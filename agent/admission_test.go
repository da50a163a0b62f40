package agent_test

import (
	"testing"
	"time"

	"github.com/reprov/reprov/agent"
)

// TestAdmissionSnoozeBacksOff: a job that a run's limits keep turning away
// waits longer each time — 0.25 to 0.5 s at first, doubling, never more
// than 20 s — so that thousands of waiting jobs do not keep the store busy
// while nodes boot (the end of a node wakes one at once instead).
func TestAdmissionSnoozeBacksOff(t *testing.T) {
	for n, base := range []time.Duration{
		250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second,
		4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second, 10 * time.Second,
	} {
		for range 50 {
			if d := agent.AdmissionSnooze(n); d < base || d >= 2*base {
				t.Fatalf("after %d snoozes: %v, want in [%v, %v)", n, d, base, 2*base)
			}
		}
	}
	if d := agent.AdmissionSnooze(1 << 20); d < 10*time.Second || d >= 20*time.Second {
		t.Fatalf("after many snoozes: %v, want in [10s, 20s)", d)
	}
}
