//go:build !unix

package playbooks

import "os/exec"

// ownProcessGroup leaves cmd as it is: without process groups, cancelling
// kills the command itself (exec.CommandContext's default).
func ownProcessGroup(*exec.Cmd) {}

// killProcessGroup has nothing more to kill without process groups.
func killProcessGroup(*exec.Cmd) {}
