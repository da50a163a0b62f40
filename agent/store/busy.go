package store

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Retryable reports whether err says the store did nothing because it was
// busy, so the same call may be made again: SQLite's "database is locked"
// (another connection or process held the write lock longer than the
// busy timeout), a PostgreSQL serialization failure or deadlock (the
// transaction was rolled back), or a PostgreSQL request that never
// reached the server.
func Retryable(err error) bool {
	if err == nil {
		return false
	}
	var sqErr *sqlite.Error
	if errors.As(err, &sqErr) {
		switch sqErr.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return true
		}
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "40001" || pgErr.Code == "40P01"
	}
	return pgconn.SafeToRetry(err)
}
