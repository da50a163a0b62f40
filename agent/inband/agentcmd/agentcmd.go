// Package agentcmd is the "reprov agent" command tree: the in-band steps
// run on the node itself, each printing its versioned JSON result
// (docs/inband.md). The same tree is "reprov agent …" in the full binary
// and the whole of the slim reprov-agent binary that the controller pushes
// to a node.
//
// A normal build always runs the steps against the real node (host.Local).
// Only a build with the reprov_fixture tag, made by tests, compiles in the
// fixture host instead; no flag, config key or environment variable can
// select it.
package agentcmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/spf13/cobra"

	"github.com/reprov/reprov/agent/audit"
	"github.com/reprov/reprov/agent/inband/host"
	"github.com/reprov/reprov/agent/inband/steps"
)

// Options configure the command tree.
type Options struct {
	// Use is the command's name: "agent" under reprov (the default),
	// "reprov-agent" as its own binary.
	Use string
	// Version is the build's version, printed by "version".
	Version string
	// Logger receives diagnostics; nil discards them.
	Logger *slog.Logger
	// Host, when set, is the node the steps act on instead of this
	// machine. Only Go code can set it — the lab's SSH server hands each
	// virtual node's Host to the same subcommands; reprov agent and
	// reprov-agent never do, and no flag, config key or environment
	// variable reaches it. With a Host set the tree writes and reads no
	// local files: a local audit log, saved-sector files and --from FILE
	// are refused (the controller keeps those; the lab passes --no-audit,
	// --saved-sha256 and --from -, as the controller does).
	Host func() (host.Host, error)
}

// Exit codes (docs/architecture.md).
const (
	ExitOK          = 0
	ExitFailed      = 1
	ExitUsage       = 2
	ExitInterrupted = 3
)

// UsageError is a usage mistake (exit 2).
type UsageError struct{ Err error }

// Error implements error.
func (e *UsageError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *UsageError) Unwrap() error { return e.Err }

// ExitCode returns ExitUsage.
func (e *UsageError) ExitCode() int { return ExitUsage }

