package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ActiveJobByMAC returns the active job of the node that owns mac, for the
// landing endpoint; ErrNotFound when no active job has that MAC (the
// endpoint then answers "boot from local disk").
func (s *Store) ActiveJobByMAC(ctx context.Context, mac string) (NodeJob, error) {
	m, err := NormalizeMAC(mac)
	if err != nil {
		return NodeJob{}, err
	}
	jobs, err := s.listJobs(ctx, `SELECT `+jobCols("j.")+` FROM reprov_node_job j
		JOIN reprov_job_mac m ON m.job_id = j.id
		WHERE m.mac = ? AND j.state IN `+activeStates+` ORDER BY j.id`, m)
	if err != nil {
		return NodeJob{}, fmt.Errorf("job by MAC %s: %w", m, err)
	}
	switch len(jobs) {
	case 0:
		return NodeJob{}, fmt.Errorf("no active job for MAC %s: %w", m, ErrNotFound)
	case 1:
		return jobs[0], nil
	}
	nodes := make([]string, len(jobs))
	for i, j := range jobs {
		nodes[i] = j.Node
	}
	return NodeJob{}, fmt.Errorf("MAC %s belongs to several nodes with active jobs (%s): fix the inventory", m, strings.Join(nodes, ", "))
}

// Landing is one source's sighting of a job's node booting from the network.
type Landing struct {
	JobID    int64           `json:"job_id"`
	Source   LandingSource   `json:"source"`
	Time     time.Time       `json:"time"`
	Evidence json.RawMessage `json:"evidence,omitempty"`
}

// MarkLanded records that source saw the job's node land. It is idempotent:
// each source is recorded once (first is false on repeats), and the job's
// LandedAt/LandingSource keep the strongest source seen, earliest first. It
// does not end the job: the engine does that with FinishNode.
func (s *Store) MarkLanded(ctx context.Context, jobID int64, source LandingSource, evidence json.RawMessage) (first bool, err error) {
	if source.rank() == 0 {
		return false, fmt.Errorf("mark job %d landed: unknown source %q", jobID, source)
	}
	ev, err := jsonArg(evidence, "landing evidence")
	if err != nil {
		return false, fmt.Errorf("mark job %d landed: %w", jobID, err)
	}
	err = s.inTx(ctx, func(q querier, _ any) error {
		if _, err := s.nodeJob(ctx, q, jobID); err != nil {
			return err
		}
		now := nowMicros()
		var id int64
		err := q.queryRow(ctx, `INSERT INTO reprov_landing (job_id, source, landed_at, evidence) VALUES (?, ?, ?, ?)
			ON CONFLICT (job_id, source) DO NOTHING RETURNING job_id`, jobID, string(source), now, ev).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		first = true
		_, err = q.exec(ctx, `UPDATE reprov_node_job SET landed_at = ?, landing_source = ?, updated_at = ?
			WHERE id = ? AND (landing_source = '' OR (? = 2 AND landing_source = 'bmc-evidence'))`,
			now, string(source), now, jobID, source.rank())
		return err
	})
	if err != nil {
		return false, fmt.Errorf("mark job %d landed (%s): %w", jobID, source, err)
	}
	return first, nil
}

// Landings returns every landing recorded for the job, oldest first.
func (s *Store) Landings(ctx context.Context, jobID int64) ([]Landing, error) {
	rs, err := s.q().query(ctx, `SELECT job_id, source, landed_at, evidence FROM reprov_landing
		WHERE job_id = ? ORDER BY landed_at, source`, jobID)
	if err != nil {
		return nil, fmt.Errorf("landings of job %d: %w", jobID, err)
	}
	defer rs.Close()
	var out []Landing
	for rs.Next() {
		var (
			l      Landing
			source string
			at     int64
			ev     sql.NullString
		)
		if err := rs.Scan(&l.JobID, &source, &at, &ev); err != nil {
			return nil, fmt.Errorf("landings of job %d: %w", jobID, err)
		}
		l.Source = LandingSource(source)
		l.Time = time.UnixMicro(at).UTC()
		if ev.Valid {
			l.Evidence = json.RawMessage(ev.String)
		}
		out = append(out, l)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("landings of job %d: %w", jobID, err)
	}
	return out, nil
}

func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// IssueCallbackToken returns a new random token for the job's installer
// callback (POST /landed/{node}), to be handed out in the iPXE script. Only
// its SHA-256 is stored; every token issued for the job stays valid while
// the job is active (netboot clients retry, and any answered script may be
// the one that boots). The token is a secret: never log it.
func (s *Store) IssueCallbackToken(ctx context.Context, jobID int64) (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("callback token for job %d: %w", jobID, err)
	}
	token := base64.RawURLEncoding.EncodeToString(b[:])
	n, err := s.q().exec(ctx, `INSERT INTO reprov_callback_token (token_hash, job_id, created_at)
		SELECT ?, id, ? FROM reprov_node_job WHERE id = ? AND state IN `+activeStates,
		hashToken(token), nowMicros(), jobID)
	if err != nil {
		return "", fmt.Errorf("callback token for job %d: %w", jobID, err)
	}
	if n == 0 {
		if _, err := s.NodeJob(ctx, jobID); err != nil {
			return "", fmt.Errorf("callback token: %w", err)
		}
		return "", fmt.Errorf("callback token for job %d: %w", jobID, ErrNotActive)
	}
	return token, nil
}

// JobByCallbackToken returns the active job a callback token was issued
// for; ErrNotFound for an unknown token or a job no longer active.
func (s *Store) JobByCallbackToken(ctx context.Context, token string) (NodeJob, error) {
	job, err := scanJob(s.q().queryRow(ctx, `SELECT `+jobCols("j.")+` FROM reprov_node_job j
		JOIN reprov_callback_token t ON t.job_id = j.id
		WHERE t.token_hash = ? AND j.state IN `+activeStates, hashToken(token)))
	if errors.Is(err, sql.ErrNoRows) {
		return NodeJob{}, fmt.Errorf("callback token: no active job: %w", ErrNotFound)
	}
	if err != nil {
		return NodeJob{}, fmt.Errorf("callback token: %w", err)
	}
	return job, nil
}
