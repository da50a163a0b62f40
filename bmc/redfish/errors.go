package redfish

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/reprov/reprov/bmc"
	"github.com/stmcginnis/gofish/schemas"
)

// ErrNotRedfish means the address answered, but not as a Redfish service.
var ErrNotRedfish = errors.New("no Redfish service")

// tlsHint tells the operator which inventory options fix a certificate
// that cannot be verified.
const tlsHint = "set the node's bmc.options.ca_file to the CA that signed the BMC's certificate, " +
	"or bmc.options.insecure_tls: true to skip verification"

// HTTPError is an HTTP status a Redfish service answered with, and the
// Redfish message it gave. A 429 or 5xx (but 501) is wrapped in
// bmc.Temporary; RetryAfter says how long the service asked to wait.
type HTTPError struct {
	// Method and Path are the request (Path without host or query).
	Method string
	Path   string
	// StatusCode is the HTTP status.
	StatusCode int
	// Message is the Redfish error message (MessageId: text) or an excerpt
	// of the body.
	Message    string
	retryAfter time.Duration
}

// Error implements error.
func (e *HTTPError) Error() string {
	var b strings.Builder
	if e.Method != "" {
		fmt.Fprintf(&b, "%s %s: ", e.Method, e.Path)
	}
	fmt.Fprintf(&b, "HTTP %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.retryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %v)", e.retryAfter)
	}
	return b.String()
}

// RetryAfter is the wait the service asked for in a Retry-After header
// (zero when it gave none). The retry wrapper honours it.
func (e *HTTPError) RetryAfter() time.Duration { return e.retryAfter }

// Is makes 429 Too Many Requests, 503 Service Unavailable and 409
// Conflict (a BMC busy with a power transition or another operation)
// match bmc.ErrBusy: the BMC refused the request without acting on it, so
// even a power cycle may be sent again (bmc.WithRetry relies on this).
func (e *HTTPError) Is(target error) bool {
	return target == bmc.ErrBusy &&
		(e.StatusCode == http.StatusTooManyRequests || e.StatusCode == http.StatusServiceUnavailable ||
			e.StatusCode == http.StatusConflict)
}

// temporaryStatus reports whether an HTTP status is worth retrying.
func temporaryStatus(code int) bool {
	return code == http.StatusTooManyRequests ||
		(code >= 500 && code != http.StatusNotImplemented)
}

// TLSError means the service's certificate could not be verified. It
// wraps bmc.ErrTLS and the verification error.
type TLSError struct {
	// Err is the verification failure.
	Err error
	// ServiceFound is set by Probe when a Redfish service root answered
	// once verification was skipped (no credentials are sent by Probe):
	// the address is a Redfish BMC whose certificate is not trusted.
	ServiceFound bool
}

// Error implements error.
func (e *TLSError) Error() string {
	found := ""
	if e.ServiceFound {
		found = "a Redfish service answers, but "
	}
	return fmt.Sprintf("%s%v: %v (%s)", found, bmc.ErrTLS, e.Err, tlsHint)
}

// Unwrap returns bmc.ErrTLS and the verification error.
func (e *TLSError) Unwrap() []error { return []error{bmc.ErrTLS, e.Err} }

