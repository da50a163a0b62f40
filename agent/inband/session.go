// Package inband is the controller side of reprov's in-band step (the
// HP DL360 G7 path, docs/architecture.md): given a node, an SSH connection and the
// audit log, a Session proves the node is the inventory's (identify), finds
// its boot disk (resolve-disk), saves and zeroes the boot sector, sets the
// next boot to the network in-band and reboots it — or, in plan mode, says
// exactly what it would do.
//
// On the node the steps run either in a slim reprov-agent binary pushed for
// the session (agent mode "push", the default: checksum verified, removed
// afterwards) or, where the operator forbids copying binaries (agent mode
// "commands"), as POSIX commands (cat, ls, dd, ipmitool, efibootmgr) that
// the controller runs itself through the same step code. Either way every
// destructive step is written to the audit log before it runs.
package inband

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/reprov/reprov/agent/audit"
	"github.com/reprov/reprov/agent/inband/host"
	"github.com/reprov/reprov/agent/inband/sshx"
	"github.com/reprov/reprov/agent/inband/steps"
	"github.com/reprov/reprov/inventory"
)

// Agent modes (inventory ssh.agent).
const (
	ModePush     = "push"
	ModeCommands = "commands"
)

// Audit actions recorded by a Session.
const (
	ActionIdentify    = "inband.identify"
	ActionResolveDisk = "inband.resolve-disk"
	ActionPushAgent   = "inband.push-agent"
	ActionWipe        = "inband.wipe-boot-sector"
	ActionRestore     = "inband.restore-boot-sector"
	ActionNextBoot    = "inband.next-boot"
	ActionReboot      = "inband.reboot"
)

// Conn runs shell command lines on the node with root privileges (sudo -n
// when the login user is not root). *sshx.Client satisfies it. A non-zero
// exit is a *host.ExitError; a dropped connection matches
// sshx.ErrConnectionLost.
type Conn interface {
	Exec(ctx context.Context, cmd string, stdin io.Reader) ([]byte, error)
}

