package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/reprov/reprov/agent"
	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/lab/fleet"
	"github.com/reprov/reprov/lab/pg"
)

// usePostgres points the lab's configuration at a throwaway PostgreSQL
// database and returns its URL.
func (c *labCLI) usePostgres() string {
	c.t.Helper()
	url := pg.NewDatabase(c.t, pg.Start(c.t))
	cfg, err := os.ReadFile(c.config)
	if err != nil {
		c.t.Fatal(err)
	}
	cfg = bytes.Replace(cfg, []byte("store:\n"), []byte("store:\n  url: "+url+"\n"), 1)
	if err := os.WriteFile(c.config, cfg, 0o600); err != nil {
		c.t.Fatal(err)
	}
	return url
}

// operatorClient creates an operator token and returns a runner of
// in-process reprov commands that carry it (server.token=env:…), and the
// token.
func (c *labCLI) operatorClient(ctx context.Context) (func(ctx context.Context, args ...string) (int, string, string), string) {
	c.t.Helper()
	code, tokOut, errOut := c.run(ctx, "token", "create", "--role", "operator", "--name", "ci-operator")
	lines := strings.Split(strings.TrimSpace(tokOut), "\n")
	token := lines[len(lines)-1]
	if code != 0 || !strings.HasPrefix(token, store.TokenPrefix) {
		c.t.Fatalf("token create: exit %d\n%s\n%s", code, tokOut, errOut)
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
	return func(ctx context.Context, args ...string) (int, string, string) {
		var out, errb syncBuffer
		code := runAllCmds(ctx, append([]string{"--config", c.config}, args...), strings.NewReader(""), &out, &errb, getenv)
		return code, out.String(), errb.String()
	}, token
}

var (
	scriptToken    = regexp.MustCompile(`reprov\.token=(\S+)`)
	scriptCallback = regexp.MustCompile(`reprov\.callback=(\S+)`)
)

// TestTwoServesOnePostgresOneKilled is the standing controller as a
// datacenter runs it: two `reprov serve` processes on one PostgreSQL store
// and a 60-node lab. A client given both (server.url lists them) runs
// `reinstall --all --yes -o json` through the first; that server is
// SIGKILLed mid-run. The second takes its jobs over, the client follows
// the run through it and exits 0 with every node landed and the same JSON
// shape as an in-process reinstall. After the client exited, the
// remaining server's landing endpoint answers from the store: a landed
// node netbooting again within landing.retry_window gets its install
// script with its job's callback token; the installer's callback with
// that token is accepted; from then on the node is told to boot its disk.
func TestTwoServesOnePostgresOneKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("a 60-node lab with two serve processes on PostgreSQL")
	}
	c := newLabCLI(t, []fleet.ModelCount{{Model: fleet.ModelIPMI, Count: 30}, {Model: fleet.ModelDL360G7, Count: 20}, {Model: fleet.ModelRedfish, Count: 10}},
		2*time.Second) // long enough that the first server is killed with jobs in hand
	url := c.usePostgres()
	ctx := ctxFor(t, 8*time.Minute)
	client, token := c.operatorClient(ctx)
	st, err := store.Open(ctx, url, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	addrA, addrB := freeAddr(t), freeAddr(t)
	var logA, logB syncBuffer
	// Each works at most 40 of the 60 nodes at once, so neither takes
	// the whole run and the first is killed with jobs in hand.
	serveA := c.startServe(ctx, addrA, &logA, "REPROV_MAX_PARALLEL=40") // first: it holds landing.listen
	serveB := c.startServe(ctx, addrB, &logB, "REPROV_MAX_PARALLEL=40")

	type result struct {
		code     int
		out, err string
	}
	done := make(chan result, 1)
	go func() {
		code, out, errOut := client(ctx, "--server", "http://"+addrA+",http://"+addrB, "-o", "json", "reinstall", "--all", "--yes")
		done <- result{code, out, errOut}
	}()

	// SIGKILL the server the client follows once a third of the nodes
	// have started and it works some of them.
	pidA := "_" + strconv.Itoa(serveA.Process.Pid) + "_"
	var early *result
	waitFor(ctx, t, "20 nodes started, some by the first server", func() bool {
		select {
		case r := <-done:
			early = &r
			return true
		default:
		}
		jobs, err := st.NodeJobs(ctx, store.JobFilter{})
		started, ownA := 0, 0
		for _, j := range jobs {
			if !j.Started.IsZero() {
				started++
			}
			if j.State == store.JobRunning && strings.Contains(j.Owner, pidA) {
				ownA++
			}
		}
		return err == nil && started >= 20 && ownA > 0
	})
	if early != nil {
		t.Fatalf("the client returned before the first server was killed: exit %d\nstdout:\n%s\nstderr:\n%s\nA:\n%s\nB:\n%s",
			early.code, tail(early.out, 3000), tail(early.err, 3000), tail(logA.String(), 3000), tail(logB.String(), 3000))
	}
	if err := serveA.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = serveA.Wait()

	var res result
	select {
	case res = <-done:
	case <-ctx.Done():
		t.Fatalf("the client did not return\nB:\n%s", tail(logB.String(), 4000))
	}
	var rep struct {
		Results []struct{ Node, Status, Reason, Error string } `json:"results"`
		Summary agent.Summary                                  `json:"summary"`
	}
	if err := json.Unmarshal([]byte(res.out), &rep); res.code != exitOK || err != nil || len(rep.Results) != 60 {
		t.Fatalf("reinstall through two servers: exit %d, %v\nstdout:\n%s\nstderr:\n%s\nB:\n%s", res.code, err, tail(res.out, 4000), tail(res.err, 4000), tail(logB.String(), 4000))
	}
	for _, r := range rep.Results {
		if r.Status != "ok" {
			t.Errorf("%s: %s (%s: %s), want landed", r.Node, r.Status, r.Reason, r.Error)
		}
	}
	if got := rep.Summary.LandedOOB + rep.Summary.LandedInband; got != 60 {
		t.Errorf("summary: %d landed, want 60: %+v", got, rep.Summary)
	}
	if !strings.Contains(res.err, "reconnecting") || !strings.Contains(res.err, addrB) {
		t.Errorf("the client did not say it went on through the second server:\n%s", tail(res.err, 4000))
	}
	takenOver := 0
	jobs, _ := st.NodeJobs(ctx, store.JobFilter{})
	for _, j := range jobs {
		if j.Generation > 0 {
			takenOver++
		}
	}
	if takenOver == 0 {
		t.Error("no job was taken over from the killed server")
	}
	t.Logf("%d job(s) taken over from the killed server", takenOver)

	// A node that netboots after the client exited: the second server's
	// landing endpoint answers it from the store.
	n := c.lab.NodesOf(fleet.ModelRedfish)[0]
	script := n.Status().LandingScript
	tm, cm := scriptToken.FindStringSubmatch(script), scriptCallback.FindStringSubmatch(script)
	if tm == nil || cm == nil {
		t.Fatalf("%s landed without a callback token in its script:\n%s", n.Name(), script)
	}
	boot := func() string {
		t.Helper()
		resp, err := http.Get(c.lab.LandingURL() + "/boot/ipxe?mac=" + n.MAC())
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("netboot of %s after the run: %s\n%s", n.Name(), resp.Status, b)
		}
		return string(b)
	}
	// Within landing.retry_window and before its installer called back:
	// the install script again, same job, same token (docs/netboot.md).
	if again := boot(); !strings.Contains(again, "kernel ") || !strings.Contains(again, "reprov.token="+tm[1]) {
		t.Errorf("%s netbooting again before its installer called back got:\n%s\nwant its install script with the same token", n.Name(), again)
	}
	// The installer calls back after reinstall returned: accepted.
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, cm[1], nil)
	req.Header.Set("Authorization", "Bearer "+tm[1])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("installer callback of %s after reinstall returned: %s, want 204", n.Name(), resp.Status)
	}
	// Then the node is told to boot its disk.
	if local := boot(); !strings.Contains(local, "sanboot") || strings.Contains(local, "kernel ") {
		t.Errorf("%s netbooting after its installer called back got:\n%s\nwant boot local disk", n.Name(), local)
	}
	// The callback is on the job's record, as `jobs show` through the
	// server shows it.
	code, show, errOut := client(ctx, "--server", "http://"+addrB, "-o", "json", "jobs", "show", n.Name())
	if code != exitOK || !strings.Contains(show, `"source": "callback"`) {
		t.Errorf("jobs show %s through the server: exit %d, want a callback landing\n%s\n%s", n.Name(), code, show, errOut)
	}

	// The same JSON shape as in-process. The server's nodes were taken
	// over, so their detail says "resumed": true (omitted when false).
	code, local, errOut := client(ctx, "--local", "-o", "json", "reinstall", "ipmi-001", "--yes")
	if code != exitOK {
		t.Fatalf("in-process reinstall: exit %d\n%s\n%s", code, local, errOut)
	}
	l, r := shape(t, local), shape(t, res.out)
	l[2] = slices.DeleteFunc(l[2], func(k string) bool { return k == "resumed" })
	r[2] = slices.DeleteFunc(r[2], func(k string) bool { return k == "resumed" })
	if !slices.EqualFunc(l[:], r[:], slices.Equal) {
		t.Errorf("JSON shapes differ:\nin-process %v\nserver     %v", l, r)
	}

	stopServe(t, serveB, &logB)
	for _, l := range []string{logA.String(), logB.String(), res.err} {
		if strings.Contains(l, token) {
			t.Error("the API token appears in a log")
		}
	}
	c.noSecrets(res.out, res.err, logA.String(), logB.String())
}
