package agent

import (
	"context"
	"fmt"
	"strings"

	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/inventory"
)

// journal is what a job's step record says was done: where a resumed job
// continues.
type journal struct {
	kicks []*kick
}

func (j *journal) lastKick() *kick {
	if len(j.kicks) == 0 {
		return nil
	}
	return j.kicks[len(j.kicks)-1]
}

// readJournal replays the job's own step record (after settling) through
// the step table into the run's state: the baseline boot id, whether
// pre-hooks ran, the paths carried out or found impossible, the kicks and
// their verdicts. A record of an unknown step, or one that does not decode
// into its step's typed record, stops the node (ReasonCorruptRecord).
func (r *nodeRun) readJournal(ctx context.Context) (*journal, error) {
	var all []store.Step
	err := r.untilLease(ctx, "read the step record", func(ctx context.Context) error {
		var err error
		all, err = r.e.cfg.Store.Steps(ctx, r.job.ID)
		return err
	})
	if err != nil {
		return nil, fail(ReasonStore, "", err, nil)
	}
	outcomes := map[int64]store.Step{}
	for _, s := range all {
		if s.Phase == store.PhaseOutcome {
			outcomes[s.IntentID] = s
		}
	}
	j := &journal{}
	for _, in := range all {
		if in.Phase != store.PhaseIntent {
			continue
		}
		out, settled := outcomes[in.ID]
		spec, ok := specOf(in.Name)
		if !ok {
			return nil, fail(ReasonCorruptRecord, in.Name, fmt.Errorf("intent %d names a step this reprov does not know (%q)", in.ID, in.Name), nil)
		}
		if err := spec.replay(r, j, stepRecord{intent: in, out: out, settled: settled}); err != nil {
			return nil, fail(ReasonCorruptRecord, in.Name, err, nil)
		}
	}
	if k := j.lastKick(); k != nil {
		r.lastPath = k.path
	}
	return j, nil
}

// probeBootID reads a node's boot id over SSH: nothing but a POSIX cat.
func probeBootID(ctx context.Context, e *Engine, n inventory.Node) (string, error) {
	pctx, cancel := context.WithTimeout(ctx, e.cfg.ProbeTimeout)
	defer cancel()
	conn, err := e.cfg.DialSSH(pctx, n)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	path := "/proc/sys/kernel/random/boot_id"
	if l := e.layout(n); l != nil {
		path = l.Map(path)
	}
	out, err := conn.Exec(pctx, "cat "+path, nil)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}
