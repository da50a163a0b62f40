package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	yaml "go.yaml.in/yaml/v3"
)

// TestOutputYAMLAndNoHeaders: -o yaml is YAML of the JSON fields;
// --no-headers drops the table header; -o wide is a table.
func TestOutputYAMLAndNoHeaders(t *testing.T) {
	c := newCLI(t)
	inv := c.write("fleet.yaml", smallFleet)
	code, out, errOut := c.run("inventory", "list", "--inventory", inv, "-o", "yaml")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var nodes []map[string]any
	if err := yaml.Unmarshal([]byte(out), &nodes); err != nil || len(nodes) != 3 || nodes[0]["name"] != "web-011" {
		t.Fatalf("-o yaml is not a YAML list of the 3 nodes (%v):\n%s", err, out)
	}
	if strings.Contains(out, `"name"`) {
		t.Errorf("-o yaml uses JSON flow style:\n%s", out)
	}
	_, out, _ = c.run("inventory", "list", "--inventory", inv, "--no-headers")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[0], "web-011") {
		t.Errorf("--no-headers: want 3 node lines, got:\n%s", out)
	}
	if code, out, _ = c.run("inventory", "list", "--inventory", inv, "-o", "wide"); code != exitOK || !strings.HasPrefix(out, "NAME") {
		t.Errorf("-o wide: exit %d:\n%s", code, out)
	}
}

// TestNoZeroTimesInStructuredOutput: a time never set is null in JSON and
// absent in YAML, never Go's year 1.
func TestNoZeroTimesInStructuredOutput(t *testing.T) {
	v := struct {
		Created    time.Time `json:"created"`
		LeaseUntil time.Time `json:"lease_until"`
	}{Created: time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)}
	for _, format := range []string{"json", "yaml"} {
		var out bytes.Buffer
		a := newApp(strings.NewReader(""), &out, &out, func(string) string { return "" })
		a.cfg = &Config{Output: format}
		if err := a.writeJSON(v); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out.String(), "0001-01-01") || !strings.Contains(out.String(), "2026-12-04") {
			t.Errorf("-o %s:\n%s", format, out.String())
		}
		if format == "json" && !strings.Contains(out.String(), `"lease_until": null`) {
			t.Errorf("-o json: an unset time is not null:\n%s", out.String())
		}
		if format == "yaml" && strings.Contains(out.String(), "lease_until") {
			t.Errorf("-o yaml: an unset time is not left out:\n%s", out.String())
		}
	}
}

// TestErrorChainsWithoutRepetition: a cause wrapped twice reads once.
func TestErrorChainsWithoutRepetition(t *testing.T) {
	for in, want := range map[string]string{
		"identity mismatch: node web-1: identity mismatch: serial A != B":    "identity mismatch: node web-1: serial A != B",
		"precheck: identify failed: node a: no reprov-agent for linux/arm64": "precheck: identify failed: node a: no reprov-agent for linux/arm64",
	} {
		if got := dedupeChain(in); got != want {
			t.Errorf("dedupeChain(%q) = %q, want %q", in, got, want)
		}
	}
}
