package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// cli runs reprov in-process with a controlled environment.
type cli struct {
	t   *testing.T
	env map[string]string
	dir string
}

func newCLI(t *testing.T) *cli {
	t.Helper()
	dir := t.TempDir()
	return &cli{t: t, dir: dir, env: map[string]string{
		"HOME":             dir,
		"XDG_CONFIG_HOME":  filepath.Join(dir, "config"),
		"REPROV_STATE_DIR": filepath.Join(dir, "state"),
	}}
}

func (c *cli) getenv(k string) string { return c.env[k] }

// run returns the exit code, stdout and stderr.
func (c *cli) run(args ...string) (int, string, string) {
	c.t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(""), &out, &errb, c.getenv)
	return code, out.String(), errb.String()
}

func (c *cli) write(name, content string) string {
	c.t.Helper()
	p := filepath.Join(c.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return p
}

const smallFleet = `defaults:
  bmc: {username: admin, password: env:TEST_BMC_PASSWORD}
nodes:
  - name: web-011
    rack: r12
    labels: {role: web}
    bmc: {address: "ipmi://127.0.0.1:6230"}
    ssh: {address: 127.0.0.1, port: 2222}
    playbook: default
  - name: web-012
    rack: r12
    labels: {role: web}
    bmc: {address: "redfish+https://127.0.0.1:8443/redfish/v1/Systems/1", password: "plain:literal-s3cret-value"}
  - name: db-001
    rack: r13
    labels: {role: db}
    bmc: {address: "127.0.0.2"}
`

func TestExitCodes(t *testing.T) {
	c := newCLI(t)
	inv := c.write("fleet.yaml", smallFleet)
	bad := c.write("bad.yaml", "nodes:\n  - name: a\n    bmc: {address: \"ipmj://x\"}\n  - name: a\n")
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"version", []string{"version"}, exitOK},
		{"unknown flag", []string{"version", "--nope"}, exitUsage},
		{"unknown command", []string{"frobnicate"}, exitUsage},
		{"list ok", []string{"inventory", "list", "--inventory", inv}, exitOK},
		{"no inventory", []string{"inventory", "list"}, exitUsage},
		{"missing inventory file", []string{"inventory", "list", "--inventory", filepath.Join(c.dir, "nope.yaml")}, exitUsage},
		{"validate finds errors", []string{"inventory", "validate", bad}, exitFailed},
		{"validate ok", []string{"inventory", "validate", inv}, exitOK},
		{"list with broken inventory", []string{"inventory", "list", "--inventory", bad}, exitUsage},
		{"selection matches nothing", []string{"inventory", "list", "--inventory", inv, "--rack", "r99"}, exitUsage},
		{"bad output", []string{"inventory", "list", "--inventory", inv, "-o", "xml"}, exitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := c.run(tt.args...)
			if code != tt.want {
				t.Errorf("reprov %v: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", tt.args, code, tt.want, out, errOut)
			}
		})
	}
}

// TestServerURLWithCredentialsIsRefusedUnechoed: a password typed into
// server.url is refused (the token goes in server.token) and never shown.
func TestServerURLWithCredentialsIsRefusedUnechoed(t *testing.T) {
	c := newCLI(t)
	inv := c.write("fleet.yaml", smallFleet)
	code, out, errOut := c.run("jobs", "list", "--inventory", inv, "--server", "http://ops:s3cret-pw@127.0.0.1:8087")
	if code != exitUsage || !strings.Contains(errOut, "server.url") || strings.Contains(out+errOut, "s3cret-pw") {
		t.Errorf("--server with a password: exit %d, want %d naming server.url without the password\nstdout:\n%s\nstderr:\n%s", code, exitUsage, out, errOut)
	}
}

func TestInterruptedExitCode(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if got := exitCode(ctx, context.Canceled); got != exitInterrupted {
		t.Errorf("exit code for an interrupted run = %d, want %d", got, exitInterrupted)
	}
	if got := exitCode(ctx, usagef("bad flag")); got != exitUsage {
		t.Errorf("a usage error stays exit 2 even when interrupted, got %d", got)
	}
}

func TestValidateListsEveryErrorWithLine(t *testing.T) {
	c := newCLI(t)
	bad := c.write("fleet.yaml", `nodes:
  - name: web-014
    bmc: {address: "ipmj://10.1.12.14"}
  - name: web-015
    colour: blue
  - name: web-014
`)
	code, out, _ := c.run("inventory", "validate", bad)
	if code != exitFailed {
		t.Fatalf("exit %d, want 1; output:\n%s", code, out)
	}
	for _, want := range []string{
		bad + `:3: node web-014: bmc.address: unknown scheme "ipmj"`,
		bad + ":5: node web-015: colour",
		bad + ":6: node web-014",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("validate output lacks %q:\n%s", want, out)
		}
	}
}

