package redfishbmc_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/bmc/bmctest"
	"github.com/reprov/reprov/lab/redfishbmc"
)

var _ bmctest.Machine = (*redfishbmc.Machine)(nil)

func start(t *testing.T, cfg redfishbmc.Config) *redfishbmc.BMC {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := redfishbmc.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return b
}

// peer is a raw HTTP client for the BMC.
type peer struct {
	t    *testing.T
	b    *redfishbmc.BMC
	hc   *http.Client
	user string
	pass string
	tok  string
}

func newPeer(t *testing.T, b *redfishbmc.BMC) *peer {
	ep := b.Endpoint()
	hc := &http.Client{Timeout: 10 * time.Second}
	if pool := b.CAPool(); pool != nil {
		hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	}
	t.Cleanup(hc.CloseIdleConnections)
	return &peer{t: t, b: b, hc: hc, user: ep.Username, pass: ep.Password}
}

func (p *peer) do(method, path string, body any, hdr map[string]string) (*http.Response, map[string]any) {
	p.t.Helper()
	var r io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			p.t.Fatal(err)
		}
		r = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, p.b.URL()+path, r)
	if err != nil {
		p.t.Fatal(err)
	}
	if p.tok != "" {
		req.Header.Set("X-Auth-Token", p.tok)
	} else if p.user != "" {
		req.SetBasicAuth(p.user, p.pass)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		p.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &m); err != nil {
			p.t.Fatalf("%s %s: body is not JSON: %q", method, path, raw)
		}
	}
	return resp, m
}

func (p *peer) status(method, path string, body any, hdr map[string]string) int {
	p.t.Helper()
	resp, _ := p.do(method, path, body, hdr)
	return resp.StatusCode
}

func bootPatch(target, enabled, mode string) map[string]any {
	b := map[string]any{"BootSourceOverrideTarget": target, "BootSourceOverrideEnabled": enabled}
	if mode != "" {
		b["BootSourceOverrideMode"] = mode
	}
	return map[string]any{"Boot": b}
}

const sys1 = "/redfish/v1/Systems/1"

func TestServiceRootOpenSystemsNeedAuth(t *testing.T) {
	b := start(t, redfishbmc.Config{})
	anon := newPeer(t, b)
	anon.user = ""
	resp, root := anon.do("GET", "/redfish/v1/", nil, nil)
	if resp.StatusCode != 200 || root["RedfishVersion"] == nil {
		t.Fatalf("service root: %d %v", resp.StatusCode, root)
	}
	if got := anon.status("GET", sys1, nil, nil); got != http.StatusUnauthorized {
		t.Errorf("system without credentials: %d, want 401", got)
	}
	bad := newPeer(t, b)
	bad.pass = "wrong"
	if got := bad.status("GET", sys1, nil, nil); got != http.StatusUnauthorized {
		t.Errorf("system with a wrong password: %d, want 401", got)
	}
	good := newPeer(t, b)
	resp, sys := good.do("GET", sys1, nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("system: %d", resp.StatusCode)
	}
	if sys["PowerState"] != "Off" {
		t.Errorf("PowerState %v, want Off", sys["PowerState"])
	}
	if resp.Header.Get("ETag") == "" || resp.Header.Get("ETag") != sys["@odata.etag"] {
		t.Errorf("ETag header %q, @odata.etag %v", resp.Header.Get("ETag"), sys["@odata.etag"])
	}
	if got := b.Requests("GET", sys1); got != 3 {
		t.Errorf("Requests(GET system) = %d, want 3", got)
	}
}

func TestCAFileVerifiesServer(t *testing.T) {
	b := start(t, redfishbmc.Config{})
	pemData, err := os.ReadFile(b.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pemData, b.CAPEM()) || !strings.Contains(string(pemData), "BEGIN CERTIFICATE") {
		t.Fatalf("CA file does not hold the CA PEM")
	}
	if !strings.HasPrefix(b.URL(), "https://127.0.0.1:") {
		t.Errorf("URL %q", b.URL())
	}
	// Verified against the CA: works. Against the system roots: fails.
	p := newPeer(t, b)
	if got := p.status("GET", "/redfish/v1/", nil, nil); got != 200 {
		t.Errorf("verified GET: %d", got)
	}
	if _, err := http.Get(b.URL() + "/redfish/v1/"); err == nil {
		t.Errorf("GET without the CA verified the certificate")
	}
}