// Resolver resolves a BMC host name for the identity check.
type Resolver interface {
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// Config configures a Session.
type Config struct {
	// StateDir is the controller's state directory: saved boot sectors go
	// to SavedAttemptPath(StateDir, NODE, Run, Attempt), or SavedPath when
	// Attempt is empty. Required to wipe.
	StateDir string
	// Run identifies the run (audit records, saved files); default a
	// timestamp.
	Run string
	// Attempt makes the saved-sector file of this session unique within
	// the run (e.g. the job's attempt number), so that a second pass never
	// overwrites the copy of the first: SavedAttemptPath, refused if it
	// exists. Empty: SavedPath, an earlier file there being moved aside to
	// RUN.<mtime>.json first (the behaviour before attempts).
	Attempt string
	// Audit is the two-phase audit log. Required to wipe.
	Audit *audit.Log
	// Job is the store's node job this session works for: it tags the
	// audit records (0: an ad-hoc command).
	Job int64
	// Fence, when set, is called right before the intent of every act that
	// writes to the node (wipe, next-boot, reboot; not the restore that
	// undoes a failed unit): an error stops there, nothing is written
	// (audit.Entry.Fence; the engine checks its lease here).
	Fence func(ctx context.Context) error
	// Logger; nil discards.
	Logger *slog.Logger
	// AgentBinary is the reprov-agent binary to push (agent mode push):
	// a Linux build for the node's architecture. Empty: FindAgentBinary.
	AgentBinary string
	// AgentFiles, when set, keeps the agent binaries read once and shared
	// by every session given the same one (nil: each session reads its
	// own copy).
	AgentFiles *AgentFiles
	// Layout makes the commands path — and, in push mode, the read-only
	// commands of Plan — act on a lab or test stand-in node (see
	// host.Layout). Always nil for real nodes.
	Layout *host.Layout
	// RebootDelay is how long the node waits before rebooting (default 2 s).
	RebootDelay time.Duration
	// UnitTimeout bounds wipe → next-boot → reboot, which runs to its end
	// even when ctx is cancelled (default 3 min).
	UnitTimeout time.Duration
	// BeforeUnit, when set, is called by Reinstall right before the wipe's
	// audit intent, after identify and the save: an error stops the
	// reinstall there, with nothing written (the engine checks Ctrl-C, an
	// operator's cancel and its lease here).
	BeforeUnit func(ctx context.Context) error
	// Resolver resolves BMC host names (default net.DefaultResolver).
	Resolver Resolver
	// Wipe is what to write to the boot disk (the playbook's wipe).
	Wipe WipePolicy
}

// Wipe policies (playbook wipe.boot_sector and wipe.uefi).
const (
	WipeNone     = "none"
	WipeMBR      = steps.ScopeMBR
	WipeMBRGPT   = steps.ScopeMBRGPT
	UEFIBootNext = "bootnext"
	UEFIWipe     = "wipe"
)

// WipePolicy is what the in-band step writes to the boot disk, by how the
// running OS booted. The zero value wipes LBA 0 — and both GPT copies on a
// GPT disk — on legacy and UEFI nodes alike.
type WipePolicy struct {
	// BootSector applies to a legacy-booted node: none, mbr or mbr+gpt
	// ("" is mbr+gpt).
	BootSector string
	// UEFI applies to a UEFI-booted node: bootnext (write nothing, set
	// BootNext) or wipe (BootSector, and BootNext) ("" is wipe).
	UEFI string
}

func (w WipePolicy) validate() error {
	switch w.BootSector {
	case "", WipeNone, WipeMBR, WipeMBRGPT:
	default:
		return fmt.Errorf("wipe.boot_sector %q: want none, mbr or mbr+gpt", w.BootSector)
	}
	switch w.UEFI {
	case "", UEFIBootNext, UEFIWipe:
	default:
		return fmt.Errorf("wipe.uefi %q: want bootnext or wipe", w.UEFI)
	}
	return nil
}

// Decide returns the wipe scope for a node whose OS booted firmware
// ("legacy" or "uefi"), or write false when nothing is to be written, and
// why.
func (w WipePolicy) Decide(firmware string) (scope string, write bool, why string) {
	if firmware == "uefi" && w.UEFI == UEFIBootNext {
		return "", false, "UEFI node, wipe.uefi: bootnext: BootNext only, the disk is not written"
	}
	switch w.BootSector {
	case WipeNone:
		return "", false, "wipe.boot_sector: none: the disk is not written"
	case WipeMBR:
		return WipeMBR, true, "wipe.boot_sector: mbr: LBA 0"
	}
	return WipeMBRGPT, true, "wipe.boot_sector: mbr+gpt: LBA 0, and both GPT copies on a GPT disk"
}

// Session is the in-band step for one node over one connection.
type Session struct {
	node  inventory.Node
	conn  Conn
	cfg   Config
	mode  string
	log   *slog.Logger
	steps stepper
}

// NewSession prepares the in-band step of node over conn. Nothing runs on
// the node until a method is called.
func NewSession(node inventory.Node, conn Conn, cfg Config) (*Session, error) {
	if conn == nil {
		return nil, fmt.Errorf("node %s: no connection", node.Name)
	}
	if cfg.Run == "" {
		cfg.Run = time.Now().UTC().Format("20060102T150405Z")
	}
	if cfg.RebootDelay == 0 {
		cfg.RebootDelay = steps.DefaultRebootDelay
	}
	if cfg.UnitTimeout == 0 {
		cfg.UnitTimeout = 3 * time.Minute
	}
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	if err := cfg.Wipe.validate(); err != nil {
		return nil, fmt.Errorf("node %s: %w", node.Name, err)
	}
	s := &Session{node: node, conn: conn, cfg: cfg, log: cfg.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("node", node.Name)
	switch node.SSH.Agent {
	case "", ModePush:
		s.mode = ModePush
		s.steps = &pushStepper{s: s}
	case ModeCommands:
		s.mode = ModeCommands
		sh, err := host.NewShell(conn, cfg.Layout)
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", node.Name, err)
		}
		s.steps = &commandsStepper{s: s, h: sh}
	default:
		return nil, fmt.Errorf("node %s: ssh.agent %q: want push or commands", node.Name, node.SSH.Agent)
	}
	return s, nil
}

// Mode returns the agent mode: push or commands.
func (s *Session) Mode() string { return s.mode }

// Close removes what the session put on the node (the pushed agent).
func (s *Session) Close(ctx context.Context) error { return s.steps.close(ctx) }

// IdentifyReport is the result of Session.Identify.
type IdentifyReport struct {
	Identity *steps.Identity      `json:"identity"`
	Check    *steps.IdentityCheck `json:"check"`
}

// Identify reads the node's identity and applies the interlock. It writes
// nothing on the node. On a mismatch, or nothing to compare, it returns
// the report and a *steps.IdentityError naming expected and found values.
// A node with skip_identity_check gets an opted-out check.
func (s *Session) Identify(ctx context.Context) (*IdentifyReport, error) {
	var rep *IdentifyReport
	var readErr error
	err := s.audited(ctx, ActionIdentify, false, map[string]any{"mode": s.mode}, func(ctx context.Context) (map[string]any, error) {
		id, err := s.steps.identify(ctx)
		if err != nil {
			readErr = err
			return nil, err
		}
		rep = &IdentifyReport{Identity: id}
		if s.node.SkipIdentityCheck {
			rep.Check = steps.OptedOut(s.node.Name)
		} else {
			rep.Check = steps.CompareIdentity(s.expected(ctx), id)
		}
		return map[string]any{"boot_id": id.BootID, "check": rep.Check}, rep.Check.Err()
	})
	if readErr != nil {
		return nil, fmt.Errorf("node %s: identify: %w", s.node.Name, readErr)
	}
	return rep, err
}

// ResolveDisk resolves the node's boot disk (boot.disk, or the disk
// holding /boot or /) with every safety check. It writes nothing.
func (s *Session) ResolveDisk(ctx context.Context) (*steps.DiskInfo, error) {
	var info *steps.DiskInfo
	ran := false
	err := s.audited(ctx, ActionResolveDisk, false, map[string]any{"configured": s.node.Boot.Disk}, func(ctx context.Context) (map[string]any, error) {
		ran = true
		var err error
		info, err = s.steps.resolveDisk(ctx, s.node.Boot.Disk)
		var detail map[string]any
		if info != nil {
			detail = map[string]any{"disk": info.Path, "reason": info.Reason}
		}
		return detail, err
	})
	switch {
	case err != nil && !ran:
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("node %s: resolve disk: %w", s.node.Name, err)
	}
	return info, nil
}

// Result is what Reinstall did.
type Result struct {
	Version  int               `json:"version"`
	Node     string            `json:"node"`
	Run      string            `json:"run"`
	Mode     string            `json:"mode"`
	Identity *IdentifyReport   `json:"identity,omitempty"`
	Disk     *steps.DiskInfo   `json:"disk,omitempty"`
	Wipe     *steps.WipeResult `json:"wipe,omitempty"`
	// WipeSkipped says why nothing was written to the disk (wipe policy).
	WipeSkipped string                `json:"wipe_skipped,omitempty"`
	NextBoot    *steps.NextBootResult `json:"next_boot,omitempty"`
	Reboot      *steps.RebootResult   `json:"reboot,omitempty"`
	// SavedFile holds the zeroed bytes (for reprov restore).
	SavedFile string `json:"saved_file,omitempty"`
	// BootIDBefore is the node's boot id before the reboot: the baseline
	// that tells a reboot into the old OS from a landing.
	BootIDBefore string `json:"boot_id_before,omitempty"`
	// LinkDropped is set when the connection dropped during the reboot
	// (expected: the node went down).
	LinkDropped bool `json:"link_dropped,omitempty"`
	// Restored is set when a failure after the wipe put the sectors back.
	Restored *steps.RestoreResult `json:"restored,omitempty"`
	// Interrupted is set when ctx was cancelled during the unit, which ran
	// to its end anyway.
	Interrupted bool `json:"interrupted,omitempty"`
}

// Reinstall runs identify → resolve-disk → wipe-boot-sector → next-boot →
// reboot. Nothing is written unless the identity check passed and the disk
// resolved; the bytes are saved in the state dir before they are zeroed.
// The wipe policy (Config.Wipe) may leave the disk alone (resolve-disk and
// wipe are then skipped, and the result says why).
// Wipe, next-boot and reboot are one unit: once the wipe has started, a
// cancelled ctx does not stop it — the unit finishes, or a failure in it
// restores the saved sectors. A connection that drops during the reboot is
// success.
func (s *Session) Reinstall(ctx context.Context) (*Result, error) {
	if s.cfg.Audit == nil || s.cfg.StateDir == "" {
		return nil, fmt.Errorf("node %s: reinstall needs an audit log and a state dir", s.node.Name)
	}
	res := &Result{Version: steps.ProtocolVersion, Node: s.node.Name, Run: s.cfg.Run, Mode: s.mode}
	rep, err := s.Identify(ctx)
	res.Identity = rep
	if err != nil {
		return res, err
	}
	res.BootIDBefore = rep.Identity.BootID
	scope, write, why := s.cfg.Wipe.Decide(rep.Identity.Firmware)
	var saved *steps.SavedSectors
	var plan *steps.WipePlan
	if write {
		disk, err := s.ResolveDisk(ctx)
		if err != nil {
			return res, err
		}
		res.Disk = disk
		plan, saved, err = s.steps.planWipe(ctx, disk.Path, scope)
		if err != nil {
			return res, fmt.Errorf("node %s: plan wipe of %s: %w", s.node.Name, disk.Path, err)
		}
		saved.Node, saved.Run = s.node.Name, s.cfg.Run
		path := SavedPath(s.cfg.StateDir, s.node.Name, s.cfg.Run)
		if s.cfg.Attempt != "" {
			path = SavedAttemptPath(s.cfg.StateDir, s.node.Name, s.cfg.Run, s.cfg.Attempt)
			if _, err := os.Stat(path); err == nil {
				return res, fmt.Errorf("node %s: saved boot sector %s exists already (nothing was written): give every attempt its own Config.Attempt", s.node.Name, path)
			}
		} else if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
			aside := strings.TrimSuffix(path, ".json") + fmt.Sprintf(".%d.json", fi.ModTime().UnixNano())
			if err := os.Rename(path, aside); err != nil {
				return res, fmt.Errorf("node %s: keep the earlier saved boot sector %s (nothing was written): %w", s.node.Name, path, err)
			}
		}
		if err := steps.WriteSavedFile(path, saved); err != nil {
			return res, fmt.Errorf("node %s: save boot sector before the wipe (nothing was written): %w", s.node.Name, err)
		}
		res.SavedFile = path
	} else {
		res.WipeSkipped = why
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if s.cfg.BeforeUnit != nil {
		// The last point where the node may still be left alone: the
		// caller checks its cancellation and its lease here.
		if err := s.cfg.BeforeUnit(ctx); err != nil {
			return res, err
		}
	}

	// The unit: it runs to its end on its own deadline.
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.UnitTimeout)
	defer cancel()
	defer func() { res.Interrupted = ctx.Err() != nil }()
	undo := func(cause error) error {
		if saved == nil {
			return cause
		}
		return s.undo(uctx, res, saved, cause)
	}

	if write {
		var wipe *steps.WipeResult
		ran := false
		err := s.audited(uctx, ActionWipe, true, map[string]any{"disk": res.Disk.Path, "partition_table": plan.Table, "scope": scope,
			"ranges": plan.Ranges, "saved_file": res.SavedFile, "saved_sha256": plan.SavedSHA256}, func(ctx context.Context) (map[string]any, error) {
			ran = true
			var err error
			wipe, err = s.steps.wipe(ctx, res.Disk.Path, plan.SavedSHA256, scope)
			var wd map[string]any
			if wipe != nil {
				wd = map[string]any{"bytes_zeroed": wipe.BytesZeroed, "verified": wipe.Verified}
			}
			return wd, err
		})
		if err != nil && !ran {
			return res, err // nothing was written
		}
		if err != nil {
			err = fmt.Errorf("node %s: wipe %s: %w", s.node.Name, res.Disk.Path, err)
			if nothingWritten(err) {
				return res, err
			}
			return res, undo(err)
		}
		res.Wipe = wipe
	}

	nbOpts := steps.NextBootOptions{Mode: s.node.Boot.Mode, MACs: s.node.MACs, Verify: s.node.BMC.Options.Verify,
		BootFlagTimeout: s.node.BMC.Options.BootFlagTimeout}
	ran := false
	err = s.audited(uctx, ActionNextBoot, true, map[string]any{"mode": nbOpts.Mode, "target": "pxe"}, func(ctx context.Context) (map[string]any, error) {
		ran = true
		nb, err := s.steps.nextBoot(ctx, nbOpts)
		res.NextBoot = nb
		var nd map[string]any
		if nb != nil && nb.IPMI != nil {
			nd = map[string]any{"mode": nb.Mode, "via": nb.IPMI.Via, "verified": nb.IPMI.Verified, "read_back": nb.IPMI.ReadBack}
			if nb.EFI != nil {
				nd["boot_next"] = nb.EFI.BootNext
			}
		}
		return nd, err
	})
	switch {
	case err != nil && !ran:
		return res, undo(err)
	case err != nil:
		return res, undo(fmt.Errorf("node %s: next-boot: %w", s.node.Name, err))
	}

	ran = false
	err = s.audited(uctx, ActionReboot, true, map[string]any{"delay_seconds": s.cfg.RebootDelay.Seconds(), "boot_id": res.BootIDBefore}, func(ctx context.Context) (map[string]any, error) {
		ran = true
		rb, err := s.steps.reboot(ctx, s.cfg.RebootDelay)
		if errors.Is(err, sshx.ErrConnectionLost) {
			res.LinkDropped = true
			res.Reboot = &steps.RebootResult{Version: steps.ProtocolVersion, Method: "connection dropped during the reboot command (expected)",
				DelaySeconds: s.cfg.RebootDelay.Seconds(), BootID: res.BootIDBefore}
			return map[string]any{"link_dropped": true}, nil
		}
		res.Reboot = rb
		return nil, err
	})
	switch {
	case err != nil && !ran:
		return res, undo(err)
	case err != nil:
		res.Reboot = nil
		return res, undo(fmt.Errorf("node %s: reboot: %w", s.node.Name, err))
	}
	return res, nil
}

