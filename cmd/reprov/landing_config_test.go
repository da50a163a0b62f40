package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// TestLandingAllowRequiredOffLoopback: an endpoint on a non-loopback
// address without landing.allow is a configuration error naming both keys.
func TestLandingAllowRequiredOffLoopback(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		yaml    string
		wantErr bool
	}{
		{"landing:\n  listen: 0.0.0.0:8086\n", true},
		{"landing:\n  listen: 10.20.0.5:8086\n  allow: ['']\n", true},
		{"landing:\n  listen: 0.0.0.0:8086\n  allow: [10.20.0.0/16]\n", false},
		{"landing:\n  listen: 127.0.0.1:8086\n", false},
		{"landing:\n  listen: 127.0.0.1:8086\n  retry_window: -1s\n", true},
	} {
		path := filepath.Join(dir, "reprov.yaml")
		if err := os.WriteFile(path, []byte(tc.yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, _, err := loadConfig(path, pflag.NewFlagSet("t", pflag.ContinueOnError), func(string) string { return "" })
		switch {
		case tc.wantErr && err == nil:
			t.Errorf("%q: accepted", tc.yaml)
		case !tc.wantErr && err != nil:
			t.Errorf("%q: %v", tc.yaml, err)
		case err != nil && !strings.Contains(tc.yaml, "retry_window") && !(strings.Contains(err.Error(), "landing.allow") && strings.Contains(err.Error(), "landing.listen")):
			t.Errorf("%q: error %q does not name landing.allow and landing.listen", tc.yaml, err)
		case err == nil && cfg.Landing.RetryWindow != 15*time.Minute:
			t.Errorf("%q: landing.retry_window default %v, want 15m", tc.yaml, cfg.Landing.RetryWindow)
		}
	}
}
