package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/reprov/reprov/agent"
	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/lab/fleet"
)

// freeAddr returns a loopback address nobody listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startServe starts `reprov serve` as a child process with the lab's
// configuration, its API on apiAddr, and waits until the API answers.
func (c *labCLI) startServe(ctx context.Context, apiAddr string, out *syncBuffer, env ...string) *exec.Cmd {
	c.t.Helper()
	exe, err := os.Executable()
	if err != nil {
		c.t.Fatal(err)
	}
	argv, _ := json.Marshal([]string{"--config", c.config, "serve"})
	cmd := exec.CommandContext(ctx, exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(argv), "HOME="+c.dir, "XDG_CONFIG_HOME="+filepath.Join(c.dir, "config"),
		"REPROV_SERVER_LISTEN="+apiAddr, "REPROV_LOG_FORMAT=json")
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { _ = cmd.Process.Kill() })
	for {
		resp, err := http.Get("http://" + apiAddr + "/api/v1/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return cmd
			}
		}
		select {
		case <-ctx.Done():
			c.t.Fatalf("serve never answered on %s:\n%s", apiAddr, out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stopServe sends SIGTERM and wants exit 0.
func stopServe(t *testing.T, cmd *exec.Cmd, out *syncBuffer) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("serve after SIGTERM: %v, want exit 0\n%s", err, out.String())
	}
}

