package webtest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/chromedp/chromedp"
)

// ChromeOptions are the options the browser tests start Debian's headless
// chromium with: its binary, no sandbox (tests may run as root), no
// background traffic, a profile in dataDir and a 1280×900 window.
func ChromeOptions(chromium, dataDir string) []chromedp.ExecAllocatorOption {
	return append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(dataDir),
		chromedp.WindowSize(1280, 900),
	)
}

// SaveArtifact writes a test artifact (a screenshot) named name under
// $REPROV_TEST_ARTIFACTS, or the test's temp dir, and logs where.
func SaveArtifact(t testing.TB, name string, b []byte) string {
	t.Helper()
	dir := os.Getenv("REPROV_TEST_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("artifact: %s (%d bytes)", p, len(b))
	return p
}
