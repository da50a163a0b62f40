package fleet

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"path"
	"runtime"
	"strconv"
	"strings"
)

// The node's shell: just enough POSIX sh for what reprov's controller
// sends in agent mode "push" — `id -u`, `uname -m`, mkdir, the upload
// (`cat > PATH && chmod 700 PATH`), the sha256sum check (an if/then/else),
// running the pushed agent, `rm -rf`, `;`, `&&`, `||`, `$?` and variables,
// `exit`, redirections to files and /dev/null, `sudo -n` and `sh -c`.
// Anything else is "not found" (exit 127), as on a minimal node. The
// POSIX-commands agent mode's writes (dd of=, ipmitool) are not simulated;
// its reads, which a plan sends to a push-mode node, are (shell_read.go).

// tokKind is a shell token's kind.
type tokKind uint8

const (
	tWord tokKind = iota
	tOp
)

type token struct {
	kind   tokKind
	s      string // the word, with $-expansions marked; or the operator
	quoted bool   // a word with quotes in it is never a reserved word
	fd     int    // a redirection's file descriptor
}

// varMark brackets a variable to expand when the command runs.
const varMark = "\x00"

// errSyntax is a shell syntax error (exit 2).
var errSyntax = errors.New("syntax error")

func lex(src string) ([]token, error) {
	var toks []token
	var w strings.Builder
	inWord, quoted := false, false
	flush := func() {
		if inWord {
			toks = append(toks, token{kind: tWord, s: w.String(), quoted: quoted})
		}
		w.Reset()
		inWord, quoted = false, false
	}
	isName := func(c byte) bool {
		return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
	}
	// dollar reads a $-expansion at src[i] ('$') and returns the next index.
	dollar := func(i int) int {
		if i+1 < len(src) && (src[i+1] == '?' || src[i+1] == '$') {
			w.WriteString(varMark + string(src[i+1]) + varMark)
			return i + 2
		}
		j := i + 1
		for j < len(src) && isName(src[j]) {
			j++
		}
		if j == i+1 {
			w.WriteByte('$')
			return i + 1
		}
		w.WriteString(varMark + src[i+1:j] + varMark)
		return j
	}
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == ' ' || c == '\t':
			flush()
			i++
		case c == '\n' || c == ';':
			flush()
			toks = append(toks, token{kind: tOp, s: ";"})
			i++
		case c == '#' && !inWord:
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == '\'':
			inWord, quoted = true, true
			j := strings.IndexByte(src[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("%w: unterminated quoted string", errSyntax)
			}
			w.WriteString(src[i+1 : i+1+j])
			i += j + 2
		case c == '"':
			inWord, quoted = true, true
			i++
			for {
				if i >= len(src) {
					return nil, fmt.Errorf("%w: unterminated quoted string", errSyntax)
				}
				d := src[i]
				if d == '"' {
					i++
					break
				}
				if d == '\\' && i+1 < len(src) && strings.IndexByte("$`\"\\\n", src[i+1]) >= 0 {
					w.WriteByte(src[i+1])
					i += 2
					continue
				}
				if d == '$' {
					i = dollar(i)
					continue
				}
				w.WriteByte(d)
				i++
			}
		case c == '\\':
			inWord, quoted = true, true
			if i+1 < len(src) && src[i+1] != '\n' {
				w.WriteByte(src[i+1])
			}
			i += 2
		case c == '$':
			inWord = true
			i = dollar(i)
		case c == '&' || c == '|':
			flush()
			if i+1 < len(src) && src[i+1] == c {
				toks = append(toks, token{kind: tOp, s: string([]byte{c, c})})
				i += 2
			} else {
				toks = append(toks, token{kind: tOp, s: string(c)})
				i++
			}
		case c == '>' || c == '<':
			fd := 1
			if c == '<' {
				fd = 0
			}
			if inWord && !quoted {
				if n, err := strconv.Atoi(w.String()); err == nil {
					fd = n
					w.Reset()
					inWord = false
				}
			}
			flush()
			op := string(c)
			i++
			if c == '>' && i < len(src) && (src[i] == '>' || src[i] == '&') {
				op += string(src[i])
				i++
			}
			toks = append(toks, token{kind: tOp, s: op, fd: fd})
		default:
			inWord = true
			w.WriteByte(c)
			i++
		}
	}
	flush()
	return toks, nil
}

