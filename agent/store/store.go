// Package store is reprov's job store: runs, per-node jobs, the per-node
// step record that drives resume, landings, callback tokens, learned BMC
// quirks and saved boot-sector metadata, next to River's job queue in the
// same database.
//
// Two backends share one schema and one code path:
//
//   - SQLite (default, embedded, pure Go via modernc.org/sqlite): a single
//     file in the state dir, opened with "sqlite:///path/to/reprov.db".
//     Several reprov processes on one machine may share the file.
//   - PostgreSQL ("postgres://…"): several controllers share one fleet.
//
// The one-active-job-per-node rule is enforced by the database (a unique
// partial index on the job's node over the active states), so it holds
// across processes and across controllers sharing one PostgreSQL.
//
// All timestamps are stored as microseconds since the Unix epoch (UTC) in
// BIGINT columns and all JSON as TEXT, so the same SQL serves both backends.
// Leases compare against the controller's clock: controllers sharing a
// PostgreSQL must keep their clocks in sync (NTP).
//
// # How the engine uses it
//
// Enqueue: CreateRun, then Queue.Acquire per node (holds the node and
// inserts its River job in one transaction; ErrNodeBusy names the holder).
//
// Work (a river.Worker[ReinstallArgs]):
//
//  1. ClaimNodeJob(args.NodeJobID, args.Generation, OwnerID(clientID,
//     riverJob.ID), ttl); on ErrSuperseded, ErrNotActive or ErrWindowClosed
//     return nil. Renew the lease (RenewLease) well within ttl; on
//     ErrLeaseLost or ErrNotActive stop touching the node at once.
//  2. Settle UnsettledSteps(node) by looking, recording an outcome for each.
//  3. Before each step: CancelRequested (then FinishNode cancelled). Then
//     RecordStep intent (with Owner), act, RecordStep outcome. LastStep
//     says where a resumed job continues.
//  4. FinishNode(landed|failed|cancelled|interrupted, with Owner).
//
// Resume: OrphanedJobs lists running jobs whose controller stopped renewing;
// Queue.Resume re-enqueues one under a new generation (River itself would
// rescue the old attempt only after RescueStuckJobsAfter). Interrupted jobs
// resume the same way.
//
// Landing: the endpoint maps a MAC to ActiveJobByMAC and records
// MarkLanded; installers prove themselves with a token from
// IssueCallbackToken (JobByCallbackToken).
//
// The SQLite backend keeps a lock file next to the database
// (reprov.db.migrate-lock) to serialise migrations across processes.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Dialect names the database behind a Store.
type Dialect string

// Dialects.
const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// Store is an open job store. It is safe for concurrent use. Close it when
// done, after stopping any Queue made from it.
type Store struct {
	log     *slog.Logger
	dialect Dialect
	target  string // where the store lives, without credentials (for errors and logs)

	db   *sql.DB       // SQLite
	pool *pgxpool.Pool // PostgreSQL
}

// Open opens (creating and migrating as needed) the store at storeURL:
//
//   - "sqlite:///abs/path/reprov.db" (or "sqlite://relative/path"): an SQLite
//     file, created mode 0600 with its directory (0700) if missing;
//   - "postgres://…" or "postgresql://…": a PostgreSQL database (pgx URL or
//     keyword/value syntax after the scheme).
//
// Open applies River's migrations and reprov's own, both idempotent, so
// opening an up-to-date store twice changes nothing. Concurrent Opens of the
// same store serialise their migrations (a file lock for SQLite, an advisory
// lock for PostgreSQL). storeURL may carry a password; it never appears in
// errors or logs.
func Open(ctx context.Context, storeURL string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	switch {
	case storeURL == "":
		return nil, errors.New("open store: empty store URL (want sqlite:///path/to/reprov.db or postgres://…)")
	case strings.HasPrefix(storeURL, "sqlite:"):
		return openSQLite(ctx, storeURL, log)
	case strings.HasPrefix(storeURL, "postgres://"), strings.HasPrefix(storeURL, "postgresql://"):
		return openPostgres(ctx, storeURL, log)
	default:
		scheme, _, _ := strings.Cut(storeURL, ":")
		return nil, fmt.Errorf("open store: unsupported store URL scheme %q (want sqlite:// or postgres://)", scheme)
	}
}

// SQLitePath returns the file path of an "sqlite://" store URL. Everything
// after the scheme is the path, taken literally (no %-decoding, no query):
// callers build the URL as "sqlite://" + path.
func SQLitePath(storeURL string) (string, error) {
	rest, ok := strings.CutPrefix(storeURL, "sqlite://")
	if !ok {
		rest, ok = strings.CutPrefix(storeURL, "sqlite:")
	}
	if !ok {
		return "", fmt.Errorf("store URL is not sqlite: %q", storeURL)
	}
	if rest == "" {
		return "", errors.New("store URL: sqlite:// needs a file path, e.g. sqlite:///var/lib/reprov/reprov.db")
	}
	return filepath.Clean(rest), nil
}

