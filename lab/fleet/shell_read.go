package fleet

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"
)

// The read-only POSIX commands a plan sends to a push-mode node, which
// copies nothing to it (docs/security.md, "Plan and dry runs change
// something"): `[ -e|-h|-f|-b|-d|-x P ]`, `ls -1A P`, `ls -lLd P`,
// `dd if=P bs=512 skip=N count=M` (reading only: `of=` is refused),
// `export`, and the link-resolving script of the commands host
// (recognised whole and answered from the virtual tree). They read the
// node's virtual /sys, /proc and /dev, and its disk; they change nothing.

// readCommand runs one of the read-only commands; ok is false for any
// other command.
func (sh *shell) readCommand(ctx context.Context, args []string, stdout, stderr io.Writer) (status int, ok bool) {
	switch args[0] {
	case "export":
		return 0, true
	case "[", "test":
		return sh.test(ctx, args), true
	case "ls":
		return sh.ls(ctx, args[1:], stdout, stderr), true
	case "dd":
		return sh.dd(ctx, args[1:], stdout, stderr), true
	}
	return 0, false
}

// test is `[ -OP PATH ]` for the file tests the commands host uses.
func (sh *shell) test(ctx context.Context, args []string) int {
	if args[0] == "[" {
		if args[len(args)-1] != "]" {
			return 2
		}
		args = args[:len(args)-1]
	}
	if len(args) != 3 {
		return 2
	}
	op, p := args[1], args[2]
	n := sh.n
	if f := n.files.get(p); f != nil {
		switch op {
		case "-e", "-f":
			return 0
		case "-x":
			return boolStatus(f.exec)
		}
		return 1
	}
	if n.files.isDir(p) && isTmpRoot(p) {
		return boolStatus(op == "-e" || op == "-d")
	}
	if op == "-h" {
		e, _, err := n.fs.resolve(n, p, false)
		return boolStatus(err == nil && e.kind == vLink)
	}
	e, _, err := n.fs.resolve(n, p, true)
	if err != nil {
		return 1
	}
	switch op {
	case "-e":
		return 0
	case "-f":
		return boolStatus(e.kind == vFile)
	case "-b":
		return boolStatus(e.kind == vBlock)
	case "-d":
		return boolStatus(e.kind == vDir)
	case "-x":
		return 1
	}
	return 2
}

func boolStatus(b bool) int {
	if b {
		return 0
	}
	return 1
}

// ls is `ls -1A PATH` (the entries) and `ls -lLd PATH` (one long line).
func (sh *shell) ls(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var flags string
	var paths []string
	for _, a := range args {
		switch {
		case a == "--":
		case strings.HasPrefix(a, "-"):
			flags += a[1:]
		default:
			paths = append(paths, a)
		}
	}
	if len(paths) != 1 {
		fmt.Fprintln(stderr, "ls: the lab's ls takes one path")
		return 2
	}
	p := paths[0]
	h := &vhost{n: sh.n}
	if strings.Contains(flags, "d") {
		fi, err := h.Stat(ctx, p)
		if err != nil {
			fmt.Fprintf(stderr, "ls: cannot access '%s': No such file or directory\n", p)
			return 2
		}
		switch {
		case fi.IsBlockDevice():
			maj, min, _ := strings.Cut(fi.Dev, ":")
			fmt.Fprintf(stdout, "brw-rw---- 1 root disk %s, %s Jan  1 00:00 %s\n", maj, min, p)
		case fi.Mode.IsDir():
			fmt.Fprintf(stdout, "drwxr-xr-x 2 root root 0 Jan  1 00:00 %s\n", p)
		case fi.Mode&fs.ModeCharDevice != 0:
			maj, min, _ := strings.Cut(fi.Dev, ":")
			fmt.Fprintf(stdout, "crw------- 1 root root %s, %s Jan  1 00:00 %s\n", maj, min, p)
		default:
			fmt.Fprintf(stdout, "-r--r--r-- 1 root root %d Jan  1 00:00 %s\n", fi.Size, p)
		}
		return 0
	}
	names, err := h.ReadDir(ctx, p)
	if err != nil {
		fmt.Fprintf(stderr, "ls: cannot access '%s': No such file or directory\n", p)
		return 2
	}
	for _, name := range names {
		fmt.Fprintln(stdout, name)
	}
	return 0
}

// dd reads sectors of the node's disk: `dd if=P bs=512 skip=N count=M`.
func (sh *shell) dd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	kv := map[string]string{}
	for _, a := range args {
		k, v, _ := strings.Cut(a, "=")
		kv[k] = v
	}
	if _, ok := kv["of"]; ok {
		fmt.Fprintln(stderr, "dd: the lab's dd only reads (of= is not simulated)")
		return 1
	}
	bs, err1 := strconv.ParseInt(kv["bs"], 10, 64)
	skip, err2 := strconv.ParseInt(kv["skip"], 10, 64)
	count, err3 := strconv.ParseInt(kv["count"], 10, 64)
	if kv["if"] == "" || err1 != nil || err2 != nil || err3 != nil || bs != 512 || count < 0 || count > 1<<16 {
		fmt.Fprintln(stderr, "dd: the lab's dd reads if=P bs=512 skip=N count=M")
		return 1
	}
	d, err := (&vhost{n: sh.n}).OpenDisk(ctx, kv["if"], false)
	if err != nil {
		fmt.Fprintf(stderr, "dd: failed to open '%s': %v\n", kv["if"], err)
		return 1
	}
	defer d.Close()
	buf := make([]byte, count*bs)
	if err := d.ReadAt(ctx, buf, skip*bs); err != nil {
		fmt.Fprintf(stderr, "dd: error reading '%s': %v\n", kv["if"], err)
		return 1
	}
	stdout.Write(buf)
	return 0
}

// resolveMarker is a line of the commands host's link-resolving script
// (host.Shell.EvalSymlinks), which the lab answers natively.
const resolveMarker = `while [ -h "$p" ]; do`

// resolveScript answers the link-resolving script: the canonical path of
// the p= it starts with, or exit 66 when it does not exist.
func (sh *shell) resolveScript(ctx context.Context, src string) (int, bool) {
	if !strings.Contains(src, resolveMarker) {
		return 0, false
	}
	head, _, _ := strings.Cut(src, "\n")
	line := ""
	if j := strings.LastIndex(head, "; p="); j >= 0 {
		line = head[j+len("; p="):]
	} else if strings.HasPrefix(head, "p=") {
		line = head[len("p="):]
	}
	p, ok := unquote(line)
	if !ok {
		fmt.Fprintf(sh.stderr, "sh: 1: cannot read p=%s\n", line)
		return 2, true
	}
	real, err := (&vhost{n: sh.n}).EvalSymlinks(ctx, p)
	if err != nil {
		return 66, true
	}
	fmt.Fprintln(sh.stdout, real)
	return 0, true
}

// unquote undoes host.Quote.
func unquote(s string) (string, bool) {
	if !strings.HasPrefix(s, "'") {
		return s, s != "" && !strings.ContainsAny(s, "'\" $`\\")
	}
	var b strings.Builder
	for s != "" {
		if !strings.HasPrefix(s, "'") {
			if strings.HasPrefix(s, `\'`) {
				b.WriteByte('\'')
				s = s[2:]
				continue
			}
			return "", false
		}
		end := strings.IndexByte(s[1:], '\'')
		if end < 0 {
			return "", false
		}
		b.WriteString(s[1 : 1+end])
		s = s[end+2:]
	}
	return b.String(), true
}