// nothingWritten reports whether a wipe error came before any write.
func nothingWritten(err error) bool {
	return errors.Is(err, steps.ErrDiskRefused) || errors.Is(err, steps.ErrChangedSinceSaved) ||
		errors.Is(err, steps.ErrNotSaved) || errors.Is(err, steps.ErrIdentityMismatch)
}

// undo restores the saved sectors after a failure in the unit and returns
// cause, annotated with the restore's outcome.
func (s *Session) undo(ctx context.Context, res *Result, saved *steps.SavedSectors, cause error) error {
	r, err := s.restore(ctx, saved, "", false)
	if err != nil {
		return fmt.Errorf("%w; restoring the saved boot sector FAILED too: %w (saved copy: %s)", cause, err, res.SavedFile)
	}
	res.Restored = r
	return fmt.Errorf("%w; the boot sector was restored from %s", cause, res.SavedFile)
}

func (s *Session) restore(ctx context.Context, saved *steps.SavedSectors, disk string, force bool) (*steps.RestoreResult, error) {
	var r *steps.RestoreResult
	err := s.audited(ctx, ActionRestore, false, map[string]any{"disk": saved.Disk, "ranges": len(saved.Ranges), "sha256": saved.SHA256, "force": force},
		func(ctx context.Context) (map[string]any, error) {
			var err error
			r, err = s.steps.restore(ctx, saved, disk, force)
			var d map[string]any
			if r != nil {
				d = map[string]any{"before": r.Before, "bytes_written": r.BytesWritten, "verified": r.Verified}
			}
			return d, err
		})
	return r, err
}

