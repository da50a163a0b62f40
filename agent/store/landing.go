package store

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrNotArmed: the job's landing is not armed yet (ArmLanding): the engine
// has not made the node boot, so a landing for it is not proof of anything
// and is refused.
var ErrNotArmed = errors.New("landing not armed")

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

// LandingJobByMAC returns the job a network boot of mac lands on: the
// node's active job (ActiveJobByMAC), else — within retryWindow of its first
// landing — the node's latest job when it ended landed and its installer has
// not called back yet: a node whose install chain failed and asked again
// gets its install script again, never "boot the local disk" half-way
// through (docs/netboot.md). ErrNotFound when there is none. Land decides
// whether the landing counts (armed, still in the window).
func (s *Store) LandingJobByMAC(ctx context.Context, mac string, retryWindow time.Duration) (NodeJob, error) {
	job, err := s.ActiveJobByMAC(ctx, mac)
	if err == nil || !errors.Is(err, ErrNotFound) || retryWindow <= 0 {
		return job, err
	}
	m, _ := NormalizeMAC(mac) // ActiveJobByMAC parsed it
	jobs, err := s.listJobs(ctx, `SELECT `+jobCols("j.")+` FROM reprov_node_job j
		JOIN reprov_job_mac m ON m.job_id = j.id
		WHERE m.mac = ? AND j.state = 'landed' AND j.armed_at IS NOT NULL AND j.landed_at >= ?
		  AND NOT EXISTS (SELECT 1 FROM reprov_node_job k WHERE k.node = j.node AND k.id > j.id)
		  AND NOT EXISTS (SELECT 1 FROM reprov_landing l WHERE l.job_id = j.id AND l.source = 'callback')
		ORDER BY j.id DESC LIMIT 1`, m, time.Now().Add(-retryWindow).UnixMicro())
	if err != nil {
		return NodeJob{}, fmt.Errorf("job by MAC %s: %w", m, err)
	}
	if len(jobs) == 0 {
		return NodeJob{}, fmt.Errorf("no active or recently landed job for MAC %s: %w", m, ErrNotFound)
	}
	return jobs[0], nil
}

// ArmLanding opens the job's landing: from now until the job ends, the endpoint accepts a
// landing for it. The engine calls it right before the act that makes the node boot. It is
// fenced: it applies only while owner holds the running job (else ErrLeaseLost / ErrNotActive).
//
// Arming again keeps the first arming time, so the job's callback token
// (derived from it) stays the same across kicks (an out-of-band power cycle,
// then an in-band reboot).
func (s *Store) ArmLanding(ctx context.Context, jobID int64, owner string) error {
	if owner == "" {
		return fmt.Errorf("arm landing of job %d: need an owner", jobID)
	}
	// The token key exists before any token can be asked for, so that the
	// endpoint's unauthenticated requests never need to write it.
	if _, err := s.tokenKey(ctx, s.q()); err != nil {
		return fmt.Errorf("arm landing of job %d: %w", jobID, err)
	}
	now := nowMicros()
	n, err := s.q().exec(ctx, `UPDATE reprov_node_job SET armed_at = COALESCE(armed_at, ?), updated_at = ?
		WHERE id = ? AND owner = ? AND state = 'running'`, now, now, jobID, owner)
	if err != nil {
		return fmt.Errorf("arm landing of job %d: %w", jobID, err)
	}
	if n == 0 {
		return s.explainLost(ctx, jobID, "arm landing")
	}
	return nil
}

// ArmedAt returns when the job's landing was armed (the zero time: not
// armed).
func (s *Store) ArmedAt(ctx context.Context, jobID int64) (time.Time, error) {
	_, armed, err := s.jobArmed(ctx, s.q(), jobID, false)
	return armed, err
}

// jobArmed reads the job and its arming time; lock takes a row lock for
// the rest of the transaction (PostgreSQL; SQLite's transactions already
// hold the write lock).
func (s *Store) jobArmed(ctx context.Context, q querier, jobID int64, lock bool) (NodeJob, time.Time, error) {
	stmt := `SELECT ` + jobCols("") + `, armed_at FROM reprov_node_job WHERE id = ?`
	if lock && s.dialect == Postgres {
		stmt += ` FOR UPDATE`
	}
	var armed sql.NullInt64
	job, err := scanJob(extraRow{q.queryRow(ctx, stmt, jobID), []any{&armed}})
	if errors.Is(err, sql.ErrNoRows) {
		return NodeJob{}, time.Time{}, fmt.Errorf("job %d: %w", jobID, ErrNotFound)
	}
	if err != nil {
		return NodeJob{}, time.Time{}, fmt.Errorf("job %d: %w", jobID, err)
	}
	return job, fromMicros(armed), nil
}

