package store_test

import (
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/lab/pg"
)

// TestLandingStore: arming, the landing/token transaction and the retry
// window, and landing endpoint sessions, on both backends.
func TestLandingStore(t *testing.T) {
	suite := []struct {
		name string
		fn   func(t *testing.T, fresh newURL)
	}{
		{"Arming", testArming},
		{"RetryWindow", testRetryWindow},
		{"LandRacesFinish", testLandRacesFinish},
		{"EndpointCoverage", testEndpointCoverage},
	}
	run := func(t *testing.T, fresh newURL) {
		for _, tc := range suite {
			t.Run(tc.name, func(t *testing.T) { tc.fn(t, fresh) })
		}
	}
	t.Run("sqlite", func(t *testing.T) {
		run(t, func(t testing.TB) string { return "sqlite://" + filepath.Join(t.TempDir(), "state", "reprov.db") })
	})
	t.Run("postgres", func(t *testing.T) {
		cluster := pg.Start(t)
		run(t, func(t testing.TB) string { return pg.NewDatabase(t, cluster) })
	})
}

const mac = "3c:4a:92:11:22:33"

// testArming: a proof landing before the job's kick is refused and records
// nothing; evidence is recorded anyway; arming is fenced by the lease.
func testArming(t *testing.T, fresh newURL) {
	ctx := ctxT(t)
	s := open(t, fresh(t))
	run := mustRun(t, s)
	queued := mustAcquire(t, s, run.ID, "web-014", mac)

	for _, src := range []store.LandingSource{store.LandingIPXE, store.LandingCallback} {
		if _, err := s.MarkLanded(ctx, queued.ID, src, nil); !errors.Is(err, store.ErrNotArmed) {
			t.Fatalf("%s landing of a queued, unarmed job: %v, want ErrNotArmed", src, err)
		}
	}
	if err := s.ArmLanding(ctx, queued.ID, "o/1"); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("arming a job the caller does not hold: %v, want ErrLeaseLost", err)
	}
	job := mustClaim(t, s, queued, "o/1", time.Minute)
	if _, err := s.Land(ctx, job.ID, store.LandingIPXE, nil, time.Hour); !errors.Is(err, store.ErrNotArmed) {
		t.Fatalf("landing of a running, unarmed job: %v, want ErrNotArmed", err)
	}
	got, _ := s.NodeJob(ctx, job.ID)
	if ls, _ := s.Landings(ctx, job.ID); len(ls) != 0 || got.LandingSource != "" || !got.Updated.Equal(job.Updated) {
		t.Fatalf("a refused landing wrote: landings %v, source %q, updated %v→%v", ls, got.LandingSource, job.Updated, got.Updated)
	}
	// BMC evidence is not a landing proof: recorded without arming.
	if first, err := s.MarkLanded(ctx, job.ID, store.LandingBMCEvidence, nil); err != nil || !first {
		t.Fatalf("bmc-evidence before arming = %v, %v; want recorded", first, err)
	}
	if at, err := s.ArmedAt(ctx, job.ID); err != nil || !at.IsZero() {
		t.Fatalf("ArmedAt before arming = %v, %v", at, err)
	}
	if err := s.ArmLanding(ctx, job.ID, "o/2"); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("arming under another owner: %v, want ErrLeaseLost", err)
	}
	if err := s.ArmLanding(ctx, job.ID, "o/1"); err != nil {
		t.Fatal(err)
	}
	armed, err := s.ArmedAt(ctx, job.ID)
	if err != nil || armed.IsZero() {
		t.Fatalf("ArmedAt after arming = %v, %v", armed, err)
	}
	tok, err := s.IssueCallbackToken(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Arming again (the in-band reboot after an out-of-band cycle) keeps
	// the first arming, hence the token the node may already have.
	if err := s.ArmLanding(ctx, job.ID, "o/1"); err != nil {
		t.Fatal(err)
	}
	if again, _ := s.ArmedAt(ctx, job.ID); !again.Equal(armed) {
		t.Fatalf("arming again moved the arming time %v → %v", armed, again)
	}
	res, err := s.Land(ctx, job.ID, store.LandingIPXE, nil, time.Hour)
	if err != nil || !res.First || res.Token != tok || res.AfterEnd || res.Job.LandingSource != store.LandingIPXE {
		t.Fatalf("armed landing = %+v, %v; want first, the job's token, source ipxe", res, err)
	}
	if _, err := s.FinishNode(ctx, job.ID, store.Finish{State: store.JobFailed, Owner: "o/1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.ArmLanding(ctx, job.ID, "o/1"); !errors.Is(err, store.ErrNotActive) {
		t.Fatalf("arming a finished job: %v, want ErrNotActive", err)
	}
	// A job that failed gets no retry: its node boots its disk.
	if _, err := s.Land(ctx, job.ID, store.LandingIPXE, nil, time.Hour); !errors.Is(err, store.ErrNotActive) {
		t.Fatalf("landing of a failed job: %v, want ErrNotActive", err)
	}
	if _, err := s.LandingJobByMAC(ctx, mac, time.Hour); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("LandingJobByMAC of a failed job: %v, want ErrNotFound", err)
	}
}

