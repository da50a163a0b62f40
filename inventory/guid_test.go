package inventory

import (
	"slices"
	"strings"
	"testing"
)

func TestGUID(t *testing.T) {
	for _, f := range []struct{ name, doc string }{
		{"f.yaml", "nodes:\n  - name: a\n    serial: CZJ1\n    guid: 4C4C4544-0042-3510-8052-B7C04F4E3232\n  - name: b\n    guid: '{4c4c4544-0042-3510-8052-b7c04f4e3233}'\n"},
		{"f.json", "{\"nodes\": [{\"name\": \"a\", \"serial\": \"CZJ1\", \"guid\": \"4C4C4544-0042-3510-8052-B7C04F4E3232\"},\n {\"name\": \"b\", \"guid\": \"{4c4c4544-0042-3510-8052-b7c04f4e3233}\"}]}\n"},
		{"f.toml", "[[nodes]]\nname = \"a\"\nserial = \"CZJ1\"\nguid = \"4C4C4544-0042-3510-8052-B7C04F4E3232\"\n[[nodes]]\nname = \"b\"\nguid = \"{4c4c4544-0042-3510-8052-b7c04f4e3233}\"\n"},
	} {
		t.Run(f.name, func(t *testing.T) {
			inv, _ := mustLoadBytes(t, f.name, f.doc)
			got := []string{inv.Nodes[0].GUID, inv.Nodes[1].GUID}
			want := []string{"4c4c4544-0042-3510-8052-b7c04f4e3232", "4c4c4544-0042-3510-8052-b7c04f4e3233"}
			if !slices.Equal(got, want) {
				t.Errorf("GUIDs %q, want %q (lower case, no braces)", got, want)
			}
		})
	}
}

func TestGUIDProblems(t *testing.T) {
	for _, c := range []struct{ guid, want string }{
		{"4c4c4544-0042-3510-8052-b7c04f4e323", `"4c4c4544-0042-3510-8052-b7c04f4e323" is not a GUID`},
		{"4c4c45440042351080 52b7c04f4e3232", `is not a GUID`},
		{"4c4c4544-0042-3510-8052-b7c04f4e323g", `is not a GUID`},
		{"4c4c4544_0042-3510-8052-b7c04f4e3232", `is not a GUID`},
		{"00000000-0000-0000-0000-000000000000", `is a placeholder firmware reports when it has no GUID`},
		{"FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF", `is a placeholder firmware reports when it has no GUID`},
	} {
		_, _, err := LoadBytes("f.yaml", []byte("nodes:\n  - name: a\n    serial: CZJ1\n\n    guid: \""+c.guid+"\"\n"))
		got := problemsOf(t, err)
		if len(got) != 1 || !strings.HasPrefix(got[0], "f.yaml:5: node a: guid: ") || !strings.Contains(got[0], c.want) {
			t.Errorf("guid %q: problems %q, want one at f.yaml:5 saying %q", c.guid, got, c.want)
		}
	}
}
