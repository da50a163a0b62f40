package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/lab/fleet"
)

// TestCLIThroughServe runs plan, jobs show|cancel, restore, audit and
// quirks through a `reprov serve` (--server) and in-process (--local) on
// the same store, and wants the same output and exit codes; restore and
// cancel act through the controller.
func TestCLIThroughServe(t *testing.T) {
	c := newLabCLI(t, []fleet.ModelCount{{Model: fleet.ModelIPMI, Count: 2}, {Model: fleet.ModelDL360G7, Count: 2}}, time.Second)
	ctx := ctxFor(t, 4*time.Minute)
	client, token := c.operatorClient(ctx)
	addr := freeAddr(t)
	url := "http://" + addr
	var log syncBuffer
	serve := c.startServe(ctx, addr, &log)
	srv := func(args ...string) (int, string, string) {
		return client(ctx, append([]string{"--server", url}, args...)...)
	}
	local := func(args ...string) (int, string, string) {
		return client(ctx, append([]string{"--local"}, args...)...)
	}
	same := func(want int, args ...string) string {
		t.Helper()
		cs, os, es := srv(args...)
		cl, ol, el := local(args...)
		if cs != want || cl != want {
			t.Errorf("%v: exit %d through the server, %d in-process; want %d\nserver:\n%s\nlocal:\n%s", args, cs, cl, want, es, el)
		}
		if os != ol {
			t.Errorf("%v: output differs\nthrough the server:\n%s\nin-process:\n%s", args, os, ol)
		}
		return os
	}

	// A run through the server: a board learned to ignore the override,
	// boot sectors saved, audit records.
	wiped := c.lab.NodesOf(fleet.ModelDL360G7)[1]
	orig := wiped.BootSector()
	if code, out, errOut := srv("reinstall", "--all", "--yes"); code != exitOK {
		t.Fatalf("reinstall through the server: exit %d\n%s\n%s\n%s", code, out, errOut, log.String())
	}

	// plan
	if out := same(exitOK, "plan", "--offline", "--all"); !strings.Contains(out, "ipmi-001") || !strings.Contains(out, wiped.Name()) {
		t.Errorf("plan --offline through the server:\n%s", out)
	}
	same(exitOK, "-o", "json", "plan", "--offline", "ipmi-*")
	same(exitUsage, "plan", "nosuch-*")
	if code, out, errOut := srv("reinstall", "--dry-run", "ipmi-001"); code != exitOK || !strings.Contains(out, "dry run of reinstall") || !strings.Contains(out, "ipmi-001") {
		t.Errorf("reinstall --dry-run through the server (the controller reads the BMC): exit %d\n%s\n%s", code, out, errOut)
	}

	// jobs show
	same(exitOK, "jobs", "show", wiped.Name())
	if out := same(exitOK, "-o", "json", "jobs", "show", wiped.Name()); !strings.Contains(out, `"saved_boot_sectors": [`) || !strings.Contains(out, `"steps": [`) {
		t.Errorf("jobs show -o json through the server:\n%s", out)
	}
	same(exitFailed, "jobs", "show", "nosuch")
	same(exitFailed, "jobs", "cancel", "ipmi-001") // no active job

	// audit
	if out := same(exitOK, "-o", "json", "audit", "--limit", "0"); !strings.Contains(out, `"phase": "intent"`) {
		t.Errorf("audit through the server has no intent:\n%s", out)
	}
	same(exitOK, "audit", wiped.Name())
	same(exitOK, "-o", "json", "audit", "--run", "1", "--rack", "*")
	same(exitUsage, "audit", "nosuch-*")

	// quirks
	if out := same(exitOK, "-o", "json", "quirks", "list"); !strings.Contains(out, store.QuirkIgnoresOOBPXE) {
		t.Errorf("no learned quirk listed through the server:\n%s", out)
	}
	same(exitOK, "quirks", "list", "--quirk", store.QuirkIgnoresOOBPXE, "*")

	// restore through the controller: it holds the saved copy and the SSH
	// access (as TestRestorePutsTheSavedBootSectorBack, in-process).
	zeroed := wiped.BootSector()
	if bytes.Equal(zeroed, orig) {
		t.Fatalf("%s was not wiped", wiped.Name())
	}
	if err := writeSector(ctx, wiped, orig); err != nil {
		t.Fatal(err)
	}
	wiped.PowerOff()
	wiped.PowerOn()
	if _, err := wiped.Wait(ctx, func(s fleet.Status) bool { return s.OSUp }); err != nil {
		t.Fatal(err)
	}
	if err := writeSector(ctx, wiped, zeroed); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := srv("restore", wiped.Name()); code != exitUsage || !strings.Contains(errOut, "stdin is not a terminal") {
		t.Errorf("restore through the server without --yes: exit %d\n%s", code, errOut)
	}
	if code, _, errOut := srv("restore", wiped.Name(), "--yes", "--file", "/nonexistent"); code != exitUsage || !strings.Contains(errOut, "--local") {
		t.Errorf("restore --file through the server: exit %d\n%s", code, errOut)
	}
	same(exitUsage, "restore", "nosuch", "--yes")
	code, out, errOut := srv("restore", wiped.Name(), "--yes")
	if code != exitOK || !strings.Contains(out, "restored 512 bytes to /dev/sda") || !strings.Contains(out, "(before: zero), verified true") {
		t.Fatalf("restore through the server: exit %d\n%s\n%s\n%s", code, out, errOut, log.String())
	}
	if !bytes.Equal(wiped.BootSector(), orig) {
		t.Error("the boot sector is not the saved one after restore through the server")
	}

	// quirks clear through the server, then none left.
	if code, out, errOut := srv("quirks", "clear", "*"); code != exitOK || !strings.Contains(out, "forgot "+store.QuirkIgnoresOOBPXE) {
		t.Errorf("quirks clear through the server: exit %d\n%s\n%s", code, out, errOut)
	}
	if out := same(exitOK, "-o", "json", "quirks", "list"); strings.TrimSpace(out) != "[]" {
		t.Errorf("quirks left after clear:\n%s", out)
	}

	// jobs cancel through the server stops a job under way.
	st := c.storeWhenReady(ctx)
	defer st.Close()
	type result struct {
		code     int
		out, err string
	}
	done := make(chan result, 1)
	go func() {
		code, out, errOut := srv("reinstall", "ipmi-002", "--yes")
		done <- result{code, out, errOut}
	}()
	waitFor(ctx, t, "a job of ipmi-002 under way", func() bool {
		jobs, err := st.NodeJobs(ctx, store.JobFilter{Node: "ipmi-002", States: []store.JobState{store.JobQueued, store.JobRunning}})
		return err == nil && len(jobs) > 0
	})
	if code, out, errOut := srv("jobs", "cancel", "ipmi-002", "--reason", "test"); code != exitOK || !strings.Contains(out, "node ipmi-002: job ") {
		t.Errorf("jobs cancel through the server: exit %d\n%s\n%s", code, out, errOut)
	}
	res := <-done
	if res.code != exitFailed || !strings.Contains(res.out, "cancelled") {
		t.Errorf("the cancelled reinstall: exit %d, want 1 with the node cancelled\n%s\n%s", res.code, res.out, res.err)
	}

	stopServe(t, serve, &log)
	if strings.Contains(log.String(), token) {
		t.Error("the API token appears in serve's log")
	}
	c.noSecrets(log.String())
}