func TestPlainHTTP(t *testing.T) {
	b := start(t, redfishbmc.Config{PlainHTTP: true})
	if !strings.HasPrefix(b.URL(), "http://") || b.CAFile() != "" || b.Endpoint().Scheme != "http" {
		t.Fatalf("plain mode: URL %q CAFile %q", b.URL(), b.CAFile())
	}
	if got := newPeer(t, b).status("GET", sys1, nil, nil); got != 200 {
		t.Errorf("GET system: %d", got)
	}
}

func TestPatchETagRules(t *testing.T) {
	b := start(t, redfishbmc.Config{})
	p := newPeer(t, b)
	resp, _ := p.do("GET", sys1, nil, nil)
	etag := resp.Header.Get("ETag")

	if got := p.status("PATCH", sys1, bootPatch("Pxe", "Once", ""), map[string]string{"If-Match": `W/"999"`}); got != http.StatusPreconditionFailed {
		t.Errorf("stale If-Match: %d, want 412", got)
	}
	if got := b.Machine().BootDevice(); got != bmc.BootNone {
		t.Fatalf("refused PATCH changed the device to %q", got)
	}
	// Without the quirk a PATCH without If-Match is accepted.
	if got := p.status("PATCH", sys1, bootPatch("Hdd", "Once", ""), nil); got != http.StatusNoContent {
		t.Errorf("PATCH without If-Match: %d, want 204", got)
	}
	if got := b.Machine().BootDevice(); got != bmc.BootDisk {
		t.Errorf("device %q, want disk", got)
	}
	// The old ETag is stale now.
	if got := p.status("PATCH", sys1, bootPatch("Pxe", "Once", ""), map[string]string{"If-Match": etag}); got != http.StatusPreconditionFailed {
		t.Errorf("PATCH with the ETag from before a change: %d, want 412", got)
	}

	b.SetQuirks(redfishbmc.Quirks{RequireIfMatch: true})
	if got := p.status("PATCH", sys1, bootPatch("Pxe", "Once", ""), nil); got != http.StatusPreconditionRequired {
		t.Errorf("RequireIfMatch without If-Match: %d, want 428", got)
	}
	resp, _ = p.do("GET", sys1, nil, nil)
	if got := p.status("PATCH", sys1, bootPatch("Pxe", "Once", ""), map[string]string{"If-Match": resp.Header.Get("ETag")}); got != http.StatusNoContent {
		t.Errorf("RequireIfMatch with a fresh ETag: %d, want 204", got)
	}
	if got := b.Machine().BootDevice(); got != bmc.BootPXE {
		t.Errorf("device %q, want pxe", got)
	}
}

func TestQuirkResponses(t *testing.T) {
	tests := []struct {
		name   string
		cfg    redfishbmc.Config
		body   map[string]any
		status int
		device bmc.BootDevice
	}{
		{"silently revert", redfishbmc.Config{Quirks: redfishbmc.Quirks{SilentlyRevert: true}}, bootPatch("Pxe", "Once", ""), 200, bmc.BootNone},
		{"reject mode", redfishbmc.Config{Quirks: redfishbmc.Quirks{RejectMode: true}}, bootPatch("Pxe", "Once", "UEFI"), 400, bmc.BootNone},
		{"reject mode without mode", redfishbmc.Config{Quirks: redfishbmc.Quirks{RejectMode: true}}, bootPatch("Pxe", "Once", ""), 204, bmc.BootPXE},
		{"require mode", redfishbmc.Config{Quirks: redfishbmc.Quirks{RequireMode: true}}, bootPatch("Pxe", "Once", ""), 400, bmc.BootNone},
		{"require mode with mode", redfishbmc.Config{Quirks: redfishbmc.Quirks{RequireMode: true}}, bootPatch("Pxe", "Once", "UEFI"), 204, bmc.BootPXE},
		{"no mode property", redfishbmc.Config{NoBootMode: true}, bootPatch("Pxe", "Once", "UEFI"), 400, bmc.BootNone},
		{"mode not allowed", redfishbmc.Config{BootModes: []string{"UEFI"}}, bootPatch("Pxe", "Once", "Legacy"), 400, bmc.BootNone},
		{"target not allowed", redfishbmc.Config{BootTargets: []string{"None", "Hdd"}}, bootPatch("Pxe", "Once", ""), 400, bmc.BootNone},
		{"reject allowable values", redfishbmc.Config{Quirks: redfishbmc.Quirks{RejectAllowableValues: true}},
			map[string]any{"Boot": map[string]any{"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once",
				"BootSourceOverrideTarget@Redfish.AllowableValues": []string{"Pxe"}}}, 400, bmc.BootNone},
		{"allowable values ignored by lenient BMCs", redfishbmc.Config{},
			map[string]any{"Boot": map[string]any{"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once",
				"BootSourceOverrideTarget@Redfish.AllowableValues": []string{"Pxe"}}}, 204, bmc.BootPXE},
		{"read-only property", redfishbmc.Config{}, map[string]any{"PowerState": "On"}, 400, bmc.BootNone},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := start(t, tc.cfg)
			p := newPeer(t, b)
			resp, body := p.do("PATCH", sys1, tc.body, nil)
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d (%v)", resp.StatusCode, tc.status, body)
			}
			if resp.StatusCode >= 400 && body["error"] == nil {
				t.Errorf("refusal without a Redfish error body: %v", body)
			}
			if got := b.Machine().BootDevice(); got != tc.device {
				t.Errorf("stored device %q, want %q", got, tc.device)
			}
		})
	}
}