// Restore puts the boot sector saved in file back on the node (reprov
// restore NODE). It runs the identity interlock first, as the wipe does,
// and refuses on a mismatch (a *steps.IdentityError); it refuses a file of
// another node, a copy that is all zeroes (taken after an earlier wipe),
// and a disk whose WWID or serial differ from the saved ones
// (steps.ErrOtherDisk, not overridden by force); unless force, it refuses
// a disk whose saved ranges now hold something other than zeroes or the
// saved bytes. Every refusal wraps steps.ErrRestoreRefused or is the
// identity error, and nothing is written.
func (s *Session) Restore(ctx context.Context, file string, force bool) (*steps.RestoreResult, error) {
	if s.cfg.Audit == nil {
		return nil, fmt.Errorf("node %s: restore needs an audit log", s.node.Name)
	}
	saved, err := steps.ReadSavedFile(file)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", s.node.Name, err)
	}
	if saved.Node != "" && saved.Node != s.node.Name {
		return nil, fmt.Errorf("node %s: %w: %s holds the boot sector of node %s", s.node.Name, steps.ErrRestoreRefused, file, saved.Node)
	}
	if saved.AllZero() {
		return nil, fmt.Errorf("node %s: %w: %s holds only zeroes (saved after an earlier wipe): restore from an earlier attempt's file in %s",
			s.node.Name, steps.ErrRestoreRefused, file, filepath.Dir(file))
	}
	if _, err := s.Identify(ctx); err != nil {
		return nil, fmt.Errorf("node %s: restore refused before anything was written: %w", s.node.Name, err)
	}
	r, err := s.restore(ctx, saved, "", force)
	if err != nil {
		return r, fmt.Errorf("node %s: restore %s: %w", s.node.Name, file, err)
	}
	return r, nil
}

