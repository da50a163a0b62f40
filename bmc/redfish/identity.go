package redfish

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/reprov/reprov/bmc"
	"github.com/stmcginnis/gofish/schemas"
)

// SystemIdentity implements bmc.SystemIdentifier: the ComputerSystem's
// UUID and SerialNumber, from one GET of the system. Missing or null
// properties are unknown (empty); bmc.MatchIdentity skips placeholders
// such as an all-zero UUID.
func (c *client) SystemIdentity(ctx context.Context) (bmc.SystemID, error) {
	const op = "read system identity"
	api, err := c.begin(ctx, op)
	if err != nil {
		return bmc.SystemID{}, err
	}
	sys, err := schemas.GetComputerSystem(api, c.system)
	if err != nil {
		if statusOf(err) == http.StatusNotFound {
			return bmc.SystemID{}, &bmc.OpError{Op: op, BMC: c.base, Err: fmt.Errorf("system %s not found (HTTP 404)", c.system)}
		}
		return bmc.SystemID{}, classify(ctx, c.base, op, err)
	}
	return bmc.SystemID{
		GUID:   strings.TrimSpace(sys.UUID),
		Serial: strings.TrimSpace(sys.SerialNumber),
	}, nil
}
