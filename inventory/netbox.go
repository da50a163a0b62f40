package inventory

import (
	"bytes"
	"encoding/csv"
	"errors"
	"io"
	"slices"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// netboxColumn is what a NetBox export column means to reprov.
type netboxColumn struct {
	role   string // name, rack, serial, oob, ip4, ip6, label, tags, cf, ignore
	label  string // label key for role "label" and "cf"
	header string // the header as written
}

// netboxColumns maps normalized NetBox column headers (lower case, blanks
// and hyphens as '_') to their meaning. Both the export headers ("Serial
// number", "OOB IP", "IP Address") and the import/API names ("serial",
// "oob_ip", "primary_ip4") are known.
var netboxColumns = map[string]netboxColumn{
	"name":          {role: "name"},
	"rack":          {role: "rack"},
	"serial":        {role: "serial"},
	"serial_number": {role: "serial"},
	"oob_ip":        {role: "oob"},
	"primary_ip":    {role: "ip4"},
	"primary_ipv4":  {role: "ip4"},
	"primary_ip4":   {role: "ip4"},
	"ip_address":    {role: "ip4"},
	"ipv4_address":  {role: "ip4"},
	"primary_ipv6":  {role: "ip6"},
	"primary_ip6":   {role: "ip6"},
	"ipv6_address":  {role: "ip6"},
	"platform":      {role: "label", label: "netbox.platform"},
	"role":          {role: "label", label: "netbox.role"},
	"device_role":   {role: "label", label: "netbox.role"},
	"site":          {role: "label", label: "netbox.site"},
	"tenant":        {role: "label", label: "netbox.tenant"},
	"status":        {role: "label", label: "netbox.status"},
	"location":      {role: "label", label: "netbox.location"},
	"manufacturer":  {role: "label", label: "netbox.manufacturer"},
	"type":          {role: "label", label: "netbox.device_type"},
	"device_type":   {role: "label", label: "netbox.device_type"},
	"tags":          {role: "tags"},
}

func normalizeHeader(h string) string {
	h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' {
			return '_'
		}
		return r
	}, h)
}

// slugify turns a NetBox display value into a label value: lower case,
// letters, digits, '.', '_' and '-', as NetBox slugs are ("DC Amsterdam 1"
// → "dc-amsterdam-1").
func slugify(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(strings.TrimSpace(s)) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '_':
			b.WriteRune(r)
			dash = false
		default:
			if !dash && b.Len() > 0 {
				b.WriteByte('-')
				dash = true
			}
		}
	}
	return strings.Trim(b.String(), "-._")
}

// stripPrefix removes a /prefix-length from an IP ("10.1.2.3/24").
func stripPrefix(ip string) string {
	ip, _, _ = strings.Cut(ip, "/")
	return strings.TrimSpace(ip)
}

// netboxFromCSV reads a NetBox device export and returns the native tree of
// its devices.
func netboxFromCSV(dg *diags, data []byte) *yaml.Node {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	r := csv.NewReader(bytes.NewReader(data))
	r.FieldsPerRecord = -1
	header, err := r.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			dg.warn(0, "", "", "the CSV file is empty")
		} else {
			csvProblem(dg, err)
		}
		return nil
	}
	cols := make([]netboxColumn, len(header))
	seen := map[string]int{}
	var ignored []string
	hasName := false
	for i, h := range header {
		key := normalizeHeader(h)
		c, ok := netboxColumns[key]
		switch {
		case ok:
		case strings.HasPrefix(key, "cf_") && len(key) > 3:
			c = netboxColumn{role: "cf", label: key[3:]}
		case key == "":
			c = netboxColumn{role: "ignore"}
		default:
			c = netboxColumn{role: "ignore"}
			ignored = append(ignored, strings.TrimSpace(h))
		}
		c.header = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))
		if c.role != "ignore" && c.role != "ip4" && c.role != "ip6" {
			id := c.role + "/" + c.label
			if first, dup := seen[id]; dup {
				dg.problem(1, "", "", "columns %q and %q mean the same thing", strings.TrimSpace(header[first]), c.header)
			} else {
				seen[id] = i
			}
		}
		hasName = hasName || c.role == "name"
		cols[i] = c
	}
	if !hasName {
		dg.problem(1, "", "", "no Name column: is this a NetBox device export? (the first row must be the header)")
		return nil
	}
	if len(ignored) > 0 {
		dg.warn(1, "", "", "columns not imported: %s", strings.Join(ignored, ", "))
	}

	seq := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: 1}
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			csvProblem(dg, err)
			break // after a quoting error the rest of the file cannot be trusted
		}
		line, _ := r.FieldPos(0)
		if len(rec) != len(header) {
			dg.problem(line, "", "", "row has %d fields, the header %d", len(rec), len(header))
			continue
		}
		if n := netboxRow(dg, r, cols, rec, line); n != nil {
			seq.Content = append(seq.Content, n)
		}
	}
	if len(seq.Content) == 0 && len(dg.problems) == 0 {
		dg.warn(0, "", "", "the CSV file has no devices")
	}
	return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: 1, Content: []*yaml.Node{
		{Kind: yaml.ScalarNode, Tag: "!!str", Value: "nodes", Line: 1}, seq,
	}}
}

