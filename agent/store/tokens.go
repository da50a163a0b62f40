package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// API tokens of reprov serve (docs/api.md). A token is 32 random bytes;
// only its SHA-256 is stored. A fast hash is right here, unlike for
// passwords: with 256 bits of entropy there is nothing to brute-force, and a
// slow hash on every API request would only cost CPU.

// Role is what an API token may do.
type Role string

// Roles.
const (
	// RoleViewer may read (GET) everything the API serves.
	RoleViewer Role = "viewer"
	// RoleOperator may also create and cancel runs and jobs and clear
	// learned quirks.
	RoleOperator Role = "operator"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r == RoleViewer || r == RoleOperator }

// TokenPrefix starts every API token, so a leaked one is recognisable (and
// greppable by secret scanners).
const TokenPrefix = "rpv_"

// Token describes an API token; the token itself is never stored.
type Token struct {
	Name     string    `json:"name"`
	Role     Role      `json:"role"`
	Created  time.Time `json:"created"`
	LastUsed time.Time `json:"last_used"`
	Revoked  time.Time `json:"revoked"`
}

// Errors of the token functions.
var (
	// ErrTokenExists: a token of that name exists (revoked ones included:
	// names are never reused, so the audit trail stays unambiguous).
	ErrTokenExists = errors.New("a token of that name exists")
	// ErrTokenRevoked: the token was revoked.
	ErrTokenRevoked = errors.New("token revoked")
)

var tokenName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// CreateToken creates an API token for name with role and returns it. The
// returned string is the only copy: show it once, never log it.
func (s *Store) CreateToken(ctx context.Context, name string, role Role) (string, Token, error) {
	if !tokenName.MatchString(name) {
		return "", Token{}, fmt.Errorf("create token: name %q: want 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit", name)
	}
	if !role.Valid() {
		return "", Token{}, fmt.Errorf("create token %s: role %q: want viewer or operator", name, role)
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", Token{}, fmt.Errorf("create token %s: %w", name, err)
	}
	token := TokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	now := time.Now()
	_, err := s.q().exec(ctx, `INSERT INTO reprov_api_token (name, role, token_hash, created_at) VALUES (?, ?, ?, ?)`,
		name, string(role), hashToken(token), now.UnixMicro())
	if isUniqueViolation(err) {
		return "", Token{}, fmt.Errorf("create token %s: %w", name, ErrTokenExists)
	}
	if err != nil {
		return "", Token{}, fmt.Errorf("create token %s: %w", name, err)
	}
	return token, Token{Name: name, Role: role, Created: time.UnixMicro(now.UnixMicro()).UTC()}, nil
}

// Tokens lists every API token (revoked ones too), by name.
func (s *Store) Tokens(ctx context.Context) ([]Token, error) {
	rs, err := s.q().query(ctx, `SELECT name, role, created_at, last_used_at, revoked_at FROM reprov_api_token ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	defer rs.Close()
	var out []Token
	for rs.Next() {
		var (
			t             Token
			role          string
			created       int64
			used, revoked sql.NullInt64
		)
		if err := rs.Scan(&t.Name, &role, &created, &used, &revoked); err != nil {
			return nil, fmt.Errorf("list tokens: %w", err)
		}
		t.Role, t.Created, t.LastUsed, t.Revoked = Role(role), time.UnixMicro(created).UTC(), fromMicros(used), fromMicros(revoked)
		out = append(out, t)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return out, nil
}

// RevokeToken revokes the named token at once (ErrNotFound if none; revoking
// twice is not an error).
func (s *Store) RevokeToken(ctx context.Context, name string) error {
	n, err := s.q().exec(ctx, `UPDATE reprov_api_token SET revoked_at = COALESCE(revoked_at, ?) WHERE name = ?`, nowMicros(), name)
	if err != nil {
		return fmt.Errorf("revoke token %s: %w", name, err)
	}
	if n == 0 {
		return fmt.Errorf("token %s: %w", name, ErrNotFound)
	}
	return nil
}

// lastUsedEvery bounds how often a token's last use is written: not on
// every request.
const lastUsedEvery = time.Minute

// VerifyToken returns the token a bearer token is (ErrNotFound for an
// unknown one, ErrTokenRevoked for a revoked one) and records its use. The
// errors never hold the token.
func (s *Store) VerifyToken(ctx context.Context, token string) (Token, error) {
	if !strings.HasPrefix(token, TokenPrefix) {
		return Token{}, fmt.Errorf("api token: %w", ErrNotFound)
	}
	h := hashToken(token)
	var (
		t             Token
		role          string
		created       int64
		used, revoked sql.NullInt64
	)
	err := s.q().queryRow(ctx, `SELECT name, role, created_at, last_used_at, revoked_at FROM reprov_api_token WHERE token_hash = ?`, h).
		Scan(&t.Name, &role, &created, &used, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return Token{}, fmt.Errorf("api token: %w", ErrNotFound)
	}
	if err != nil {
		return Token{}, fmt.Errorf("api token: %w", err)
	}
	t.Role, t.Created, t.LastUsed, t.Revoked = Role(role), time.UnixMicro(created).UTC(), fromMicros(used), fromMicros(revoked)
	if revoked.Valid {
		return t, fmt.Errorf("api token %s: %w", t.Name, ErrTokenRevoked)
	}
	now := time.Now()
	if now.Sub(t.LastUsed) >= lastUsedEvery {
		if _, err := s.q().exec(ctx, `UPDATE reprov_api_token SET last_used_at = ? WHERE token_hash = ?`, now.UnixMicro(), h); err == nil {
			t.LastUsed = time.UnixMicro(now.UnixMicro()).UTC()
		}
	}
	return t, nil
}

// hashToken is what the store keeps of an API token: its SHA-256, hex.
func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}
