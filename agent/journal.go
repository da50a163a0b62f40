package agent

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/inventory"
	"github.com/reprov/reprov/playbooks"
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

// readJournal reads the job's own step record (after settling) into the
// run's state: the baseline boot id, whether pre-hooks ran, the paths
// carried out or found impossible, the kicks and their verdicts.
func (r *nodeRun) readJournal(ctx context.Context) (*journal, error) {
	all, err := r.e.cfg.Store.Steps(ctx, r.job.ID)
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
		var idet, odet map[string]any
		_ = json.Unmarshal(in.Detail, &idet)
		if settled {
			_ = json.Unmarshal(out.Detail, &odet)
		}
		notPossible, _ := odet["not_possible"].(bool)
		ok := settled && out.Result == store.ResultOK
		switch in.Name {
		case StepPrecheck:
			if ok {
				if b, _ := odet["boot_id"].(string); b != "" {
					r.baseline = b
				}
				if q, _ := odet["quirk"].(string); q != "" {
					r.inbandQ = true
				}
			}
		case StepPreHooks:
			r.preRan = true
			if ok {
				r.preOK = true
			}
		case StepOOBBoot:
			if notPossible {
				r.cannot[playbooks.PathOOB], _ = odet["error"].(string)
			}
		case StepPower:
			if ok {
				r.ran[playbooks.PathOOB] = true
				delete(r.cannot, playbooks.PathOOB)
				j.kicks = append(j.kicks, &kick{path: playbooks.PathOOB, at: out.Time, bootID: r.baseline})
			} else if notPossible {
				r.cannot[playbooks.PathOOB], _ = odet["error"].(string)
			}
		case StepInband:
			if b, _ := idet["escalated"].(bool); b {
				r.escalated, r.rep.Escalated = true, true
			}
			if ok {
				r.ran[playbooks.PathInband] = true
				delete(r.cannot, playbooks.PathInband)
				bootID, _ := odet["boot_id_before"].(string)
				if bootID == "" {
					bootID, _ = idet["boot_id"].(string)
				}
				if bootID != "" {
					r.baseline = bootID
				}
				j.kicks = append(j.kicks, &kick{path: playbooks.PathInband, at: out.Time, bootID: bootID})
			} else if notPossible {
				r.cannot[playbooks.PathInband], _ = odet["error"].(string)
			}
		case StepInterrupted:
			if k := j.lastKick(); k != nil && k.verdict == nil {
				k.unwatched = true
			}
		case StepWaitLanding:
			v, _ := odet["verdict"].(string)
			k := j.lastKick()
			switch {
			case k == nil || k.verdict != nil:
			case v != "":
				k.verdict = &verdict{kind: v, evidence: odet}
			case odet["stopped"] == errInterrupted.Error(), odet["settled_by"] != nil:
				// Ctrl-C, or a controller that died while waiting: nobody
				// answered for the node meanwhile.
				k.unwatched = true
			}
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