// Parsed commands.
type (
	// item is a command in a list, with the connector before it ("",
	// ";", "&&" or "||").
	item struct {
		conn string
		cmd  any // *simpleCmd or *ifCmd
	}
	simpleCmd struct {
		words  []string
		redirs []redir
	}
	redir struct {
		fd     int
		op     string // ">", ">>", "<", ">&"
		target string
	}
	ifCmd struct {
		cond, then, els []item
	}
)

type parser struct {
	toks []token
	pos  int
}

func parse(src string) ([]item, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	list, err := p.list()
	if err != nil {
		return nil, err
	}
	if p.pos < len(p.toks) {
		return nil, fmt.Errorf("%w near %q", errSyntax, p.toks[p.pos].s)
	}
	return list, nil
}

func (p *parser) peek() *token {
	if p.pos < len(p.toks) {
		return &p.toks[p.pos]
	}
	return nil
}

func (p *parser) reserved(words ...string) bool {
	t := p.peek()
	if t == nil || t.kind != tWord || t.quoted {
		return false
	}
	for _, w := range words {
		if t.s == w {
			return true
		}
	}
	return false
}

// list parses commands up to one of the stop words (then, else, fi).
func (p *parser) list(stop ...string) ([]item, error) {
	var items []item
	conn := ""
	for {
		for t := p.peek(); t != nil && t.kind == tOp && t.s == ";"; t = p.peek() {
			p.pos++
			if conn == "" || conn == ";" {
				conn = ";"
			}
		}
		t := p.peek()
		if t == nil || p.reserved(stop...) {
			return items, nil
		}
		if len(items) > 0 && conn == "" {
			return nil, fmt.Errorf("%w near %q", errSyntax, t.s)
		}
		cmd, err := p.command()
		if err != nil {
			return nil, err
		}
		items = append(items, item{conn: conn, cmd: cmd})
		conn = ""
		if t := p.peek(); t != nil && t.kind == tOp {
			switch t.s {
			case "&&", "||", ";":
				conn = t.s
				p.pos++
			case "|", "&":
				return nil, fmt.Errorf("%w: %q is not supported by the lab's shell", errSyntax, t.s)
			default:
				return nil, fmt.Errorf("%w near %q", errSyntax, t.s)
			}
		}
	}
}

func (p *parser) command() (any, error) {
	if p.reserved("if") {
		p.pos++
		cond, err := p.list("then")
		if err != nil {
			return nil, err
		}
		if !p.reserved("then") {
			return nil, fmt.Errorf("%w: if without then", errSyntax)
		}
		p.pos++
		c := &ifCmd{cond: cond}
		if c.then, err = p.list("else", "fi"); err != nil {
			return nil, err
		}
		if p.reserved("else") {
			p.pos++
			if c.els, err = p.list("fi"); err != nil {
				return nil, err
			}
		}
		if !p.reserved("fi") {
			return nil, fmt.Errorf("%w: if without fi", errSyntax)
		}
		p.pos++
		return c, nil
	}
	c := &simpleCmd{}
	for t := p.peek(); t != nil; t = p.peek() {
		if t.kind == tWord {
			c.words = append(c.words, t.s)
			p.pos++
			continue
		}
		switch t.s {
		case ">", ">>", "<", ">&":
			p.pos++
			tt := p.peek()
			if tt == nil || tt.kind != tWord {
				return nil, fmt.Errorf("%w: redirection without a target", errSyntax)
			}
			p.pos++
			c.redirs = append(c.redirs, redir{fd: t.fd, op: t.s, target: tt.s})
			continue
		}
		break
	}
	if len(c.words) == 0 && len(c.redirs) == 0 {
		return nil, fmt.Errorf("%w near %q", errSyntax, p.peek().s)
	}
	return c, nil
}

// shell runs parsed commands on a node.
type shell struct {
	n      *Node
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	vars   map[string]string
	last   int
	exited bool
}

// runShell runs one command line (an SSH exec request) and returns its
// exit status.
func (n *Node) runShell(ctx context.Context, cmdline string, stdin io.Reader, stdout, stderr io.Writer) int {
	sh := &shell{n: n, stdin: stdin, stdout: stdout, stderr: stderr, vars: map[string]string{}}
	return sh.run(ctx, cmdline)
}

