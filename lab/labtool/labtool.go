// Package labtool holds small helpers shared by reprov's tests and lab
// harnesses: finding an external tool (skipping the test where it is
// missing, failing under CI), waiting for a condition with a deadline, and
// picking free loopback ports.
package labtool

import (
	"net"
	"os"
	"os/exec"
	"testing"
	"time"
)

// PackageHint returns the Debian package that provides the named tool, or
// "" when it is not known.
func PackageHint(name string) string {
	switch name {
	case "ipmi_sim":
		return "openipmi"
	case "ipmitool":
		return "ipmitool"
	case "ipmipower", "ipmi-chassis-config", "ipmi-config", "bmc-info":
		return "freeipmi-tools"
	case "sshd":
		return "openssh-server"
	case "ssh", "ssh-keygen":
		return "openssh-client"
	case "redfishtool":
		return "redfishtool"
	case "sfdisk", "fdisk":
		return "fdisk"
	case "postgres", "initdb", "pg_ctl":
		return "postgresql"
	case "qemu-system-x86_64":
		return "qemu-system-x86"
	}
	return ""
}

// RequireTool returns the path of the named executable. When it is missing
// the test is skipped, or fails when the environment variable CI is "true"
// (CI must have every tool installed).
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	hint := ""
	if pkg := PackageHint(name); pkg != "" {
		hint = " (Debian package " + pkg + ": apt-get install " + pkg + ")"
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("required tool %q not found%s: %v", name, hint, err)
	}
	t.Skipf("tool %q not found%s: %v", name, hint, err)
	return ""
}

// Eventually waits until cond holds, polling every 20 ms, and fails the test
// when d passes first. what describes the condition for the failure message.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// FreeUDPPort returns a UDP port on ip (e.g. "127.0.0.1") that was free a
// moment ago. Another process may take it before the caller binds it; prefer
// binding port 0 where the peer allows it.
func FreeUDPPort(t testing.TB, ip string) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("find free UDP port on %s: %v", ip, err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// FreeTCPPort returns a TCP port on ip that was free a moment ago (see
// FreeUDPPort for the caveat).
func FreeTCPPort(t testing.TB, ip string) int {
	t.Helper()
	l, err := net.Listen("tcp4", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("find free TCP port on %s: %v", ip, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
