package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/agent/web"
	"github.com/reprov/reprov/agent/web/webtest"
)

func TestStatusCountsRacksByState(t *testing.T) {
	c := newCLI(t)
	nodes := webtest.Fleet()
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite://"+filepath.Join(c.env["REPROV_STATE_DIR"], "reprov.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := webtest.Seed(ctx, st, "tester", nodes); err != nil {
		t.Fatal(err)
	}
	st.Close()
	var inv strings.Builder
	inv.WriteString("nodes:\n")
	for i, n := range nodes {
		fmt.Fprintf(&inv, "  - name: %s\n    rack: %s\n    bmc: {address: \"ipmi://127.0.0.1:%d\"}\n", n.Name, n.Rack, 6230+i)
	}
	c.env["REPROV_INVENTORY"] = c.write("fleet.yaml", inv.String())

	code, out, errOut := c.run("status", "-o", "json")
	if code != exitOK {
		t.Fatalf("status -o json: exit %d\n%s", code, errOut)
	}
	var sum web.Summary
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := web.Counts{"landed": 6, "running": 3, "failed": 3, "queued": 2, "interrupted": 1, "cancelled": 1, "idle": 2}
	if sum.Total != 18 || fmt.Sprint(sum.States) != fmt.Sprint(want) {
		t.Errorf("totals %d %v, want 18 %v", sum.Total, sum.States, want)
	}
	if len(sum.Racks) != 3 || sum.Racks[2].Rack != "r3" || fmt.Sprint(sum.Racks[2].States) != fmt.Sprint(web.Counts{
		"landed": 2, "running": 1, "failed": 1, "interrupted": 1, "cancelled": 1}) {
		t.Errorf("racks = %+v", sum.Racks)
	}
	if len(sum.Runs) != 1 || sum.Runs[0].Total != 16 {
		t.Errorf("runs = %+v", sum.Runs)
	}

	code, out, errOut = c.run("status")
	if code != exitOK {
		t.Fatalf("status: exit %d\n%s", code, errOut)
	}
	for _, line := range []string{
		"RACK   NODES  RUNNING  QUEUED  FAILED  INTERRUPTED  CANCELLED  LANDED  IDLE",
		"r1     6      1        1       1       0            0          2       1",
		"r3     6      1        0       1       1            1          2       0",
		"TOTAL  18     3        2       3       1            1          6       2",
		"run 1 (running, webtest, by tester): 11/16 done, running 3, queued 2, failed 3, interrupted 1, cancelled 1, landed 6",
	} {
		if !strings.Contains(out, line) {
			t.Errorf("status lacks %q:\n%s", line, out)
		}
	}

	// Without the inventory, only the nodes the store knows.
	if code, out, _ := c.run("status", "--no-inventory", "-o", "json"); code != exitOK || !strings.Contains(out, `"total": 16`) {
		t.Errorf("status --no-inventory: exit %d\n%s", code, out)
	}
}
