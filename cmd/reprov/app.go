package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/spf13/cobra"
	yaml "go.yaml.in/yaml/v3"

	"github.com/reprov/reprov/inventory"
)

// app is what every command's run function gets: streams, configuration
// and logger. Commands are written as an options struct plus a
// run(ctx, *app, opts) function, so tests call them without cobra.
type app struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string

	// configPath is the --config flag.
	configPath string
	// cfg is loaded in the root command's PersistentPreRunE.
	cfg *Config
	// cfgFile is the config file that was read ("" when none).
	cfgFile string
	log     *slog.Logger
	// logOut is where log records go: stderr, or a progress display's log
	// writer (lines above the bars) while one is shown.
	logOut *switchWriter
	// noHeaders is --no-headers: tables without their header line.
	noHeaders bool
}

// newApp returns an app writing to the given streams.
func newApp(stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) *app {
	// Progress, logs and results are written from many goroutines.
	stdout, stderr = &lockedWriter{w: stdout}, &lockedWriter{w: stderr}
	logOut := &switchWriter{w: stderr}
	return &app{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv, logOut: logOut,
		log: slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelInfo}))}
}

// switchWriter writes to a writer that can be changed while in use.
type switchWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *switchWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	w := s.w
	s.mu.Unlock()
	return w.Write(p)
}

// set makes w the destination and returns the previous one.
func (s *switchWriter) set(w io.Writer) io.Writer {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.w
	s.w = w
	return old
}

// lockedWriter serializes writes to a stream shared by goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Fd passes on the stream's file descriptor, so that the progress display
// sees a terminal through the lock (an invalid descriptor otherwise).
func (l *lockedWriter) Fd() uintptr {
	if f, ok := l.w.(interface{ Fd() uintptr }); ok {
		return f.Fd()
	}
	return ^uintptr(0)
}

// run executes the reprov command line and returns the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	a := newApp(stdin, stdout, stderr, getenv)
	root := newRootCmd(a)
	markUsageErrors(root)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err != nil && strings.HasPrefix(err.Error(), "unknown command") {
		err = usageError(err) // cobra reports it as a plain error
	}
	if err != nil && !errors.Is(err, errSomeFailed) {
		fmt.Fprintf(stderr, "reprov: %s\n", dedupeChain(err.Error()))
	}
	return exitCode(ctx, err)
}

// markUsageErrors makes every positional-argument error of the tree a
// usage error (exit 2), like flag errors.
func markUsageErrors(cmd *cobra.Command) {
	if check := cmd.Args; check != nil {
		cmd.Args = func(c *cobra.Command, args []string) error {
			if err := check(c, args); err != nil {
				return usageError(err)
			}
			return nil
		}
	}
	for _, sub := range cmd.Commands() {
		markUsageErrors(sub)
	}
}

// setup loads the configuration and sets up logging. It runs before every
// command that needs configuration.
func (a *app) setup(cmd *cobra.Command) error {
	cfg, path, err := loadConfig(a.configPath, cmd.Flags(), a.getenv)
	if err != nil {
		return usageError(err)
	}
	a.cfg, a.cfgFile = cfg, path
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	a.log = slog.New(slog.NewTextHandler(a.logOut, &slog.HandlerOptions{Level: level}))
	return nil
}

// loadInventory loads the configured inventory. Problems are configuration
// errors (exit 2); warnings are logged.
func (a *app) loadInventory() (*inventory.Inventory, error) {
	if a.cfg.Inventory == "" {
		return nil, usagef("no inventory: give --inventory FILE, set REPROV_INVENTORY, or set inventory in the config file")
	}
	inv, warnings, err := inventory.Load(a.cfg.Inventory)
	a.printWarnings(warnings)
	if err != nil {
		return nil, usageError(err)
	}
	return inv, nil
}

// printWarnings writes inventory warnings to stderr, one per line, in the
// same file:line: node: field form as errors.
func (a *app) printWarnings(warnings []inventory.Warning) {
	for _, w := range warnings {
		fmt.Fprintf(a.stderr, "warning: %s\n", w.String())
	}
}

// selection holds the node-selection flags shared by every command that
// acts on nodes: names (shell globs) as arguments, --rack, --selector, --all.
type selection struct {
	Names    []string
	Racks    []string
	Selector string
	All      bool
}

