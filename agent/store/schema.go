package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/gofrs/flock"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
)

// migration is one version of reprov's own schema. The statements are shared
// by both backends; {{id}} becomes the dialect's auto-increment primary key.
type migration struct {
	version int
	name    string
	stmts   []string
}

// migrations returns reprov's schema versions, applied in order, each in one
// transaction. Never edit a released version: add a new one.
func migrations() []migration {
	return []migration{{
		version: 1,
		name:    "initial",
		stmts: []string{
			// A run: one reinstall command (or, later, one reimaging window).
			// state: scheduled | running | finished | cancelled | interrupted.
			`CREATE TABLE IF NOT EXISTS reprov_run (
			id           {{id}},
			created_at   BIGINT NOT NULL,
			created_by   TEXT   NOT NULL DEFAULT '',
			selection    TEXT   NOT NULL DEFAULT '',
			options      TEXT   NOT NULL DEFAULT '{}',
			window_start BIGINT,
			window_end   BIGINT,
			state        TEXT   NOT NULL,
			finished_at  BIGINT
		)`,
			// A node job: one node's reinstall within a run.
			`CREATE TABLE IF NOT EXISTS reprov_node_job (
			id                  {{id}},
			run_id              BIGINT NOT NULL REFERENCES reprov_run (id),
			node                TEXT   NOT NULL,
			state               TEXT   NOT NULL CHECK (state IN ('queued', 'running', 'landed', 'failed', 'cancelled', 'interrupted')),
			path                TEXT   NOT NULL DEFAULT '',
			step                TEXT   NOT NULL DEFAULT '',
			reason              TEXT   NOT NULL DEFAULT '',
			evidence            TEXT,
			macs                TEXT   NOT NULL DEFAULT '',
			owner               TEXT   NOT NULL DEFAULT '',
			lease_until         BIGINT,
			generation          BIGINT NOT NULL DEFAULT 0,
			river_job_id        BIGINT,
			cancel_requested_at BIGINT,
			cancel_reason       TEXT   NOT NULL DEFAULT '',
			landed_at           BIGINT,
			landing_source      TEXT   NOT NULL DEFAULT '',
			created_at          BIGINT NOT NULL,
			started_at          BIGINT,
			updated_at          BIGINT NOT NULL,
			finished_at         BIGINT
		)`,
			// At most one active job per node, whoever inserts it.
			`CREATE UNIQUE INDEX IF NOT EXISTS reprov_node_job_one_active ON reprov_node_job (node) WHERE state IN ('queued', 'running')`,
			`CREATE INDEX IF NOT EXISTS reprov_node_job_node ON reprov_node_job (node, id)`,
			`CREATE INDEX IF NOT EXISTS reprov_node_job_run ON reprov_node_job (run_id, id)`,
			// MACs of a job's node, for the landing endpoint's lookup.
			`CREATE TABLE IF NOT EXISTS reprov_job_mac (
			job_id BIGINT NOT NULL REFERENCES reprov_node_job (id),
			mac    TEXT   NOT NULL,
			PRIMARY KEY (job_id, mac)
		)`,
			`CREATE INDEX IF NOT EXISTS reprov_job_mac_mac ON reprov_job_mac (mac)`,
			// Landings seen for a job, one row per source.
			`CREATE TABLE IF NOT EXISTS reprov_landing (
			job_id    BIGINT NOT NULL REFERENCES reprov_node_job (id),
			source    TEXT   NOT NULL CHECK (source IN ('ipxe', 'callback', 'bmc-evidence')),
			landed_at BIGINT NOT NULL,
			evidence  TEXT,
			PRIMARY KEY (job_id, source)
		)`,
			// Callback tokens handed to installers; only their SHA-256 is kept.
			`CREATE TABLE IF NOT EXISTS reprov_callback_token (
			token_hash TEXT   NOT NULL PRIMARY KEY,
			job_id     BIGINT NOT NULL REFERENCES reprov_node_job (id),
			created_at BIGINT NOT NULL
		)`,
			`CREATE INDEX IF NOT EXISTS reprov_callback_token_job ON reprov_callback_token (job_id)`,
			// The per-node step record: intent before an act, outcome after.
			// An outcome names its intent; an intent without one is unsettled.
			`CREATE TABLE IF NOT EXISTS reprov_step (
			id        {{id}},
			job_id    BIGINT NOT NULL REFERENCES reprov_node_job (id),
			node      TEXT   NOT NULL,
			at        BIGINT NOT NULL,
			step      TEXT   NOT NULL,
			phase     TEXT   NOT NULL CHECK (phase IN ('intent', 'outcome')),
			intent_id BIGINT REFERENCES reprov_step (id),
			result    TEXT   NOT NULL DEFAULT '',
			detail    TEXT
		)`,
			`CREATE UNIQUE INDEX IF NOT EXISTS reprov_step_settles ON reprov_step (intent_id)`,
			`CREATE INDEX IF NOT EXISTS reprov_step_job ON reprov_step (job_id, id)`,
			`CREATE INDEX IF NOT EXISTS reprov_step_node ON reprov_step (node, phase, id)`,
			// Learned BMC quirks, e.g. "ignores-oob-pxe".
			`CREATE TABLE IF NOT EXISTS reprov_quirk (
			node       TEXT   NOT NULL,
			quirk      TEXT   NOT NULL,
			model      TEXT   NOT NULL DEFAULT '',
			evidence   TEXT,
			run_id     BIGINT,
			learned_at BIGINT NOT NULL,
			PRIMARY KEY (node, quirk)
		)`,
			`CREATE INDEX IF NOT EXISTS reprov_quirk_model ON reprov_quirk (model)`,
			// Boot sectors saved before a wipe (the bytes live on disk).
			`CREATE TABLE IF NOT EXISTS reprov_sector (
			id       {{id}},
			node     TEXT   NOT NULL,
			run_id   BIGINT NOT NULL,
			job_id   BIGINT,
			device   TEXT   NOT NULL DEFAULT '',
			path     TEXT   NOT NULL,
			sha256   TEXT   NOT NULL,
			size     BIGINT NOT NULL DEFAULT 0,
			saved_at BIGINT NOT NULL
		)`,
			`CREATE INDEX IF NOT EXISTS reprov_sector_node ON reprov_sector (node, run_id, id)`,
		},
	}, auditMigration(), {
		version: 3,
		name:    "shared queues",
		stmts: []string{
			// Where a node job is worked and what limits it: the shared River
			// queue of its site, its rack and BMC for the claim-time limits,
			// and the inventory entry it was submitted with (secrets as their
			// references only), which a worker compares with its own.
			`ALTER TABLE reprov_node_job ADD COLUMN site TEXT NOT NULL DEFAULT ''`,
			`ALTER TABLE reprov_node_job ADD COLUMN rack TEXT NOT NULL DEFAULT ''`,
			`ALTER TABLE reprov_node_job ADD COLUMN bmc_key TEXT NOT NULL DEFAULT ''`,
			`ALTER TABLE reprov_node_job ADD COLUMN spec TEXT`,
			`CREATE INDEX IF NOT EXISTS reprov_node_job_run_state ON reprov_node_job (run_id, state)`,
			// A run's admission limits, enforced where jobs are claimed (in
			// the store, across every controller). 0: no limit.
			`ALTER TABLE reprov_run ADD COLUMN max_parallel BIGINT NOT NULL DEFAULT 0`,
			`ALTER TABLE reprov_run ADD COLUMN per_rack BIGINT NOT NULL DEFAULT 0`,
			`ALTER TABLE reprov_run ADD COLUMN per_bmc BIGINT NOT NULL DEFAULT 0`,
			`ALTER TABLE reprov_run ADD COLUMN max_failures BIGINT NOT NULL DEFAULT 0`,
			// Which worker wrote a step record (its owner ID): a job worked by
			// two controllers shows who did what.
			`ALTER TABLE reprov_step ADD COLUMN owner TEXT NOT NULL DEFAULT ''`,
		},
	}, {
		version: 4,
		name:    "landing",
		stmts: []string{
			// When the job's landing was armed (the engine's kick: power action
			// or in-band reboot); a proof landing counts only after it.
			`ALTER TABLE reprov_node_job ADD COLUMN armed_at BIGINT`,
			// Store-wide secrets, e.g. the key callback tokens are derived
			// with (HMAC), created on first use.
			`CREATE TABLE IF NOT EXISTS reprov_secret (
			name       TEXT   NOT NULL PRIMARY KEY,
			value      TEXT   NOT NULL,
			created_at BIGINT NOT NULL
		)`,
			// Landing endpoint sessions: one row per time a controller bound
			// landing.listen, with its heartbeat (EndpointCoverage).
			`CREATE TABLE IF NOT EXISTS reprov_endpoint_session (
			id          {{id}},
			controller  TEXT   NOT NULL,
			listen      TEXT   NOT NULL,
			bound_since BIGINT NOT NULL,
			seen_at     BIGINT NOT NULL,
			released_at BIGINT
		)`,
			`CREATE INDEX IF NOT EXISTS reprov_endpoint_session_seen ON reprov_endpoint_session (seen_at)`,
		},
	}, {
		version: 5,
		name:    "tokens",
		stmts: []string{
			// API tokens of reprov serve: only the SHA-256 of each token is
			// kept (agent/store/tokens.go says why a fast hash is right).
			// Names are never reused, revoked tokens stay listed.
			`CREATE TABLE IF NOT EXISTS reprov_api_token (
			name         TEXT   NOT NULL PRIMARY KEY,
			role         TEXT   NOT NULL CHECK (role IN ('viewer', 'operator')),
			token_hash   TEXT   NOT NULL UNIQUE,
			created_at   BIGINT NOT NULL,
			last_used_at BIGINT,
			revoked_at   BIGINT
		)`,
		},
	}, windowsMigration(), {
		version: 7,
		name:    "admission index",
		stmts: []string{
			// The claim-time limits count a run's running jobs, of one rack
			// for per_rack: with the rack in the index that count is a range
			// of at most the limit's entries, not a row read for every
			// running job of the run (BenchmarkClaimRefusedPerRack,
			// docs/performance.md). Its (run_id, state) prefix serves every
			// query the index it replaces did.
			`CREATE INDEX IF NOT EXISTS reprov_node_job_run_state_rack ON reprov_node_job (run_id, state, rack)`,
			`DROP INDEX IF EXISTS reprov_node_job_run_state`,
		},
	}}
}

