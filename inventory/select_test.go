package inventory

import (
	"errors"
	"testing"
)

const selectFleet = `nodes:
  - {name: web-001, rack: r1, labels: {role: web, zone: a}, ssh: {address: 10.0.0.1}}
  - {name: web-002, rack: r1, labels: {role: web, zone: b}, ssh: {address: 10.0.0.2}}
  - {name: web-010, rack: r2, labels: {role: web, zone: a, gpu: "true"}, ssh: {address: 10.0.0.3}}
  - {name: db-001, rack: r2, labels: {role: db, topology.kubernetes.io/zone: z1}, ssh: {address: 10.0.0.4}}
  - {name: db-002, rack: r3, labels: {role: db, retired: "true"}, ssh: {address: 10.0.0.5}}
`

func TestSelect(t *testing.T) {
	inv, _ := mustLoadBytes(t, "f.yaml", selectFleet)
	cases := []struct {
		name string
		sel  Selector
		want string
	}{
		{"glob", Selector{Names: []string{"web-00?"}}, "web-001,web-002"},
		{"union keeps inventory order", Selector{Names: []string{"db-002", "web-001", "web-00*"}}, "web-001,web-002,db-002"},
		{"character class", Selector{Names: []string{"web-0[01][02]"}}, "web-002,web-010"},
		{"names and rack", Selector{Names: []string{"web-*"}, Racks: []string{"r2"}}, "web-010"},
		{"racks", Selector{Racks: []string{"r1", "r3"}}, "web-001,web-002,db-002"},
		{"rack glob", Selector{Racks: []string{"r*"}}, "web-001,web-002,web-010,db-001,db-002"},
		{"equals and not equals", Selector{Labels: "role=web,zone!=b"}, "web-001,web-010"},
		{"double equals", Selector{Labels: "role==db"}, "db-001,db-002"},
		{"in and not exists", Selector{Labels: "role in (db, web), !retired"}, "web-001,web-002,web-010,db-001"},
		{"notin matches nodes without the label", Selector{Labels: "zone notin (a)"}, "web-002,db-001,db-002"},
		{"not equals matches nodes without the label", Selector{Labels: "zone!=a"}, "web-002,db-001,db-002"},
		{"exists", Selector{Labels: "gpu"}, "web-010"},
		{"prefixed key", Selector{Labels: "topology.kubernetes.io/zone=z1"}, "db-001"},
		{"all", Selector{All: true}, "web-001,web-002,web-010,db-001,db-002"},
		{"all narrowed", Selector{All: true, Racks: []string{"r2"}}, "web-010,db-001"},
		{"names, racks and labels", Selector{Names: []string{"*"}, Racks: []string{"r1", "r2"}, Labels: "zone=a"}, "web-001,web-010"},
	}
	for _, c := range cases {
		got, err := inv.Select(c.sel)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if names(got) != c.want {
			t.Errorf("%s: got %s, want %s", c.name, names(got), c.want)
		}
	}

	errCases := []struct {
		name string
		sel  Selector
		is   error
		want string
	}{
		{"nothing asked", Selector{}, ErrNoSelection, "no nodes selected: give node names, --rack, --selector or --all"},
		{"blank selector is nothing", Selector{Labels: "  "}, ErrNoSelection, "no nodes selected: give node names, --rack, --selector or --all"},
		{"unknown names", Selector{Names: []string{"web-01", "web-001", "db-9*"}}, ErrNoMatch, `no node matches names web-01 (did you mean "web-001"?), db-9*`},
		{"empty intersection", Selector{Racks: []string{"r99"}, Labels: "role=db"}, ErrNoMatch, "no node matches rack r99 and selector role=db"},
		{"names and selector", Selector{Names: []string{"web-001", "web-002"}, Labels: "role=db"}, ErrNoMatch, "no node matches names web-001, web-002 and selector role=db"},
		{"racks", Selector{Racks: []string{"r8", "r9"}}, ErrNoMatch, "no node matches racks r8, r9"},
		{"bad selector", Selector{Labels: "role=web,,x"}, ErrSelectorSyntax, `label selector "role=web,,x": at column 10: expected a label key, found ",x"`},
		{"bad glob", Selector{Names: []string{"web-[0"}}, nil, `pattern "web-[0": syntax error in pattern`},
	}
	for _, c := range errCases {
		got, err := inv.Select(c.sel)
		if err == nil {
			t.Errorf("%s: selected %s, want an error", c.name, names(got))
			continue
		}
		if err.Error() != c.want || c.is != nil && !errors.Is(err, c.is) {
			t.Errorf("%s: error %q, want %q (is %v)", c.name, err, c.want, c.is)
		}
	}
	empty := &Inventory{}
	if _, err := empty.Select(Selector{All: true}); err == nil || err.Error() != "no node matches: the inventory has no nodes" {
		t.Errorf("empty inventory: %v", err)
	}
}

