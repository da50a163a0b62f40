// Package audit is reprov's two-phase audit log: every power change, boot
// override and destructive in-band step is written as an intent, synced to
// disk, before it runs, and as an outcome after. The log is a JSON-lines
// file in the state dir (audit.jsonl) that operators can read with jq; the
// job store keeps the same records for resume.
//
// An intent with no outcome means the process died while the act may have
// happened: resume must settle it by looking, never by repeating it blindly
// (DESIGN.md §6).
package audit

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Phases of a record.
const (
	PhaseIntent  = "intent"
	PhaseOutcome = "outcome"
)

// Results of an outcome.
const (
	ResultOK      = "ok"
	ResultFailed  = "failed"
	ResultSkipped = "skipped"
)

// Record is one line of the audit log. Detail must never hold a secret.
type Record struct {
	Time   time.Time      `json:"time"`
	ID     string         `json:"id"`
	Phase  string         `json:"phase"`
	Run    string         `json:"run,omitempty"`
	Node   string         `json:"node"`
	Action string         `json:"action"`
	Detail map[string]any `json:"detail,omitempty"`
	Result string         `json:"result,omitempty"`
	Error  string         `json:"error,omitempty"`
}

// Log appends records to a JSON-lines file. It is safe for concurrent use.
type Log struct {
	mu  sync.Mutex
	f   *os.File
	run string
	now func() time.Time
}

// Open opens (creating if needed, mode 0600) the audit log at path. run
// tags every record with the run it belongs to ("" for ad-hoc commands).
func Open(path, run string) (*Log, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	return &Log{f: f, run: run, now: time.Now}, nil
}

// Pending is an intent that awaits its outcome.
type Pending struct {
	log    *Log
	id     string
	node   string
	action string
}

// ID is the intent's record ID, shared by its outcome.
func (p Pending) ID() string { return p.id }

// Intent records that action is about to happen on node and syncs the file,
// so the record survives a crash during the act. The act must not start if
// Intent returns an error.
func (l *Log) Intent(node, action string, detail map[string]any) (Pending, error) {
	id, err := newID()
	if err != nil {
		return Pending{}, err
	}
	rec := Record{ID: id, Phase: PhaseIntent, Node: node, Action: action, Detail: detail}
	if err := l.write(rec); err != nil {
		return Pending{}, err
	}
	return Pending{log: l, id: id, node: node, action: action}, nil
}

// Done records the outcome of the intent: ok when actErr is nil, failed
// otherwise, or skipped when skipped is set in detail["skipped"].
func (p Pending) Done(actErr error, detail map[string]any) error {
	rec := Record{ID: p.id, Phase: PhaseOutcome, Node: p.node, Action: p.action, Detail: detail, Result: ResultOK}
	if actErr != nil {
		rec.Result = ResultFailed
		rec.Error = actErr.Error()
	}
	return p.log.write(rec)
}

// Skipped records that the intent was not carried out (dry run, refused check).
func (p Pending) Skipped(reason string) error {
	return p.log.write(Record{ID: p.id, Phase: PhaseOutcome, Node: p.node, Action: p.action,
		Result: ResultSkipped, Error: reason})
}

func (l *Log) write(rec Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return errors.New("audit log is closed")
	}
	rec.Time = l.now().UTC()
	rec.Run = l.run
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("audit record: %w", err)
	}
	b = append(b, '\n')
	if _, err := l.f.Write(b); err != nil {
		return fmt.Errorf("write audit log: %w", err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("sync audit log: %w", err)
	}
	return nil
}

// Close closes the file. Further writes fail.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// Read returns every record of the log at path, in order. A torn last line
// (a crash mid-write) is ignored.
func Read(path string) ([]Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var recs []Record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for sc.Scan() {
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			continue
		}
		recs = append(recs, r)
	}
	return recs, sc.Err()
}

// Unsettled returns the intents in recs that have no outcome.
func Unsettled(recs []Record) []Record {
	done := make(map[string]bool)
	for _, r := range recs {
		if r.Phase == PhaseOutcome {
			done[r.ID] = true
		}
	}
	var out []Record
	for _, r := range recs {
		if r.Phase == PhaseIntent && !done[r.ID] {
			out = append(out, r)
		}
	}
	return out
}

func newID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("audit id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
