package agent_test

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/reprov/reprov/agent"
	"github.com/reprov/reprov/agent/fleet"
	"github.com/reprov/reprov/agent/store"
)

// TestSummaryGroupsHaveOneShape: in JSON every group of nodes — failed and
// skipped by reason, interrupted, resumed, learned — is a list of
// {reason, count, nodes}, and a list with no node is [] (never null).
func TestSummaryGroupsHaveOneShape(t *testing.T) {
	results := []fleet.Result{
		{Node: "web-1", Status: fleet.StatusOK, Detail: &agent.NodeReport{Path: "inband", Escalated: true, Resumed: true, Learned: []string{store.QuirkIgnoresOOBPXE}}},
		{Node: "web-2", Status: fleet.StatusFailed, Reason: agent.ReasonNoPath, Detail: &agent.NodeReport{Learned: []string{store.QuirkDeviceOnlyBMC}}},
		{Node: "web-3", Status: fleet.StatusFailed, Reason: agent.ReasonNoPath},
		{Node: "web-4", Status: fleet.StatusSkipped, Reason: agent.ReasonBusy + ": held by x"},
		{Node: "web-5", Status: fleet.StatusInterrupted},
	}
	b, err := json.Marshal(agent.Summarize(results))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"failed":      {agent.ReasonNoPath + ":2:web-2,web-3"},
		"skipped":     {agent.ReasonBusy + ":1:web-4"},
		"interrupted": {agent.ReasonInterrupted + ":1:web-5"},
		"resumed":     {"resumed:1:web-1"},
		"learned":     {store.QuirkDeviceOnlyBMC + ":1:web-2", store.QuirkIgnoresOOBPXE + ":1:web-1"},
	}
	for key, groups := range want {
		var got []map[string]json.RawMessage
		dec := json.NewDecoder(bytes.NewReader(doc[key]))
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("%s: %v in %s", key, err, b)
		}
		var flat []string
		for _, g := range got {
			keys := make([]string, 0, len(g))
			for k := range g {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			if !slices.Equal(keys, []string{"count", "nodes", "reason"}) {
				t.Errorf("%s group has fields %v, want count, nodes, reason", key, keys)
			}
			var reason string
			var count int
			var nodes []string
			json.Unmarshal(g["reason"], &reason)
			json.Unmarshal(g["count"], &count)
			json.Unmarshal(g["nodes"], &nodes)
			flat = append(flat, reason+":"+strings.TrimSpace(string(g["count"]))+":"+strings.Join(nodes, ","))
			if count != len(nodes) {
				t.Errorf("%s group %q: count %d, %d nodes", key, reason, count, len(nodes))
			}
		}
		if !slices.Equal(flat, groups) {
			t.Errorf("%s = %v, want %v", key, flat, groups)
		}
	}
	// No node: empty lists, not null.
	b, _ = json.Marshal(agent.Summarize(nil))
	if bytes.Contains(b, []byte("null")) {
		t.Errorf("an empty summary has null lists: %s", b)
	}
}
