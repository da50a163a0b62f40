package inventory

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
)

// Secret is a credential reference: env:NAME, file:PATH or plain:LITERAL.
// Its String and JSON forms show the reference, never a resolved value; a
// plain literal is shown as "plain:<redacted>".
type Secret struct {
	ref string
}

// ErrSecret is wrapped by every error resolving a Secret.
var ErrSecret = errors.New("credential")

// NewSecret returns the Secret for a reference. It does not resolve it.
func NewSecret(ref string) Secret { return Secret{ref: ref} }

// IsZero reports whether no reference is set.
func (s Secret) IsZero() bool { return s.ref == "" }

// Ref returns the reference as written, except that a plain literal is redacted.
func (s Secret) Ref() string {
	switch s.Kind() {
	case "plain":
		return "plain:<redacted>"
	case "":
		if s.ref != "" {
			// Not a reference at all: most likely a literal password
			// written without the plain: prefix. Never echo it.
			return "<redacted: not a reference>"
		}
	}
	return s.ref
}

// String implements fmt.Stringer with the redacted reference.
func (s Secret) String() string { return s.Ref() }

// GoString keeps %#v from printing the literal.
func (s Secret) GoString() string { return fmt.Sprintf("inventory.Secret(%q)", s.Ref()) }

// MarshalJSON writes the redacted reference.
func (s Secret) MarshalJSON() ([]byte, error) {
	return []byte(fmt.Sprintf("%q", s.Ref())), nil
}

// Kind returns env, file, plain or "" for an unset or malformed reference.
func (s Secret) Kind() string {
	kind, _, ok := strings.Cut(s.ref, ":")
	if !ok {
		return ""
	}
	switch kind {
	case "env", "file", "plain":
		return kind
	}
	return ""
}

// Resolve returns the secret's value. Errors name the reference, never the value.
func (s Secret) Resolve() (string, error) {
	kind, arg, _ := strings.Cut(s.ref, ":")
	switch {
	case s.ref == "":
		return "", nil
	case kind == "env" && s.Kind() == "env":
		v, ok := os.LookupEnv(arg)
		if !ok {
			return "", fmt.Errorf("%w %s: environment variable %s is not set", ErrSecret, s.Ref(), arg)
		}
		return v, nil
	case kind == "file" && s.Kind() == "file":
		b, err := os.ReadFile(expandHome(arg))
		if err != nil {
			return "", fmt.Errorf("%w %s: %w", ErrSecret, s.Ref(), err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	case kind == "plain" && s.Kind() == "plain":
		return arg, nil
	}
	return "", fmt.Errorf("%w %s: not a reference (want env:NAME, file:PATH or plain:VALUE)", ErrSecret, s.Ref())
}

// expandHome replaces a leading ~/ with the user's home directory.
func expandHome(p string) string {
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		if home, err := os.UserHomeDir(); err == nil {
			return home + "/" + rest
		}
	}
	return p
}

// SecretCache resolves each reference once: a command over a fleet whose
// nodes share one password file reads it once, not once per node. It is
// safe for concurrent use; the zero value is ready. Keep one for no longer
// than a run: a rotated file is read again by the next one.
type SecretCache struct {
	mu   sync.Mutex
	vals map[string]resolvedSecret
}

type resolvedSecret struct {
	val string
	err error
}

// Resolve returns s.Resolve(), from the cache when s was resolved before.
// A nil cache resolves every time. A failure is cached too: its error
// names the reference, never a value.
func (c *SecretCache) Resolve(s Secret) (string, error) {
	if c == nil {
		return s.Resolve()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.vals[s.ref]; ok {
		return r.val, r.err
	}
	v, err := s.Resolve()
	if c.vals == nil {
		c.vals = make(map[string]resolvedSecret)
	}
	c.vals[s.ref] = resolvedSecret{v, err}
	return v, err
}