func usagef(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// ExitCode maps an error from the tree to the process exit code.
func ExitCode(ctx context.Context, err error) int {
	if err == nil {
		return ExitOK
	}
	var ue *UsageError
	switch {
	case errors.As(err, &ue):
		return ExitUsage
	case errors.Is(err, context.Canceled) || ctx.Err() != nil:
		return ExitInterrupted
	}
	return ExitFailed
}

// cli is the state shared by the subcommands.
type cli struct {
	opts    Options
	output  string
	newHost func() (host.Host, error)
	log     *slog.Logger
	// noLocalFiles refuses local audit logs and saved-sector files (a Host
	// was given through Options).
	noLocalFiles bool
}

// errNoLocalFiles is returned for a local file asked of an embedded tree.
var errNoLocalFiles = errors.New("this agent keeps no local files: use --no-audit, --saved-sha256 and --from -")

// New returns the agent command tree. Its steps act on the real node (in a
// reprov_fixture test build: on the baked-in fixture), or on opts.Host.
func New(opts Options) *cobra.Command {
	if opts.Host != nil {
		return newTree(opts, opts.Host)
	}
	return newTree(opts, defaultHost)
}

// newTree is New with the Host chosen by the caller (this package's tests).
func newTree(opts Options, newHost func() (host.Host, error)) *cobra.Command {
	if opts.Use == "" {
		opts.Use = "agent"
	}
	c := &cli{opts: opts, newHost: newHost, log: opts.Logger, noLocalFiles: opts.Host != nil}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	root := &cobra.Command{
		Use:   opts.Use,
		Short: "Run reprov's in-band steps on this node (identify, resolve-disk, wipe-boot-sector, …)",
		Long: `Run reprov's in-band steps on the node itself. Each subcommand prints one result;
with -o json it is the versioned JSON of the in-band protocol (docs/inband.md).

Typical by hand, as root on the node (DL360 G7 runbook):
  ` + opts.Use + ` identify -o json --serial CZJ1234ABC --mac 3c:4a:92:11:22:33
  ` + opts.Use + ` resolve-disk
  ` + opts.Use + ` wipe-boot-sector --disk /dev/sda --yes
  ` + opts.Use + ` next-boot pxe
  ` + opts.Use + ` reboot

Exit codes: 0 success; 1 the step failed or refused; 2 usage error; 3 interrupted.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// Overrides any parent's hook: the agent reads no configuration.
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if c.output != "json" && c.output != "text" && c.output != "table" {
				return usagef("--output %q: want json or text", c.output)
			}
			return nil
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &UsageError{Err: err} })
	root.PersistentFlags().StringVarP(&c.output, "output", "o", "text", "output format: text or json (the protocol)")
	root.AddCommand(
		c.identifyCmd(),
		c.resolveDiskCmd(),
		c.wipeCmd(),
		c.restoreCmd(),
		c.nextBootCmd(),
		c.rebootCmd(),
		c.versionCmd(),
	)
	return root
}

func (c *cli) host() (host.Host, error) {
	h, err := c.newHost()
	if err != nil {
		return nil, fmt.Errorf("host: %w", err)
	}
	return h, nil
}

// emit prints a result: JSON on one line, or text.
func (c *cli) emit(w io.Writer, v any, text func(io.Writer)) error {
	if c.output == "json" {
		return writeJSON(w, v)
	}
	text(w)
	return nil
}

// writeJSON writes v on one line, without HTML escapes (commands in
// results stay readable: > and & as they are).
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// fail prints the protocol error (JSON mode) and returns err.
func (c *cli) fail(w io.Writer, step string, err error, detail any) error {
	if c.output == "json" {
		r := steps.NewErrorResult(step, err, detail)
		if ue := (*UsageError)(nil); errors.As(err, &ue) {
			r.Code = steps.CodeUsage
		}
		if errors.Is(err, context.Canceled) {
			r.Code = steps.CodeInterrupted
		}
		writeJSON(w, r)
	}
	return err
}

// auditFlags are the audit options of the destructive subcommands.
type auditFlags struct {
	noFiles bool
	log     *slog.Logger // gets failures to record an outcome
	path    string
	off     bool
	node    string
	run     string
}

func (a *auditFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&a.path, "audit", "", "audit log (JSON lines): intent before the act, outcome after (default: reprov-agent-audit.jsonl in the state dir: $REPROV_STATE_DIR, else /var/lib/reprov as root, else $XDG_STATE_HOME/reprov)")
	cmd.Flags().BoolVar(&a.off, "no-audit", false, "write no local audit log (the controller keeps its own)")
	cmd.Flags().StringVar(&a.node, "node", "", "node name for the audit log and saved files (default: hostname)")
	cmd.Flags().StringVar(&a.run, "run", "", "run id for the audit log")
}

func (a *auditFlags) nodeName() string {
	if a.node != "" {
		return a.node
	}
	if h, err := os.Hostname(); err == nil {
		return h
	}
	return "localhost"
}

// open returns the audit log, or nil with --no-audit.
func (a *auditFlags) open() (*audit.Log, error) {
	if a.off {
		return nil, nil
	}
	if a.noFiles {
		return nil, &UsageError{Err: errNoLocalFiles}
	}
	path := a.path
	if path == "" {
		dir := agentStateDir()
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("audit log: state dir: %w (give --audit FILE)", err)
		}
		path = filepath.Join(dir, "reprov-agent-audit.jsonl")
	}
	l, err := audit.Open(path, a.run, audit.Options{Log: a.log})
	if err != nil {
		return nil, fmt.Errorf("%w (use --no-audit only when the controller audits)", err)
	}
	return l, nil
}

// agentStateDir is where the agent's audit log goes by default, like the
// controller's state dir (docs/configuration.md): $REPROV_STATE_DIR, else
// /var/lib/reprov as root, else $XDG_STATE_HOME/reprov (~/.local/state/reprov).
func agentStateDir() string {
	if d := os.Getenv("REPROV_STATE_DIR"); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/var/lib/reprov"
	}
	if x := os.Getenv("XDG_STATE_HOME"); x != "" {
		return filepath.Join(x, "reprov")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".local", "state", "reprov")
}

// recorder runs one destructive act under the audit log in audit's
// two-step form: the step states its intent from inside (BeforeWrite), once
// it knows what it will write. It follows audit.Log.Do's rule: no write
// without its intent on record; an outcome that cannot be recorded is
// logged and poisons the log, but never changes the act's result.
type recorder struct {
	log     *audit.Log
	node    string
	action  string
	pending *audit.Pending
}

func (r *recorder) intent(ctx context.Context, detail map[string]any) error {
	if r.log == nil {
		return nil
	}
	p, err := r.log.Begin(ctx, audit.Entry{Node: r.node, Action: r.action, Detail: detail})
	if err != nil {
		return fmt.Errorf("nothing was done: %w", err)
	}
	r.pending = &p
	return nil
}

// done records the outcome of the act, if its intent was recorded.
func (r *recorder) done(ctx context.Context, err error, detail map[string]any) {
	if r.pending == nil {
		return
	}
	_ = r.pending.Finish(ctx, err, detail) // logged by the audit log; the act's result stands
}

func (r *recorder) close() {
	if r.log != nil {
		r.log.Close()
	}
}

func (c *cli) identifyCmd() *cobra.Command {
	var exp steps.Expected
	var noModprobe bool
	cmd := &cobra.Command{
		Use:   "identify",
		Short: "Print this node's identity: DMI serial, MACs, boot id, firmware mode, BMC LAN address",
		Long: `Print this node's identity facts. With --serial, --mac or --bmc-address, also
compare them with the inventory's (docs/security.md): every fact both sides have must
match and at least one must match; a mismatch or nothing to compare exits 1.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			h, err := c.host()
			if err != nil {
				return c.fail(out, "identify", err, nil)
			}
			id, err := steps.Identify(cmd.Context(), h, steps.IdentifyOptions{NoModprobe: noModprobe})
			if err != nil {
				return c.fail(out, "identify", err, nil)
			}
			res := identifyOutput{Identity: id}
			if exp.Serial != "" || len(exp.MACs) > 0 || len(exp.BMCAddresses) > 0 {
				if exp.Node == "" {
					exp.Node, _ = os.Hostname()
				}
				res.Check = steps.CompareIdentity(exp, id)
				if err := res.Check.Err(); err != nil {
					return c.fail(out, "identify", err, res)
				}
			}
			return c.emit(out, res, func(w io.Writer) { res.text(w) })
		},
	}
	f := cmd.Flags()
	f.StringVar(&exp.Node, "node", "", "node name for messages")
	f.StringVar(&exp.Serial, "serial", "", "expected DMI serial")
	f.StringSliceVar(&exp.MACs, "mac", nil, "expected MAC (repeatable; at least one must be present)")
	f.StringSliceVar(&exp.BMCAddresses, "bmc-address", nil, "expected BMC LAN IP address (repeatable)")
	f.BoolVar(&noModprobe, "no-modprobe", false, "do not load ipmi_si/ipmi_devintf to read the BMC address")
	return cmd
}