// armedJob returns a running job of node, claimed by "o/"+node and armed.
func armedJob(t *testing.T, s *store.Store, run int64, node, mac string) store.NodeJob {
	t.Helper()
	j := mustClaim(t, s, mustAcquire(t, s, run, node, mac), "o/"+node, time.Minute)
	if err := s.ArmLanding(ctxT(t), j.ID, j.Owner); err != nil {
		t.Fatal(err)
	}
	return j
}

// testRetryWindow: after its job ended landed, the same node asking again
// within the window gets its job (and token) again until its installer
// called back; the callback counts within the window.
func testRetryWindow(t *testing.T, fresh newURL) {
	ctx := ctxT(t)
	s := open(t, fresh(t))
	run := mustRun(t, s)
	job := armedJob(t, s, run.ID, "web-014", mac)
	const window = 15 * time.Minute

	first, err := s.Land(ctx, job.ID, store.LandingIPXE, nil, window)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.FinishNode(ctx, job.ID, store.Finish{State: store.JobLanded, Owner: job.Owner}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LandingJobByMAC(ctx, mac, 0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("LandingJobByMAC without a window: %v, want ErrNotFound", err)
	}
	got, err := s.LandingJobByMAC(ctx, mac, window)
	if err != nil || got.ID != job.ID {
		t.Fatalf("LandingJobByMAC within the window = job %d, %v; want %d", got.ID, err, job.ID)
	}
	again, err := s.Land(ctx, job.ID, store.LandingIPXE, nil, window)
	if err != nil || again.First || !again.AfterEnd || again.Token != first.Token {
		t.Fatalf("the node asking again after its job ended = %+v, %v; want the same token, after end", again, err)
	}
	// Outside the window: no more.
	if _, err := s.Land(ctx, job.ID, store.LandingIPXE, nil, time.Microsecond); !errors.Is(err, store.ErrNotActive) {
		t.Fatalf("landing outside the window: %v, want ErrNotActive", err)
	}
	if _, err := s.LandingJobByMAC(ctx, mac, time.Microsecond); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("LandingJobByMAC outside the window: %v, want ErrNotFound", err)
	}
	// The installer calls back after the job ended: recorded on that job.
	byToken, err := s.JobByCallbackToken(ctx, first.Token)
	if err != nil || byToken.ID != job.ID || byToken.State != store.JobLanded {
		t.Fatalf("JobByCallbackToken after the end = job %d (%s), %v", byToken.ID, byToken.State, err)
	}
	cb, err := s.Land(ctx, job.ID, store.LandingCallback, []byte(`{"remote":"192.0.2.14:40000"}`), window)
	if err != nil || !cb.First || !cb.AfterEnd {
		t.Fatalf("callback after the job ended = %+v, %v; want a first callback landing", cb, err)
	}
	ls, _ := s.Landings(ctx, job.ID)
	if len(ls) != 2 || ls[1].Source != store.LandingCallback {
		t.Fatalf("landings %+v, want ipxe then callback", ls)
	}
	// Once the installer runs, the next network boot is the new system's:
	// boot the local disk.
	if _, err := s.LandingJobByMAC(ctx, mac, window); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("LandingJobByMAC after the callback: %v, want ErrNotFound", err)
	}
	if _, err := s.Land(ctx, job.ID, store.LandingIPXE, nil, window); !errors.Is(err, store.ErrNotActive) {
		t.Fatalf("ipxe landing after the callback: %v, want ErrNotActive", err)
	}
	// A newer job of the node hides the old one.
	job2 := mustAcquire(t, s, run.ID, "web-014", mac)
	if _, err := s.FinishNode(ctx, job2.ID, store.Finish{State: store.JobCancelled}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LandingJobByMAC(ctx, mac, window); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("LandingJobByMAC with a newer cancelled job: %v, want ErrNotFound", err)
	}
}