func TestRejectModeHidesModeAllowableValues(t *testing.T) {
	b := start(t, redfishbmc.Config{Quirks: redfishbmc.Quirks{RejectMode: true}})
	_, sys := newPeer(t, b).do("GET", sys1, nil, nil)
	boot := sys["Boot"].(map[string]any)
	if boot["BootSourceOverrideMode"] == nil {
		t.Errorf("RejectMode BMC should still show the mode: %v", boot)
	}
	if _, ok := boot["BootSourceOverrideMode@Redfish.AllowableValues"]; ok {
		t.Errorf("RejectMode BMC lists the mode's allowable values: %v", boot)
	}
}

func TestOneTimeOverrideConsumedAtPowerOn(t *testing.T) {
	var mu sync.Mutex
	var events []redfishbmc.PowerEvent
	b := start(t, redfishbmc.Config{OnPower: func(ev redfishbmc.PowerEvent) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, ev)
	}})
	m := b.Machine()
	p := newPeer(t, b)
	if got := p.status("PATCH", sys1, bootPatch("Pxe", "Once", "UEFI"), nil); got != 204 {
		t.Fatalf("PATCH: %d", got)
	}
	if got := p.status("POST", sys1+"/Actions/ComputerSystem.Reset", map[string]string{"ResetType": "On"}, nil); got != 204 {
		t.Fatalf("reset On: %d", got)
	}
	if !m.Powered() || m.PowerOns() != 1 {
		t.Fatalf("powered %v, power-ons %d", m.Powered(), m.PowerOns())
	}
	if got := m.Boot(); got.Enabled != "Disabled" || got.Target != "None" || got.Mode != "UEFI" {
		t.Errorf("after boot the override is %+v, want consumed (None, Disabled, mode kept)", got)
	}
	// A persistent override survives a restart.
	if got := p.status("PATCH", sys1, bootPatch("Hdd", "Continuous", ""), nil); got != 204 {
		t.Fatalf("PATCH: %d", got)
	}
	if got := p.status("POST", sys1+"/Actions/ComputerSystem.Reset", map[string]string{"ResetType": "ForceRestart"}, nil); got != 204 {
		t.Fatalf("reset ForceRestart: %d", got)
	}
	if got := m.BootDevice(); got != bmc.BootDisk {
		t.Errorf("continuous override after restart: %q, want disk", got)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []struct {
		on  bool
		dev bmc.BootDevice
	}{{true, bmc.BootPXE}, {false, bmc.BootNone}, {true, bmc.BootDisk}}
	if len(events) != len(want) {
		t.Fatalf("events %+v, want %d", events, len(want))
	}
	for i, w := range want {
		if events[i].On != w.on || (w.on && events[i].Device != w.dev) || events[i].System != "1" {
			t.Errorf("event %d = %+v, want on=%v device=%s", i, events[i], w.on, w.dev)
		}
	}
	if events[0].Boot.Mode != "UEFI" {
		t.Errorf("first boot mode %q, want UEFI", events[0].Boot.Mode)
	}
}

