package inventory

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// problemsOf returns the Error() of every problem in err, failing the test
// if err is not a *ValidationError.
func problemsOf(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error is %T, not *ValidationError: %v", err, err)
	}
	out := make([]string, len(ve.Problems))
	for i, p := range ve.Problems {
		out[i] = p.Error()
	}
	return out
}

func warningsOf(ws []Warning) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = w.String()
	}
	return out
}

// withoutPos returns the nodes with their positions cleared, for comparing
// inventories read from different files.
func withoutPos(nodes []Node) []Node {
	out := make([]Node, len(nodes))
	for i, n := range nodes {
		n.Pos = Position{}
		out[i] = n
	}
	return out
}

func mustLoadBytes(t *testing.T, name, data string) (*Inventory, []Warning) {
	t.Helper()
	inv, ws, err := LoadBytes(name, []byte(data))
	if err != nil {
		t.Fatalf("LoadBytes(%s): %v", name, err)
	}
	return inv, ws
}

// diffNodes reports the first difference between two node lists.
func diffNodes(t *testing.T, got, want []Node) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d nodes, want %d:\n got: %v\nwant: %v", len(got), len(want), names(got), names(want))
	}
	for i := range got {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("node %d (%s):\n got: %#v\nwant: %#v", i, want[i].Name, got[i], want[i])
		}
	}
}

func names(nodes []Node) string {
	s := make([]string, len(nodes))
	for i, n := range nodes {
		s[i] = n.Name
	}
	return strings.Join(s, ",")
}
