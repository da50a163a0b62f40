package agent

import (
	"context"
	"fmt"

	"github.com/reprov/reprov/agent/inband"
	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/inventory"
	"github.com/reprov/reprov/playbooks"
)

// The step table: every step of the node state machine is declared once,
// here — its name, whether it acts on the node (destructive steps are
// fenced on the job's lease and audited), how its typed records replay
// into a resumed job's state, how an intent left without an outcome is
// settled by looking at the node, and how `reprov plan` describes it.
// Running (nodeRun.step), resuming (readJournal), settling (settle) and
// planning (planSteps) all walk this table (docs/architecture.md).

// stepSpec declares one step.
type stepSpec struct {
	name string
	// path is the path the step belongs to ("" for the common steps).
	path playbooks.Path
	// destructive steps change the node: their intents are fenced on the
	// lease and their acts audited.
	destructive bool
	// replay applies a recorded intent (and its outcome, if settled) to a
	// resumed job's state. Decoding errors are corrupt records.
	replay func(r *nodeRun, j *journal, rec stepRecord) error
	// settle finds out, by looking, whether the act of an intent left
	// without an outcome happened (nil: nothing on the node to look at).
	settle func(ctx context.Context, r *nodeRun, s store.Step) (result string, out outcome)
	// plan describes the step for `reprov plan` (nil: a common step that
	// planSteps words itself).
	plan func(pc *planContext) []PlanStep
}

// stepRecord is one intent of the step record with its outcome.
type stepRecord struct {
	intent  store.Step
	out     store.Step
	settled bool
}

// ok reports whether the outcome says the act happened.
func (rec stepRecord) ok() bool { return rec.settled && rec.out.Result == store.ResultOK }

// decode decodes the intent into in and, when settled, the outcome into out.
func (rec stepRecord) decode(in any, out outcome) error {
	if err := decodeStrict(rec.intent.Detail, in); err != nil {
		return fmt.Errorf("intent %d (%s): %w", rec.intent.ID, rec.intent.Name, err)
	}
	if rec.settled {
		if err := decodeStrict(rec.out.Detail, out); err != nil {
			return fmt.Errorf("outcome %d of intent %d (%s): %w", rec.out.ID, rec.intent.ID, rec.intent.Name, err)
		}
	}
	return nil
}

// stepTable is the table, in the order a node goes through its steps.
func stepTable() []stepSpec {
	return []stepSpec{
		{name: StepPrecheck, replay: replayPrecheck},
		{name: StepPreHooks, replay: replayHooks},
		{name: StepOOBBoot, path: playbooks.PathOOB, destructive: true, replay: replayOOBBoot, settle: settleOOBBoot, plan: planOOBBoot},
		{name: StepPower, path: playbooks.PathOOB, destructive: true, replay: replayPower, settle: settlePower, plan: planPower},
		{name: StepInband, path: playbooks.PathInband, destructive: true, replay: replayInband, settle: settleInband, plan: planInband},
		{name: StepWaitLanding, replay: replayWait, plan: planWait},
		{name: StepPostHooks, replay: replayHooks},
		{name: StepInterrupted, replay: replayInterrupted},
		{name: StepHandedOver, replay: replayMark},
	}
}

// specOf returns the table entry of a step name.
func specOf(name string) (stepSpec, bool) {
	for _, s := range stepTable() {
		if s.name == name {
			return s, true
		}
	}
	return stepSpec{}, false
}

func replayPrecheck(r *nodeRun, _ *journal, rec stepRecord) error {
	var in precheckIntent
	var out precheckOutcome
	if err := rec.decode(&in, &out); err != nil {
		return err
	}
	if rec.ok() {
		if out.BootID != "" {
			r.baseline = out.BootID
		}
		if out.Quirk != "" {
			r.inbandQ = true
		}
		if out.Proposal != "" {
			r.rep.Proposal = out.Proposal
		}
	}
	return nil
}