func (sh *shell) run(ctx context.Context, src string) int {
	if status, ok := sh.resolveScript(ctx, src); ok {
		return status
	}
	list, err := parse(src)
	if err != nil {
		fmt.Fprintf(sh.stderr, "sh: 1: %v\n", err)
		return 2
	}
	return sh.runList(ctx, list)
}

func (sh *shell) runList(ctx context.Context, list []item) int {
	status := sh.last
	for _, it := range list {
		if sh.exited {
			break
		}
		switch it.conn {
		case "&&":
			if status != 0 {
				continue
			}
		case "||":
			if status == 0 {
				continue
			}
		}
		if ctx.Err() != nil {
			return 130
		}
		switch c := it.cmd.(type) {
		case *ifCmd:
			if s := sh.runList(ctx, c.cond); sh.exited {
				status = s
			} else if s == 0 {
				status = sh.runList(ctx, c.then)
			} else if c.els != nil {
				status = sh.runList(ctx, c.els)
			} else {
				status = 0
			}
		case *simpleCmd:
			status = sh.simple(ctx, c)
		}
		sh.last = status
	}
	return status
}

func (sh *shell) expand(w string) string {
	if !strings.Contains(w, varMark) {
		return w
	}
	parts := strings.Split(w, varMark)
	var b strings.Builder
	for i, p := range parts {
		if i%2 == 0 {
			b.WriteString(p)
			continue
		}
		switch p {
		case "?":
			b.WriteString(strconv.Itoa(sh.last))
		case "$":
			b.WriteString("4242")
		case "HOME":
			b.WriteString("/root")
		case "USER", "LOGNAME":
			b.WriteString("root")
		default:
			b.WriteString(sh.vars[p])
		}
	}
	return b.String()
}

func isAssignment(w string) (string, string, bool) {
	name, val, ok := strings.Cut(w, "=")
	if !ok || name == "" || strings.Contains(name, varMark) {
		return "", "", false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return "", "", false
		}
	}
	return name, val, true
}

// simple runs one simple command with its redirections.
func (sh *shell) simple(ctx context.Context, c *simpleCmd) int {
	words := make([]string, 0, len(c.words))
	assigning := true
	for _, w := range c.words {
		if assigning {
			if name, val, ok := isAssignment(w); ok {
				sh.vars[name] = sh.expand(val)
				continue
			}
			assigning = false
		}
		words = append(words, sh.expand(w))
	}
	stdin, stdout, stderr := sh.stdin, sh.stdout, sh.stderr
	var sink *fileSink
	for _, r := range c.redirs {
		target := sh.expand(r.target)
		switch r.op {
		case "<":
			if target == "/dev/null" {
				stdin = strings.NewReader("")
				continue
			}
			f := sh.n.files.get(target)
			if f == nil || f.data == nil {
				fmt.Fprintf(sh.stderr, "sh: 1: cannot open %s: No such file\n", target)
				return 2
			}
			stdin = bytes.NewReader(f.data)
		case ">&":
			var w io.Writer
			switch target {
			case "1":
				w = stdout
			case "2":
				w = stderr
			default:
				fmt.Fprintf(sh.stderr, "sh: 1: %s: Bad file descriptor\n", target)
				return 2
			}
			if r.fd == 2 {
				stderr = w
			} else {
				stdout = w
			}
		case ">", ">>":
			var w io.Writer
			if target == "/dev/null" {
				w = io.Discard
			} else {
				if !sh.n.files.isDir(path.Dir(path.Clean(target))) {
					fmt.Fprintf(sh.stderr, "sh: 1: cannot create %s: Directory nonexistent\n", target)
					return 2
				}
				sink = &fileSink{h: sha256.New(), path: target}
				w = sink
			}
			if r.fd == 2 {
				stderr = w
			} else {
				stdout = w
			}
		}
	}
	status := 0
	if len(words) > 0 {
		status = sh.exec(ctx, words, stdin, stdout, stderr)
	}
	if sink != nil {
		if err := sink.commit(sh.n.files); err != nil {
			fmt.Fprintf(sh.stderr, "sh: 1: cannot create %s: %v\n", sink.path, err)
			return 2
		}
	}
	return status
}

// fileSink is a redirection into a file of the node.
type fileSink struct {
	h    hash.Hash
	path string
	size int64
	data []byte
	big  bool
}

