package inventory

import (
	"errors"
	"fmt"
	"strings"
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
		{"character class", Selector{Names: []string{"web-0[a0-1][!2]"}}, "web-001,web-010"},
		{"caret class", Selector{Names: []string{"web-0[^0]0"}}, "web-010"},
		{"hostlist range", Selector{Names: []string{"web-[001-002]"}}, "web-001,web-002"},
		{"hostlist list", Selector{Names: []string{"web-[001,010]"}}, "web-001,web-010"},
		{"hostlist rack", Selector{Racks: []string{"r[2-3]"}}, "web-010,db-001,db-002"},
		{"hostlist and glob", Selector{Names: []string{"*-[001-002]"}}, "web-001,web-002,db-001,db-002"},
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
		{"unclosed bracket", Selector{Names: []string{"web-[0"}}, ErrPattern, `pattern "web-[0": at column 5: [ is not closed`},
		{"bad rack pattern", Selector{Racks: []string{"r[3-1]"}}, ErrPattern, `pattern "r[3-1]": at column 3: range "3-1" goes down`},
		{"range without a match", Selector{Names: []string{"web-[003-004]"}}, ErrNoMatch, `no node matches name web-[003-004]`},
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

// TestSelectHostlistRange is the operator's everyday range: as a shell glob,
// web-[10-12] would be a character class selecting web-1 and web-2.
func TestSelectHostlistRange(t *testing.T) {
	var b strings.Builder
	b.WriteString("nodes:\n")
	for i := 1; i <= 12; i++ {
		fmt.Fprintf(&b, "  - {name: web-%d, rack: r%d, ssh: {address: 10.0.0.%d}}\n", i, (i+3)/4, i)
	}
	inv, _ := mustLoadBytes(t, "f.yaml", b.String())
	cases := []struct{ pat, want string }{
		{"web-[10-12]", "web-10,web-11,web-12"},
		{"web-[1-3,10]", "web-1,web-2,web-3,web-10"},
		{"web-[1-2]*", "web-1,web-2,web-10,web-11,web-12"},
		{"web-?", "web-1,web-2,web-3,web-4,web-5,web-6,web-7,web-8,web-9"},
		{"web-[9]", "web-9"},
	}
	for _, c := range cases {
		got, err := inv.Select(Selector{Names: []string{c.pat}})
		if err != nil {
			t.Errorf("%s: %v", c.pat, err)
			continue
		}
		if names(got) != c.want {
			t.Errorf("%s: selected %s, want %s", c.pat, names(got), c.want)
		}
	}
	// Zero-padded ranges keep their width: web-[01-03] names web-01…, which
	// this inventory does not have.
	if got, err := inv.Select(Selector{Names: []string{"web-[01-03]"}}); !errors.Is(err, ErrNoMatch) {
		t.Errorf("web-[01-03] over unpadded names: selected %s, err %v; want no match", names(got), err)
	}
}

func TestExpandHostlist(t *testing.T) {
	cases := []struct{ pat, want string }{
		{"web-01", "web-01"},
		{"web-[01-03]", "web-01 web-02 web-03"},
		{"web-[1-3,10]", "web-1 web-2 web-3 web-10"},
		{"web-[8-10]", "web-8 web-9 web-10"},
		{"web-[08-10]", "web-08 web-09 web-10"},
		{"web-[001-2]", "web-001 web-002"},
		{"rack[1-2]-n[01-02]", "rack1-n01 rack1-n02 rack2-n01 rack2-n02"},
		{"web-[1-2].lab", "web-1.lab web-2.lab"},
		{"web-*", "web-*"},
		{"web-[a-c]?", "web-[a-c]?"},
		{"web-[!a]", "web-[^a]"},
		{`web-\[1\]`, `web-\[1\]`},
		{"n[1-2][a-b]", "n1[a-b] n2[a-b]"},
	}
	for _, c := range cases {
		got, err := expandHostlist(c.pat)
		if err != nil {
			t.Errorf("%s: %v", c.pat, err)
			continue
		}
		if strings.Join(got, " ") != c.want {
			t.Errorf("%s: expanded to %q, want %q", c.pat, strings.Join(got, " "), c.want)
		}
	}
	errCases := []struct{ pat, want string }{
		{"web-[", `pattern "web-[": at column 5: [ is not closed`},
		{"web-]", `pattern "web-]": at column 5: ] without [`},
		{"web-[]", `pattern "web-[]": at column 5: empty []`},
		{"web-[1-]", `pattern "web-[1-]": at column 6: range "1-" is not N or N-M`},
		{"web-[-3]", `pattern "web-[-3]": at column 6: range "-3" is not N or N-M`},
		{"web-[1-2-3]", `pattern "web-[1-2-3]": at column 6: range "1-2-3" is not N or N-M`},
		{"web-[1,,3]", `pattern "web-[1,,3]": at column 8: empty item in range list [1,,3]`},
		{"web-[3-1]", `pattern "web-[3-1]": at column 6: range "3-1" goes down`},
		{"web-[a,b]", `pattern "web-[a,b]": at column 7: ',' in a bracket that is not a numeric range: write ranges as [1-3,10] (digits only), or a glob class without ','`},
		{"web-[1-3,a]", `pattern "web-[1-3,a]": at column 9: ',' in a bracket that is not a numeric range: write ranges as [1-3,10] (digits only), or a glob class without ','`},
		{"web-[z-a]", `pattern "web-[z-a]": at column 5: [z-a] is neither a numeric range nor a valid glob class`},
		{"web-[!]", `pattern "web-[!]": at column 5: [!] is neither a numeric range nor a valid glob class`},
		{"n[0-999999]", `pattern "n[0-999999]": at column 3: expands to more than 100000 names`},
		{"n[0-999][0-999]", `pattern "n[0-999][0-999]": at column 9: expands to more than 100000 names`},
		{"n[1-1234567890123456789]", `pattern "n[1-1234567890123456789]": at column 3: range "1-1234567890123456789" has more than 18 digits`},
		{`web\`, `pattern "web\\": at column 4: a trailing \ escapes nothing`},
	}
	for _, c := range errCases {
		got, err := expandHostlist(c.pat)
		if err == nil {
			t.Errorf("%s: expanded to %q, want an error", c.pat, got)
			continue
		}
		if err.Error() != c.want || !errors.Is(err, ErrPattern) {
			t.Errorf("%s: error %q, want %q", c.pat, err, c.want)
		}
	}
}
