package main

import (
	"strings"
	"testing"
)

// TestConfigErrorsAllAtOnceWithLines: every problem of the config file is
// reported in one run, each with its line, the bad value and a hint.
func TestConfigErrorsAllAtOnceWithLines(t *testing.T) {
	c := newCLI(t)
	cfg := c.write("reprov.yaml", `inventory: fleet.yaml
output: jason
max_paralel: 3
landing:
  listen: 127.0.0.1:1
  probe_interval: 5 seconds
  allow: {a: b}
store:
  lease: 0s
per_rack: -1
`)
	code, _, errOut := c.run("version", "--config", cfg)
	if code != exitUsage {
		t.Fatalf("exit %d, want 2\n%s", code, errOut)
	}
	for _, want := range []string{
		cfg + `:2: output: "jason" is not table, wide, json or yaml (did you mean "json"?)`,
		cfg + `:3: unknown key "max_paralel" (did you mean "max_parallel"?)`,
		cfg + `:6: landing.probe_interval: "5 seconds" is not a duration (e.g. 5s, 1m)`,
		cfg + `:7: landing.allow: a mapping is not a list of strings`,
		cfg + `:9: store.lease: "0s" is not a positive duration`,
		cfg + `:10: per_rack: -1 is negative`,
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
}

// TestConfigSyntaxErrorHasItsLine: a YAML syntax error names the file and line.
func TestConfigSyntaxErrorHasItsLine(t *testing.T) {
	c := newCLI(t)
	cfg := c.write("reprov.yaml", "inventory: x\nlanding:\n  listen: [\n")
	code, _, errOut := c.run("version", "--config", cfg)
	if code != exitUsage || !strings.Contains(errOut, cfg+":") {
		t.Fatalf("exit %d, want 2 naming %s:N:\n%s", code, cfg, errOut)
	}
}

// TestFlagAndEnvProblemsNameTheirSource: a bad flag value is blamed on the
// flag, a bad variable on the variable, never on the config file.
func TestFlagAndEnvProblemsNameTheirSource(t *testing.T) {
	c := newCLI(t)
	cfg := c.write("reprov.yaml", "inventory: fleet.yaml\n")
	c.env["REPROV_LANDING_PROBE_INTERVAL"] = "often"
	c.env["REPROV_LOG_LEVEL"] = "verbose"
	code, _, errOut := c.run("version", "--config", cfg, "-o", "xml")
	if code != exitUsage {
		t.Fatalf("exit %d, want 2\n%s", code, errOut)
	}
	for _, want := range []string{
		`--output: "xml" is not table, wide, json or yaml`,
		`REPROV_LANDING_PROBE_INTERVAL: "often" is not a duration (e.g. 5s, 1m)`,
		`REPROV_LOG_LEVEL: "verbose" is not debug, info, warn or error`,
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if strings.Contains(errOut, cfg) {
		t.Errorf("a flag or variable problem is blamed on the config file:\n%s", errOut)
	}
}
