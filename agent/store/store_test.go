package store_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/lab/labtool"
	"github.com/reprov/reprov/lab/pg"
)

// newURL returns the URL of a fresh, empty store.
type newURL func(t testing.TB) string

func TestStore(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		runSuite(t, store.SQLite, func(t testing.TB) string {
			return "sqlite://" + filepath.Join(t.TempDir(), "state", "reprov.db")
		})
	})
	t.Run("postgres", func(t *testing.T) {
		cluster := pg.Start(t)
		runSuite(t, store.Postgres, func(t testing.TB) string { return pg.NewDatabase(t, cluster) })
	})
}

func runSuite(t *testing.T, dialect store.Dialect, fresh newURL) {
	tests := []struct {
		name string
		fn   func(t *testing.T, dialect store.Dialect, fresh newURL)
	}{
		{"MigrationsIdempotent", testMigrationsIdempotent},
		{"OneActiveJobPerNode", testOneActiveJobPerNode},
		{"AcquireRace", testAcquireRace},
		{"AcquireRaceProcesses", testAcquireRaceProcesses},
		{"StepRecord", testStepRecord},
		{"ClaimLeaseTakeover", testClaimLeaseTakeover},
		{"ActiveJobByMAC", testActiveJobByMAC},
		{"MarkLanded", testMarkLanded},
		{"CallbackToken", testCallbackToken},
		{"Cancel", testCancel},
		{"WindowClosed", testWindowClosed},
		{"QuirksAndSectors", testQuirksAndSectors},
		{"RiverEndToEnd", testRiverEndToEnd},
		{"RiverUniquePerNodeJob", testRiverUnique},
		{"ResumeOrphan", testResumeOrphan},
		{"AuditTrail", testAuditTrail},
		{"WakeQueued", testWakeQueued},
		{"EndedJobIDs", testEndedJobIDs},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, dialect, fresh) })
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func open(t testing.TB, url string) *store.Store {
	t.Helper()
	s, err := store.Open(ctxT(t), url, testLogger())
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustRun(t testing.TB, s *store.Store) store.Run {
	t.Helper()
	r, err := s.CreateRun(ctxT(t), store.RunSpec{CreatedBy: "test", Selection: "rack=r12", Options: json.RawMessage(`{"max_parallel":4}`)})
	if err != nil {
		t.Fatalf("CreateRun: %v", err)
	}
	return r
}

func mustAcquire(t testing.TB, s *store.Store, run int64, node string, macs ...string) store.NodeJob {
	t.Helper()
	j, err := s.AcquireNode(ctxT(t), store.AcquireRequest{RunID: run, Node: node, MACs: macs, Path: "oob"})
	if err != nil {
		t.Fatalf("AcquireNode(%s): %v", node, err)
	}
	return j
}

func mustClaim(t testing.TB, s *store.Store, j store.NodeJob, owner string, ttl time.Duration) store.NodeJob {
	t.Helper()
	c, err := s.ClaimNodeJob(ctxT(t), j.ID, j.Generation, owner, ttl)
	if err != nil {
		t.Fatalf("ClaimNodeJob(%d): %v", j.ID, err)
	}
	return c
}

func jsonEqual(t testing.TB, got json.RawMessage, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("stored JSON %q does not parse: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if !bytes.Equal(gb, wb) {
		t.Fatalf("JSON = %s, want %s", got, want)
	}
}

func testMigrationsIdempotent(t *testing.T, dialect store.Dialect, fresh newURL) {
	ctx := ctxT(t)
	url := fresh(t)
	s1, err := store.Open(ctx, url, testLogger())
	if err != nil {
		t.Fatalf("first Open: %v", err)
	}
	if s1.Dialect() != dialect {
		t.Fatalf("Dialect = %s, want %s", s1.Dialect(), dialect)
	}
	run := mustRun(t, s1)
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}

	// Open again (nothing to migrate) and a third time while the second is open.
	s2 := open(t, url)
	s3 := open(t, url)
	for i, s := range []*store.Store{s2, s3} {
		got, err := s.Run(ctx, run.ID)
		if err != nil {
			t.Fatalf("store %d: Run(%d) after reopen: %v", i+2, run.ID, err)
		}
		if got.Selection != "rack=r12" || got.State != store.RunRunning || got.CreatedBy != "test" {
			t.Fatalf("store %d: run after reopen = %+v", i+2, got)
		}
		jsonEqual(t, got.Options, `{"max_parallel":4}`)
	}
	// River's tables are there too: an insert-only queue can list jobs.
	q, err := s3.NewQueue(store.QueueConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.JobList(ctx, nil); err != nil {
		t.Fatalf("River JobList after migrations: %v", err)
	}

	if dialect != store.SQLite {
		return
	}
	path, err := store.SQLitePath(url)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("database file mode = %o, want 600", perm)
	}
	// A store written by a newer reprov is refused, not silently used.
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(`INSERT INTO reprov_schema_version (version, name, applied_at) VALUES (?, 'future', 0)`, store.SchemaVersion()+1); err != nil {
		t.Fatal(err)
	}
	if s, err := store.Open(ctx, url, testLogger()); err == nil {
		s.Close()
		t.Fatal("Open of a store with a newer schema succeeded")
	} else if !strings.Contains(err.Error(), "newer") {
		t.Fatalf("Open of a newer store: %v, want a message saying it is newer", err)
	}
}