// identifyOutput is the identify result: the identity, and the check when
// expectations were given.
type identifyOutput struct {
	*steps.Identity
	Check *steps.IdentityCheck `json:"check,omitempty"`
}

func (r identifyOutput) text(w io.Writer) {
	id := r.Identity
	serial := id.Serial
	if serial == "" {
		serial = "(unknown: " + id.SerialUnknown + ")"
	}
	fmt.Fprintf(w, "serial:    %s\n", serial)
	for _, n := range id.NICs {
		extra := ""
		if n.PermanentMAC != "" && n.PermanentMAC != n.MAC {
			extra = " (permanent " + n.PermanentMAC + ")"
		}
		fmt.Fprintf(w, "nic:       %-10s %s%s\n", n.Name, n.MAC, extra)
	}
	fmt.Fprintf(w, "boot id:   %s\n", id.BootID)
	fmt.Fprintf(w, "firmware:  %s\n", id.Firmware)
	if id.BMC.Address != "" && id.BMC.Unknown == "" {
		fmt.Fprintf(w, "bmc:       %s (channel %d, via %s)\n", id.BMC.Address, id.BMC.Channel, id.BMC.Via)
	} else {
		fmt.Fprintf(w, "bmc:       (unknown: %s)\n", id.BMC.Unknown)
	}
	if r.Check != nil {
		for _, f := range r.Check.Facts {
			fmt.Fprintf(w, "check:     %-11s %-8s expected %q found %q %s\n", f.Fact, f.Result, f.Expected, f.Found, f.Reason)
		}
		fmt.Fprintf(w, "identity:  ok (%d matched)\n", r.Check.Matched)
	}
}

