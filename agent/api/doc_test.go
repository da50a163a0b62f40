package api_test

import (
	"os"
	"os/exec"
	"regexp"
	"testing"

	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/lab/labtool"
)

// TestAPIDocExamples runs docs/api.md's sh examples with curl against a
// controller's API.
func TestAPIDocExamples(t *testing.T) {
	labtool.RequireTool(t, "curl")
	labtool.RequireTool(t, "bash")
	doc, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(string(doc), -1)
	if len(blocks) < 5 {
		t.Fatalf("docs/api.md has %d sh examples; want the documented ones", len(blocks))
	}
	r := newRig(t)
	env := append(os.Environ(), "REPROV_URL="+r.srv.URL, "TOKEN="+r.token("doc-operator", store.RoleOperator),
		"VIEWER_TOKEN="+r.token("doc-viewer", store.RoleViewer))
	for i, b := range blocks {
		cmd := exec.Command("bash", "-e", "-o", "pipefail", "-c", b[1])
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("example %d failed: %v\n%s\noutput:\n%s", i+1, err, b[1], out)
		}
	}
}
