//go:build e2e

package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/reprov/reprov/agent/fleet"
	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/e2e/rig"
)

// lockedBuffer is a bytes.Buffer safe for a child's output and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// testServe: the standing controller on a real VM. `reprov serve` runs with
// the node's configuration (its landing endpoint, its API, a worker); the
// operator's `reprov --server URL reinstall NODE --yes -o json` goes through
// the API; the board honours PXE and the node lands. After the client
// returned, the installer (the image's init, booted by the install script)
// posts its callback with the job's token and serve's landing endpoint
// takes it: the console says so and the job records it. A network boot of
// the node from then on is told to boot its disk. SIGTERM stops serve,
// exit 0.
func testServe(t *testing.T, e *env) {
	inst := serveInstaller(t, e)
	landingPort := freeTCPPort(t)
	v := startVM(t, e, "serve-node", vmOpts{board: rig.HonoursPXE, landingPort: landingPort, installURL: inst.GuestURL()})
	v.boot(t)

	lines := strings.Split(strings.TrimSpace(v.reprovCmd(t, "token", "create", "--role", "operator", "--name", "e2e")), "\n")
	token := lines[len(lines)-1]
	if !strings.HasPrefix(token, store.TokenPrefix) {
		t.Fatalf("token create printed %q last", token)
	}
	apiAddr := fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t))
	apiURL := "http://" + apiAddr
	serve := exec.Command(e.reprov(), "--config", v.files.Config, "serve")
	serve.Env = append(os.Environ(), "SSH_AUTH_SOCK=", "REPROV_SERVER_LISTEN="+apiAddr)
	var serveLog lockedBuffer
	serve.Stdout, serve.Stderr = &serveLog, &serveLog
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- serve.Wait() }()
	t.Cleanup(func() {
		_ = serve.Process.Kill()
		if t.Failed() {
			t.Logf("reprov serve:\n%s", lastLines(serveLog.String(), 60))
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		resp, err := http.Get(apiURL + "/api/v1/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("reprov serve never answered on %s:\n%s", apiAddr, serveLog.String())
		case err := <-exited:
			t.Fatalf("reprov serve exited: %v\n%s", err, serveLog.String())
		case <-time.After(100 * time.Millisecond):
		}
	}

	// The operator's reinstall, through the API.
	since, cons := time.Now(), v.ConsoleSize()
	rctx, rcancel := context.WithTimeout(context.Background(), reinstallTimeout)
	defer rcancel()
	client := func(ctx context.Context, args ...string) (int, string, string) {
		cmd := exec.CommandContext(ctx, e.reprov(), append([]string{"--config", v.files.Config, "--server", apiURL}, args...)...)
		cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=", "REPROV_SERVER_TOKEN=env:E2E_REPROV_TOKEN", "E2E_REPROV_TOKEN="+token)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			return ee.ExitCode(), stdout.String(), stderr.String()
		case err != nil:
			t.Fatalf("reprov --server %s: %v", strings.Join(args, " "), err)
		}
		return 0, stdout.String(), stderr.String()
	}
	code, out, stderr := client(rctx, "reinstall", v.Name(), "--yes", "-o", "json")
	var res reprovResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Results) != 1 {
		t.Fatalf("reinstall through serve (exit %d): report %q: %v\nstderr:\n%s", code, out, err, lastLines(stderr, 40))
	}
	r := res.Results[0]
	if code != 0 || r.Status != fleet.StatusOK || r.Detail.State != store.JobLanded || r.Detail.Path != "oob" {
		t.Fatalf("reinstall through serve: exit %d, %s (%s) path %q: %s\n%s", code, r.Status, r.Reason, r.Detail.Path, r.Error, lastLines(stderr, 30))
	}
	t.Logf("reprov --server reinstall %s: exit 0, landed %s in %s", v.Name(), r.Detail.Landing, time.Since(since).Round(100*time.Millisecond))

	// After the client returned: the installer boots and calls back, and
	// serve's landing endpoint takes the callback.
	waitInstaller(t, v, inst, since, cons)
	wctx, wcancel := context.WithTimeout(context.Background(), landTimeout)
	defer wcancel()
	if _, err := v.WaitConsole(wctx, cons, "reprov-e2e: installer called back"); err != nil {
		t.Fatalf("the installer's callback was not taken after reinstall returned: %v", err)
	}
	code, show, stderr := client(rctx, "-o", "json", "jobs", "show", v.Name())
	var d struct {
		Landings []store.Landing `json:"landings"`
	}
	if err := json.Unmarshal([]byte(show), &d); code != 0 || err != nil {
		t.Fatalf("jobs show through serve: exit %d, %v\n%s\n%s", code, err, show, stderr)
	}
	callback := false
	for _, l := range d.Landings {
		callback = callback || l.Source == store.LandingCallback
	}
	if !callback {
		t.Errorf("the job does not record the installer's callback: %+v", d.Landings)
	}

	// The node netbooting again is told to boot its disk.
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/boot/ipxe?mac=%s", landingPort, v.MAC()))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "sanboot") {
		t.Errorf("netboot of %s after its installer called back: %s\n%s\nwant boot local disk", v.Name(), resp.Status, body)
	}

	if err := serve.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("reprov serve after SIGTERM: %v, want exit 0", err)
		}
	case <-time.After(2 * time.Minute):
		t.Errorf("reprov serve did not stop after SIGTERM")
	}
	if strings.Contains(serveLog.String(), token) {
		t.Error("the API token appears in serve's log")
	}
}
