package redfish

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/reprov/reprov/bmc"
)

// Probe reports whether a Redfish service root answers at ep (https and
// port 443 unless ep says otherwise), for "bare address → detect". It
// sends no credentials. TLS is verified as Open would (ep.Options.CAFile,
// InsecureTLS).
//
// It returns nil when a service root answers; an error wrapping
// ErrNotRedfish when something else answers; a *TLSError (bmc.ErrTLS)
// with ServiceFound set when the certificate cannot be verified but a
// service root answered once verification was skipped — proof enough
// that the address is a Redfish BMC, whose certificate the node's
// options must make trusted; and otherwise the errors Open would give
// (bmc.ErrNoAnswer, bmc.Temporary, context errors).
func Probe(ctx context.Context, ep bmc.Endpoint) error {
	const op = "probe"
	base, err := baseURL(ep)
	if err != nil {
		return &bmc.OpError{Op: op, BMC: ep.Host, Err: err}
	}
	if err := ctx.Err(); err != nil {
		return &bmc.OpError{Op: op, BMC: base, Err: err}
	}
	httpc, err := newHTTPClient(ep.Options)
	if err != nil {
		return &bmc.OpError{Op: op, BMC: base, Err: err}
	}
	defer httpc.CloseIdleConnections()
	err = getServiceRoot(ctx, httpc, base)
	if err == nil {
		return nil
	}
	if ce := certError(err); ce != nil && ctx.Err() == nil {
		// Is it Redfish at all? Look again without verification (no
		// credentials are sent).
		insecure := ep.Options
		insecure.InsecureTLS = true
		hc, herr := newHTTPClient(insecure)
		if herr != nil {
			return &bmc.OpError{Op: op, BMC: base, Err: herr}
		}
		herr = getServiceRoot(ctx, hc, base)
		hc.CloseIdleConnections()
		if herr != nil {
			return classify(ctx, base, op, fmt.Errorf("%w (and the certificate did not verify: %v)", herr, ce))
		}
		return &bmc.OpError{Op: op, BMC: base, Err: &TLSError{Err: ce, ServiceFound: true}}
	}
	return classify(ctx, base, op, err)
}

// getServiceRoot GETs /redfish/v1/ and checks that it is a service root.
func getServiceRoot(ctx context.Context, httpc *http.Client, base string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/redfish/v1/", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := httpc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: GET /redfish/v1/ answered HTTP %d", ErrNotRedfish, resp.StatusCode)
	}
	var root struct {
		Type           string `json:"@odata.type"`
		RedfishVersion string
	}
	if err := json.Unmarshal(body, &root); err != nil {
		return fmt.Errorf("%w: GET /redfish/v1/ answered no JSON", ErrNotRedfish)
	}
	if root.RedfishVersion == "" && !strings.HasPrefix(root.Type, "#ServiceRoot.") {
		return fmt.Errorf("%w: GET /redfish/v1/ answered JSON that is not a service root", ErrNotRedfish)
	}
	return nil
}
