package sshd_test

import (
	"strings"
	"testing"

	"github.com/reprov/reprov/lab/sshd"
)

func TestServerRunsCommands(t *testing.T) {
	s := sshd.Start(t, sshd.Options{})
	c := s.Dial(t)
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	out, err := sess.Output("echo hello-$((20+22))")
	if err != nil {
		t.Fatalf("run: %v\n%s", err, s.Log())
	}
	if got := strings.TrimSpace(string(out)); got != "hello-42" {
		t.Fatalf("output %q, want hello-42", got)
	}
}