func replayHooks(r *nodeRun, _ *journal, rec stepRecord) error {
	var in hooksIntent
	var out hooksOutcome
	if err := rec.decode(&in, &out); err != nil {
		return err
	}
	if rec.intent.Name == StepPreHooks {
		r.preRan = true
		if rec.ok() {
			r.preOK = true
		}
	}
	return nil
}

func replayOOBBoot(r *nodeRun, _ *journal, rec stepRecord) error {
	var in oobBootIntent
	var out oobBootOutcome
	if err := rec.decode(&in, &out); err != nil {
		return err
	}
	if out.NotPossible {
		r.cannot[playbooks.PathOOB] = out.Error
	}
	return nil
}

func replayPower(r *nodeRun, j *journal, rec stepRecord) error {
	var in powerIntent
	var out powerOutcome
	if err := rec.decode(&in, &out); err != nil {
		return err
	}
	switch {
	case rec.ok():
		r.ran[playbooks.PathOOB] = true
		delete(r.cannot, playbooks.PathOOB)
		j.kicks = append(j.kicks, &kick{path: playbooks.PathOOB, at: rec.out.Time, bootID: r.baseline, unknown: out.Unknown != ""})
	case out.NotPossible:
		r.cannot[playbooks.PathOOB] = out.Error
	}
	return nil
}

func replayInband(r *nodeRun, j *journal, rec stepRecord) error {
	var in inbandIntent
	var out inbandOutcome
	if err := rec.decode(&in, &out); err != nil {
		return err
	}
	if in.Escalated {
		r.escalated, r.rep.Escalated = true, true
	}
	switch {
	case rec.ok():
		r.ran[playbooks.PathInband] = true
		delete(r.cannot, playbooks.PathInband)
		bootID := out.BootIDBefore
		if bootID == "" {
			bootID = in.BootID
		}
		if bootID != "" {
			r.baseline = bootID
		}
		j.kicks = append(j.kicks, &kick{path: playbooks.PathInband, at: rec.out.Time, bootID: bootID})
	case out.NotPossible:
		r.cannot[playbooks.PathInband] = out.Error
	}
	return nil
}

func replayWait(r *nodeRun, j *journal, rec stepRecord) error {
	var in waitIntent
	var out waitOutcome
	if err := rec.decode(&in, &out); err != nil {
		return err
	}
	if out.Verdict == VerdictOldOS && out.BootIDNow != "" {
		r.baseline = out.BootIDNow
	}
	if out.Verdict == VerdictPowerNotDone {
		r.resends++
	}
	k := j.lastKick()
	switch {
	case k == nil || k.verdict != nil:
	case out.Verdict != "":
		k.verdict = &verdict{kind: out.Verdict, evidence: out.waitEvidence}
	case out.Stopped == errInterrupted.Error():
		// Ctrl-C: the job was not active while it was stopped, so the
		// landing endpoint sent the node to its disk.
		k.unwatched = true
	case out.Settled != nil:
		// Its controller died while waiting: whether a landing endpoint
		// answered the node meanwhile decides (nodeRun.run).
		k.cut = true
	}
	return nil
}

func replayInterrupted(_ *nodeRun, j *journal, rec stepRecord) error {
	if err := replayMark(nil, j, rec); err != nil {
		return err
	}
	if k := j.lastKick(); k != nil && k.verdict == nil {
		k.unwatched = true
	}
	return nil
}

func replayMark(_ *nodeRun, _ *journal, rec stepRecord) error {
	var in markRecord
	var out markOutcome
	return rec.decode(&in, &out)
}

// planContext is what a step's plan description needs.
type planContext struct {
	e          *Engine
	n          inventory.Node
	ip         *inband.Plan
	p          *NodePlan
	pb         *playbooks.Playbook
	protocol   string
	landingURL string
	path       playbooks.Path
	when       string
}
