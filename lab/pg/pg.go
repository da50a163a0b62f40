// Package pg starts throwaway PostgreSQL clusters for tests: initdb and
// pg_ctl from the Debian postgresql package (/usr/lib/postgresql/*/bin), a
// fresh data directory in a temporary dir, a free loopback port, trust
// authentication on 127.0.0.1, the unix socket in the same temporary dir.
// The cluster is stopped (immediate mode) and removed when the test ends.
//
// PostgreSQL refuses to run as root: when the test runs as root the server
// runs as the "postgres" user.
package pg

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/reprov/reprov/lab/labtool"
)

// binDir finds the directory holding initdb and pg_ctl: PATH first, then the
// newest /usr/lib/postgresql/*/bin.
func binDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "pg_ctl")); err == nil {
			return dir, nil
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	slices.SortFunc(matches, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(a))))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(b))))
		return vb - va
	})
	for _, m := range matches {
		dir := filepath.Dir(m)
		if _, err := os.Stat(filepath.Join(dir, "pg_ctl")); err == nil {
			return dir, nil
		}
	}
	return "", errors.New("initdb and pg_ctl not found on PATH or in /usr/lib/postgresql/*/bin")
}

// Start starts a throwaway PostgreSQL cluster and returns the URL of its
// "postgres" database as superuser "postgres" (no password, sslmode=disable).
// A missing PostgreSQL skips the test, or fails it under CI=true.
func Start(t testing.TB) string {
	t.Helper()
	bin, err := binDir()
	if err != nil {
		hint := " (Debian package " + labtool.PackageHint("initdb") + ")"
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL: %v%s", err, hint)
		}
		t.Skipf("PostgreSQL: %v%s", err, hint)
	}

	// A short directory of our own (not t.TempDir, whose parents are private
	// to root and whose long names can overflow a unix socket path).
	dir, err := os.MkdirTemp("", "reprov-pg-")
	if err != nil {
		t.Fatalf("PostgreSQL: temp dir: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })

	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("PostgreSQL refuses to run as root and there is no postgres user: %v", err)
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, int(uid), int(gid)); err != nil {
			t.Fatalf("PostgreSQL: chown %s: %v", dir, err)
		}
	}
	run := func(name string, args ...string) ([]byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(bin, name), args...)
		cmd.Dir = dir
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "LC_ALL=C", "HOME=" + dir}
		if cred != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		}
		return cmd.CombinedOutput()
	}

	data := filepath.Join(dir, "data")
	if out, err := run("initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
		"--locale=C", "--no-sync", "--no-instructions"); err != nil {
		t.Fatalf("PostgreSQL: initdb: %v\n%s", err, out)
	}
	logFile := filepath.Join(dir, "server.log")

	var port int
	for attempt := 1; ; attempt++ {
		port = labtool.FreeTCPPort(t, "127.0.0.1")
		opts := strings.Join([]string{
			"-c listen_addresses=127.0.0.1",
			"-p " + strconv.Itoa(port),
			"-k " + dir,
			"-c fsync=off",
			"-c synchronous_commit=off",
			"-c full_page_writes=off",
		}, " ")
		out, err := run("pg_ctl", "-D", data, "-l", logFile, "-w", "-t", "60", "-o", opts, "start")
		if err == nil {
			break
		}
		logText, _ := os.ReadFile(logFile)
		// Another process may have taken the port between probe and bind.
		if attempt < 3 && bytes.Contains(logText, []byte("could not bind")) {
			continue
		}
		t.Fatalf("PostgreSQL: pg_ctl start: %v\n%s\nserver log:\n%s", err, out, logText)
	}
	t.Cleanup(func() {
		if out, err := run("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"); err != nil {
			t.Logf("PostgreSQL: pg_ctl stop: %v\n%s", err, out)
		}
	})
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
}

// NewDatabase creates a fresh, empty database in the cluster at clusterURL
// (as returned by Start) and returns its URL, so tests can share one
// cluster without sharing state.
func NewDatabase(t testing.TB, clusterURL string) string {
	t.Helper()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("PostgreSQL: database name: %v", err)
	}
	name := "t_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, clusterURL)
	if err != nil {
		t.Fatalf("PostgreSQL: connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("PostgreSQL: create database %s: %v", name, err)
	}
	u, err := url.Parse(clusterURL)
	if err != nil {
		t.Fatalf("PostgreSQL: cluster URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}