// SchemaVersion is the version of reprov's own schema this build writes.
func SchemaVersion() int { ms := migrations(); return ms[len(ms)-1].version }

func (s *Store) ddl(stmt string) string {
	id := "INTEGER PRIMARY KEY AUTOINCREMENT"
	if s.dialect == Postgres {
		id = "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
	}
	return strings.ReplaceAll(stmt, "{{id}}", id)
}

// migrationLockKey is the PostgreSQL advisory lock key held while migrating
// ("reprov" in ASCII).
const migrationLockKey = 0x72657072_6f76

// migrate applies River's and reprov's migrations, holding a lock so that
// concurrent Opens of one store don't race.
func (s *Store) migrate(ctx context.Context) error {
	if s.dialect == SQLite {
		lock := flock.New(s.target + ".migrate-lock")
		if err := lock.Lock(); err != nil {
			return fmt.Errorf("lock for migration: %w", err)
		}
		defer lock.Unlock()
		m, err := rivermigrate.New(riversqlite.New(s.db), &rivermigrate.Config{Logger: s.log})
		if err != nil {
			return fmt.Errorf("river migrations: %w", err)
		}
		if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
			return fmt.Errorf("river migrations: %w", err)
		}
		return s.migrateReprov(ctx)
	}

	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("lock for migration: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(migrationLockKey)); err != nil {
		return fmt.Errorf("lock for migration: %w", err)
	}
	defer func() {
		if _, err := conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", int64(migrationLockKey)); err != nil {
			// Never hand a connection still holding the lock back to the pool.
			_ = conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()
	m, err := rivermigrate.New(riverpgxv5.New(s.pool), &rivermigrate.Config{Logger: s.log})
	if err != nil {
		return fmt.Errorf("river migrations: %w", err)
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("river migrations: %w", err)
	}
	return s.migrateReprov(ctx)
}

