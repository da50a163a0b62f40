package agent_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/reprov/reprov/agent"
	"github.com/reprov/reprov/agent/fleet"
	"github.com/reprov/reprov/agent/store"
	labfleet "github.com/reprov/reprov/lab/fleet"
	"github.com/reprov/reprov/lab/pg"
)

// TestPostgresTwoControllers: two controllers, each with its own
// connections to one PostgreSQL, reinstall the same lab nodes at the same
// time. Every node lands, and no node is ever worked by both at once.
func TestPostgresTwoControllers(t *testing.T) {
	cluster := pg.Start(t)
	url := pg.NewDatabase(t, cluster)
	r := newRig(t, rigOpts{storeURL: url, noLand: true, bootDelay: 600 * time.Millisecond,
		mix: []labfleet.ModelCount{{Model: labfleet.ModelIPMI, Count: 3}, {Model: labfleet.ModelDL360G7, Count: 2}, {Model: labfleet.ModelRedfish, Count: 1}}})
	// The standing landing endpoint, on the store the controllers share.
	serveLanding(t, openStore(t, url), r.pbs, r.nodes, r.lab.LandingListen(), r.lab.LandingURL())
	ctx := ctxT(t, 2*time.Minute)

	var wg sync.WaitGroup
	reports := make([]*agent.Report, 2)
	for i := range 2 {
		st := openStore(t, url)
		e := r.engine(func(c *agent.Config) { c.Store = st; c.LeaseTTL = 1500 * time.Millisecond })
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep, err := e.Reinstall(ctx, r.nodes, agent.RunOptions{MaxParallel: 6})
			if err != nil {
				t.Error(err)
				return
			}
			reports[i] = rep
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	busy := 0
	for i, rep := range reports {
		for _, res := range rep.Results {
			switch {
			case res.Status == fleet.StatusOK:
			case res.Status == fleet.StatusSkipped && res.Detail.(*agent.NodeReport).Reason != "" &&
				len(res.Reason) >= len(agent.ReasonBusy) && res.Reason[:len(agent.ReasonBusy)] == agent.ReasonBusy:
				busy++
			default:
				t.Errorf("controller %d: %s: %s (%s: %s)\n%s", i, res.Node, res.Status, res.Reason, res.Error, r.events)
			}
		}
	}
	for _, n := range r.nodes {
		jobs, err := r.st.NodeJobs(ctx, store.JobFilter{Node: n.Name})
		if err != nil {
			t.Fatal(err)
		}
		if len(jobs) == 0 || jobs[0].State != store.JobLanded {
			t.Errorf("%s: jobs %+v, want its latest landed", n.Name, jobs)
		}
		for a := range jobs {
			for b := a + 1; b < len(jobs); b++ {
				x, y := jobs[a], jobs[b]
				if x.Started.Before(y.Finished) && y.Started.Before(x.Finished) {
					t.Errorf("%s: job %d (%s, %s–%s) and job %d (%s, %s–%s) overlap", n.Name,
						x.ID, x.Owner, x.Started.Format(time.StampMicro), x.Finished.Format(time.StampMicro),
						y.ID, y.Owner, y.Started.Format(time.StampMicro), y.Finished.Format(time.StampMicro))
				}
			}
		}
	}
	t.Logf("%d node(s) found busy with the other controller", busy)
	checkAudit(t, r.stateDir+"/audit.jsonl")
	_ = context.Background
}