func TestResetTypesAreEnforced(t *testing.T) {
	b := start(t, redfishbmc.Config{ResetTypes: []string{"On", "ForceOff"}, Powered: true})
	p := newPeer(t, b)
	_, sys := p.do("GET", sys1, nil, nil)
	allowed := sys["Actions"].(map[string]any)["#ComputerSystem.Reset"].(map[string]any)["ResetType@Redfish.AllowableValues"]
	if got, _ := json.Marshal(allowed); string(got) != `["On","ForceOff"]` {
		t.Errorf("allowable values %s", got)
	}
	if got := p.status("POST", sys1+"/Actions/ComputerSystem.Reset", map[string]string{"ResetType": "ForceRestart"}, nil); got != 400 {
		t.Errorf("ForceRestart not allowed: %d, want 400", got)
	}
	if got := p.status("POST", sys1+"/Actions/ComputerSystem.Reset", map[string]string{}, nil); got != 400 {
		t.Errorf("no ResetType: %d, want 400", got)
	}
	if got := p.status("POST", sys1+"/Actions/ComputerSystem.Reset", map[string]string{"ResetType": "ForceOff"}, nil); got != 204 {
		t.Errorf("ForceOff: %d", got)
	}
	if b.Machine().Powered() {
		t.Error("machine still on after ForceOff")
	}
}

func TestGracefulShutdownTakesTime(t *testing.T) {
	b := start(t, redfishbmc.Config{Powered: true, GracefulShutdownDelay: 100 * time.Millisecond})
	p := newPeer(t, b)
	if got := p.status("POST", sys1+"/Actions/ComputerSystem.Reset", map[string]string{"ResetType": "GracefulShutdown"}, nil); got != 204 {
		t.Fatalf("GracefulShutdown: %d", got)
	}
	if !b.Machine().Powered() {
		t.Fatal("graceful shutdown was immediate")
	}
	bmctest.Eventually(t, 5*time.Second, "machine off", func() bool { return !b.Machine().Powered() })
}

func TestTask202CompletesAfterPolls(t *testing.T) {
	b := start(t, redfishbmc.Config{TaskPolls: 2, Quirks: redfishbmc.Quirks{Task202: true}})
	p := newPeer(t, b)
	resp, task := p.do("POST", sys1+"/Actions/ComputerSystem.Reset", map[string]string{"ResetType": "On"}, nil)
	if resp.StatusCode != http.StatusAccepted || task["TaskState"] != "Running" {
		t.Fatalf("reset: %d %v", resp.StatusCode, task)
	}
	mon := resp.Header.Get("Location")
	if mon == "" {
		t.Fatal("202 without Location")
	}
	for i := range 2 {
		if got := p.status("GET", mon, nil, nil); got != http.StatusAccepted {
			t.Fatalf("poll %d: %d, want 202", i, got)
		}
		if b.Machine().Powered() {
			t.Fatalf("machine on before the task completed")
		}
	}
	resp, task = p.do("GET", mon, nil, nil)
	if resp.StatusCode != 200 || task["TaskState"] != "Completed" {
		t.Fatalf("final poll: %d %v", resp.StatusCode, task)
	}
	if !b.Machine().Powered() {
		t.Error("machine off after the task completed")
	}
}