// BootID reads the running kernel's boot id over conn: the cheap check
// that tells an old OS that came back (same or new id) from a landing.
func BootID(ctx context.Context, conn Conn) (string, error) {
	out, err := conn.Exec(ctx, "cat /proc/sys/kernel/random/boot_id", nil)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]`)

// SavedPath is where a run's saved boot sector of a node lived before
// saved files got an attempt component; SavedAttemptPath replaces it (kept
// for files written by earlier versions).
func SavedPath(stateDir, node, run string) string {
	return filepath.Join(stateDir, "boot-sectors", unsafeName.ReplaceAllString(node, "_"), unsafeName.ReplaceAllString(run, "_")+".json")
}

// SavedAttemptPath is where one attempt's saved boot sector of a node
// lives: StateDir/boot-sectors/NODE/RUN.ATTEMPT.json, unique per attempt,
// so that a second pass (whose copy holds the zeroes of the first) never
// replaces the copy worth restoring.
func SavedAttemptPath(stateDir, node, run, attempt string) string {
	return filepath.Join(stateDir, "boot-sectors", unsafeName.ReplaceAllString(node, "_"),
		unsafeName.ReplaceAllString(run, "_")+"."+unsafeName.ReplaceAllString(attempt, "_")+".json")
}

// SavedOfRun lists the saved boot sectors of node written by run (every
// attempt, and the file of earlier versions), newest first.
func SavedOfRun(stateDir, node, run string) []string {
	dir := filepath.Join(stateDir, "boot-sectors", unsafeName.ReplaceAllString(node, "_"))
	r := unsafeName.ReplaceAllString(run, "_")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	type file struct {
		path string
		mod  time.Time
	}
	var files []file
	for _, e := range ents {
		n := e.Name()
		if e.IsDir() || filepath.Ext(n) != ".json" || (n != r+".json" && !strings.HasPrefix(n, r+".")) {
			continue
		}
		if fi, err := e.Info(); err == nil {
			files = append(files, file{filepath.Join(dir, n), fi.ModTime()})
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].mod.After(files[j].mod) })
	out := make([]string, len(files))
	for i, f := range files {
		out[i] = f.path
	}
	return out
}

// RestorableSaved reports whether the saved boot sector in path is worth
// restoring: it reads and verifies, and holds something other than zeroes.
func RestorableSaved(path string) bool {
	s, err := steps.ReadSavedFile(path)
	return err == nil && !s.AllZero()
}

// LatestSaved returns the newest saved boot sector of node that holds
// something other than zeroes, for reprov restore NODE.
func LatestSaved(stateDir, node string) (string, error) {
	dir := filepath.Join(stateDir, "boot-sectors", unsafeName.ReplaceAllString(node, "_"))
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("node %s: no saved boot sector: %w", node, err)
	}
	var best string
	var bestTime time.Time
	for _, e := range ents {
		if e.IsDir() || filepath.Ext(e.Name()) != ".json" || !RestorableSaved(filepath.Join(dir, e.Name())) {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		if best == "" || fi.ModTime().After(bestTime) {
			best, bestTime = filepath.Join(dir, e.Name()), fi.ModTime()
		}
	}
	if best == "" {
		return "", fmt.Errorf("node %s: no saved boot sector holding anything but zeroes in %s", node, dir)
	}
	return best, nil
}

// audited runs act under the audit log (audit.Log.Do: the act does not run
// when its intent cannot be recorded; a lost outcome record never changes
// the act's result). writes marks an act that writes to the node: it is
// fenced (Config.Fence). Without an audit log, act just runs.
func (s *Session) audited(ctx context.Context, action string, writes bool, detail map[string]any, act func(ctx context.Context) (map[string]any, error)) error {
	if s.cfg.Audit == nil {
		if writes && s.cfg.Fence != nil {
			if err := s.cfg.Fence(ctx); err != nil {
				return fmt.Errorf("node %s: %s not attempted: %w", s.node.Name, action, err)
			}
		}
		_, err := act(ctx)
		return err
	}
	if detail == nil {
		detail = map[string]any{}
	}
	detail["agent_mode"] = s.mode
	e := audit.Entry{Node: s.node.Name, Action: action, Detail: detail, Job: s.cfg.Job}
	if writes {
		e.Fence = s.cfg.Fence
	}
	return s.cfg.Audit.Do(ctx, e, act)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