// testLandRacesFinish: the engine finishing a job as landed while its node
// asks (again) never leaves the node without a token (issue: "landing:
// callback token ... job is not active").
func testLandRacesFinish(t *testing.T, fresh newURL) {
	ctx := ctxT(t)
	s := open(t, fresh(t))
	run := mustRun(t, s)
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, 4*n)
	for i := range n {
		j := armedJob(t, s, run.ID, "n"+string(rune('a'+i)), "3c:4a:92:11:22:"+string("0123456789"[i])+"0")
		want, err := s.IssueCallbackToken(ctx, j.ID)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range 3 {
				res, err := s.Land(ctx, j.ID, store.LandingIPXE, nil, time.Minute)
				if err == nil && res.Token != want {
					err = errors.New("another token")
				}
				if err != nil {
					errs <- err
				}
			}
		}()
		go func() {
			defer wg.Done()
			if _, err := s.Land(ctx, j.ID, store.LandingIPXE, nil, time.Minute); err != nil {
				errs <- err
				return
			}
			if _, err := s.FinishNode(ctx, j.ID, store.Finish{State: store.JobLanded, Owner: j.Owner}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("landing racing the finish: %v", err)
	}
}

// testEndpointCoverage: heartbeats of several controllers' endpoints make
// one coverage; a stretch without any is a gap.
func testEndpointCoverage(t *testing.T, fresh newURL) {
	ctx := ctxT(t)
	s := open(t, fresh(t))
	start := time.Now()
	a, err := s.EndpointBound(ctx, "ctl-a", "127.0.0.1:8086")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EndpointHeartbeat(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := s.EndpointReleased(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := s.EndpointHeartbeat(ctx, a); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("heartbeat of a released session: %v, want ErrNotFound", err)
	}
	released := time.Now()
	time.Sleep(60 * time.Millisecond) // a stretch with no endpoint bound
	b, err := s.EndpointBound(ctx, "ctl-b", "127.0.0.1:8086")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EndpointHeartbeat(ctx, b); err != nil {
		t.Fatal(err)
	}
	end := time.Now()
	sessions, err := s.EndpointSessions(ctx, start, end)
	if err != nil || len(sessions) != 2 || sessions[0].Controller != "ctl-a" || sessions[0].Released.IsZero() || !sessions[1].Released.IsZero() {
		t.Fatalf("EndpointSessions = %+v, %v", sessions, err)
	}
	// A 60 ms stretch is not a gap when 1 s is allowed.
	covered, gaps, err := s.EndpointCoverage(ctx, start, sessions[1].SeenAt, time.Second)
	if err != nil || !covered || len(gaps) != 0 {
		t.Fatalf("coverage with a 1 s bound = %v %v, %v; want covered", covered, gaps, err)
	}
	covered, gaps, err = s.EndpointCoverage(ctx, start, sessions[1].SeenAt, 10*time.Millisecond)
	if err != nil || covered || len(gaps) != 1 {
		t.Fatalf("coverage with a 10 ms bound = %v %v, %v; want one gap", covered, gaps, err)
	}
	if g := gaps[0]; g[0].After(released) || g[1].Before(released.Add(60*time.Millisecond)) {
		t.Errorf("gap %v–%v does not span the 60 ms after %v", g[0], g[1], released)
	}
	// Before any endpoint, and after the last heartbeat: gaps.
	covered, gaps, err = s.EndpointCoverage(ctx, start.Add(-time.Minute), sessions[1].SeenAt.Add(time.Minute), time.Second)
	if err != nil || covered || len(gaps) != 2 {
		t.Fatalf("coverage of a longer stretch = %v %v, %v; want gaps at both ends", covered, gaps, err)
	}
}
