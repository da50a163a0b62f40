package store_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/lab/pg"
)

func TestAPITokensAndQueries(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		testAPITokensAndQueries(t, "sqlite://"+filepath.Join(t.TempDir(), "reprov.db"))
	})
	t.Run("postgres", func(t *testing.T) {
		testAPITokensAndQueries(t, pg.NewDatabase(t, pg.Start(t)))
	})
}

func testAPITokensAndQueries(t *testing.T, url string) {
	ctx := context.Background()
	st, err := store.Open(ctx, url, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	tok, info, err := st.CreateToken(ctx, "ops-alice", store.RoleOperator)
	if err != nil || !strings.HasPrefix(tok, store.TokenPrefix) || len(tok) < 40 || info.Role != store.RoleOperator {
		t.Fatalf("create: %q %+v %v", tok, info, err)
	}
	if _, _, err := st.CreateToken(ctx, "ops-alice", store.RoleViewer); !errors.Is(err, store.ErrTokenExists) {
		t.Errorf("a second token of one name: %v, want ErrTokenExists", err)
	}
	if _, _, err := st.CreateToken(ctx, "bad name", store.RoleViewer); err == nil {
		t.Error("a name with a space was accepted")
	}
	if _, _, err := st.CreateToken(ctx, "x", "admin"); err == nil {
		t.Error("role admin was accepted")
	}
	got, err := st.VerifyToken(ctx, tok)
	if err != nil || got.Name != "ops-alice" || got.Role != store.RoleOperator || got.LastUsed.IsZero() {
		t.Fatalf("verify: %+v %v", got, err)
	}
	if _, err := st.VerifyToken(ctx, tok+"x"); !errors.Is(err, store.ErrNotFound) || strings.Contains(err.Error(), tok) {
		t.Errorf("a wrong token: %v, want ErrNotFound without the token", err)
	}
	// Only the hash is stored.
	list, err := st.Tokens(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "ops-alice" || !list[0].Revoked.IsZero() {
		t.Fatalf("list: %+v %v", list, err)
	}
	if err := st.RevokeToken(ctx, "ops-alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.VerifyToken(ctx, tok); !errors.Is(err, store.ErrTokenRevoked) {
		t.Errorf("a revoked token: %v, want ErrTokenRevoked", err)
	}
	if err := st.RevokeToken(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("revoke an unknown token: %v", err)
	}
	list, _ = st.Tokens(ctx)
	if len(list) != 1 || list[0].Revoked.IsZero() {
		t.Errorf("after revoke: %+v", list)
	}

	// Latest job per node, run counts, quirks, the run sweeper.
	run, err := st.CreateRun(ctx, store.RunSpec{Selection: "--all"})
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, n := range []string{"a", "b"} {
		j, err := st.AcquireNode(ctx, store.AcquireRequest{RunID: run.ID, Node: n})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	if _, err := st.FinishNode(ctx, ids[0], store.Finish{State: store.JobLanded}); err != nil {
		t.Fatal(err)
	}
	all, err := st.RunJobCounts(ctx, []int64{run.ID})
	if counts := all[run.ID]; err != nil || counts[store.JobLanded] != 1 || counts[store.JobQueued] != 1 {
		t.Errorf("counts %v %v", all, err)
	}
	jobs, err := st.LatestJobs(ctx)
	latest := map[string]store.NodeJob{}
	for _, j := range jobs {
		latest[j.Node] = j
	}
	if err != nil || len(latest) != 2 || latest["a"].ID != ids[0] || latest["b"].State != store.JobQueued {
		t.Errorf("latest %+v %v", latest, err)
	}
	if fin, err := st.FinishEndedRuns(ctx, 0); err != nil || len(fin) != 0 {
		t.Errorf("a run with a queued job was finished: %v %v", fin, err)
	}
	if _, err := st.FinishNode(ctx, ids[1], store.Finish{State: store.JobFailed, Reason: "x"}); err != nil {
		t.Fatal(err)
	}
	if fin, err := st.FinishEndedRuns(ctx, time.Hour); err != nil || len(fin) != 0 {
		t.Errorf("a run that just changed was finished: %v %v", fin, err)
	}
	time.Sleep(time.Millisecond) // the quiet time below is measured in microseconds
	if fin, err := st.FinishEndedRuns(ctx, 0); err != nil || len(fin) != 1 || fin[0] != run.ID {
		t.Errorf("the ended run was not finished: %v %v", fin, err)
	}
	if r, _ := st.Run(ctx, run.ID); r.State != store.RunFinished {
		t.Errorf("run state %s", r.State)
	}
	for _, qk := range []store.Quirk{{Node: "a", Quirk: "q1"}, {Node: "a", Quirk: "q2"}, {Node: "b", Quirk: "q1"}} {
		if err := st.LearnQuirk(ctx, qk); err != nil {
			t.Fatal(err)
		}
	}
	if all, err := st.AllQuirks(ctx, ""); err != nil || len(all) != 3 {
		t.Errorf("all quirks %+v %v", all, err)
	}
	if n, err := st.ClearQuirks(ctx, "a", "q1"); err != nil || n != 1 {
		t.Errorf("clear one: %d %v", n, err)
	}
	if n, err := st.ClearQuirks(ctx, "a", ""); err != nil || n != 1 {
		t.Errorf("clear the rest of a: %d %v", n, err)
	}
	if left, _ := st.AllQuirks(ctx, ""); len(left) != 1 || left[0].Node != "b" {
		t.Errorf("left %+v", left)
	}
}