func csvProblem(dg *diags, err error) {
	var perr *csv.ParseError
	if errors.As(err, &perr) {
		dg.problem(perr.Line, "", "", "%v", perr.Err)
		return
	}
	dg.problem(0, "", "", "%v", err)
}

// netboxRow turns one device row into a native node entry.
func netboxRow(dg *diags, r *csv.Reader, cols []netboxColumn, rec []string, rowLine int) *yaml.Node {
	value := func(i int) string {
		v := strings.TrimSpace(rec[i])
		if v == "—" { // NetBox's placeholder for "none"
			return ""
		}
		return v
	}
	if !slices.ContainsFunc(rec, func(s string) bool { return strings.TrimSpace(s) != "" }) {
		return nil
	}
	name := ""
	for i, c := range cols {
		if c.role == "name" {
			name = value(i)
		}
	}
	b := &nativeBuilder{dg: dg, node: name, m: newMapping(rowLine)}
	origin := func(c netboxColumn) string { return "column " + c.header }
	lineOf := func(i int) int {
		l, _ := r.FieldPos(i)
		return l
	}
	labels := newMapping(rowLine)
	haveLabel := map[string]bool{}
	addLabel := func(key, val string, line int, c netboxColumn) {
		if haveLabel[key] {
			return
		}
		haveLabel[key] = true
		labels.Content = append(labels.Content, scalarNode("!!str", key, line, origin(c)), scalarNode("!!str", val, line, origin(c)))
	}
	var oob, protocol string
	var oobLine, protoLine int
	var oobCol, protoCol netboxColumn
	var ip4, ip6 *yaml.Node
	if name == "" {
		dg.problem(rowLine, "", "name", "the device has no name (reprov needs one per node)")
		return nil
	}
	for i, c := range cols {
		v := value(i)
		if v == "" {
			continue
		}
		line := lineOf(i)
		switch c.role {
		case "name":
			b.set("name", scalarNode("!!str", v, line, origin(c)))
		case "rack":
			b.set("rack", scalarNode("!!str", v, line, origin(c)))
		case "serial":
			b.set("serial", scalarNode("!!str", v, line, origin(c)))
		case "oob":
			oob, oobLine, oobCol = stripPrefix(v), line, c
		case "ip4":
			if ip4 == nil {
				ip4 = scalarNode("!!str", stripPrefix(v), line, origin(c))
			}
		case "ip6":
			ip6 = scalarNode("!!str", stripPrefix(v), line, origin(c))
		case "label":
			if s := slugify(v); s != "" {
				addLabel(c.label, s, line, c)
			}
		case "tags":
			for t := range strings.SplitSeq(v, ",") {
				if s := slugify(t); s != "" {
					addLabel("netbox.tag."+s, "true", line, c)
				}
			}
		case "cf":
			switch c.label {
			case "bmc_protocol":
				protocol, protoLine, protoCol = strings.ToLower(v), line, c
			case "macs", "mac":
				b.set("macs", splitList(scalarNode("!!str", v, line, origin(c))))
			case "playbook":
				b.set("playbook", scalarNode("!!str", v, line, origin(c)))
			case "boot_mode":
				b.set("boot.mode", scalarNode("!!str", v, line, origin(c)))
			default:
				key := "netbox.cf." + slugify(c.label)
				switch s := slugify(v); {
				case s != "":
					addLabel(key, s, line, c)
				case strings.EqualFold(v, "true") || strings.EqualFold(v, "false"):
					addLabel(key, strings.ToLower(v), line, c)
				}
			}
		}
	}
	if len(labels.Content) > 0 {
		b.set("labels", labels)
	}
	switch {
	case oob != "":
		addr := oob
		org := origin(oobCol)
		if protocol != "" {
			host := oob
			if strings.Contains(host, ":") {
				host = "[" + host + "]"
			}
			addr = protocol + "://" + host
			org = "columns " + oobCol.header + " and " + protoCol.header
		}
		b.set("bmc.address", scalarNode("!!str", addr, oobLine, org))
	case protocol != "":
		dg.warn(protoLine, name, "bmc.address", "%s is set but the device has no OOB IP; no BMC address imported", protoCol.header)
	}
	switch {
	case ip4 != nil:
		b.set("ssh.address", ip4)
	case ip6 != nil:
		b.set("ssh.address", ip6)
	}
	return b.m
}
