package web_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/agent/web"
	"github.com/reprov/reprov/agent/window"
)

func TestWindowsPanelFromTheStore(t *testing.T) {
	st, src := seeded(t)
	h, err := web.New(web.Config{Source: src, Public: true})
	if err != nil {
		t.Fatal(err)
	}
	if page := body(t, get(t, h, "/")); !strings.Contains(page, "no windows") {
		t.Fatal("a store without windows: the panel does not say so")
	}
	ctx := context.Background()
	at := time.Now().Add(time.Hour).Truncate(time.Second)
	sp := window.Spec{Name: "sat-r1", Selection: window.Selection{Racks: []string{"r1"}}, At: at, Duration: window.Duration(time.Hour)}
	if _, err := window.Create(ctx, st, sp, "tester"); err != nil {
		t.Fatal(err)
	}
	ws, err := src.Windows(ctx)
	if err != nil || len(ws) != 1 || ws[0].Name != "sat-r1" || !ws[0].Next.Equal(at) || ws[0].Selection != "--rack r1" {
		t.Fatalf("windows %+v, %v", ws, err)
	}
	// An occurrence that was missed shows as the last result.
	past := store.Occurrence{Window: "sat-r1", Start: at.Add(-3 * time.Hour), End: at.Add(-2 * time.Hour), Cutoff: at.Add(-2 * time.Hour),
		State: store.OccurrenceMissed, Finished: time.Now()}
	if _, _, err := st.InsertOccurrence(ctx, past, nil); err != nil {
		t.Fatal(err)
	}
	page := body(t, get(t, h, "/"))
	if !strings.Contains(page, "<b>sat-r1</b>") || !strings.Contains(page, "last: missed") {
		t.Fatalf("the windows panel does not show the window and its missed occurrence:\n%s", page)
	}
}