func openSQLite(ctx context.Context, storeURL string, log *slog.Logger) (*Store, error) {
	path, err := SQLitePath(storeURL)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	f.Close()

	// One connection: River and reprov share it (SQLite allows one writer;
	// more connections in one process only add SQLITE_BUSY). BEGIN IMMEDIATE
	// takes the write lock up front, so transactions of several processes on
	// the same file queue on busy_timeout instead of failing on a lock upgrade.
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() +
		"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_pragma=foreign_keys(1)&_pragma=temp_store(memory)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	s := &Store{log: log, dialect: SQLite, target: path, db: db}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return s, nil
}

func openPostgres(ctx context.Context, storeURL string, log *slog.Logger) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(storeURL)
	if err != nil {
		// pgconn redacts the password in its parse errors.
		return nil, fmt.Errorf("open store: %w", err)
	}
	target := fmt.Sprintf("postgres %s:%d/%s", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)
	if !strings.Contains(storeURL, "pool_max_conns") && cfg.MaxConns < 10 {
		// River keeps one connection for LISTEN and runs its producers,
		// elector and maintenance beside reprov's queries; pgx's default
		// (max(4, CPUs)) is tight on small controllers.
		cfg.MaxConns = 10
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", target, err)
	}
	s := &Store{log: log, dialect: Postgres, target: target, pool: pool}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open store %s: %w", target, err)
	}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open store %s: %w", target, err)
	}
	return s, nil
}

// Dialect reports which database backs the store.
func (s *Store) Dialect() Dialect { return s.dialect }

// String describes where the store lives (path or host/db), without
// credentials.
func (s *Store) String() string { return s.target }

// Close closes the database. Stop every Queue made from the store first.
func (s *Store) Close() error {
	if s.db != nil {
		return s.db.Close()
	}
	s.pool.Close()
	return nil
}

// querier runs reprov's SQL on either backend, inside or outside a
// transaction. Queries are written with ? placeholders; the PostgreSQL
// implementation rewrites them to $n.
type querier interface {
	exec(ctx context.Context, q string, args ...any) (int64, error)
	query(ctx context.Context, q string, args ...any) (rows, error)
	queryRow(ctx context.Context, q string, args ...any) row
}

type rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

type row interface {
	Scan(dest ...any) error
}

// sqlQuerier serves *sql.DB and *sql.Tx.
type sqlQuerier struct {
	c interface {
		ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
		QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
		QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
	}
}

func (q sqlQuerier) exec(ctx context.Context, s string, args ...any) (int64, error) {
	res, err := q.c.ExecContext(ctx, s, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (q sqlQuerier) query(ctx context.Context, s string, args ...any) (rows, error) {
	r, err := q.c.QueryContext(ctx, s, args...)
	if err != nil {
		return nil, err
	}
	return sqlRows{r}, nil
}

func (q sqlQuerier) queryRow(ctx context.Context, s string, args ...any) row {
	return q.c.QueryRowContext(ctx, s, args...)
}

type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { r.Rows.Close() }

// pgxQuerier serves *pgxpool.Pool and pgx.Tx.
type pgxQuerier struct {
	c interface {
		Exec(ctx context.Context, q string, args ...any) (pgconn.CommandTag, error)
		Query(ctx context.Context, q string, args ...any) (pgx.Rows, error)
		QueryRow(ctx context.Context, q string, args ...any) pgx.Row
	}
}

func (q pgxQuerier) exec(ctx context.Context, s string, args ...any) (int64, error) {
	tag, err := q.c.Exec(ctx, rebind(s), args...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

func (q pgxQuerier) query(ctx context.Context, s string, args ...any) (rows, error) {
	r, err := q.c.Query(ctx, rebind(s), args...)
	if err != nil {
		return nil, err
	}
	return r, nil
}

func (q pgxQuerier) queryRow(ctx context.Context, s string, args ...any) row {
	return pgxRow{q.c.QueryRow(ctx, rebind(s), args...)}
}

type pgxRow struct{ pgx.Row }

func (r pgxRow) Scan(dest ...any) error {
	err := r.Row.Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		return sql.ErrNoRows
	}
	return err
}

// rebind rewrites ? placeholders to $1, $2, … (reprov's SQL has no ? in
// literals).
func rebind(q string) string {
	if !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// q returns a querier outside any transaction.
func (s *Store) q() querier {
	if s.db != nil {
		return sqlQuerier{s.db}
	}
	return pgxQuerier{s.pool}
}

// inTx runs fn in one transaction. raw is the driver's transaction (*sql.Tx
// for SQLite, pgx.Tx for PostgreSQL), for River's InsertTx. On SQLite fn must
// not touch s.db (the only connection is the transaction's).
func (s *Store) inTx(ctx context.Context, fn func(q querier, raw any) error) error {
	if s.db != nil {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		if err := fn(sqlQuerier{tx}, tx); err != nil {
			_ = tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		return nil
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(pgxQuerier{tx}, tx); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// isUniqueViolation reports whether err is a unique-constraint violation on
// either backend.
func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "23505"
	}
	var sqErr *sqlite.Error
	if errors.As(err, &sqErr) {
		c := sqErr.Code()
		return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

// Time helpers: the store keeps microseconds since the epoch; the zero
// time.Time is NULL.

func micros(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

func fromMicros(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMicro(v.Int64).UTC()
}

func nowMicros() int64 { return time.Now().UnixMicro() }
