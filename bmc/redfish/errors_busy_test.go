package redfish

import (
	"errors"
	"net/http"
	"testing"

	"github.com/reprov/reprov/bmc"
)

func TestBusyStatusesMatchErrBusy(t *testing.T) {
	for code, busy := range map[int]bool{
		http.StatusTooManyRequests:     true,
		http.StatusServiceUnavailable:  true,
		http.StatusInternalServerError: false, // may have acted: not proof of "did nothing"
		http.StatusGatewayTimeout:      false,
		http.StatusBadRequest:          false,
	} {
		err := bmc.Temporary(&HTTPError{Method: "POST", Path: "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset", StatusCode: code})
		if got := errors.Is(err, bmc.ErrBusy); got != busy {
			t.Errorf("HTTP %d: errors.Is(err, bmc.ErrBusy) = %v, want %v", code, got, busy)
		}
	}
}