// addSelectionFlags registers --rack, --selector and --all on cmd.
func addSelectionFlags(cmd *cobra.Command, s *selection) {
	cmd.Flags().StringSliceVar(&s.Racks, "rack", nil, "select the nodes of these racks: r01,r02 (repeatable)")
	cmd.Flags().StringVarP(&s.Selector, "selector", "l", "", "label selector, e.g. role=web,model!=dl360g7")
	cmd.Flags().BoolVar(&s.All, "all", false, "select every node of the inventory")
}

// selectNodes loads the inventory and returns the selected nodes.
func (a *app) selectNodes(s selection) ([]inventory.Node, error) {
	inv, err := a.loadInventory()
	if err != nil {
		return nil, err
	}
	nodes, err := inv.Select(inventory.Selector{Names: s.Names, Racks: s.Racks, Labels: s.Selector, All: s.All})
	if err != nil {
		return nil, usageError(err)
	}
	return nodes, nil
}

// writeJSON writes v to stdout as indented JSON, or as YAML under -o yaml.
// Times that were never set (Go's zero time) are null in JSON and left
// out in YAML, never "0001-01-01T00:00:00Z".
func (a *app) writeJSON(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if a.cfg != nil && a.cfg.Output == "yaml" {
		var doc yaml.Node
		if err := yaml.Unmarshal(b, &doc); err != nil {
			return fmt.Errorf("yaml output: %w", err)
		}
		dropZeroTimes(&doc)
		enc := yaml.NewEncoder(a.stdout)
		enc.SetIndent(2)
		if err := enc.Encode(&doc); err != nil {
			return err
		}
		return enc.Close()
	}
	b = bytes.ReplaceAll(b, []byte(`"`+zeroTime+`"`), []byte("null"))
	_, err = a.stdout.Write(append(b, '\n'))
	return err
}

// zeroTime is how encoding/json writes a time.Time that was never set.
const zeroTime = "0001-01-01T00:00:00Z"

// dropZeroTimes removes the mapping entries whose value is the zero time,
// and turns the JSON flow style of the parsed tree into block YAML.
func dropZeroTimes(n *yaml.Node) {
	n.Style &^= yaml.FlowStyle
	if n.Kind == yaml.MappingNode {
		kept := n.Content[:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			if v := n.Content[i+1]; v.Kind == yaml.ScalarNode && v.Value == zeroTime {
				continue
			}
			kept = append(kept, n.Content[i], n.Content[i+1])
		}
		n.Content = kept
	}
	for _, c := range n.Content {
		if c.Kind == yaml.ScalarNode && c.Tag == "!!str" {
			c.Style &^= yaml.DoubleQuotedStyle // quoted only where YAML needs it
		}
		dropZeroTimes(c)
	}
}

// jsonOutput reports whether structured output (-o json or -o yaml) was
// asked for; writeJSON then writes the chosen format.
func (a *app) jsonOutput() bool {
	return a.cfg != nil && (a.cfg.Output == "json" || a.cfg.Output == "yaml")
}

// wideOutput reports whether -o wide was asked for: the table with every
// column and no shortened cell.
func (a *app) wideOutput() bool { return a.cfg != nil && a.cfg.Output == "wide" }

// table writes rows under a header, aligned; --no-headers leaves the
// header out. Empty cells read "-", so that every row splits into the
// same number of fields.
func (a *app) table(header []string, rows [][]string) error {
	// tabwriter writes every cell on its own: buffered, a 256-row table
	// is a few writes to stdout instead of thousands.
	out := bufio.NewWriter(a.stdout)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	if !a.noHeaders {
		fmt.Fprintln(tw, strings.Join(header, "\t"))
	}
	for _, r := range rows {
		for i := range r {
			if r[i] == "" {
				r[i] = "-"
			}
		}
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return out.Flush()
}

// ensureStateDir creates the state dir (0700) and returns it.
func (a *app) ensureStateDir() (string, error) {
	if err := os.MkdirAll(a.cfg.StateDir, 0o700); err != nil {
		return "", usagef("state dir: %w", err)
	}
	return a.cfg.StateDir, nil
}