// extraRow scans a row of a job's columns followed by extra ones.
type extraRow struct {
	r     row
	extra []any
}

func (e extraRow) Scan(dest ...any) error { return e.r.Scan(append(dest, e.extra...)...) }

// Landing is one source's sighting of a job's node booting from the network.
type Landing struct {
	JobID    int64           `json:"job_id"`
	Source   LandingSource   `json:"source"`
	Time     time.Time       `json:"time"`
	Evidence json.RawMessage `json:"evidence,omitempty"`
}

// LandResult is what Land recorded.
type LandResult struct {
	// Job is the job as it is after the landing.
	Job NodeJob
	// First: this source's first landing for the job (a repeat records
	// nothing).
	First bool
	// Token is the job's installer callback token (proof sources only). It
	// is a secret: never log it.
	Token string
	// AfterEnd: the job had already ended landed; this is its node asking
	// again within the retry window.
	AfterEnd bool
}

// Land records, in one transaction, that source saw the job's node land,
// and returns the job's callback token with it: there is no moment at
// which a node is recorded landed but its token cannot be had.
//
// A proof source (ipxe, callback) counts only once the job's landing is
// armed (ErrNotArmed before, recording nothing) and while the job is
// active — or, within retryWindow of its first landing, after it ended
// landed: the same node asking again (ipxe, until its installer has called
// back) or its installer calling back (callback). Otherwise ErrNotActive.
// bmc-evidence is not proof and is recorded for any existing job.
//
// Each source is recorded once per job (First is false on repeats), and
// the job's LandedAt/LandingSource keep the strongest source seen, earliest
// first. Land does not end the job: the engine does that with FinishNode.
func (s *Store) Land(ctx context.Context, jobID int64, source LandingSource, evidence json.RawMessage, retryWindow time.Duration) (LandResult, error) {
	if source.rank() == 0 {
		return LandResult{}, fmt.Errorf("mark job %d landed: unknown source %q", jobID, source)
	}
	ev, err := jsonArg(evidence, "landing evidence")
	if err != nil {
		return LandResult{}, fmt.Errorf("mark job %d landed: %w", jobID, err)
	}
	var res LandResult
	err = s.inTx(ctx, func(q querier, _ any) error {
		job, armed, err := s.jobArmed(ctx, q, jobID, true)
		if err != nil {
			return err
		}
		if source.Proof() {
			if armed.IsZero() {
				return fmt.Errorf("node %s: a %s landing before the job's kick: %w", job.Node, source, ErrNotArmed)
			}
			if !job.State.Active() {
				ok := job.State == JobLanded && !job.LandedAt.IsZero() && time.Now().Before(job.LandedAt.Add(retryWindow))
				if ok && source == LandingIPXE {
					var n int
					if err := q.queryRow(ctx, `SELECT COUNT(*) FROM reprov_landing WHERE job_id = ? AND source = 'callback'`, jobID).Scan(&n); err != nil {
						return err
					}
					ok = n == 0
				}
				if !ok {
					return fmt.Errorf("node %s: job %d is %s: %w", job.Node, jobID, job.State, ErrNotActive)
				}
				res.AfterEnd = true
			}
			key, err := s.tokenKey(ctx, q)
			if err != nil {
				return err
			}
			res.Token = callbackToken(key, jobID, armed)
		}
		now := nowMicros()
		var id int64
		err = q.queryRow(ctx, `INSERT INTO reprov_landing (job_id, source, landed_at, evidence) VALUES (?, ?, ?, ?)
			ON CONFLICT (job_id, source) DO NOTHING RETURNING job_id`, jobID, string(source), now, ev).Scan(&id)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		default:
			res.First = true
			if _, err := q.exec(ctx, `UPDATE reprov_node_job SET landed_at = ?, landing_source = ?, updated_at = ?
				WHERE id = ? AND (landing_source = '' OR (? = 2 AND landing_source = 'bmc-evidence'))`,
				now, string(source), now, jobID, source.rank()); err != nil {
				return err
			}
		}
		res.Job, err = s.nodeJob(ctx, q, jobID)
		return err
	})
	if err != nil {
		return LandResult{}, fmt.Errorf("mark job %d landed (%s): %w", jobID, source, err)
	}
	return res, nil
}