func (c *cli) resolveDiskCmd() *cobra.Command {
	var disk string
	cmd := &cobra.Command{
		Use:   "resolve-disk",
		Short: "Print the disk a wipe would target (--disk, or the disk holding /boot or /) and the checks it passed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			h, err := c.host()
			if err != nil {
				return c.fail(out, "resolve-disk", err, nil)
			}
			info, err := steps.ResolveDisk(cmd.Context(), h, disk)
			if err != nil {
				var re *steps.DiskRefusedError
				var detail any
				if errors.As(err, &re) && re.Info != nil {
					detail = re.Info
				}
				return c.fail(out, "resolve-disk", err, detail)
			}
			return c.emit(out, info, func(w io.Writer) { diskText(w, info) })
		},
	}
	cmd.Flags().StringVar(&disk, "disk", "", "the configured boot disk (a /dev path, by-path or by-id link); default: the disk holding /boot or /")
	return cmd
}

func diskText(w io.Writer, info *steps.DiskInfo) {
	fmt.Fprintf(w, "disk:      %s (%s, %s)\n", info.Path, info.Name, info.Dev)
	fmt.Fprintf(w, "size:      %d bytes, %d-byte sectors\n", info.SizeBytes, info.SectorSize)
	if info.Model != "" {
		fmt.Fprintf(w, "model:     %s\n", info.Model)
	}
	fmt.Fprintf(w, "why:       %s\n", info.Reason)
	for _, ch := range info.Checks {
		fmt.Fprintf(w, "check:     %-11s ok  %s\n", ch.Name, ch.Detail)
	}
}

// wipeOutput is the wipe-boot-sector result.
type wipeOutput struct {
	*steps.WipeResult
	// SavedFile is where the agent saved the bytes (by hand).
	SavedFile string `json:"saved_file,omitempty"`
	// Saved is the bytes to be zeroed (dry run with --include-data): the
	// controller saves them in its state dir before the real wipe.
	Saved *steps.SavedSectors `json:"saved,omitempty"`
}