// certError finds a certificate verification failure in err.
func certError(err error) error {
	var cve *tls.CertificateVerificationError
	if errors.As(err, &cve) {
		return cve
	}
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		return ua
	}
	var he x509.HostnameError
	if errors.As(err, &he) {
		return he
	}
	var ci x509.CertificateInvalidError
	if errors.As(err, &ci) {
		return ci
	}
	return nil
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date.
func parseRetryAfter(v string) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s <= 0 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// redfishMessage extracts "MessageId: Message" from a Redfish error body,
// or an excerpt of the body.
func redfishMessage(body []byte) string {
	var e struct {
		Error struct {
			Code     string `json:"code"`
			Message  string `json:"message"`
			Extended []struct {
				MessageID string `json:"MessageId"`
				Message   string `json:"Message"`
			} `json:"@Message.ExtendedInfo"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && (e.Error.Code != "" || e.Error.Message != "" || len(e.Error.Extended) > 0) {
		id, msg := e.Error.Code, e.Error.Message
		if len(e.Error.Extended) > 0 {
			x := e.Error.Extended[0]
			if x.MessageID != "" {
				id = x.MessageID
			}
			if x.Message != "" {
				msg = x.Message
			}
		}
		switch {
		case id != "" && msg != "":
			return id + ": " + msg
		case msg != "":
			return msg
		default:
			return id
		}
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// statusTransport turns the answers worth retrying (429, 5xx but 501)
// into *HTTPError before gofish sees them, so the Retry-After header is
// kept: gofish's own error type drops the headers.
type statusTransport struct {
	base http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (t *statusTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if !temporaryStatus(resp.StatusCode) {
		if req.Method == http.MethodPost && resp.Header.Get("X-Auth-Token") != "" && resp.Header.Get("Location") == "" {
			sessionLocation(resp)
		}
		return resp, nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<10))
	resp.Body.Close()
	return nil, &HTTPError{
		Method:     req.Method,
		Path:       req.URL.Path,
		StatusCode: resp.StatusCode,
		Message:    redfishMessage(body),
		retryAfter: parseRetryAfter(resp.Header.Get("Retry-After")),
	}
}

// sessionLocation gives a login answer without a Location header the
// session's @odata.id from its body as Location, so that gofish (which
// reads only the header) knows the session to delete on logout. Some
// BMCs omit the header; without this the session would leak. The body is
// kept for the caller.
func sessionLocation(resp *http.Response) {
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return
	}
	var s struct {
		ID string `json:"@odata.id"`
	}
	if json.Unmarshal(body, &s) == nil && strings.HasPrefix(s.ID, "/") {
		resp.Header.Set("Location", s.ID)
	}
}

// classify turns err from an operation on the BMC at base into an error
// callers can branch on: a *bmc.OpError naming the operation and the BMC
// URL, wrapping context errors, *TLSError (bmc.ErrTLS),
// bmc.ErrAuthentication (401), bmc.ErrNoAnswer (timeouts, refused
// connections) and *HTTPError; retryable ones are wrapped in
// bmc.Temporary. ctx is the operation's context.
func classify(ctx context.Context, base, op string, err error) error {
	if err == nil {
		return nil
	}
	var already *bmc.OpError
	if errors.As(err, &already) {
		return err
	}
	err = flatten(err)
	wrap := func(e error) error { return &bmc.OpError{Op: op, BMC: base, Err: e} }

	if cerr := ctx.Err(); cerr != nil {
		if !errors.Is(err, cerr) {
			err = fmt.Errorf("%w: %w", cerr, err)
		}
		return wrap(err)
	}
	if ce := certError(err); ce != nil {
		return wrap(&TLSError{Err: ce})
	}
	err = asHTTPError(err, "", "")
	var he *HTTPError
	if errors.As(err, &he) {
		switch {
		case he.StatusCode == http.StatusUnauthorized:
			return wrap(fmt.Errorf("%w: %w", bmc.ErrAuthentication, err))
		case he.StatusCode == http.StatusNotImplemented:
			return wrap(fmt.Errorf("%w: %w", bmc.ErrUnsupported, err))
		case temporaryStatus(he.StatusCode), he.StatusCode == http.StatusConflict:
			return bmc.Temporary(wrap(err))
		default:
			return wrap(err)
		}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return bmc.Temporary(wrap(fmt.Errorf("%w: %w", bmc.ErrNoAnswer, err)))
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return bmc.Temporary(wrap(fmt.Errorf("%w: %w", bmc.ErrNoAnswer, err)))
	}
	return wrap(err)
}

// asHTTPError replaces a gofish *schemas.Error (whose text is the raw
// body) at the top of err by an *HTTPError with the Redfish message
// (method and path name the request when known), and unwraps the
// *url.Error around an *HTTPError from statusTransport. Other errors are
// returned as they are.
func asHTTPError(err error, method, path string) error {
	if ue, ok := err.(*url.Error); ok {
		if he, ok := ue.Err.(*HTTPError); ok {
			return he // statusTransport's answer: the URL is in it already
		}
	}
	se, ok := err.(*schemas.Error)
	if !ok || se.HTTPReturnedStatusCode == 0 {
		return err
	}
	return &HTTPError{Method: method, Path: path, StatusCode: se.HTTPReturnedStatusCode, Message: schemaMessage(se)}
}

func schemaMessage(se *schemas.Error) string {
	id, msg := se.Code, se.Message
	if len(se.ExtendedInfos) > 0 {
		x := se.ExtendedInfos[0]
		if x.MessageID != "" {
			id = x.MessageID
		}
		if x.Message != "" {
			msg = x.Message
		}
	}
	switch {
	case id != "" && msg != "":
		return id + ": " + msg
	case msg != "":
		return msg
	default:
		return id
	}
}

// flatten replaces a gofish *CollectionError, which does not unwrap, by
// the join of its failures (in link order) so errors.Is/As see them.
func flatten(err error) error {
	var ce *schemas.CollectionError
	if !errors.As(err, &ce) || len(ce.Failures) == 0 {
		return err
	}
	links := make([]string, 0, len(ce.Failures))
	for l := range ce.Failures {
		links = append(links, l)
	}
	slices.Sort(links)
	errs := make([]error, 0, len(links))
	for _, l := range links {
		errs = append(errs, fmt.Errorf("%s: %w", l, ce.Failures[l]))
	}
	return errors.Join(errs...)
}

// statusOf is the HTTP status behind err, or 0.
func statusOf(err error) int {
	err = flatten(err)
	var he *HTTPError
	if errors.As(err, &he) {
		return he.StatusCode
	}
	var se *schemas.Error
	if errors.As(err, &se) {
		return se.HTTPReturnedStatusCode
	}
	return 0
}