func (f *fileSink) Write(p []byte) (int, error) {
	f.h.Write(p)
	f.size += int64(len(p))
	if !f.big {
		if f.size > maxKeptFile {
			f.big, f.data = true, nil
		} else {
			f.data = append(f.data, p...)
		}
	}
	return len(p), nil
}

func (f *fileSink) commit(t *tmpFiles) error {
	tf := &tmpFile{size: f.size, data: f.data}
	if !f.big && tf.data == nil {
		tf.data = []byte{}
	}
	copy(tf.sha256[:], f.h.Sum(nil))
	return t.put(f.path, tf)
}

// unameMachine is what `uname -m` says: the machine the lab runs on, so
// a reprov-agent built for it passes the controller's architecture check.
func unameMachine() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	case "386":
		return "i686"
	case "arm":
		return "armv7l"
	}
	return runtime.GOARCH
}

// commandPath is what `command -v name` prints for the commands the
// node has (the shell's builtins print their name).
func commandPath(name string) (string, bool) {
	switch name {
	case "cat", "chmod", "mkdir", "rm", "sha256sum", "uname", "id", "sudo", "sync":
		return "/usr/bin/" + name, true
	case "sh":
		return "/bin/sh", true
	case "echo", "true", "false", "exit", "umask", "command":
		return name, true
	}
	return "", false
}

// exec runs one command.
func (sh *shell) exec(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	name := args[0]
	n := sh.n
	switch name {
	case "true", "sync", ":":
		return 0
	case "false":
		return 1
	case "umask":
		return 0
	case "exit":
		sh.exited = true
		if len(args) > 1 {
			v, err := strconv.Atoi(args[1])
			if err != nil {
				fmt.Fprintf(stderr, "sh: 1: exit: Illegal number: %s\n", args[1])
				return 2
			}
			return v & 0xff
		}
		return sh.last
	case "echo":
		rest := args[1:]
		nl := "\n"
		if len(rest) > 0 && rest[0] == "-n" {
			rest, nl = rest[1:], ""
		}
		fmt.Fprint(stdout, strings.Join(rest, " ")+nl)
		return 0
	case "id":
		switch {
		case len(args) == 1:
			fmt.Fprintln(stdout, "uid=0(root) gid=0(root) groups=0(root)")
		case args[1] == "-u" || args[1] == "-g":
			fmt.Fprintln(stdout, "0")
		case args[1] == "-un":
			fmt.Fprintln(stdout, "root")
		default:
			fmt.Fprintf(stderr, "id: invalid option -- '%s'\n", strings.TrimLeft(args[1], "-"))
			return 1
		}
		return 0
	case "uname":
		out := "Linux"
		if len(args) > 1 {
			switch args[1] {
			case "-m":
				out = unameMachine()
			case "-r":
				out = "6.1.0-lab"
			case "-n":
				out = n.name
			case "-s":
			case "-a":
				out = "Linux " + n.name + " 6.1.0-lab #1 SMP reprov lab " + unameMachine() + " GNU/Linux"
			default:
				fmt.Fprintf(stderr, "uname: invalid option -- '%s'\n", strings.TrimLeft(args[1], "-"))
				return 1
			}
		}
		fmt.Fprintln(stdout, out)
		return 0
	case "command":
		if len(args) == 3 && args[1] == "-v" {
			if p, ok := commandPath(args[2]); ok {
				fmt.Fprintln(stdout, p)
				return 0
			}
			if f := n.files.get(args[2]); f != nil && f.exec {
				fmt.Fprintln(stdout, args[2])
				return 0
			}
			if args[2] == "efibootmgr" && n.efi != nil {
				fmt.Fprintln(stdout, "/usr/bin/efibootmgr")
				return 0
			}
			return 1
		}
		fmt.Fprintln(stderr, "sh: 1: command: only command -v NAME is supported")
		return 2
	case "sudo":
		rest := args[1:]
		for len(rest) > 0 && strings.HasPrefix(rest[0], "-") {
			rest = rest[1:]
		}
		if len(rest) == 0 {
			fmt.Fprintln(stderr, "usage: sudo -n command")
			return 1
		}
		return sh.exec(ctx, rest, stdin, stdout, stderr)
	case "sh", "/bin/sh", "bash", "/bin/bash":
		if len(args) >= 3 && args[1] == "-c" {
			sub := &shell{n: n, stdin: stdin, stdout: stdout, stderr: stderr, vars: map[string]string{}}
			return sub.run(ctx, args[2])
		}
		fmt.Fprintln(stderr, "sh: only sh -c SCRIPT is supported")
		return 2
	case "mkdir":
		return sh.mkdir(args[1:], stderr)
	case "chmod":
		return sh.chmod(args[1:], stderr)
	case "rm":
		for _, a := range args[1:] {
			if strings.HasPrefix(a, "-") {
				continue
			}
			n.files.remove(a)
		}
		return 0
	case "cat":
		return sh.cat(ctx, args[1:], stdin, stdout, stderr)
	case "sha256sum":
		status := 0
		for _, a := range args[1:] {
			if a == "--" {
				continue
			}
			f := n.files.get(a)
			if f == nil {
				fmt.Fprintf(stderr, "sha256sum: %s: No such file or directory\n", a)
				status = 1
				continue
			}
			fmt.Fprintf(stdout, "%x  %s\n", f.sha256, a)
		}
		return status
	case "efibootmgr", "/usr/bin/efibootmgr":
		if n.efi != nil {
			out, err := (&vhost{n: n}).Run(ctx, "efibootmgr", args[1:]...)
			stdout.Write(out)
			if err != nil {
				fmt.Fprintln(stderr, err)
				return 1
			}
			return 0
		}
	}
	if status, ok := sh.readCommand(ctx, args, stdout, stderr); ok {
		return status
	}
	if strings.Contains(name, "/") {
		f := n.files.get(name)
		if f == nil {
			fmt.Fprintf(stderr, "sh: 1: %s: not found\n", name)
			return 127
		}
		if !f.exec {
			fmt.Fprintf(stderr, "sh: 1: %s: Permission denied\n", name)
			return 126
		}
		// Whatever was pushed and made executable runs as reprov-agent.
		return n.runAgent(ctx, args[1:], stdin, stdout, stderr)
	}
	fmt.Fprintf(stderr, "sh: 1: %s: not found\n", name)
	return 127
}

