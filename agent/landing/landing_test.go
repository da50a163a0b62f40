package landing_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reprov/reprov/agent/landing"
	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/playbooks"
)

const mac = "3c:4a:92:11:22:33"

var profile = playbooks.InstallProfile{Kernel: "http://netboot.example/vmlinuz", Initrds: []string{"http://netboot.example/initrd.img"},
	Cmdline: "boot=live toram"}

type env struct {
	t   testing.TB
	st  *store.Store
	srv *httptest.Server
	h   *landing.Server
	run store.Run
	log *syncBuffer // the endpoint's log
}

// syncBuffer is a log destination safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func newEnv(t testing.TB, allow []netip.Prefix) *env {
	t.Helper()
	return newEnvWith(t, landing.Config{Allow: allow})
}

// newEnvWith serves an endpoint configured by cfg (its store, URL, profile
// and log are filled in) on a fresh SQLite store.
func newEnvWith(t testing.TB, cfg landing.Config) *env {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "reprov.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	run, err := st.CreateRun(ctx, store.RunSpec{CreatedBy: "test"})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, st: st, run: run, log: &syncBuffer{}}
	e.srv = httptest.NewUnstartedServer(nil)
	if cfg.Jobs == nil {
		cfg.Jobs = st
	}
	cfg.URL = "http://landing.example:8086/"
	cfg.Profile = func(string) (playbooks.InstallProfile, error) { return profile, nil }
	if cfg.NodeByMAC == nil {
		cfg.NodeByMAC = func(m string) (string, bool) { return "web-014", m == mac }
	}
	cfg.Log = slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h, err := landing.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.h = h
	e.srv.Config.Handler = h
	e.srv.Start()
	t.Cleanup(e.srv.Close)
	return e
}

