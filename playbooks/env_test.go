package playbooks_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/reprov/reprov/inventory"
	"github.com/reprov/reprov/playbooks"
)

func TestNodeEnvWithholdsCredentials(t *testing.T) {
	t.Setenv("TEST_BMC_PASSWORD", "s3cret-bmc")
	t.Setenv("TEST_SSH_PASSWORD", "s3cret-ssh")
	n := inventory.Node{
		Name: "web-014", Rack: "r12",
		BMC:  inventory.BMC{Address: "redfish+https://admin:s3cret-url@10.1.12.14/redfish/v1/Systems/1", Password: inventory.NewSecret("env:TEST_BMC_PASSWORD")},
		SSH:  inventory.SSH{Address: "10.2.12.14", Password: inventory.NewSecret("env:TEST_SSH_PASSWORD")},
		MACs: []string{"3c:4a:92:11:22:33"},
	}
	env := playbooks.NodeEnv(&n, "run-1")
	if !slices.Equal(env.Withhold, []string{"TEST_BMC_PASSWORD", "TEST_SSH_PASSWORD"}) {
		t.Errorf("Withhold = %v", env.Withhold)
	}
	if env.BMCAddress != "redfish+https://10.1.12.14/redfish/v1/Systems/1" {
		t.Errorf("BMCAddress = %q, want the URL without its userinfo", env.BMCAddress)
	}
	res, err := playbooks.RunHook(context.Background(), playbooks.Hook{Name: "env", Argv: []string{"env"}, Timeout: time.Minute}, env, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"s3cret-bmc", "s3cret-ssh", "s3cret-url", "TEST_BMC_PASSWORD"} {
		if strings.Contains(res.Output, secret) {
			t.Errorf("hook environment contains %q", secret)
		}
	}
	if !strings.Contains(res.Output, "REPROV_NODE=web-014\n") || !strings.Contains(res.Output, "REPROV_RUN=run-1\n") {
		t.Errorf("hook environment lacks the node's variables:\n%s", res.Output)
	}
}

func TestSecretEnvNames(t *testing.T) {
	nodes := []inventory.Node{
		{BMC: inventory.BMC{Password: inventory.NewSecret("env:B")}, SSH: inventory.SSH{Password: inventory.NewSecret("file:/x")}},
		{BMC: inventory.BMC{Password: inventory.NewSecret("env:A")}, SSH: inventory.SSH{Password: inventory.NewSecret("env:B")}},
		{BMC: inventory.BMC{Password: inventory.NewSecret("plain:literal")}},
	}
	if got := playbooks.SecretEnvNames(nodes...); !slices.Equal(got, []string{"A", "B"}) {
		t.Errorf("SecretEnvNames = %v, want [A B]", got)
	}
}

func TestNodeEnvBMCAddressNeverCarriesUserinfo(t *testing.T) {
	for in, want := range map[string]string{
		"ipmi://10.1.12.14":               "ipmi://10.1.12.14",
		"10.1.12.14:623":                  "10.1.12.14:623",
		"ipmi://root:calvin@10.0.0.1:623": "ipmi://10.0.0.1:623",
		"root:calvin@10.0.0.1":            "10.0.0.1",
		"ipmi://root:p@ss@10.0.0.1":       "ipmi://10.0.0.1",
	} {
		n := inventory.Node{Name: "n", BMC: inventory.BMC{Address: in}}
		if got := playbooks.NodeEnv(&n, "r").BMCAddress; got != want {
			t.Errorf("NodeEnv(bmc %q).BMCAddress = %q, want %q", in, got, want)
		}
	}
}