func testOneActiveJobPerNode(t *testing.T, _ store.Dialect, fresh newURL) {
	ctx := ctxT(t)
	url := fresh(t)
	a, b := open(t, url), open(t, url) // two controllers on one store
	runA, runB := mustRun(t, a), mustRun(t, b)

	held := mustAcquire(t, a, runA.ID, "web-014")
	if held.State != store.JobQueued || held.Node != "web-014" || held.RunID != runA.ID || held.Path != "oob" {
		t.Fatalf("acquired job = %+v", held)
	}
	_, err := b.AcquireNode(ctx, store.AcquireRequest{RunID: runB.ID, Node: "web-014"})
	if !errors.Is(err, store.ErrNodeBusy) {
		t.Fatalf("second AcquireNode: %v, want ErrNodeBusy", err)
	}
	var busy *store.NodeBusyError
	if !errors.As(err, &busy) || busy.JobID != held.ID || busy.RunID != runA.ID || busy.Node != "web-014" {
		t.Fatalf("busy error %v does not name the holder job %d of run %d", err, held.ID, runA.ID)
	}
	if !strings.Contains(err.Error(), fmt.Sprint(runA.ID)) {
		t.Fatalf("error %q does not name the holder run %d", err, runA.ID)
	}
	// Another node is not affected.
	mustAcquire(t, b, runB.ID, "web-015")

	// Finishing releases the node.
	if _, err := a.FinishNode(ctx, held.ID, store.Finish{State: store.JobFailed, Reason: "BMC unreachable"}); err != nil {
		t.Fatal(err)
	}
	again := mustAcquire(t, b, runB.ID, "web-014")
	if again.ID == held.ID {
		t.Fatal("re-acquire returned the finished job")
	}
	// Finishing twice is refused.
	if _, err := a.FinishNode(ctx, held.ID, store.Finish{State: store.JobLanded}); !errors.Is(err, store.ErrNotActive) {
		t.Fatalf("FinishNode of a finished job: %v, want ErrNotActive", err)
	}
	// Unknown run.
	if _, err := a.AcquireNode(ctx, store.AcquireRequest{RunID: 999999, Node: "x"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("AcquireNode with unknown run: %v, want ErrNotFound", err)
	}
	// A finished run takes no new nodes.
	if err := a.SetRunState(ctx, runA.ID, store.RunFinished); err != nil {
		t.Fatal(err)
	}
	if _, err := a.AcquireNode(ctx, store.AcquireRequest{RunID: runA.ID, Node: "y"}); err == nil {
		t.Fatal("AcquireNode in a finished run succeeded")
	}
	jobs, err := a.NodeJobs(ctx, store.JobFilter{Node: "web-014"})
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 2 || jobs[0].ID != again.ID || jobs[1].State != store.JobFailed || jobs[1].Reason != "BMC unreachable" {
		t.Fatalf("NodeJobs(web-014) = %+v", jobs)
	}
	active, err := a.NodeJobs(ctx, store.JobFilter{States: []store.JobState{store.JobQueued, store.JobRunning}})
	if err != nil {
		t.Fatal(err)
	}
	if len(active) != 2 {
		t.Fatalf("active jobs = %d, want 2 (web-014, web-015)", len(active))
	}
}

// acquireAll tries to acquire nodes in the given order, starting when start
// closes, and returns the nodes won; every other attempt must be ErrNodeBusy.
func acquireAll(ctx context.Context, s *store.Store, run int64, order []string, start <-chan struct{}) (won []string, err error) {
	<-start
	for _, node := range order {
		_, err := s.AcquireNode(ctx, store.AcquireRequest{RunID: run, Node: node})
		switch {
		case err == nil:
			won = append(won, node)
		case errors.Is(err, store.ErrNodeBusy):
		default:
			return won, fmt.Errorf("%s: %w", node, err)
		}
	}
	return won, nil
}

func raceNodes(seed uint64) (asc, shuffled []string) {
	for i := range 50 {
		asc = append(asc, fmt.Sprintf("node-%02d", i))
	}
	shuffled = slices.Clone(asc)
	rand.New(rand.NewPCG(seed, 1)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	return asc, shuffled
}

// checkEachOnce fails unless every node was won by exactly one controller
// and the store holds exactly one job per node.
func checkEachOnce(t *testing.T, s *store.Store, nodes []string, won ...[]string) {
	t.Helper()
	count := make(map[string]int)
	for _, w := range won {
		for _, n := range w {
			count[n]++
		}
	}
	for _, n := range nodes {
		if count[n] != 1 {
			t.Errorf("%s acquired %d times, want exactly once", n, count[n])
		}
	}
	jobs, err := s.NodeJobs(ctxT(t), store.JobFilter{})
	if err != nil {
		t.Fatal(err)
	}
	perNode := make(map[string]int)
	for _, j := range jobs {
		perNode[j.Node]++
	}
	if len(perNode) != len(nodes) || len(jobs) != len(nodes) {
		t.Errorf("store holds %d jobs for %d nodes, want %d for %d", len(jobs), len(perNode), len(nodes), len(nodes))
	}
	t.Logf("wins per controller: %d and %d", len(won[0]), len(won[1]))
}

func testAcquireRace(t *testing.T, _ store.Dialect, fresh newURL) {
	ctx := ctxT(t)
	url := fresh(t)
	stores := []*store.Store{open(t, url), open(t, url)}
	runs := []int64{mustRun(t, stores[0]).ID, mustRun(t, stores[1]).ID}
	asc, shuffled := raceNodes(uint64(time.Now().UnixNano()))
	orders := [][]string{asc, shuffled}

	start := make(chan struct{})
	won := make([][]string, len(stores))
	errs := make([]error, len(stores))
	var wg sync.WaitGroup
	for i := range stores {
		wg.Go(func() { won[i], errs[i] = acquireAll(ctx, stores[i], runs[i], orders[i], start) })
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("controller %d: %v", i, err)
		}
	}
	checkEachOnce(t, stores[0], asc, won...)
}

// testAcquireRaceProcesses races two real processes (this test binary
// re-executed as TestAcquireHelper) on one store.
func testAcquireRaceProcesses(t *testing.T, _ store.Dialect, fresh newURL) {
	ctx := ctxT(t)
	url := fresh(t)
	s := open(t, url)
	runs := []int64{mustRun(t, s).ID, mustRun(t, s).ID}
	asc, _ := raceNodes(0)

	type result struct {
		won []string
		err error
	}
	results := make([]result, 2)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestAcquireHelper$", "-test.count=1")
			cmd.Env = append(os.Environ(),
				"REPROV_STORE_HELPER_URL="+url,
				"REPROV_STORE_HELPER_RUN="+strconv.FormatInt(runs[i], 10),
				"REPROV_STORE_HELPER_SEED="+strconv.Itoa(i),
				// Both processes start at the same wall-clock instant.
				"REPROV_STORE_HELPER_START="+strconv.FormatInt(time.Now().Add(1500*time.Millisecond).UnixNano(), 10))
			out, err := cmd.CombinedOutput()
			if err != nil {
				results[i].err = fmt.Errorf("helper process %d: %v\n%s", i, err, out)
				return
			}
			for line := range strings.Lines(string(out)) {
				if node, ok := strings.CutPrefix(strings.TrimSpace(line), "WON "); ok {
					results[i].won = append(results[i].won, node)
				}
			}
		})
	}
	wg.Wait()
	for _, r := range results {
		if r.err != nil {
			t.Fatal(r.err)
		}
	}
	checkEachOnce(t, s, asc, results[0].won, results[1].won)
}