func (s *Store) migrateReprov(ctx context.Context) error {
	if _, err := s.q().exec(ctx, `CREATE TABLE IF NOT EXISTS reprov_schema_version (
		version    BIGINT NOT NULL PRIMARY KEY,
		name       TEXT   NOT NULL,
		applied_at BIGINT NOT NULL
	)`); err != nil {
		return fmt.Errorf("reprov migrations: %w", err)
	}
	var current sql.NullInt64
	if err := s.q().queryRow(ctx, `SELECT MAX(version) FROM reprov_schema_version`).Scan(&current); err != nil {
		return fmt.Errorf("reprov migrations: read version: %w", err)
	}
	if int(current.Int64) > SchemaVersion() {
		return fmt.Errorf("reprov migrations: the store's schema version %d is newer than this reprov's (%d): upgrade reprov",
			current.Int64, SchemaVersion())
	}
	for _, m := range migrations() {
		if m.version <= int(current.Int64) {
			continue
		}
		err := s.inTx(ctx, func(q querier, _ any) error {
			for _, stmt := range m.stmts {
				if _, err := q.exec(ctx, s.ddl(stmt)); err != nil {
					return err
				}
			}
			_, err := q.exec(ctx, `INSERT INTO reprov_schema_version (version, name, applied_at) VALUES (?, ?, ?)`,
				m.version, m.name, nowMicros())
			return err
		})
		if err != nil {
			return fmt.Errorf("reprov migration %d (%s): %w", m.version, m.name, err)
		}
		s.log.InfoContext(ctx, "applied store migration", "version", m.version, "name", m.name, "store", s.target)
	}
	return nil
}
