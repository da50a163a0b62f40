package steps

import (
	"encoding/json"
	"testing"
)

// FuzzNodeOutputParsers: whatever a node prints (it may be hostile), the
// parsers of its command output return without panicking.
func FuzzNodeOutputParsers(f *testing.F) {
	for _, s := range []string{
		"36 25 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw\n",
		"IP Address Source       : Static Address\nIP Address              : 10.1.12.14\n",
		"Boot parameter data: a004000000\n",
		"BootCurrent: 0001\nBootNext: 0003\nBootOrder: 0001,0003\nBoot0003* IPv4 PXE\tPciRoot(0x0)/MAC(3c4a92112233,0)\n",
		"", "\x00\xff", "- - - -", "Boot parameter data: zz",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		parseMountinfo(s)
		parseLanPrintIP(s)
		_, _ = parseBootParamData(s)
		ParseEFIBootMgr(s)
	})
}

// FuzzAgentResults: the JSON results a pushed agent prints are decoded and
// used by the controller; arbitrary bytes must neither panic the decoding
// nor what consumes it (the identity comparison, saved-sector checks).
func FuzzAgentResults(f *testing.F) {
	for _, s := range []string{
		`{"version":1,"serial":"CZJ1234ABC","macs":["3c:4a:92:11:22:33"],"boot_id":"x","firmware":"legacy"}`,
		`{"version":1,"path":"/dev/sda","name":"sda","dev":"8:0","size_bytes":1048576,"logical_sector_size":512}`,
		`{"version":1,"disk":"/dev/sda","ranges":[{"offset":0,"length":512,"data":"AAAA","sha256":"x"}],"sha256":"y"}`,
		`{"step":"identify","code":"identity_mismatch","error":"x"}`,
		`{"ranges":[{"offset":-1,"length":-512}]}`, `null`, `[]`, `{"macs":null}`,
	} {
		f.Add([]byte(s))
	}
	exp := Expected{Node: "web-014", Serial: "CZJ1234ABC", MACs: []string{"3c:4a:92:11:22:33"}, BMCAddresses: []string{"10.1.12.14"}}
	f.Fuzz(func(t *testing.T, data []byte) {
		var id Identity
		if json.Unmarshal(data, &id) == nil {
			c := CompareIdentity(exp, &id)
			_ = c.Err()
		}
		var d DiskInfo
		_ = json.Unmarshal(data, &d)
		var w WipeResult
		_ = json.Unmarshal(data, &w)
		var nb NextBootResult
		_ = json.Unmarshal(data, &nb)
		var rr RestoreResult
		_ = json.Unmarshal(data, &rr)
		var rb RebootResult
		_ = json.Unmarshal(data, &rb)
		var er ErrorResult
		_ = json.Unmarshal(data, &er)
		var s SavedSectors
		if json.Unmarshal(data, &s) == nil {
			_ = s.Verify()
			s.AllZero()
			_ = sameDisk(&s, &d)
		}
	})
}
