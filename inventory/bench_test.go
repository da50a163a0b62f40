package inventory

import (
	"bytes"
	"fmt"
	"testing"
)

// fleetYAML generates a native YAML inventory of n nodes shaped like a real
// one: defaults, racks of 40, labels, IPMI and Redfish BMCs, MACs, serials.
func fleetYAML(n int) []byte {
	var b bytes.Buffer
	b.WriteString("defaults:\n  labels: {site: ams1}\n  bmc: {username: admin, password: env:BMC_PASSWORD, options: {cipher_suites: [17, 3], timeout: 5s}}\n  ssh: {user: root, identity: ~/.ssh/id_ed25519}\n  boot: {mode: legacy}\nnodes:\n")
	for i := range n {
		a, c := i/250, i%250
		addr := fmt.Sprintf("ipmi://10.1.%d.%d", a, c+1)
		if i%3 == 0 {
			addr = fmt.Sprintf("redfish+https://10.1.%d.%d/redfish/v1/Systems/1", a, c+1)
		}
		fmt.Fprintf(&b, `  - name: node-%05d
    rack: r%03d
    labels: {role: %s, model: dl360g7, topology.kubernetes.io/zone: z%d}
    bmc: {address: "%s"}
    ssh: {address: 10.2.%d.%d}
    macs: ["3c:4a:%02x:%02x:%02x:01", "3c:4a:%02x:%02x:%02x:02"]
    serial: CZJ%07d
    boot: {disk: /dev/disk/by-path/pci-0000:03:00.0-scsi-0:0:0:0}
    playbook: hp-dl360-g7
`, i, i/40, []string{"web", "db", "batch"}[i%3], i%4, addr, a, c+1, i>>16&0xff, i>>8&0xff, i&0xff, i>>16&0xff, i>>8&0xff, i&0xff, i)
	}
	return b.Bytes()
}

// BenchmarkLoad10k loads a 10,000-node inventory: the YAML through the
// fast path (what LoadBytes does) and through yaml.v3's node tree (what it
// did before, and still does for files outside the fast path's subset),
// and the same fleet as TOML: ms/op, B/op and allocs/op per load
// (docs/performance.md).
func BenchmarkLoad10k(b *testing.B) {
	const n = 10_000
	data := fleetYAML(n)
	if _, ok := loadFastYAML("fleet.yaml", data, sourceAuto); !ok {
		b.Fatal("the fast path declined the generated fleet")
	}
	// The same fleet through the TOML path.
	inv, _, err := LoadBytes("fleet.yaml", data)
	if err != nil {
		b.Fatal(err)
	}
	var tomlData bytes.Buffer
	if err := WriteNativeOptions(&tomlData, inv, "toml", WriteOptions{}); err != nil {
		b.Fatal(err)
	}
	yamlv3 := func(name string, data []byte) (*Inventory, []Warning, error) {
		return loadYAMLv3(b, name, data)
	}
	for _, c := range []struct {
		bench, file string
		data        []byte
		load        func(string, []byte) (*Inventory, []Warning, error)
	}{
		{"fleet.yaml/fast", "fleet.yaml", data, LoadBytes},
		{"fleet.yaml/yamlv3", "fleet.yaml", data, yamlv3},
		{"fleet.toml", "fleet.toml", tomlData.Bytes(), LoadBytes},
	} {
		b.Run(c.bench, func(b *testing.B) {
			b.SetBytes(int64(len(c.data)))
			b.ReportAllocs()
			for b.Loop() {
				inv, _, err := c.load(c.file, c.data)
				if err != nil || len(inv.Nodes) != n {
					b.Fatalf("loaded %v nodes: %v", inv, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/node")
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/op")
		})
	}
}