func (e *env) get(path string) (int, string) {
	e.t.Helper()
	resp, err := http.Get(e.srv.URL + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (e *env) post(path, token string, form bool) int {
	e.t.Helper()
	var body io.Reader
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+path, nil)
	if form {
		body = strings.NewReader(url.Values{"token": {token}}.Encode())
		req, _ = http.NewRequest(http.MethodPost, e.srv.URL+path, body)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (e *env) acquire(node string) store.NodeJob {
	e.t.Helper()
	j, err := e.st.AcquireNode(context.Background(), store.AcquireRequest{RunID: e.run.ID, Node: node, MACs: []string{mac}})
	if err != nil {
		e.t.Fatal(err)
	}
	return j
}

// arm claims the job for owner "ctl" and arms its landing: the engine's
// kick.
func (e *env) arm(j store.NodeJob) store.NodeJob {
	e.t.Helper()
	ctx := context.Background()
	j, err := e.st.ClaimNodeJob(ctx, j.ID, j.Generation, "ctl", time.Minute)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.st.ArmLanding(ctx, j.ID, "ctl"); err != nil {
		e.t.Fatal(err)
	}
	return j
}

func TestNoJobBootsTheLocalDisk(t *testing.T) {
	e := newEnv(t, nil)
	code, body := e.get("/boot/ipxe?mac=3C-4A-92-11-22-33")
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	if !strings.HasPrefix(body, "#!ipxe\n") || !strings.Contains(body, "sanboot --no-describe --drive 0x80") || !strings.Contains(body, "\nexit") {
		t.Errorf("a node with no job got:\n%s\nwant a script that boots the local disk", body)
	}
	if strings.Contains(body, "kernel") {
		t.Errorf("a node with no job got an install script:\n%s", body)
	}
	// A finished job is no job: the node must not reinstall in a loop.
	j := e.acquire("web-014")
	if _, err := e.st.FinishNode(context.Background(), j.ID, store.Finish{State: store.JobLanded}); err != nil {
		t.Fatal(err)
	}
	if _, body := e.get("/boot/ipxe?mac=" + mac); !strings.Contains(body, "sanboot") {
		t.Errorf("a node whose job ended got:\n%s", body)
	}
}

func TestActiveJobLandsAndGetsItsInstallScript(t *testing.T) {
	e := newEnv(t, nil)
	j := e.arm(e.acquire("web-014"))
	code, body := e.get("/boot/ipxe?mac=" + mac)
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	for _, want := range []string{"kernel http://netboot.example/vmlinuz boot=live toram reprov.node=web-014 reprov.callback=http://landing.example:8086/landed/web-014 reprov.token=",
		"initrd http://netboot.example/initrd.img", "boot || goto failed", "goto retry"} {
		if !strings.Contains(body, want) {
			t.Errorf("install script lacks %q:\n%s", want, body)
		}
	}
	got, err := e.st.NodeJob(context.Background(), j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.LandingSource != store.LandingIPXE || got.LandedAt.IsZero() {
		t.Errorf("job after the GET: landing %q at %v, want ipxe", got.LandingSource, got.LandedAt)
	}
	if !got.State.Active() {
		t.Errorf("the GET ended the job (%s): only the engine ends jobs", got.State)
	}

	// The installer calls back with the token from the script.
	token := regexp.MustCompile(`reprov\.token=(\S+)`).FindStringSubmatch(body)[1]
	if c := e.post("/landed/web-014", "", false); c != http.StatusUnauthorized {
		t.Errorf("callback without token: %d, want 401", c)
	}
	if c := e.post("/landed/web-014", "not-the-token", false); c != http.StatusForbidden {
		t.Errorf("callback with a wrong token: %d, want 403", c)
	}
	if c := e.post("/landed/db-001", token, false); c != http.StatusForbidden {
		t.Errorf("callback for another node with this node's token: %d, want 403", c)
	}
	if c := e.post("/landed/web-014", token, true); c != http.StatusNoContent {
		t.Errorf("callback with the token (form): %d, want 204", c)
	}
	ls, err := e.st.Landings(context.Background(), j.ID)
	if err != nil {
		t.Fatal(err)
	}
	var sources []string
	for _, l := range ls {
		sources = append(sources, string(l.Source))
	}
	if strings.Join(sources, ",") != "ipxe,callback" {
		t.Errorf("landings %v, want ipxe then callback", sources)
	}
}

func TestBadRequestsAndSourceNetworks(t *testing.T) {
	e := newEnv(t, nil)
	if code, _ := e.get("/boot/ipxe"); code != http.StatusBadRequest {
		t.Errorf("no mac: %d, want 400", code)
	}
	if code, _ := e.get("/boot/ipxe?mac=zz:zz"); code != http.StatusBadRequest {
		t.Errorf("bad mac: %d, want 400", code)
	}
	if code, body := e.get("/healthz"); code != http.StatusOK || !strings.HasPrefix(body, landing.HealthBody) {
		t.Errorf("healthz: %d %q", code, body)
	}
	if err := landing.Probe(context.Background(), e.srv.URL); err != nil {
		t.Errorf("Probe of a landing endpoint: %v", err)
	}

	// Only 10.0.0.0/8 allowed: the test's 127.0.0.1 is refused, and no
	// job is marked.
	allow, err := landing.ParseAllow([]string{"10.0.0.0/8", "192.0.2.7"})
	if err != nil || len(allow) != 2 || allow[1].Bits() != 32 {
		t.Fatalf("ParseAllow: %v %v", allow, err)
	}
	if _, err := landing.ParseAllow([]string{"not-a-network"}); err == nil {
		t.Error("ParseAllow accepted garbage")
	}
	f := newEnv(t, allow)
	j := f.acquire("web-014")
	if code, _ := f.get("/boot/ipxe?mac=" + mac); code != http.StatusForbidden {
		t.Errorf("request from outside landing.allow: %d, want 403", code)
	}
	got, _ := f.st.NodeJob(context.Background(), j.ID)
	if got.LandingSource != "" {
		t.Errorf("a refused request marked the job landed (%s)", got.LandingSource)
	}
	g := newEnv(t, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")})
	g.acquire("web-014")
	if code, _ := g.get("/boot/ipxe?mac=" + mac); code != http.StatusOK {
		t.Errorf("request from inside landing.allow: %d, want 200", code)
	}
}

func TestServeStopsWithContext(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "reprov.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv, err := landing.New(landing.Config{Jobs: st, URL: "http://127.0.0.1:1",
		Profile: func(string) (playbooks.InstallProfile, error) { return profile, nil }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := landing.New(landing.Config{Jobs: st, URL: "ftp://x", Profile: func(string) (playbooks.InstallProfile, error) { return profile, nil }}); err == nil {
		t.Error("New accepted a landing.url that is not http(s)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx, ln) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
}

// TestInterruptedJobHoldsTheNetboot: a node whose reinstall was interrupted
// after it was made to boot is held in its network boot (503, the client
// retries) until the hold ends; without a hold it boots its disk.
func TestInterruptedJobHoldsTheNetboot(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	for _, tc := range []struct {
		hold time.Duration
		want int
	}{{time.Hour, http.StatusServiceUnavailable}, {-time.Second, http.StatusOK}, {0, http.StatusOK}} {
		j := e.acquire("web-014")
		if _, err := e.st.ClaimNodeJob(ctx, j.ID, j.Generation, "ctl", time.Minute); err != nil {
			t.Fatal(err)
		}
		ev := "{}"
		if tc.hold != 0 {
			ev = `{"` + landing.HoldUntilKey + `": "` + time.Now().Add(tc.hold).UTC().Format(time.RFC3339Nano) + `"}`
		}
		if _, err := e.st.FinishNode(ctx, j.ID, store.Finish{State: store.JobInterrupted, Evidence: []byte(ev), Owner: "ctl"}); err != nil {
			t.Fatal(err)
		}
		code, body := e.get("/boot/ipxe?mac=" + mac)
		if code != tc.want {
			t.Errorf("hold %v: status %d, want %d\n%s", tc.hold, code, tc.want, body)
		}
		if tc.want == http.StatusOK && !strings.Contains(body, "sanboot") {
			t.Errorf("hold %v: not the local boot script:\n%s", tc.hold, body)
		}
		if tc.want != http.StatusOK && !strings.Contains(body, "reprov reinstall --resume web-014") {
			t.Errorf("hold %v: the answer does not say how to resume:\n%s", tc.hold, body)
		}
		got, _ := e.st.NodeJob(ctx, j.ID)
		if got.LandingSource != "" {
			t.Errorf("hold %v: an interrupted job was marked landed", tc.hold)
		}
	}
}