func (c *cli) wipeCmd() *cobra.Command {
	var disk, save, savedSHA, scope string
	var yes, dryRun, includeData bool
	af := auditFlags{noFiles: c.noLocalFiles, log: c.log}
	cmd := &cobra.Command{
		Use:   "wipe-boot-sector --disk DISK (--yes | --dry-run)",
		Short: "Save, then zero the boot sector of DISK (MBR: LBA 0; GPT: also both GPT headers and entries), verify",
		Long: `Save, then zero the boot sector of DISK, flush and read back to verify.

MBR disk: LBA 0. GPT disk ("EFI PART" at LBA 1, or a protective MBR, or a backup
header): LBA 0..33 (protective MBR, primary header and entries) and the last 33
sectors (backup entries and header), for 512-byte sectors.

The bytes are saved first (--save, default ./reprov-boot-sector-NAME-TIME.json);
restore-boot-sector --from FILE puts them back. DISK must be a whole, fixed,
writable disk: partitions, loop, device-mapper and md devices, md members,
removable, read-only and tiny devices are refused.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			if disk == "" {
				return c.fail(out, "wipe-boot-sector", usagef("--disk is required (see resolve-disk)"), nil)
			}
			if !yes && !dryRun {
				return c.fail(out, "wipe-boot-sector", usagef("refusing to wipe %s without --yes (or plan it with --dry-run)", disk), nil)
			}
			h, err := c.host()
			if err != nil {
				return c.fail(out, "wipe-boot-sector", err, nil)
			}
			ctx := cmd.Context()
			res := wipeOutput{}
			opts := steps.WipeOptions{Disk: disk, DryRun: dryRun, ExpectSHA256: savedSHA, Scope: scope}
			if dryRun {
				plan, saved, err := steps.PlanWipe(ctx, h, disk, scope)
				if err != nil {
					return c.fail(out, "wipe-boot-sector", err, nil)
				}
				res.WipeResult = &steps.WipeResult{Version: steps.ProtocolVersion, DryRun: true, Disk: plan.Disk,
					Table: plan.Table, TableReason: plan.TableReason, Ranges: plan.Ranges, SavedSHA256: plan.SavedSHA256}
				if includeData {
					saved.Node = af.nodeName()
					saved.Run = af.run
					res.Saved = saved
				}
				return c.emit(out, res, func(w io.Writer) { wipeText(w, res) })
			}
			if savedSHA == "" && c.noLocalFiles {
				return c.fail(out, "wipe-boot-sector", &UsageError{Err: errNoLocalFiles}, nil)
			}
			if savedSHA == "" {
				opts.Save = func(_ context.Context, s *steps.SavedSectors) error {
					s.Node, s.Run = af.nodeName(), af.run
					p := save
					if p == "" {
						p = fmt.Sprintf("reprov-boot-sector-%s-%s.json", strings.ReplaceAll(filepath.Base(s.DiskName), "!", "_"), s.SavedAt.Format("20060102T150405Z"))
					}
					if err := steps.WriteSavedFile(p, s); err != nil {
						return err
					}
					if abs, err := filepath.Abs(p); err == nil {
						p = abs
					}
					res.SavedFile = p
					return nil
				}
			}
			log, err := af.open()
			if err != nil {
				return c.fail(out, "wipe-boot-sector", err, nil)
			}
			rec := &recorder{log: log, node: af.nodeName(), action: "wipe-boot-sector"}
			defer rec.close()
			opts.BeforeWrite = func(p *steps.WipePlan) error {
				return rec.intent(ctx, map[string]any{"disk": p.Disk.Path, "partition_table": p.Table,
					"ranges": p.Ranges, "saved_sha256": p.SavedSHA256, "saved_file": res.SavedFile})
			}
			r, err := steps.WipeBootSector(ctx, h, opts)
			rec.done(ctx, err, wipeDetail(r))
			if err != nil {
				return c.fail(out, "wipe-boot-sector", err, nil)
			}
			res.WipeResult = r
			return c.emit(out, res, func(w io.Writer) { wipeText(w, res) })
		},
	}
	f := cmd.Flags()
	f.StringVar(&disk, "disk", "", "the whole disk to wipe (required)")
	f.StringVar(&scope, "scope", steps.ScopeMBRGPT, "what to zero: mbr+gpt (LBA 0, and both GPT copies on a GPT disk) or mbr (LBA 0 only)")
	f.BoolVar(&yes, "yes", false, "really wipe")
	f.BoolVar(&dryRun, "dry-run", false, "print what would be zeroed, write nothing")
	f.BoolVar(&includeData, "include-data", false, "with --dry-run: include the bytes to be zeroed (base64) in the result")
	f.StringVar(&save, "save", "", "file to save the bytes to before zeroing (default ./reprov-boot-sector-NAME-TIME.json)")
	f.StringVar(&savedSHA, "saved-sha256", "", "the caller saved the bytes already (sha256 from --dry-run): refuse if they changed, save nothing here")
	af.register(cmd)
	return cmd
}

func wipeDetail(r *steps.WipeResult) map[string]any {
	if r == nil {
		return nil
	}
	return map[string]any{"disk": r.Disk.Path, "bytes_zeroed": r.BytesZeroed, "verified": r.Verified}
}

func wipeText(w io.Writer, r wipeOutput) {
	verb := "zeroed"
	if r.DryRun {
		verb = "would zero"
	}
	fmt.Fprintf(w, "disk:      %s (%s)\n", r.Disk.Path, r.Disk.Reason)
	fmt.Fprintf(w, "table:     %s (%s)\n", r.Table, r.TableReason)
	for _, rg := range r.Ranges {
		fmt.Fprintf(w, "%-10s bytes %d..%d (%d bytes): %s\n", verb+":", rg.Offset, rg.End()-1, rg.Length, rg.What)
	}
	fmt.Fprintf(w, "sha256:    %s (of the bytes %s)\n", r.SavedSHA256, map[bool]string{true: "to save", false: "saved"}[r.DryRun])
	if r.SavedFile != "" {
		fmt.Fprintf(w, "saved to:  %s\n", r.SavedFile)
	}
	if !r.DryRun {
		fmt.Fprintf(w, "verified:  %t (read back after flush)\n", r.Verified)
	}
}

func (c *cli) restoreCmd() *cobra.Command {
	var from, disk string
	var yes, dryRun, force bool
	af := auditFlags{noFiles: c.noLocalFiles, log: c.log}
	cmd := &cobra.Command{
		Use:   "restore-boot-sector --from FILE (--yes | --dry-run)",
		Short: "Put saved boot-sector bytes back (from wipe-boot-sector's save file) and verify",
		Long: `Put the bytes a wipe saved back on the disk, flush and read back to verify.
Refused when the disk's size differs from the saved one, or when the saved ranges
now hold something other than zeroes or the saved bytes (a new OS was installed)
unless --force. FILE "-" reads standard input.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			if from == "" {
				return c.fail(out, "restore-boot-sector", usagef("--from is required"), nil)
			}
			if !yes && !dryRun {
				return c.fail(out, "restore-boot-sector", usagef("refusing to write without --yes (or check with --dry-run)"), nil)
			}
			var b []byte
			var err error
			if from == "-" {
				b, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), 64<<20))
			} else {
				if c.noLocalFiles {
					return c.fail(out, "restore-boot-sector", &UsageError{Err: errNoLocalFiles}, nil)
				}
				b, err = os.ReadFile(from)
			}
			if err != nil {
				return c.fail(out, "restore-boot-sector", fmt.Errorf("read saved sectors: %w", err), nil)
			}
			saved, err := steps.ParseSaved(b)
			if err != nil {
				return c.fail(out, "restore-boot-sector", fmt.Errorf("%w: %w", steps.ErrRestoreRefused, err), nil)
			}
			h, err := c.host()
			if err != nil {
				return c.fail(out, "restore-boot-sector", err, nil)
			}
			var log *audit.Log
			if !dryRun {
				if log, err = af.open(); err != nil {
					return c.fail(out, "restore-boot-sector", err, nil)
				}
			}
			rec := &recorder{log: log, node: af.nodeName(), action: "restore-boot-sector"}
			defer rec.close()
			r, err := steps.RestoreBootSector(cmd.Context(), h, steps.RestoreOptions{Saved: saved, Disk: disk, Force: force, DryRun: dryRun,
				BeforeWrite: func(r *steps.RestoreResult) error {
					return rec.intent(cmd.Context(), map[string]any{"disk": r.Disk.Path, "ranges": r.Ranges, "before": r.Before, "sha256": r.RestoredSHA256})
				}})
			var detail map[string]any
			if r != nil {
				detail = map[string]any{"disk": r.Disk.Path, "bytes_written": r.BytesWritten, "verified": r.Verified}
			}
			rec.done(cmd.Context(), err, detail)
			if err != nil {
				return c.fail(out, "restore-boot-sector", err, nil)
			}
			return c.emit(out, r, func(w io.Writer) {
				verb := "restored"
				if r.DryRun {
					verb = "would restore"
				}
				fmt.Fprintf(w, "disk:      %s\n", r.Disk.Path)
				fmt.Fprintf(w, "before:    %s\n", r.Before)
				for _, rg := range r.Ranges {
					fmt.Fprintf(w, "%-10s bytes %d..%d: %s\n", verb+":", rg.Offset, rg.End()-1, rg.What)
				}
				if !r.DryRun {
					fmt.Fprintf(w, "verified:  %t (sha256 %s)\n", r.Verified, r.RestoredSHA256)
				}
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "saved-sectors file from wipe-boot-sector (- for stdin)")
	f.StringVar(&disk, "disk", "", "disk to restore to (default: the saved one)")
	f.BoolVar(&yes, "yes", false, "really write")
	f.BoolVar(&dryRun, "dry-run", false, "check and print, write nothing")
	f.BoolVar(&force, "force", false, "write even over bytes that are neither zero nor the saved ones")
	af.register(cmd)
	return cmd
}