func TestConfigPrecedence(t *testing.T) {
	c := newCLI(t)
	inv := c.write("lab/fleet.yaml", smallFleet)
	_ = inv
	cfg := c.write("lab/reprov.yaml", "inventory: fleet.yaml\noutput: json\n")

	// The config file's relative inventory is found relative to the file; its output applies.
	code, out, errOut := c.run("inventory", "list", "--config", cfg)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var nodes []map[string]any
	if err := json.Unmarshal([]byte(out), &nodes); err != nil || len(nodes) != 3 {
		t.Fatalf("config output=json not applied (err %v): %s", err, out)
	}
	// Environment beats the file.
	c.env["REPROV_OUTPUT"] = "table"
	_, out, _ = c.run("inventory", "list", "--config", cfg)
	if !strings.HasPrefix(out, "NAME") {
		t.Errorf("REPROV_OUTPUT=table did not beat the file:\n%s", out)
	}
	// A flag beats the environment.
	_, out, _ = c.run("inventory", "list", "--config", cfg, "-o", "json")
	if !strings.HasPrefix(strings.TrimSpace(out), "[") {
		t.Errorf("-o json did not beat REPROV_OUTPUT:\n%s", out)
	}
	// The default search finds ./reprov.yaml's XDG sibling.
	delete(c.env, "REPROV_OUTPUT")
	c.write("config/reprov/config.yaml", "inventory: "+filepath.Join(c.dir, "lab/fleet.yaml")+"\n")
	code, _, errOut = c.run("inventory", "list")
	if code != 0 {
		t.Errorf("config from $XDG_CONFIG_HOME/reprov/config.yaml not found: exit %d: %s", code, errOut)
	}
	// REPROV_INVENTORY works without any file.
	c.env["REPROV_INVENTORY"] = filepath.Join(c.dir, "lab/fleet.yaml")
	c.env["XDG_CONFIG_HOME"] = filepath.Join(c.dir, "none")
	if code, _, errOut := c.run("inventory", "list", "--rack", "r13"); code != 0 {
		t.Errorf("REPROV_INVENTORY not used: exit %d: %s", code, errOut)
	}
}

func TestConfigUnknownKeyIsUsageError(t *testing.T) {
	c := newCLI(t)
	cfg := c.write("reprov.yaml", "inventory: x.yaml\nlanding:\n  listen: 127.0.0.1:1\n  lisen: typo\nmax_paralel: 3\n")
	code, _, errOut := c.run("version", "--config", cfg)
	if code != exitUsage {
		t.Fatalf("exit %d, want 2", code)
	}
	for _, key := range []string{`"landing.lisen"`, `"max_paralel"`, cfg} {
		if !strings.Contains(errOut, key) {
			t.Errorf("error does not name %s:\n%s", key, errOut)
		}
	}
}

// TestConfigDocListsEveryKey keeps docs/configuration.md the one true table.
func TestConfigDocListsEveryKey(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	rowKey := regexp.MustCompile("(?m)^\\| `([a-z_.]+)` \\|")
	documented := make(map[string]bool)
	for _, m := range rowKey.FindAllStringSubmatch(string(doc), -1) {
		documented[m[1]] = true
	}
	known := make(map[string]bool)
	for _, k := range configKeys() {
		known[k.key] = true
		if !documented[k.key] {
			t.Errorf("config key %q is not in docs/configuration.md", k.key)
		}
		if !strings.Contains(string(doc), envName(k.key)) {
			t.Errorf("docs/configuration.md does not name %s", envName(k.key))
		}
	}
	for k := range documented {
		if !known[k] {
			t.Errorf("docs/configuration.md documents %q, which the code does not know", k)
		}
	}
}

// TestNoResolvedSecretInAnyOutput runs every read command in every output
// form, with secrets resolvable, and looks for their values.
func TestNoResolvedSecretInAnyOutput(t *testing.T) {
	c := newCLI(t)
	const envSecret = "env-s3cret-VALUE-42"
	const fileSecret = "file-s3cret-VALUE-43"
	c.env["TEST_BMC_PASSWORD"] = envSecret
	t.Setenv("TEST_BMC_PASSWORD", envSecret) // the loader may resolve through os.Getenv
	pw := c.write("pw", fileSecret+"\n")
	fleet := strings.Replace(smallFleet, "  - name: db-001\n", "  - name: db-001\n    ssh: {password: \"file:"+pw+"\"}\n", 1)
	inv := c.write("fleet.yaml", fleet)
	bad := c.write("bad.yaml", "nodes:\n  - name: x\n    bmc: {password: \"hunter2-literal\"}\n")
	for _, args := range [][]string{
		{"inventory", "list", "--inventory", inv},
		{"inventory", "list", "--inventory", inv, "-o", "json"},
		{"inventory", "validate", inv},
		{"inventory", "validate", inv, "-o", "json"},
		{"inventory", "validate", bad},
		{"inventory", "validate", bad, "-o", "json"},
		{"inventory", "list", "--inventory", inv, "--log-level", "debug"},
	} {
		_, out, errOut := c.run(args...)
		for _, secret := range []string{envSecret, fileSecret, "literal-s3cret-value", "hunter2-literal"} {
			if strings.Contains(out, secret) || strings.Contains(errOut, secret) {
				t.Errorf("reprov %v printed a secret (%q)\nstdout:\n%s\nstderr:\n%s", args, secret, out, errOut)
			}
		}
	}
}

func TestArgumentErrorsAreUsageErrors(t *testing.T) {
	c := newCLI(t)
	for _, args := range [][]string{
		{"version", "extra"},
		{"inventory", "import", "--from", "ansible"},
		{"inventory", "validate", "a", "b"},
	} {
		if code, _, errOut := c.run(args...); code != exitUsage {
			t.Errorf("reprov %v: exit %d, want 2 (%s)", args, code, errOut)
		}
	}
}

func TestAgentSubcommandsAreWired(t *testing.T) {
	c := newCLI(t)
	code, out, errOut := c.run("agent", "--help")
	if code != 0 {
		t.Fatalf("reprov agent --help: exit %d: %s", code, errOut)
	}
	for _, sub := range []string{"identify", "resolve-disk", "wipe-boot-sector", "restore-boot-sector", "next-boot", "reboot"} {
		if !strings.Contains(out, sub) {
			t.Errorf("reprov agent lacks %s:\n%s", sub, out)
		}
	}
	// A usage error of the agent tree is exit 2, and refuses to wipe without --yes.
	if code, _, _ := c.run("agent", "wipe-boot-sector", "--disk", "/dev/null-not-a-disk"); code != exitUsage {
		t.Errorf("wipe-boot-sector without --yes: exit %d, want 2", code)
	}
}
