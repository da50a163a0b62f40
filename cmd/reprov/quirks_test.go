package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/reprov/reprov/agent/store"
)

// TestQuirksListAndClear: learned quirks are listed with their evidence and
// cleared by node or by model; clear without a target is a usage error.
func TestQuirksListAndClear(t *testing.T) {
	c := newCLI(t)
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite://"+filepath.Join(c.env["REPROV_STATE_DIR"], "reprov.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []store.Quirk{
		{Node: "dl-001", Model: "dl360g7", Quirk: store.QuirkIgnoresOOBPXE, Evidence: json.RawMessage(`{"boot_id":"same"}`)},
		{Node: "dl-002", Model: "dl360g7", Quirk: store.QuirkIgnoresOOBPXE},
		{Node: "web-001", Model: "r640", Quirk: store.QuirkIgnoresOOBPXE},
	} {
		if err := st.LearnQuirk(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()

	code, out, errOut := c.run("quirks", "list")
	if code != exitOK || len(strings.Split(strings.TrimSpace(out), "\n")) != 4 || !strings.Contains(out, `{"boot_id":"same"}`) {
		t.Fatalf("quirks list: exit %d\n%s%s", code, out, errOut)
	}
	if _, out, _ = c.run("quirks", "list", "--model", "dl360g7", "-o", "json"); strings.Count(out, `"node"`) != 2 {
		t.Errorf("quirks list --model dl360g7: want 2 quirks:\n%s", out)
	}
	if code, _, errOut = c.run("quirks", "clear"); code != exitUsage || !strings.Contains(errOut, "--model") {
		t.Errorf("quirks clear without a target: exit %d, want 2: %s", code, errOut)
	}
	code, out, _ = c.run("quirks", "clear", "web-*")
	if code != exitOK || !strings.Contains(out, "node web-001: forgot ignores-oob-pxe") {
		t.Errorf("quirks clear web-*: exit %d\n%s", code, out)
	}
	code, out, _ = c.run("quirks", "clear", "--model", "dl360g7")
	if code != exitOK || strings.Count(out, "forgot") != 2 {
		t.Errorf("quirks clear --model: exit %d\n%s", code, out)
	}
	if _, out, _ = c.run("quirks", "list", "--no-headers"); strings.TrimSpace(out) != "" {
		t.Errorf("quirks remain after clearing all:\n%s", out)
	}
}
