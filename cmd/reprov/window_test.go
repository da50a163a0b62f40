package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/agent/window"
	"github.com/reprov/reprov/lab/fleet"
)

// TestWindowOnTheLabStartsNoNodeAfterItsCutoff is the live window: a
// one-off window starting 5 s from now, 10 s long with a 3 s cutoff, over
// 40 lab nodes whose firmware takes 2 to 4 s to boot, in batches of 8, worked by
// a real `reprov serve`. No node is started after the cutoff (the jobs'
// start and the step record), and every node left is reported not started
// with the cutoff as its reason.
func TestWindowOnTheLabStartsNoNodeAfterItsCutoff(t *testing.T) {
	c := newLabCLI(t, []fleet.ModelCount{{Model: fleet.ModelIPMI, Count: 40}}, 2*time.Second,
		func(cfg *fleet.Config) { cfg.BootDelaySpread = 2 * time.Second })
	ctx := ctxFor(t, 4*time.Minute)

	code, tokOut, tokErr := c.run(ctx, "token", "create", "--role", "viewer", "--name", "ci-viewer")
	lines := strings.Split(strings.TrimSpace(tokOut), "\n")
	token := lines[len(lines)-1]
	if code != exitOK || !strings.HasPrefix(token, store.TokenPrefix) {
		t.Fatalf("token create: exit %d\n%s\n%s", code, tokOut, tokErr)
	}
	var log syncBuffer
	apiAddr := freeAddr(t)
	serve := c.startServe(ctx, apiAddr, &log)
	defer stopServe(t, serve, &log)

	at := time.Now().Add(5 * time.Second).Truncate(time.Second)
	code, out, errOut := c.run(ctx, "window", "create", "live", "--all", "--at", at.UTC().Format(time.RFC3339),
		"--duration", "10s", "--cutoff", "3s", "--batch", "8")
	if code != exitOK {
		t.Fatalf("window create: exit %d\n%s\n%s", code, out, errOut)
	}
	cutoff := at.Add(7 * time.Second)

	st := c.store()
	var occ store.Occurrence
	for {
		occs, err := st.Occurrences(ctx, "live", 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(occs) == 1 && !occs[0].State.Open() {
			occ = occs[0]
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the window's occurrence never ended: %+v\n%s", occs, log.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
	if !occ.Cutoff.Equal(cutoff) || occ.State != store.OccurrenceDone {
		t.Fatalf("occurrence %+v, want done with cutoff %s", occ, cutoff)
	}

	code, out, errOut = c.run(ctx, "-o", "json", "window", "runs", "live")
	var reps []window.OccurrenceReport
	if err := json.Unmarshal([]byte(out), &reps); code != exitOK || err != nil || len(reps) != 1 || len(reps[0].Nodes) != 40 {
		t.Fatalf("window runs: exit %d, %v\n%s\n%s", code, err, out, errOut)
	}
	reason := store.WindowCutoffReason(cutoff)
	started, notStarted := 0, 0
	for _, n := range reps[0].Nodes {
		var steps []store.Step
		if n.JobID != 0 {
			j, err := st.NodeJob(ctx, n.JobID)
			if err != nil {
				t.Fatal(err)
			}
			if !j.Started.IsZero() {
				started++
				if j.Started.After(cutoff) {
					t.Errorf("node %s started at %s, after the cutoff %s", n.Node, j.Started.Format(time.RFC3339Nano), cutoff)
				}
			}
			if steps, err = st.Steps(ctx, n.JobID); err != nil {
				t.Fatal(err)
			}
			if len(steps) > 0 && (j.Started.IsZero() || steps[0].Time.Before(j.Started)) {
				t.Errorf("node %s has step records without having been started", n.Node)
			}
		}
		if n.State == store.WindowNodeNotStarted {
			notStarted++
			if n.Reason != reason || len(steps) != 0 {
				t.Errorf("node %s not started: %q with %d step records; want %q and none", n.Node, n.Reason, len(steps), reason)
			}
		} else if n.State != store.WindowNodeState(store.JobLanded) {
			t.Errorf("node %s is %s (%s), want landed or not started", n.Node, n.State, n.Reason)
		}
	}
	if started == 0 || notStarted == 0 || started+notStarted != 40 {
		t.Fatalf("%d started, %d not started; want both, 40 in all\n%s", started, notStarted, out)
	}
	code, table, _ := c.run(ctx, "window", "runs", "live", "--nodes")
	if code != exitOK || !strings.Contains(table, "not_started") || !strings.Contains(table, "not started: the window's cutoff passed at") {
		t.Errorf("window runs --nodes:\n%s", table)
	}
	// The same answer through the API (a viewer token reads it).
	getenv := func(k string) string {
		switch k {
		case "REPROV_SERVER_TOKEN":
			return "env:TEST_REPROV_TOKEN"
		case "TEST_REPROV_TOKEN":
			return token
		}
		return c.getenv(k)
	}
	var viaAPI, apiErr syncBuffer
	if code := runAllCmds(ctx, []string{"--config", c.config, "--server", "http://" + apiAddr, "-o", "json", "window", "runs", "live"},
		strings.NewReader(""), &viaAPI, &apiErr, getenv); code != exitOK || viaAPI.String() != out {
		t.Errorf("window runs through the API: exit %d\n%s\n%s\nfrom the store:\n%s", code, viaAPI.String(), apiErr.String(), out)
	}
	t.Logf("%d nodes started before the cutoff, %d not started", started, notStarted)
}
