package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

const stepCols = `id, job_id, node, at, step, phase, intent_id, result, detail, owner`

func scanStep(r row) (Step, error) {
	var (
		st       Step
		at       int64
		phase    string
		intentID sql.NullInt64
		detail   sql.NullString
	)
	if err := r.Scan(&st.ID, &st.JobID, &st.Node, &at, &st.Name, &phase, &intentID, &st.Result, &detail, &st.Owner); err != nil {
		return Step{}, err
	}
	st.Time = time.UnixMicro(at).UTC()
	st.Phase = Phase(phase)
	st.IntentID = intentID.Int64
	if detail.Valid {
		st.Detail = json.RawMessage(detail.String)
	}
	return st, nil
}

// RecordStep appends to the node's step record and returns the stored step.
//
// An intent (Phase PhaseIntent; JobID and Name set) is recorded before an
// act, only while the job is running (and, if st.Owner is set, held by that
// owner: else ErrLeaseLost); it also becomes the job's current step.
//
// An outcome (Phase PhaseOutcome; IntentID and Result set) settles its
// intent; job, node and name are taken from the intent. Each intent is
// settled once (ErrAlreadySettled). Outcomes may be recorded for intents of
// finished jobs: that is how a later job settles what an interrupted one left.
func (s *Store) RecordStep(ctx context.Context, st Step) (Step, error) {
	detail, err := jsonArg(st.Detail, "step detail")
	if err != nil {
		return Step{}, fmt.Errorf("record step %q: %w", st.Name, err)
	}
	var out Step
	switch st.Phase {
	case PhaseIntent:
		if st.JobID == 0 || st.Name == "" {
			return Step{}, errors.New("record intent: need a job ID and a step name")
		}
		err = s.inTx(ctx, func(q querier, _ any) error {
			now := nowMicros()
			n, err := q.exec(ctx, `UPDATE reprov_node_job SET step = ?, updated_at = ?
				WHERE id = ? AND state = 'running' AND (? = '' OR (owner = ? AND lease_until > ?))`, st.Name, now, st.JobID, st.Owner, st.Owner, now)
			if err != nil {
				return err
			}
			if n == 0 {
				job, err := s.nodeJob(ctx, q, st.JobID)
				switch {
				case err != nil:
					return err
				case job.State == JobQueued:
					return fmt.Errorf("job %d (node %s) is queued, not claimed", job.ID, job.Node)
				case !job.State.Active():
					return fmt.Errorf("job %d (node %s) is %s: %w", job.ID, job.Node, job.State, ErrNotActive)
				case job.Owner == st.Owner:
					return fmt.Errorf("job %d (node %s): the lease expired at %s: %w", job.ID, job.Node, job.LeaseUntil.Format(time.RFC3339Nano), ErrLeaseLost)
				default:
					return fmt.Errorf("job %d (node %s) is held by %q: %w", job.ID, job.Node, job.Owner, ErrLeaseLost)
				}
			}
			out, err = scanStep(q.queryRow(ctx, `INSERT INTO reprov_step (job_id, node, at, step, phase, result, detail, owner)
				SELECT id, node, ?, ?, 'intent', '', ?, ? FROM reprov_node_job WHERE id = ?
				RETURNING `+stepCols, now, st.Name, detail, st.Owner, st.JobID))
			return err
		})
		if err != nil {
			return Step{}, fmt.Errorf("record intent %q: %w", st.Name, err)
		}
		return out, nil

	case PhaseOutcome:
		switch st.Result {
		case ResultOK, ResultFailed, ResultSkipped:
		default:
			return Step{}, fmt.Errorf("record outcome of intent %d: unknown result %q", st.IntentID, st.Result)
		}
		err = s.inTx(ctx, func(q querier, _ any) error {
			intent, err := scanStep(q.queryRow(ctx, `SELECT `+stepCols+` FROM reprov_step WHERE id = ?`, st.IntentID))
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("intent %d: %w", st.IntentID, ErrNotFound)
			}
			if err != nil {
				return err
			}
			if intent.Phase != PhaseIntent {
				return fmt.Errorf("step %d is an outcome, not an intent", st.IntentID)
			}
			out, err = scanStep(q.queryRow(ctx, `INSERT INTO reprov_step (job_id, node, at, step, phase, intent_id, result, detail, owner)
				VALUES (?, ?, ?, ?, 'outcome', ?, ?, ?, ?)
				ON CONFLICT (intent_id) DO NOTHING
				RETURNING `+stepCols, intent.JobID, intent.Node, nowMicros(), intent.Name, intent.ID, st.Result, detail, st.Owner))
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("intent %d (%s on %s): %w", intent.ID, intent.Name, intent.Node, ErrAlreadySettled)
			}
			return err
		})
		if err != nil {
			return Step{}, fmt.Errorf("record outcome: %w", err)
		}
		return out, nil
	}
	return Step{}, fmt.Errorf("record step %q: unknown phase %q", st.Name, st.Phase)
}

func (s *Store) listSteps(ctx context.Context, q string, args ...any) ([]Step, error) {
	rs, err := s.q().query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []Step
	for rs.Next() {
		st, err := scanStep(rs)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, rs.Err()
}

// Steps returns the job's whole step record, oldest first (reprov jobs show).
func (s *Store) Steps(ctx context.Context, jobID int64) ([]Step, error) {
	out, err := s.listSteps(ctx, `SELECT `+stepCols+` FROM reprov_step WHERE job_id = ? ORDER BY id`, jobID)
	if err != nil {
		return nil, fmt.Errorf("steps of job %d: %w", jobID, err)
	}
	return out, nil
}

// UnsettledSteps returns the node's intents that have no outcome, across all
// of its jobs, oldest first. Before acting on the node again the engine must
// settle each by looking (e.g. re-reading sector 0) and recording an
// outcome, never by repeating the act blindly.
func (s *Store) UnsettledSteps(ctx context.Context, node string) ([]Step, error) {
	out, err := s.listSteps(ctx, `SELECT `+stepCols+` FROM reprov_step i
		WHERE i.node = ? AND i.phase = 'intent'
		  AND NOT EXISTS (SELECT 1 FROM reprov_step o WHERE o.intent_id = i.id)
		ORDER BY i.id`, node)
	if err != nil {
		return nil, fmt.Errorf("unsettled steps of node %s: %w", node, err)
	}
	return out, nil
}

// LastStep returns the job's most recently completed step: its latest
// outcome with result ok (ErrNotFound if none). Resume continues after it.
func (s *Store) LastStep(ctx context.Context, jobID int64) (Step, error) {
	st, err := scanStep(s.q().queryRow(ctx, `SELECT `+stepCols+` FROM reprov_step
		WHERE job_id = ? AND phase = 'outcome' AND result = 'ok' ORDER BY id DESC LIMIT 1`, jobID))
	if errors.Is(err, sql.ErrNoRows) {
		return Step{}, fmt.Errorf("job %d: no completed step: %w", jobID, ErrNotFound)
	}
	if err != nil {
		return Step{}, fmt.Errorf("last step of job %d: %w", jobID, err)
	}
	return st, nil
}
