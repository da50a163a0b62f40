package redfish_test

import (
	"context"
	"testing"
	"time"

	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/bmc/bmctest"
	"github.com/reprov/reprov/bmc/redfish"
	"github.com/reprov/reprov/lab/redfishbmc"
)

// conformance runs the bmc conformance suite against a fresh test BMC per
// subtest, built from cfg, with the client options opts. With retry the
// client is opened and wrapped the way bmc/connect does (bmc.Retry,
// bmc.WithRetry). Every subtest ends with no session left open.
func conformance(t *testing.T, cfg redfishbmc.Config, opts bmc.Options, retry bool) {
	bmctest.Run(t, func(t *testing.T) bmctest.Target {
		b := startBMC(t, cfg)
		// Registered before the suite's Close: runs after it.
		t.Cleanup(func() {
			if n := b.Sessions(); n != 0 {
				t.Errorf("%d Redfish sessions left open after Close", n)
			}
		})
		ep := b.Endpoint()
		ep.Options = opts
		if ep.Options.CAFile == "" && !ep.Options.InsecureTLS {
			ep.Options.CAFile = b.CAFile()
		}
		log := testLogger(t)
		policy := bmc.RetryPolicy{Base: 10 * time.Millisecond, Max: 50 * time.Millisecond, Retries: 5}
		return bmctest.Target{
			Machine:  b.Machine(),
			Verify:   bmc.VerifyFull,
			SystemID: b.Machine().SystemID(),
			Open: func(ctx context.Context) (bmc.Client, error) {
				if !retry {
					return redfish.Open(ctx, ep, log)
				}
				var c bmc.Client
				err := bmc.Retry(ctx, policy, log, "connect", func(ctx context.Context) error {
					var err error
					c, err = redfish.Open(ctx, ep, log)
					return err
				})
				if err != nil {
					return nil, err
				}
				return bmc.WithRetry(c, policy, log), nil
			},
		}
	})
}

func TestConformanceDefault(t *testing.T) {
	// HTTPS verified against the BMC's CA, basic auth.
	conformance(t, redfishbmc.Config{}, bmc.Options{}, false)
}

func TestConformanceSession(t *testing.T) {
	conformance(t, redfishbmc.Config{}, bmc.Options{RedfishSession: true}, false)
}

func TestConformanceInsecureTLS(t *testing.T) {
	conformance(t, redfishbmc.Config{}, bmc.Options{InsecureTLS: true}, false)
}

func TestConformancePlainHTTP(t *testing.T) {
	conformance(t, redfishbmc.Config{PlainHTTP: true}, bmc.Options{}, false)
}

func TestConformanceQuirks(t *testing.T) {
	tests := []struct {
		name  string
		cfg   redfishbmc.Config
		opts  bmc.Options
		retry bool
	}{
		{name: "RequireIfMatch", cfg: redfishbmc.Config{Quirks: redfishbmc.Quirks{RequireIfMatch: true}}},
		{name: "RequireIfMatchWithSession", cfg: redfishbmc.Config{Quirks: redfishbmc.Quirks{RequireIfMatch: true}}, opts: bmc.Options{RedfishSession: true}},
		// iLO 5: shows a mode without allowable values and refuses it in a PATCH.
		{name: "RejectMode", cfg: redfishbmc.Config{Quirks: redfishbmc.Quirks{RejectMode: true}}},
		{name: "RejectModeNever", cfg: redfishbmc.Config{Quirks: redfishbmc.Quirks{RejectMode: true}}, opts: bmc.Options{BootModeOverride: "never"}},
		// Supermicro: lists the mode's allowable values and needs the mode.
		{name: "RequireMode", cfg: redfishbmc.Config{Quirks: redfishbmc.Quirks{RequireMode: true}}},
		{name: "RequireModeAlways", cfg: redfishbmc.Config{Quirks: redfishbmc.Quirks{RequireMode: true}}, opts: bmc.Options{BootModeOverride: "always"}},
		{name: "RejectAllowableValues", cfg: redfishbmc.Config{Quirks: redfishbmc.Quirks{RejectAllowableValues: true}}},
		{name: "Task202", cfg: redfishbmc.Config{TaskPolls: 2, Quirks: redfishbmc.Quirks{Task202: true}}},
		{name: "Task202WithSession", cfg: redfishbmc.Config{TaskPolls: 1, Quirks: redfishbmc.Quirks{Task202: true}}, opts: bmc.Options{RedfishSession: true}},
		{name: "NoBootMode", cfg: redfishbmc.Config{NoBootMode: true}},
		// Only On and ForceOff: a cycle is ForceOff, wait for off, On.
		{name: "OnForceOffOnly", cfg: redfishbmc.Config{ResetTypes: []string{"On", "ForceOff"}}},
		// Only On and a slow GracefulShutdown.
		{name: "GracefulShutdownOnly", cfg: redfishbmc.Config{ResetTypes: []string{"On", "GracefulShutdown"}, GracefulShutdownDelay: 300 * time.Millisecond}},
		{name: "PowerCycleOnly", cfg: redfishbmc.Config{ResetTypes: []string{"On", "ForceOff", "PowerCycle"}}},
		// The first requests of every subtest (the connect) answer 503,
		// then 429; the retry wrapper gets through.
		{name: "Storm503", cfg: redfishbmc.Config{Quirks: redfishbmc.Quirks{Storm: 3}}, retry: true},
		{name: "Storm429Session", cfg: redfishbmc.Config{Quirks: redfishbmc.Quirks{Storm: 3, StormStatus: 429}}, opts: bmc.Options{RedfishSession: true}, retry: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conformance(t, tc.cfg, tc.opts, tc.retry)
		})
	}
}