// MarkLanded records that source saw the job's node land: Land without a
// retry window, for the engine (bmc-evidence) and tools. A proof source
// (ipxe, callback) is refused with ErrNotArmed before ArmLanding and with
// ErrNotActive after the job ended. first is false on repeats.
func (s *Store) MarkLanded(ctx context.Context, jobID int64, source LandingSource, evidence json.RawMessage) (first bool, err error) {
	res, err := s.Land(ctx, jobID, source, evidence, 0)
	return res.First, err
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

// Callback tokens are derived, not stored: HMAC-SHA256, under a random
// per-store key (reprov_secret), of the job's ID and the time its landing
// was armed. A job has one token for its whole life (it is handed out
// again on every retry), no request can grow a table of tokens, and a
// token is checked by recomputing it.
const (
	tokenKeyName  = "callback-token-key"
	tokenPrefix   = "v1."
	maxTokenBytes = 128
)

// tokenKey returns the store's token key, creating it on first use.
func (s *Store) tokenKey(ctx context.Context, q querier) ([]byte, error) {
	var v string
	err := q.queryRow(ctx, `SELECT value FROM reprov_secret WHERE name = ?`, tokenKeyName).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		var b [32]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("callback token key: %w", err)
		}
		if _, err := q.exec(ctx, `INSERT INTO reprov_secret (name, value, created_at) VALUES (?, ?, ?)
			ON CONFLICT (name) DO NOTHING`, tokenKeyName, hex.EncodeToString(b[:]), nowMicros()); err != nil {
			return nil, fmt.Errorf("callback token key: %w", err)
		}
		err = q.queryRow(ctx, `SELECT value FROM reprov_secret WHERE name = ?`, tokenKeyName).Scan(&v)
	}
	if err != nil {
		return nil, fmt.Errorf("callback token key: %w", err)
	}
	key, err := hex.DecodeString(v)
	if err != nil || len(key) < 16 {
		return nil, errors.New("callback token key: the stored key is malformed")
	}
	return key, nil
}

func callbackToken(key []byte, jobID int64, armed time.Time) string {
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "reprov callback token v1\x00%d\x00%d", jobID, armed.UnixMicro())
	return tokenPrefix + strconv.FormatInt(jobID, 10) + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// IssueCallbackToken returns the job's installer callback token (POST
// /landed/{node}), handed out in the iPXE script; the same token each time.
// It fails with ErrNotArmed before ArmLanding and ErrNotActive once the job
// ended. The token is a secret: never log it. The landing endpoint gets it
// from Land instead, in the landing's transaction.
func (s *Store) IssueCallbackToken(ctx context.Context, jobID int64) (string, error) {
	job, armed, err := s.jobArmed(ctx, s.q(), jobID, false)
	if err != nil {
		return "", fmt.Errorf("callback token: %w", err)
	}
	if !job.State.Active() {
		return "", fmt.Errorf("callback token for job %d: %w", jobID, ErrNotActive)
	}
	if armed.IsZero() {
		return "", fmt.Errorf("callback token for job %d: %w", jobID, ErrNotArmed)
	}
	key, err := s.tokenKey(ctx, s.q())
	if err != nil {
		return "", fmt.Errorf("callback token for job %d: %w", jobID, err)
	}
	return callbackToken(key, jobID, armed), nil
}

// JobByCallbackToken returns the job a callback token belongs to, whatever
// its state (Land decides whether the callback still counts); ErrNotFound
// for a token that is not one of this store's. It writes nothing.
func (s *Store) JobByCallbackToken(ctx context.Context, token string) (NodeJob, error) {
	notFound := fmt.Errorf("callback token: unknown token: %w", ErrNotFound)
	rest, ok := strings.CutPrefix(token, tokenPrefix)
	if !ok || len(token) > maxTokenBytes {
		return NodeJob{}, notFound
	}
	idText, _, ok := strings.Cut(rest, ".")
	jobID, err := strconv.ParseInt(idText, 10, 64)
	if !ok || err != nil || jobID <= 0 {
		return NodeJob{}, notFound
	}
	job, armed, err := s.jobArmed(ctx, s.q(), jobID, false)
	if errors.Is(err, ErrNotFound) {
		return NodeJob{}, notFound
	}
	if err != nil {
		return NodeJob{}, fmt.Errorf("callback token: %w", err)
	}
	if armed.IsZero() {
		return NodeJob{}, notFound
	}
	var v string
	err = s.q().queryRow(ctx, `SELECT value FROM reprov_secret WHERE name = ?`, tokenKeyName).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return NodeJob{}, notFound
	}
	if err != nil {
		return NodeJob{}, fmt.Errorf("callback token: %w", err)
	}
	key, err := hex.DecodeString(v)
	if err != nil {
		return NodeJob{}, errors.New("callback token: the stored key is malformed")
	}
	if !hmac.Equal([]byte(callbackToken(key, jobID, armed)), []byte(token)) {
		return NodeJob{}, notFound
	}
	return job, nil
}
