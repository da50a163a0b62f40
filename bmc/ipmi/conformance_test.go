package ipmi_test

import (
	"context"
	"testing"

	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/bmc/bmctest"
	"github.com/reprov/reprov/bmc/ipmi"
	"github.com/reprov/reprov/lab/ipmibmc"
	"github.com/reprov/reprov/lab/ipmisim"
)

func TestConformanceIPMISim(t *testing.T) {
	bmctest.Run(t, func(t *testing.T) bmctest.Target {
		sim := ipmisim.Start(t, ipmisim.Config{Serial: "SIM0001"})
		ep := endpoint(sim.Host(), sim.Port(), sim.Username(), sim.Password(),
			bmc.Options{CipherSuites: []int{3}, Verify: bmc.VerifyDeviceOnly})
		return bmctest.Target{
			Open:     func(ctx context.Context) (bmc.Client, error) { return ipmi.Open(ctx, ep, testLogger(t)) },
			Machine:  sim,
			Verify:   bmc.VerifyDeviceOnly,
			SystemID: sim.SystemID(),
		}
	})
}

func TestConformanceGoIPMI(t *testing.T) {
	for _, suite := range []int{17, 3} {
		t.Run("suite"+itoa(suite), func(t *testing.T) {
			bmctest.Run(t, func(t *testing.T) bmctest.Target {
				b := startBMC(t, ipmibmc.Config{SystemGUID: "4c4c4544-0042-3510-8052-b7c04f4e3232", Serial: "CZJ1234ABC"})
				ep := bmcEndpoint(b, bmc.Options{CipherSuites: []int{suite}})
				t.Cleanup(func() { noSessionsLeft(t, b) })
				return bmctest.Target{
					Open: func(ctx context.Context) (bmc.Client, error) {
						c, err := ipmi.Open(ctx, ep, testLogger(t))
						if err == nil {
							if got := c.(*ipmi.Client).CipherSuite(); got != suite {
								t.Errorf("session uses cipher suite %d, want %d", got, suite)
							}
						}
						return c, err
					},
					Machine:  b.Machine(),
					Verify:   bmc.VerifyFull,
					SystemID: b.SystemIdentity(),
				}
			})
		})
	}
}
