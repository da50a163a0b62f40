package labtool_test

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/reprov/reprov/lab/labtool"
)

func TestRequireToolFindsAShell(t *testing.T) {
	if p := labtool.RequireTool(t, "sh"); p == "" {
		t.Fatal("sh not found")
	}
}

func TestPackageHint(t *testing.T) {
	if got := labtool.PackageHint("ipmi_sim"); got != "openipmi" {
		t.Errorf("hint for ipmi_sim %q", got)
	}
	if got := labtool.PackageHint("no-such-tool"); got != "" {
		t.Errorf("hint for an unknown tool %q", got)
	}
}

func TestEventually(t *testing.T) {
	start := time.Now()
	labtool.Eventually(t, 5*time.Second, "a condition that becomes true", func() bool { return time.Since(start) > 50*time.Millisecond })
}

func TestFreePorts(t *testing.T) {
	u := labtool.FreeUDPPort(t, "127.0.0.1")
	c, err := net.ListenPacket("udp4", "127.0.0.1:"+strconv.Itoa(u))
	if err != nil {
		t.Fatalf("free UDP port %d not bindable: %v", u, err)
	}
	_ = c.Close()
	p := labtool.FreeTCPPort(t, "127.0.0.1")
	l, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		t.Fatalf("free TCP port %d not bindable: %v", p, err)
	}
	_ = l.Close()
}