func (c *cli) nextBootCmd() *cobra.Command {
	var opts steps.NextBootOptions
	af := auditFlags{noFiles: c.noLocalFiles, log: c.log}
	cmd := &cobra.Command{
		Use:   "next-boot pxe",
		Short: "Make the next boot a network boot, in-band (IPMI force_pxe via /dev/ipmi0; UEFI: also BootNext)",
		Long: `Make the next boot a network (PXE) boot from inside the running OS.

Legacy: IPMI boot flags "force PXE, next boot only" through /dev/ipmi0 (loading
ipmi_si and ipmi_devintf if needed), with ipmitool where installed, else reprov's
own in-band IPMI; read back to verify (ipmitool exits 0 on failure).
UEFI: efibootmgr BootNext to the network entry, read back, plus the IPMI flags
with the EFI bit.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 || args[0] != "pxe" {
				return usagef("next-boot takes one target: pxe")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			h, err := c.host()
			if err != nil {
				return c.fail(out, "next-boot", err, nil)
			}
			var log *audit.Log
			if !opts.DryRun {
				if log, err = af.open(); err != nil {
					return c.fail(out, "next-boot", err, nil)
				}
			}
			rec := &recorder{log: log, node: af.nodeName(), action: "next-boot"}
			defer rec.close()
			opts.BeforeWrite = func(r *steps.NextBootResult) error {
				d := map[string]any{"mode": r.Mode, "via": r.IPMI.Via, "commands": r.IPMI.Commands}
				if r.EFI != nil {
					d["efi_commands"] = r.EFI.Commands
				}
				return rec.intent(cmd.Context(), d)
			}
			r, err := steps.NextBoot(cmd.Context(), h, opts)
			var detail map[string]any
			if r != nil && r.IPMI != nil {
				detail = map[string]any{"verified": r.IPMI.Verified, "read_back": r.IPMI.ReadBack}
			}
			rec.done(cmd.Context(), err, detail)
			if err != nil {
				return c.fail(out, "next-boot", err, r)
			}
			return c.emit(out, r, func(w io.Writer) { nextBootText(w, r) })
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Mode, "mode", "auto", "boot mode: legacy, uefi or auto (what this boot used)")
	f.StringSliceVar(&opts.MACs, "mac", nil, "the inventory's MACs: the UEFI network entry on one of them wins")
	f.StringVar(&opts.Verify, "verify", steps.VerifyFull, "read-back check: full, device-only or off")
	f.StringVar(&opts.BootFlagTimeout, "boot-flag-timeout", "disable", "disable (ask the BMC to keep the flags past 60 s) or keep")
	f.BoolVar(&opts.NoModprobe, "no-modprobe", false, "do not load ipmi_si/ipmi_devintf")
	f.BoolVar(&opts.DryRun, "dry-run", false, "print what would be done")
	af.register(cmd)
	return cmd
}

func nextBootText(w io.Writer, r *steps.NextBootResult) {
	fmt.Fprintf(w, "mode:      %s (%s)\n", r.Mode, r.ModeReason)
	if r.EFI != nil {
		fmt.Fprintf(w, "efi entry: Boot%s %s\n", r.EFI.Entry.Num, r.EFI.Entry.Description)
		for _, c := range r.EFI.Commands {
			fmt.Fprintf(w, "command:   %s\n", c)
		}
		if !r.DryRun {
			fmt.Fprintf(w, "BootNext:  %s (verified %t)\n", r.EFI.BootNext, r.EFI.Verified)
		}
	}
	fmt.Fprintf(w, "ipmi via:  %s\n", r.IPMI.Via)
	for _, c := range r.IPMI.Commands {
		fmt.Fprintf(w, "command:   %s\n", c)
	}
	if r.IPMI.ReadBack != nil {
		rb := r.IPMI.ReadBack
		fmt.Fprintf(w, "read back: %s: device %s, valid %t, efi %t, persistent %t (verified %t, %s)\n", rb.Raw, rb.Device, rb.Valid, rb.EFI, rb.Persistent, r.IPMI.Verified, r.IPMI.VerifyLevel)
	}
	if r.IPMI.Note != "" {
		fmt.Fprintf(w, "note:      %s\n", r.IPMI.Note)
	}
	if r.IPMI.Error != "" {
		fmt.Fprintf(w, "ipmi:      failed (BootNext is set): %s\n", r.IPMI.Error)
	}
}

func (c *cli) rebootCmd() *cobra.Command {
	var opts steps.RebootOptions
	af := auditFlags{noFiles: c.noLocalFiles, log: c.log}
	cmd := &cobra.Command{
		Use:   "reboot",
		Short: "Reboot this node, detached, after a short delay (systemctl reboot, then reboot -f, then sysrq b)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			h, err := c.host()
			if err != nil {
				return c.fail(out, "reboot", err, nil)
			}
			var log *audit.Log
			if !opts.DryRun {
				if log, err = af.open(); err != nil {
					return c.fail(out, "reboot", err, nil)
				}
			}
			rec := &recorder{log: log, node: af.nodeName(), action: "reboot"}
			defer rec.close()
			opts.BeforeWrite = func(r *steps.RebootResult) error {
				return rec.intent(cmd.Context(), map[string]any{"method": r.Method, "delay_seconds": r.DelaySeconds, "boot_id": r.BootID})
			}
			r, err := steps.Reboot(cmd.Context(), h, opts)
			rec.done(cmd.Context(), err, nil)
			if err != nil {
				return c.fail(out, "reboot", err, nil)
			}
			return c.emit(out, r, func(w io.Writer) {
				verb := "rebooting in"
				if r.DryRun {
					verb = "would reboot in"
				}
				fmt.Fprintf(w, "%s %.0fs: %s\n", verb, r.DelaySeconds, r.Method)
			})
		},
	}
	cmd.Flags().DurationVar(&opts.Delay, "delay", steps.DefaultRebootDelay, "wait this long before rebooting, so the answer gets out")
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "print what would be done")
	af.register(cmd)
	return cmd
}

// VersionInfo is the result of "version".
type VersionInfo struct {
	Version      int    `json:"version"`
	Protocol     int    `json:"protocol"`
	AgentVersion string `json:"agent_version"`
	GOOS         string `json:"goos"`
	GOARCH       string `json:"goarch"`
	Host         string `json:"host"`
}

func (c *cli) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the agent's version and protocol version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			hostKind := "unavailable"
			if h, err := c.newHost(); err == nil {
				hostKind = h.Describe()
			}
			v := VersionInfo{Version: steps.ProtocolVersion, Protocol: steps.ProtocolVersion, AgentVersion: c.opts.Version,
				GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, Host: hostKind}
			return c.emit(cmd.OutOrStdout(), v, func(w io.Writer) {
				fmt.Fprintf(w, "reprov agent %s (protocol %d, %s/%s, host %s)\n", strings.TrimSpace(v.AgentVersion), v.Protocol, v.GOOS, v.GOARCH, v.Host)
			})
		},
	}
}

// Main runs the tree as a program and returns the exit code: errors go to
// stderr (the JSON error result, with -o json, to stdout).
func Main(ctx context.Context, cmd *cobra.Command, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd.SetArgs(args)
	cmd.SetIn(stdin)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	err := cmd.ExecuteContext(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
	}
	return ExitCode(ctx, err)
}