// TestAcquireHelper is the child process of testAcquireRaceProcesses; it
// does nothing when run on its own.
func TestAcquireHelper(t *testing.T) {
	url := os.Getenv("REPROV_STORE_HELPER_URL")
	if url == "" {
		t.Skip("helper process for TestStore/*/AcquireRaceProcesses")
	}
	run, _ := strconv.ParseInt(os.Getenv("REPROV_STORE_HELPER_RUN"), 10, 64)
	seed, _ := strconv.ParseUint(os.Getenv("REPROV_STORE_HELPER_SEED"), 10, 64)
	startAt, _ := strconv.ParseInt(os.Getenv("REPROV_STORE_HELPER_START"), 10, 64)
	s := open(t, url)
	asc, shuffled := raceNodes(seed + 42)
	order := asc
	if seed == 1 {
		order = shuffled
	}
	start := make(chan struct{})
	time.AfterFunc(time.Until(time.Unix(0, startAt)), func() { close(start) })
	won, err := acquireAll(ctxT(t), s, run, order, start)
	for _, n := range won {
		fmt.Println("WON " + n)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func testStepRecord(t *testing.T, _ store.Dialect, fresh newURL) {
	ctx := ctxT(t)
	s := open(t, fresh(t))
	run := mustRun(t, s)
	job := mustAcquire(t, s, run.ID, "dl360-07")

	// No intent before the job is claimed.
	if _, err := s.RecordStep(ctx, store.Step{JobID: job.ID, Name: "precheck", Phase: store.PhaseIntent}); err == nil {
		t.Fatal("intent on a queued (unclaimed) job was recorded")
	}
	job = mustClaim(t, s, job, "ctl-a/job-1", time.Minute)

	intent, err := s.RecordStep(ctx, store.Step{JobID: job.ID, Name: "oob_boot", Phase: store.PhaseIntent,
		Detail: json.RawMessage(`{"device":"pxe","mode":"legacy"}`), Owner: "ctl-a/job-1"})
	if err != nil {
		t.Fatalf("record intent: %v", err)
	}
	if intent.ID == 0 || intent.Node != "dl360-07" || intent.Phase != store.PhaseIntent || intent.Time.IsZero() {
		t.Fatalf("intent = %+v", intent)
	}
	out, err := s.RecordStep(ctx, store.Step{Phase: store.PhaseOutcome, IntentID: intent.ID, Result: store.ResultOK,
		Detail: json.RawMessage(`{"read_back":"pxe"}`)})
	if err != nil {
		t.Fatalf("record outcome: %v", err)
	}
	if out.Name != "oob_boot" || out.JobID != job.ID || out.IntentID != intent.ID {
		t.Fatalf("outcome = %+v", out)
	}
	if _, err := s.RecordStep(ctx, store.Step{Phase: store.PhaseOutcome, IntentID: intent.ID, Result: store.ResultFailed}); !errors.Is(err, store.ErrAlreadySettled) {
		t.Fatalf("second outcome: %v, want ErrAlreadySettled", err)
	}
	// A stale owner cannot record intents.
	if _, err := s.RecordStep(ctx, store.Step{JobID: job.ID, Name: "power_cycle", Phase: store.PhaseIntent, Owner: "ctl-b/job-9"}); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("intent by another owner: %v, want ErrLeaseLost", err)
	}
	wipe, err := s.RecordStep(ctx, store.Step{JobID: job.ID, Name: "wipe_boot_sector", Phase: store.PhaseIntent,
		Detail: json.RawMessage(`{"disk":"/dev/sda"}`), Owner: "ctl-a/job-1"})
	if err != nil {
		t.Fatal(err)
	}
	// The controller dies here: the wipe intent has no outcome.

	last, err := s.LastStep(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if last.Name != "oob_boot" || last.Phase != store.PhaseOutcome || last.Result != store.ResultOK {
		t.Fatalf("LastStep = %+v, want the oob_boot outcome", last)
	}
	got, err := s.NodeJob(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Step != "wipe_boot_sector" {
		t.Fatalf("job's current step = %q, want wipe_boot_sector", got.Step)
	}
	unsettled, err := s.UnsettledSteps(ctx, "dl360-07")
	if err != nil {
		t.Fatal(err)
	}
	if len(unsettled) != 1 || unsettled[0].ID != wipe.ID {
		t.Fatalf("UnsettledSteps = %+v, want only the wipe intent %d", unsettled, wipe.ID)
	}
	jsonEqual(t, unsettled[0].Detail, `{"disk":"/dev/sda"}`)

	steps, err := s.Steps(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 3 || steps[0].ID != intent.ID || steps[1].ID != out.ID || steps[2].ID != wipe.ID {
		t.Fatalf("Steps = %+v", steps)
	}
	jsonEqual(t, steps[0].Detail, `{"device":"pxe","mode":"legacy"}`)
	jsonEqual(t, steps[1].Detail, `{"read_back":"pxe"}`)

	// The job ends interrupted; the next job on the node still sees the
	// unsettled wipe, settles it by looking, and then the node is clean.
	if _, err := s.FinishNode(ctx, job.ID, store.Finish{State: store.JobInterrupted, Reason: "controller stopped"}); err != nil {
		t.Fatal(err)
	}
	next := mustClaim(t, s, mustAcquire(t, s, run.ID, "dl360-07"), "ctl-b/job-2", time.Minute)
	unsettled, err = s.UnsettledSteps(ctx, "dl360-07")
	if err != nil || len(unsettled) != 1 {
		t.Fatalf("UnsettledSteps for the next job = %+v, %v", unsettled, err)
	}
	if _, err := s.RecordStep(ctx, store.Step{Phase: store.PhaseOutcome, IntentID: unsettled[0].ID, Result: store.ResultOK,
		Detail: json.RawMessage(`{"settled_by":"look","sector0":"zero"}`)}); err != nil {
		t.Fatalf("settle old intent: %v", err)
	}
	if unsettled, err = s.UnsettledSteps(ctx, "dl360-07"); err != nil || len(unsettled) != 0 {
		t.Fatalf("UnsettledSteps after settling = %+v, %v", unsettled, err)
	}
	if _, err := s.LastStep(ctx, next.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("LastStep of a job with no outcome: %v, want ErrNotFound", err)
	}
	if _, err := s.RecordStep(ctx, store.Step{JobID: next.ID, Name: "x", Phase: store.PhaseIntent, Detail: json.RawMessage(`{bad`)}); err == nil {
		t.Fatal("invalid JSON detail accepted")
	}
}

func testClaimLeaseTakeover(t *testing.T, _ store.Dialect, fresh newURL) {
	ctx := ctxT(t)
	s := open(t, fresh(t))
	run := mustRun(t, s)
	job := mustAcquire(t, s, run.ID, "n1")

	claimed := mustClaim(t, s, job, "a/job-1", 300*time.Millisecond)
	if claimed.State != store.JobRunning || claimed.Owner != "a/job-1" || claimed.Started.IsZero() {
		t.Fatalf("claimed = %+v", claimed)
	}
	if _, err := s.ClaimNodeJob(ctx, job.ID, job.Generation, "b/job-2", time.Minute); !errors.Is(err, store.ErrNodeBusy) {
		t.Fatalf("claim by b under a's live lease: %v, want ErrNodeBusy", err)
	}
	if orphans, err := s.OrphanedJobs(ctx); err != nil || len(orphans) != 0 {
		t.Fatalf("OrphanedJobs with a live lease = %+v, %v", orphans, err)
	}
	// a stops renewing; its lease runs out.
	labtool.Eventually(t, 10*time.Second, "a's lease to expire", func() bool { return time.Now().After(claimed.LeaseUntil) })
	orphans, err := s.OrphanedJobs(ctx)
	if err != nil || len(orphans) != 1 || orphans[0].ID != job.ID {
		t.Fatalf("OrphanedJobs after expiry = %+v, %v", orphans, err)
	}
	taken := mustClaim(t, s, job, "b/job-2", time.Minute)
	if taken.Owner != "b/job-2" || !taken.Started.Equal(claimed.Started) {
		t.Fatalf("takeover = %+v (started %v, was %v)", taken, taken.Started, claimed.Started)
	}
	if err := s.RenewLease(ctx, job.ID, "a/job-1", time.Minute); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("a renews after takeover: %v, want ErrLeaseLost", err)
	}
	if err := s.RenewLease(ctx, job.ID, "b/job-2", time.Minute); err != nil {
		t.Fatalf("b renews: %v", err)
	}
	if _, err := s.FinishNode(ctx, job.ID, store.Finish{State: store.JobFailed, Owner: "a/job-1"}); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("a finishes b's job: %v, want ErrLeaseLost", err)
	}
	if err := s.SetPath(ctx, job.ID, "inband"); err != nil {
		t.Fatal(err)
	}
	fin, err := s.FinishNode(ctx, job.ID, store.Finish{State: store.JobLanded, Owner: "b/job-2", Evidence: json.RawMessage(`{"source":"ipxe"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if fin.State != store.JobLanded || fin.Path != "inband" || fin.Finished.IsZero() {
		t.Fatalf("finished job = %+v", fin)
	}
	jsonEqual(t, fin.Evidence, `{"source":"ipxe"}`)
	if err := s.RenewLease(ctx, job.ID, "b/job-2", time.Minute); !errors.Is(err, store.ErrNotActive) {
		t.Fatalf("renew of a finished job: %v, want ErrNotActive", err)
	}
	if _, err := s.ClaimNodeJob(ctx, job.ID, job.Generation, "c/job-3", time.Minute); !errors.Is(err, store.ErrNotActive) {
		t.Fatalf("claim of a finished job: %v, want ErrNotActive", err)
	}
	if _, err := s.ClaimNodeJob(ctx, job.ID, job.Generation-1, "c/job-3", time.Minute); !errors.Is(err, store.ErrSuperseded) {
		t.Fatalf("claim of an old generation: %v, want ErrSuperseded", err)
	}
	if _, err := s.FinishNode(ctx, job.ID+1000, store.Finish{State: store.JobFailed}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("finish of unknown job: %v, want ErrNotFound", err)
	}
	if _, err := s.FinishNode(ctx, job.ID, store.Finish{State: store.JobRunning}); err == nil {
		t.Fatal("FinishNode accepted an active state")
	}
}

func testActiveJobByMAC(t *testing.T, _ store.Dialect, fresh newURL) {
	ctx := ctxT(t)
	s := open(t, fresh(t))
	run := mustRun(t, s)
	job := mustAcquire(t, s, run.ID, "web-014", "3C-4A-92-11-22-33", "3c:4a:92:11:22:34")
	mustAcquire(t, s, run.ID, "web-015", "3c:4a:92:11:22:99")
	if want := []string{"3c:4a:92:11:22:33", "3c:4a:92:11:22:34"}; strings.Join(job.MACs, " ") != strings.Join(want, " ") {
		t.Fatalf("stored MACs = %v, want %v", job.MACs, want)
	}
	for _, mac := range []string{"3c:4a:92:11:22:33", "3C:4A:92:11:22:34"} {
		got, err := s.ActiveJobByMAC(ctx, mac)
		if err != nil {
			t.Fatalf("ActiveJobByMAC(%s): %v", mac, err)
		}
		if got.ID != job.ID || got.Node != "web-014" {
			t.Fatalf("ActiveJobByMAC(%s) = job %d (%s), want %d (web-014)", mac, got.ID, got.Node, job.ID)
		}
	}
	if _, err := s.ActiveJobByMAC(ctx, "00:11:22:33:44:55"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown MAC: %v, want ErrNotFound", err)
	}
	if _, err := s.ActiveJobByMAC(ctx, "not-a-mac"); err == nil {
		t.Fatal("malformed MAC accepted")
	}
	if _, err := s.AcquireNode(ctx, store.AcquireRequest{RunID: run.ID, Node: "bad", MACs: []string{"zz"}}); err == nil {
		t.Fatal("AcquireNode accepted a malformed MAC")
	}
	if _, err := s.FinishNode(ctx, job.ID, store.Finish{State: store.JobCancelled}); err != nil {
		t.Fatal(err)
	}
	// A node without an active job gets "boot from disk": not found.
	if _, err := s.ActiveJobByMAC(ctx, "3c:4a:92:11:22:33"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("MAC of a finished job: %v, want ErrNotFound", err)
	}
}

func testMarkLanded(t *testing.T, _ store.Dialect, fresh newURL) {
	ctx := ctxT(t)
	s := open(t, fresh(t))
	run := mustRun(t, s)
	a := mustClaim(t, s, mustAcquire(t, s, run.ID, "a"), "o/1", time.Minute)
	if err := s.ArmLanding(ctx, a.ID, "o/1"); err != nil {
		t.Fatal(err)
	}

	first, err := s.MarkLanded(ctx, a.ID, store.LandingIPXE, json.RawMessage(`{"mac":"3c:4a:92:11:22:33"}`))
	if err != nil || !first {
		t.Fatalf("first MarkLanded = %v, %v; want true, nil", first, err)
	}
	landed, err := s.NodeJob(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if landed.LandingSource != store.LandingIPXE || landed.LandedAt.IsZero() {
		t.Fatalf("after iPXE landing: source %q at %v", landed.LandingSource, landed.LandedAt)
	}
	if landed.State != store.JobRunning {
		t.Fatalf("MarkLanded changed the job's state to %s; the engine finishes it", landed.State)
	}
	again, err := s.MarkLanded(ctx, a.ID, store.LandingIPXE, json.RawMessage(`{"mac":"retry"}`))
	if err != nil || again {
		t.Fatalf("repeated MarkLanded = %v, %v; want false, nil", again, err)
	}
	// Weaker evidence later is recorded but does not replace the proof.
	if first, err := s.MarkLanded(ctx, a.ID, store.LandingBMCEvidence, nil); err != nil || !first {
		t.Fatalf("bmc-evidence after ipxe = %v, %v", first, err)
	}
	after, _ := s.NodeJob(ctx, a.ID)
	if after.LandingSource != store.LandingIPXE || !after.LandedAt.Equal(landed.LandedAt) {
		t.Fatalf("landing after weaker evidence: %q at %v, want ipxe at %v", after.LandingSource, after.LandedAt, landed.LandedAt)
	}
	ls, err := s.Landings(ctx, a.ID)
	if err != nil || len(ls) != 2 {
		t.Fatalf("Landings = %+v, %v; want 2", ls, err)
	}
	jsonEqual(t, ls[0].Evidence, `{"mac":"3c:4a:92:11:22:33"}`)

	// Evidence first, proof later: the proof wins.
	b := mustAcquire(t, s, run.ID, "b")
	if _, err := s.MarkLanded(ctx, b.ID, store.LandingBMCEvidence, json.RawMessage(`{"override":"None"}`)); err != nil {
		t.Fatal(err)
	}
	mustClaim(t, s, b, "o/2", time.Minute)
	if err := s.ArmLanding(ctx, b.ID, "o/2"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.MarkLanded(ctx, b.ID, store.LandingCallback, nil); err != nil {
		t.Fatal(err)
	}
	gotB, _ := s.NodeJob(ctx, b.ID)
	if gotB.LandingSource != store.LandingCallback {
		t.Fatalf("landing source = %q, want callback (proof over evidence)", gotB.LandingSource)
	}
	if !gotB.LandingSource.Proof() || store.LandingBMCEvidence.Proof() {
		t.Fatal("Proof() disagrees with the documented strengths")
	}
	if _, err := s.MarkLanded(ctx, b.ID, "smoke-signal", nil); err == nil {
		t.Fatal("unknown landing source accepted")
	}
	if _, err := s.MarkLanded(ctx, 999999, store.LandingIPXE, nil); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("MarkLanded of unknown job: %v, want ErrNotFound", err)
	}
}

func testCallbackToken(t *testing.T, dialect store.Dialect, fresh newURL) {
	ctx := ctxT(t)
	url := fresh(t)
	s := open(t, url)
	run := mustRun(t, s)
	job := mustClaim(t, s, mustAcquire(t, s, run.ID, "n1"), "o/1", time.Minute)
	other := mustClaim(t, s, mustAcquire(t, s, run.ID, "n2"), "o/2", time.Minute)

	// No token before the job's landing is armed.
	if _, err := s.IssueCallbackToken(ctx, job.ID); !errors.Is(err, store.ErrNotArmed) {
		t.Fatalf("token before arming: %v, want ErrNotArmed", err)
	}
	for _, j := range []store.NodeJob{job, other} {
		if err := s.ArmLanding(ctx, j.ID, j.Owner); err != nil {
			t.Fatal(err)
		}
	}
	tok1, err := s.IssueCallbackToken(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	tok2, err := s.IssueCallbackToken(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	tokOther, err := s.IssueCallbackToken(ctx, other.ID)
	if err != nil {
		t.Fatal(err)
	}
	// One token per job: every retry hands out the same one.
	if tok1 != tok2 || tok1 == tokOther || len(tok1) < 40 {
		t.Fatalf("tokens: %q, %q (other job %q); want one per job, long", tok1, tok2, tokOther)
	}
	if got, err := s.JobByCallbackToken(ctx, tok1); err != nil || got.ID != job.ID {
		t.Fatalf("JobByCallbackToken = job %d, %v; want %d", got.ID, err, job.ID)
	}
	if got, err := s.JobByCallbackToken(ctx, tokOther); err != nil || got.ID != other.ID {
		t.Fatalf("other node's token = job %d, %v", got.ID, err)
	}
	for _, bad := range []string{tok1 + "x", tok1[:len(tok1)-1], strings.Replace(tok1, fmt.Sprintf(".%d.", job.ID), fmt.Sprintf(".%d.", other.ID), 1), "", "v1.", "v1.-1.x"} {
		if _, err := s.JobByCallbackToken(ctx, bad); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("wrong token %q: %v, want ErrNotFound", bad, err)
		}
	}
	if dialect == store.SQLite {
		// The token is derived, never stored: it is nowhere in the files.
		path, _ := store.SQLitePath(url)
		for _, f := range []string{path, path + "-wal"} {
			b, err := os.ReadFile(f)
			if err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			if bytes.Contains(b, []byte(tok1)) {
				t.Fatalf("callback token stored in clear in %s", f)
			}
		}
	}
	if _, err := s.FinishNode(ctx, job.ID, store.Finish{State: store.JobLanded}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.IssueCallbackToken(ctx, job.ID); !errors.Is(err, store.ErrNotActive) {
		t.Fatalf("token for a finished job: %v, want ErrNotActive", err)
	}
}

func testCancel(t *testing.T, _ store.Dialect, fresh newURL) {
	ctx := ctxT(t)
	url := fresh(t)
	ctl, cli := open(t, url), open(t, url) // the controller and `reprov jobs cancel`
	run := mustRun(t, ctl)

	// Queued: cancelled at once; the worker that comes later does nothing.
	queued := mustAcquire(t, ctl, run.ID, "q1")
	got, err := cli.CancelNode(ctx, "q1", "")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != store.JobCancelled || got.Reason == "" || got.CancelRequested.IsZero() {
		t.Fatalf("cancelled queued job = %+v", got)
	}
	if _, err := ctl.ClaimNodeJob(ctx, queued.ID, queued.Generation, "w/1", time.Minute); !errors.Is(err, store.ErrNotActive) {
		t.Fatalf("claim after cancel: %v, want ErrNotActive", err)
	}
	if _, err := cli.ActiveJob(ctx, "q1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ActiveJob after cancel: %v, want ErrNotFound", err)
	}

	// Running under a live controller: the controller is asked, the node
	// stays held until it stops at its next step boundary.
	running := mustClaim(t, ctl, mustAcquire(t, ctl, run.ID, "r1"), "w/2", time.Minute)
	if stop, err := ctl.CancelRequested(ctx, running.ID); err != nil || stop {
		t.Fatalf("CancelRequested before cancel = %v, %v", stop, err)
	}
	got, err = cli.CancelNode(ctx, "r1", "operator: wrong rack")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != store.JobRunning || got.CancelRequested.IsZero() || got.CancelReason != "operator: wrong rack" {
		t.Fatalf("cancel of a running job = %+v; want still running with a request", got)
	}
	if _, err := cli.AcquireNode(ctx, store.AcquireRequest{RunID: run.ID, Node: "r1"}); !errors.Is(err, store.ErrNodeBusy) {
		t.Fatalf("node released before its controller stopped: %v", err)
	}
	if stop, err := ctl.CancelRequested(ctx, running.ID); err != nil || !stop {
		t.Fatalf("CancelRequested after cancel = %v, %v; want true", stop, err)
	}
	if _, err := ctl.FinishNode(ctx, running.ID, store.Finish{State: store.JobCancelled, Reason: got.CancelReason, Owner: "w/2"}); err != nil {
		t.Fatal(err)
	}

	// Running but nobody is working it (lease expired): cancelled at once.
	orphan := mustClaim(t, ctl, mustAcquire(t, ctl, run.ID, "o1"), "dead/3", 50*time.Millisecond)
	labtool.Eventually(t, 10*time.Second, "the dead owner's lease to expire", func() bool { return time.Now().After(orphan.LeaseUntil) })
	got, err = cli.CancelNode(ctx, "o1", "")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != store.JobCancelled {
		t.Fatalf("cancel of an orphaned job left it %s", got.State)
	}
	if _, err := cli.CancelNode(ctx, "nobody", ""); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("cancel of a node without a job: %v, want ErrNotFound", err)
	}
}

func testWindowClosed(t *testing.T, _ store.Dialect, fresh newURL) {
	ctx := ctxT(t)
	s := open(t, fresh(t))
	if _, err := s.CreateRun(ctx, store.RunSpec{WindowStart: time.Now(), WindowEnd: time.Now().Add(-time.Hour)}); err == nil {
		t.Fatal("run with a window ending before it starts was created")
	}
	future, err := s.CreateRun(ctx, store.RunSpec{Selection: "role=batch", WindowStart: time.Now().Add(time.Hour), WindowEnd: time.Now().Add(5 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if future.State != store.RunScheduled || future.WindowStart.IsZero() || future.WindowEnd.IsZero() {
		t.Fatalf("future window run = %+v", future)
	}
	// A window already over: a queued node may not start.
	past, err := s.CreateRun(ctx, store.RunSpec{WindowStart: time.Now().Add(-2 * time.Hour), WindowEnd: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	job := mustAcquire(t, s, past.ID, "batch-1")
	if _, err := s.ClaimNodeJob(ctx, job.ID, job.Generation, "w/1", time.Minute); !errors.Is(err, store.ErrWindowClosed) {
		t.Fatalf("claim after the window: %v, want ErrWindowClosed", err)
	}
	got, _ := s.NodeJob(ctx, job.ID)
	if got.State != store.JobCancelled || !strings.Contains(got.Reason, "window") {
		t.Fatalf("job after window end = %s (%q), want cancelled with a reason naming the window", got.State, got.Reason)
	}
	runs, err := s.Runs(ctx, 0)
	if err != nil || len(runs) != 2 || runs[0].ID != past.ID || runs[1].ID != future.ID {
		t.Fatalf("Runs = %+v, %v; want the two runs, newest first", runs, err)
	}
	if err := s.SetRunState(ctx, past.ID, store.RunFinished); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Run(ctx, past.ID); err != nil || r.State != store.RunFinished || r.Finished.IsZero() {
		t.Fatalf("finished run = %+v, %v", r, err)
	}
}

func testQuirksAndSectors(t *testing.T, _ store.Dialect, fresh newURL) {
	ctx := ctxT(t)
	s := open(t, fresh(t))
	run := mustRun(t, s)
	q := store.Quirk{Node: "web-014", Model: "dl360g7", Quirk: store.QuirkIgnoresOOBPXE, RunID: run.ID,
		Evidence: json.RawMessage(`{"boot_id_before":"a","boot_id_after":"b"}`)}
	if err := s.LearnQuirk(ctx, q); err != nil {
		t.Fatal(err)
	}
	q.Evidence = json.RawMessage(`{"boot_id_before":"c","boot_id_after":"d"}`)
	if err := s.LearnQuirk(ctx, q); err != nil {
		t.Fatal(err)
	}
	if err := s.LearnQuirk(ctx, store.Quirk{Node: "web-020", Model: "dl360g7", Quirk: store.QuirkIgnoresOOBPXE}); err != nil {
		t.Fatal(err)
	}
	qs, err := s.Quirks(ctx, "web-014")
	if err != nil {
		t.Fatal(err)
	}
	if len(qs) != 1 || qs[0].Quirk != store.QuirkIgnoresOOBPXE || qs[0].Model != "dl360g7" || qs[0].RunID != run.ID || qs[0].Learned.IsZero() {
		t.Fatalf("Quirks(web-014) = %+v; want one refreshed quirk", qs)
	}
	jsonEqual(t, qs[0].Evidence, `{"boot_id_before":"c","boot_id_after":"d"}`)
	byModel, err := s.ModelQuirks(ctx, "dl360g7")
	if err != nil || len(byModel) != 2 || byModel[0].Node != "web-014" || byModel[1].Node != "web-020" {
		t.Fatalf("ModelQuirks = %+v, %v", byModel, err)
	}
	if none, err := s.Quirks(ctx, "web-099"); err != nil || len(none) != 0 {
		t.Fatalf("Quirks of a clean node = %+v, %v", none, err)
	}

	sum := strings.Repeat("ab", 32)
	rec, err := s.SaveSectorRecord(ctx, store.SectorRecord{Node: "web-014", RunID: run.ID, Device: "/dev/sda",
		Path: "/state/sectors/web-014/1/sda.bin", SHA256: sum, Size: 512})
	if err != nil {
		t.Fatal(err)
	}
	if rec.ID == 0 || rec.Saved.IsZero() {
		t.Fatalf("saved record = %+v", rec)
	}
	run2 := mustRun(t, s)
	if _, err := s.SaveSectorRecord(ctx, store.SectorRecord{Node: "web-014", RunID: run2.ID, Path: "/p2", SHA256: sum, Size: 1024}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SaveSectorRecord(ctx, store.SectorRecord{Node: "web-014", RunID: run2.ID, Path: "/p3", SHA256: "nothex"}); err == nil {
		t.Fatal("bad sha256 accepted")
	}
	recs, err := s.SectorRecords(ctx, "web-014", run.ID)
	if err != nil || len(recs) != 1 {
		t.Fatalf("SectorRecords(run 1) = %+v, %v", recs, err)
	}
	if recs[0] != rec {
		t.Fatalf("round trip: got %+v, want %+v", recs[0], rec)
	}
	all, err := s.SectorRecords(ctx, "web-014", 0)
	if err != nil || len(all) != 2 || all[0].RunID != run2.ID {
		t.Fatalf("SectorRecords(all) = %+v, %v; want 2, newest first", all, err)
	}
}

func TestOpenRejectsBadURLsWithoutLeakingSecrets(t *testing.T) {
	ctx := ctxT(t)
	for _, url := range []string{"", "mysql://u:p@h/db", "sqlite://"} {
		if s, err := store.Open(ctx, url, nil); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", url)
		}
	}
	// Nothing listens on port 1: the error must not show the password.
	const secret = "s3cret-Pa55"
	_, err := store.Open(ctx, "postgres://reprov:"+secret+"@127.0.0.1:1/fleet?connect_timeout=2", nil)
	if err == nil {
		t.Fatal("Open of an unreachable PostgreSQL succeeded")
	}
	t.Logf("unreachable: %v", err)
	if strings.Contains(err.Error(), secret) {
		t.Fatalf("error leaks the password: %v", err)
	}
	if _, err := store.Open(ctx, "postgres://reprov:"+secret+"@127.0.0.1:notaport/fleet", nil); err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("bad PostgreSQL URL: %v (must fail without the password)", err)
	}
}