func TestSessions(t *testing.T) {
	b := start(t, redfishbmc.Config{Quirks: redfishbmc.Quirks{SessionLimit: 2}})
	anon := newPeer(t, b)
	anon.user = ""
	ep := b.Endpoint()
	login := func(pass string) (*http.Response, map[string]any) {
		return anon.do("POST", "/redfish/v1/SessionService/Sessions", map[string]string{"UserName": ep.Username, "Password": pass}, nil)
	}
	if resp, _ := login("wrong"); resp.StatusCode != 401 || b.Sessions() != 0 {
		t.Fatalf("bad login: %d, sessions %d", resp.StatusCode, b.Sessions())
	}
	resp, _ := login(ep.Password)
	tok, loc := resp.Header.Get("X-Auth-Token"), resp.Header.Get("Location")
	if resp.StatusCode != 201 || tok == "" || loc == "" || b.Sessions() != 1 {
		t.Fatalf("login: %d token %v location %q sessions %d", resp.StatusCode, tok != "", loc, b.Sessions())
	}
	s := newPeer(t, b)
	s.user, s.tok = "", tok
	if got := s.status("GET", sys1, nil, nil); got != 200 {
		t.Errorf("GET with session token: %d", got)
	}
	if resp, _ := login(ep.Password); resp.StatusCode != 201 {
		t.Fatalf("second login: %d", resp.StatusCode)
	}
	resp, body := login(ep.Password)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(mustJSON(body), "SessionLimitExceeded") {
		t.Errorf("third login over the limit of 2: %d %v", resp.StatusCode, body)
	}
	if got := s.status("DELETE", loc, nil, nil); got != 204 {
		t.Fatalf("logout: %d", got)
	}
	if b.Sessions() != 1 {
		t.Errorf("sessions after logout %d, want 1", b.Sessions())
	}
	if got := s.status("GET", sys1, nil, nil); got != 401 {
		t.Errorf("GET with a deleted session's token: %d, want 401", got)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestStorm(t *testing.T) {
	for _, status := range []int{503, 429} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			b := start(t, redfishbmc.Config{})
			b.SetQuirks(redfishbmc.Quirks{Storm: 2, StormStatus: status, StormRetryAfter: 1500 * time.Millisecond})
			p := newPeer(t, b)
			for i := range 2 {
				resp, _ := p.do("GET", sys1, nil, nil)
				if resp.StatusCode != status || resp.Header.Get("Retry-After") != "2" {
					t.Errorf("request %d: %d Retry-After %q, want %d and 2", i, resp.StatusCode, resp.Header.Get("Retry-After"), status)
				}
			}
			if got := p.status("GET", sys1, nil, nil); got != 200 {
				t.Errorf("after the storm: %d", got)
			}
			if got := b.Requests("GET", sys1+"/"); got != 3 {
				t.Errorf("Requests counted %d, want 3", got)
			}
		})
	}
}

func TestSeveralSystems(t *testing.T) {
	b := start(t, redfishbmc.Config{Systems: []string{"a", "b"}})
	p := newPeer(t, b)
	_, coll := p.do("GET", "/redfish/v1/Systems", nil, nil)
	if got := mustJSON(coll["Members"]); got != `[{"@odata.id":"/redfish/v1/Systems/a"},{"@odata.id":"/redfish/v1/Systems/b"}]` {
		t.Errorf("members %s", got)
	}
	if got := p.status("PATCH", "/redfish/v1/Systems/b", bootPatch("Pxe", "Once", ""), nil); got != 204 {
		t.Fatalf("PATCH b: %d", got)
	}
	if b.MachineFor("b").BootDevice() != bmc.BootPXE || b.MachineFor("a").BootDevice() != bmc.BootNone {
		t.Errorf("override landed on the wrong machine")
	}
	if got := p.status("GET", "/redfish/v1/Systems/c", nil, nil); got != 404 {
		t.Errorf("unknown system: %d", got)
	}
}

func TestSharedCA(t *testing.T) {
	caFile := t.TempDir() + "/lab-ca.pem"
	ca, err := redfishbmc.NewCA(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := ca.Pool()
	for i := range 2 {
		b := start(t, redfishbmc.Config{CA: ca, Addr: "127.0.0.2:0"})
		if b.CAFile() != caFile || b.Endpoint().Options.CAFile != caFile {
			t.Errorf("BMC %d CAFile %q, want the shared %q", i, b.CAFile(), caFile)
		}
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
		resp, err := hc.Get(b.URL() + "/redfish/v1/")
		if err != nil {
			t.Fatalf("BMC %d on %s not verified by the shared CA: %v", i, b.URL(), err)
		}
		resp.Body.Close()
		hc.CloseIdleConnections()
	}
}

func TestConflictResets(t *testing.T) {
	b := start(t, redfishbmc.Config{Powered: true, Quirks: redfishbmc.Quirks{ConflictResets: 2}})
	p := newPeer(t, b)
	for i := range 2 {
		if got := p.status("POST", sys1+"/Actions/ComputerSystem.Reset", map[string]string{"ResetType": "ForceOff"}, nil); got != 409 {
			t.Errorf("reset %d: %d, want 409", i+1, got)
		}
		if !b.Machine().Powered() {
			t.Fatalf("a reset answered 409 switched the machine off")
		}
	}
	if got := p.status("POST", sys1+"/Actions/ComputerSystem.Reset", map[string]string{"ResetType": "ForceOff"}, nil); got != 204 {
		t.Errorf("third reset: %d, want 204", got)
	}
	if b.Machine().Powered() {
		t.Error("machine still on after the third reset")
	}
}