func jsonKeys(t *testing.T, raw json.RawMessage) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// shape is the keys of a reinstall -o json answer: top level, first
// result, its detail, the run.
func shape(t *testing.T, out string) [4][]string {
	t.Helper()
	var v struct {
		Run     json.RawMessage   `json:"run"`
		Results []json.RawMessage `json:"results"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || len(v.Results) == 0 {
		t.Fatalf("%v: %s", err, out)
	}
	var r0 struct {
		Detail json.RawMessage `json:"detail"`
	}
	_ = json.Unmarshal(v.Results[0], &r0)
	return [4][]string{jsonKeys(t, json.RawMessage(out)), jsonKeys(t, v.Results[0]), jsonKeys(t, r0.Detail), jsonKeys(t, v.Run)}
}

// TestServeReinstallThroughTheAPI runs `reprov serve` as a real process, a
// reinstall through its API, SIGTERMs the server in the middle of the run
// (its nodes are handed over at a step boundary), starts another one on the
// same address, and wants the client to follow the run to its end: every
// node landed, exit 0, the same JSON as an in-process reinstall.
func TestServeReinstallThroughTheAPI(t *testing.T) {
	c := newLabCLI(t, []fleet.ModelCount{{Model: fleet.ModelIPMI, Count: 4}, {Model: fleet.ModelDL360G7, Count: 2}}, 500*time.Millisecond)
	ctx := ctxFor(t, 3*time.Minute)

	code, tokOut, errOut := c.run(ctx, "token", "create", "--role", "operator", "--name", "ci-operator")
	lines := strings.Split(strings.TrimSpace(tokOut), "\n")
	token := lines[len(lines)-1]
	if code != 0 || !strings.HasPrefix(token, store.TokenPrefix) {
		t.Fatalf("token create: exit %d\n%s\n%s", code, tokOut, errOut)
	}
	getenv := func(k string) string {
		switch k {
		case "REPROV_SERVER_TOKEN":
			return "env:TEST_REPROV_TOKEN"
		case "TEST_REPROV_TOKEN":
			return token
		}
		return c.getenv(k)
	}
	client := func(ctx context.Context, args ...string) (int, string, string) {
		var out, errb syncBuffer
		code := runAllCmds(ctx, append([]string{"--config", c.config}, args...), strings.NewReader(""), &out, &errb, getenv)
		return code, out.String(), errb.String()
	}

	apiAddr := freeAddr(t)
	url := "http://" + apiAddr
	var logA syncBuffer
	serveA := c.startServe(ctx, apiAddr, &logA)

	type result struct {
		code     int
		out, err string
	}
	done := make(chan result, 1)
	go func() {
		code, out, errOut := client(ctx, "--server", url, "-o", "json", "reinstall", "--all", "--yes")
		done <- result{code, out, errOut}
	}()

	// SIGTERM the server while nodes are being worked on.
	st := c.storeWhenReady(ctx)
	for {
		jobs, _ := st.NodeJobs(ctx, store.JobFilter{States: []store.JobState{store.JobRunning}})
		if slices.ContainsFunc(jobs, func(j store.NodeJob) bool { return j.Step == agent.StepWaitLanding }) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no node reached wait_landing\n%s", logA.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	stopServe(t, serveA, &logA)
	handedOver := 0
	jobs, _ := st.NodeJobs(ctx, store.JobFilter{})
	for _, j := range jobs {
		steps, _ := st.Steps(ctx, j.ID)
		for _, s := range steps {
			if s.Name == agent.StepHandedOver {
				handedOver++
			}
		}
	}
	if handedOver == 0 {
		t.Errorf("the stopped server handed no node over\n%s", logA.String())
	}
	if !strings.Contains(logA.String(), `"msg":"step"`) || !strings.Contains(logA.String(), `"run":1`) {
		t.Errorf("serve's JSON log lacks the per-step lines with node, job and run:\n%s", logA.String())
	}

	// Another controller on the same address: the client reconnects.
	var logB syncBuffer
	serveB := c.startServe(ctx, apiAddr, &logB)
	var res result
	select {
	case res = <-done:
	case <-ctx.Done():
		t.Fatalf("the client did not return\nA:\n%s\nB:\n%s", logA.String(), logB.String())
	}
	var rep struct {
		Results []struct{ Node, Status string } `json:"results"`
		Summary agent.Summary                   `json:"summary"`
	}
	if err := json.Unmarshal([]byte(res.out), &rep); res.code != exitOK || err != nil || len(rep.Results) != 6 || rep.Summary.LandedOOB+rep.Summary.LandedInband != 6 {
		t.Fatalf("reinstall --server: exit %d, %v\nstdout:\n%s\nstderr:\n%s\nA:\n%s\nB:\n%s", res.code, err, res.out, res.err, logA.String(), logB.String())
	}
	if !strings.Contains(res.err, "[6/6] reinstall") {
		t.Errorf("the client showed no progress:\n%s", res.err)
	}

	// The same JSON shape as in-process (which uses B's landing endpoint).
	code, local, errOut := client(ctx, "--local", "-o", "json", "reinstall", "ipmi-001", "--yes")
	if code != exitOK {
		t.Fatalf("in-process reinstall: exit %d\n%s\n%s", code, local, errOut)
	}
	code, remote, errOut := client(ctx, "--server", url, "-o", "json", "reinstall", "ipmi-001", "--yes")
	if code != exitOK {
		t.Fatalf("reinstall --server: exit %d\n%s\n%s", code, remote, errOut)
	}
	if l, r := shape(t, local), shape(t, remote); !slices.EqualFunc(l[:], r[:], slices.Equal) {
		t.Errorf("JSON shapes differ:\nin-process %v\nserver     %v", l, r)
	}

	// jobs list through the API = from the store.
	code, viaAPI, _ := client(ctx, "--server", url, "-o", "json", "jobs", "list", "--node", "ipmi-001")
	_, viaStore, _ := client(ctx, "--local", "-o", "json", "jobs", "list", "--node", "ipmi-001")
	if code != exitOK || viaAPI != viaStore || strings.Count(viaAPI, `"node": "ipmi-001"`) != 3 {
		t.Errorf("jobs list through the API (exit %d):\n%s\nfrom the store:\n%s", code, viaAPI, viaStore)
	}
	// A bad token is a usage error naming the problem.
	bad := func(k string) string {
		if k == "TEST_REPROV_TOKEN" {
			return store.TokenPrefix + "wrong"
		}
		return getenv(k)
	}
	var o2, e2 syncBuffer
	if code := runAllCmds(ctx, []string{"--config", c.config, "--server", url, "jobs", "list"}, strings.NewReader(""), &o2, &e2, bad); code != exitUsage ||
		!strings.Contains(e2.String(), "unknown token") {
		t.Errorf("a wrong token: exit %d\n%s", code, e2.String())
	}

	stopServe(t, serveB, &logB)
	for _, l := range []string{logA.String(), logB.String(), res.err} {
		if strings.Contains(l, token) {
			t.Error("the API token appears in a log")
		}
	}
	c.noSecrets(res.out, res.err, logA.String(), logB.String())
}