func TestParseLabelSelector(t *testing.T) {
	ok := []struct{ in, canon string }{
		{"", ""},
		{"role=web", "role=web"},
		{" role = web , zone != a ", "role=web,zone!=a"},
		{"a==b,c in (x, y),d notin (z),e,!f", "a=b,c in (x,y),d notin (z),e,!f"},
		{"empty=", "empty="},
		{"topology.kubernetes.io/zone in (a)", "topology.kubernetes.io/zone in (a)"},
	}
	for _, c := range ok {
		s, err := ParseLabelSelector(c.in)
		if err != nil || s.String() != c.canon {
			t.Errorf("ParseLabelSelector(%q) = %q, %v; want %q", c.in, s.String(), err, c.canon)
		}
		if again, err := ParseLabelSelector(s.String()); err != nil || again.String() != s.String() {
			t.Errorf("canonical form %q does not parse back: %v", s.String(), err)
		}
	}
	bad := []struct{ in, want string }{
		{"role=web,", `label selector "role=web,": at column 10: expected a label key, found the end`},
		{"role web", `label selector "role web": at column 6: expected =, ==, !=, in or notin after "role", found "web"`},
		{"role in web", `label selector "role in web": at column 9: expected ( after in/notin`},
		{"role in (a,b", `label selector "role in (a,b": at column 13: expected ) to close the value list`},
		{"role in (a b)", `label selector "role in (a b)": at column 12: expected , or ) in the value list, found "b)"`},
		{"role=we b", `label selector "role=we b": at column 9: expected , between requirements, found "b"`},
		{"-role=x", `label selector "-role=x": at column 1: label key "-role": use letters, digits, '-', '_' and '.', starting and ending with a letter or digit`},
		{"!", `label selector "!": at column 2: expected a label key, found the end`},
		{"a=b/c", `label selector "a=b/c": at column 3: label value "b/c": use letters, digits, '-', '_' and '.', starting and ending with a letter or digit (so that selectors can match it)`},
		{"a=$", `label selector "a=$": at column 3: expected , between requirements, found "$"`},
	}
	for _, c := range bad {
		_, err := ParseLabelSelector(c.in)
		if err == nil || err.Error() != c.want || !errors.Is(err, ErrSelectorSyntax) {
			t.Errorf("ParseLabelSelector(%q) error\n got %v\nwant %s", c.in, err, c.want)
		}
	}
	s, _ := ParseLabelSelector("role=web,!retired")
	for _, c := range []struct {
		labels map[string]string
		want   bool
	}{
		{map[string]string{"role": "web"}, true},
		{map[string]string{"role": "web", "retired": ""}, false},
		{map[string]string{"role": "db"}, false},
		{nil, false},
	} {
		if got := s.Matches(c.labels); got != c.want {
			t.Errorf("Matches(%v) = %v, want %v", c.labels, got, c.want)
		}
	}
}
