package fleet

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/inventory"
)

func TestEndpointFor(t *testing.T) {
	t.Setenv("REPROV_TEST_BMC_PW", "s3cret-env")
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("s3cret-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		bmc  inventory.BMC
		want bmc.Endpoint
	}{
		{"ipmi with options", inventory.BMC{
			Address: "ipmi://10.1.12.14:6230", Username: "admin", Password: inventory.NewSecret("env:REPROV_TEST_BMC_PW"),
			Options: inventory.BMCOptions{CipherSuites: []int{3}, BootFlagTimeout: "keep", Verify: "device-only",
				MinInterval: 200 * time.Millisecond, MaxConcurrent: 2, Retries: 5, Timeout: 3 * time.Second, Privilege: "operator"},
		}, bmc.Endpoint{Protocol: "ipmi", Host: "10.1.12.14", Port: 6230, Username: "admin", Password: "s3cret-env",
			Options: bmc.Options{CipherSuites: []int{3}, KeepBootFlagTimeout: true, Verify: bmc.VerifyDeviceOnly,
				MinInterval: 200 * time.Millisecond, MaxConcurrent: 2, Retries: 5, Timeout: 3 * time.Second, Privilege: "operator"}}},
		{"redfish system", inventory.BMC{
			Address: "redfish://bmc.r12.example/redfish/v1/Systems/2", Username: "root", Password: inventory.NewSecret("file:" + pwFile),
			Options: inventory.BMCOptions{InsecureTLS: true, RedfishSession: true, BootModeOverride: "never"},
		}, bmc.Endpoint{Protocol: "redfish", Scheme: "https", Host: "bmc.r12.example", SystemPath: "/redfish/v1/Systems/2",
			Username: "root", Password: "s3cret-file",
			Options: bmc.Options{InsecureTLS: true, RedfishSession: true, BootModeOverride: "never", Verify: bmc.VerifyFull}}},
		{"bare host detects", inventory.BMC{Address: "10.1.12.15"},
			bmc.Endpoint{Host: "10.1.12.15", Options: bmc.Options{Verify: bmc.VerifyFull}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := EndpointFor(inventory.Node{Name: "web-014", BMC: tc.bmc}, nil)
			if err != nil {
				t.Fatalf("EndpointFor: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("endpoint\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestEndpointForErrorsNameNodeNotSecret(t *testing.T) {
	t.Setenv("REPROV_TEST_SET", "hunter2")
	for _, tc := range []struct {
		name    string
		bmc     inventory.BMC
		is      error
		mention []string
	}{
		{"unset env", inventory.BMC{Address: "ipmi://10.0.0.1", Password: inventory.NewSecret("env:REPROV_TEST_UNSET")},
			inventory.ErrSecret, []string{"web-014", "env:REPROV_TEST_UNSET"}},
		{"no address", inventory.BMC{Password: inventory.NewSecret("env:REPROV_TEST_SET")},
			ErrBMCConfig, []string{"web-014", "bmc.address"}},
		{"bad address", inventory.BMC{Address: "ipmi://admin:hunter2@10.0.0.1", Password: inventory.NewSecret("env:REPROV_TEST_SET")},
			ErrBMCConfig, []string{"web-014", "credentials"}},
		{"bad option", inventory.BMC{Address: "ipmi://10.0.0.1", Password: inventory.NewSecret("env:REPROV_TEST_SET"),
			Options: inventory.BMCOptions{BootFlagTimeout: "forever"}},
			ErrBMCConfig, []string{"web-014", "boot_flag_timeout", "forever"}},
		{"literal without prefix", inventory.BMC{Address: "ipmi://10.0.0.1", Password: inventory.NewSecret("hunter2")},
			inventory.ErrSecret, []string{"web-014"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := EndpointFor(inventory.Node{Name: "web-014", BMC: tc.bmc}, nil)
			if !errors.Is(err, tc.is) {
				t.Fatalf("error %v, want %v", err, tc.is)
			}
			for _, m := range tc.mention {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q contains the password", err)
			}
		})
	}
}