func (sh *shell) mkdir(args []string, stderr io.Writer) int {
	parents := false
	var dirs []string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "-m":
			i++
		case a == "-p":
			parents = true
		case strings.HasPrefix(a, "-m"):
		case a == "--":
		default:
			dirs = append(dirs, a)
		}
	}
	status := 0
	for _, d := range dirs {
		err := sh.n.files.mkdir(d)
		switch {
		case err == nil:
		case errors.Is(err, fs.ErrExist) && parents:
		case errors.Is(err, fs.ErrExist):
			fmt.Fprintf(stderr, "mkdir: cannot create directory '%s': File exists\n", d)
			status = 1
		default:
			fmt.Fprintf(stderr, "mkdir: cannot create directory '%s': No such file or directory\n", d)
			status = 1
		}
	}
	return status
}

func (sh *shell) chmod(args []string, stderr io.Writer) int {
	if len(args) < 2 {
		fmt.Fprintln(stderr, "chmod: missing operand")
		return 1
	}
	mode := args[0]
	exec := strings.ContainsAny(mode, "1357") || strings.Contains(mode, "x")
	status := 0
	for _, p := range args[1:] {
		if p == "--" {
			continue
		}
		if !sh.n.files.chmod(p, exec) {
			fmt.Fprintf(stderr, "chmod: cannot access '%s': No such file or directory\n", p)
			status = 1
		}
	}
	return status
}

func (sh *shell) cat(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var paths []string
	for _, a := range args {
		if a != "--" {
			paths = append(paths, a)
		}
	}
	if len(paths) == 0 {
		paths = []string{"-"}
	}
	status := 0
	for _, p := range paths {
		if p == "-" {
			if _, err := io.Copy(stdout, stdin); err != nil {
				fmt.Fprintf(stderr, "cat: -: %v\n", err)
				status = 1
			}
			continue
		}
		if f := sh.n.files.get(p); f != nil {
			if f.data == nil {
				fmt.Fprintf(stderr, "cat: %s: the lab keeps only the size and sha256 of files over %d bytes\n", p, maxKeptFile)
				status = 1
				continue
			}
			stdout.Write(f.data)
			continue
		}
		b, err := (&vhost{n: sh.n}).ReadFile(ctx, p)
		if err != nil {
			fmt.Fprintf(stderr, "cat: %s: No such file or directory\n", p)
			status = 1
			continue
		}
		stdout.Write(b)
	}
	return status
}
