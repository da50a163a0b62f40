package inband

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/reprov/reprov/agent/inband/host"
	"github.com/reprov/reprov/agent/inband/sshx"
	"github.com/reprov/reprov/agent/inband/steps"
)

// stepper runs the steps on the node: through the pushed agent, or as
// POSIX commands.
type stepper interface {
	identify(ctx context.Context) (*steps.Identity, error)
	resolveDisk(ctx context.Context, disk string) (*steps.DiskInfo, error)
	planWipe(ctx context.Context, disk, scope string) (*steps.WipePlan, *steps.SavedSectors, error)
	wipe(ctx context.Context, disk, savedSHA, scope string) (*steps.WipeResult, error)
	restore(ctx context.Context, saved *steps.SavedSectors, disk string, force bool) (*steps.RestoreResult, error)
	nextBoot(ctx context.Context, opts steps.NextBootOptions) (*steps.NextBootResult, error)
	reboot(ctx context.Context, delay time.Duration) (*steps.RebootResult, error)
	// planCommands are the node commands of a step, for plan mode.
	planCommands(step string, a planArgs) []string
	close(ctx context.Context) error
}

// planArgs are what a step's plan commands depend on.
type planArgs struct {
	disk     string
	scope    string
	write    bool
	why      string
	ranges   []steps.Range
	savedSHA string
	nextBoot steps.NextBootOptions
	dryNext  *steps.NextBootResult
	delay    time.Duration
}

// commandsStepper runs the step code on the controller against a Shell
// host: every node effect is a POSIX command over SSH.
type commandsStepper struct {
	s *Session
	h *host.Shell
	// planOnly leaves kernel modules alone (plan mode loads nothing).
	planOnly bool
}

func (c *commandsStepper) identify(ctx context.Context) (*steps.Identity, error) {
	return steps.Identify(ctx, c.h, steps.IdentifyOptions{NoModprobe: c.planOnly})
}

func (c *commandsStepper) resolveDisk(ctx context.Context, disk string) (*steps.DiskInfo, error) {
	return steps.ResolveDisk(ctx, c.h, disk)
}

func (c *commandsStepper) planWipe(ctx context.Context, disk, scope string) (*steps.WipePlan, *steps.SavedSectors, error) {
	return steps.PlanWipe(ctx, c.h, disk, scope)
}

func (c *commandsStepper) wipe(ctx context.Context, disk, savedSHA, scope string) (*steps.WipeResult, error) {
	// The disk checks reuse this session's sysfs reads (seconds old); the
	// bytes themselves are read again and must match the saved copy.
	return steps.WipeBootSector(ctx, c.h, steps.WipeOptions{Disk: disk, ExpectSHA256: savedSHA, Scope: scope})
}

func (c *commandsStepper) restore(ctx context.Context, saved *steps.SavedSectors, disk string, force bool) (*steps.RestoreResult, error) {
	return steps.RestoreBootSector(ctx, c.h, steps.RestoreOptions{Saved: saved, Disk: disk, Force: force})
}

func (c *commandsStepper) nextBoot(ctx context.Context, opts steps.NextBootOptions) (*steps.NextBootResult, error) {
	return steps.NextBoot(ctx, c.h, opts)
}

func (c *commandsStepper) reboot(ctx context.Context, delay time.Duration) (*steps.RebootResult, error) {
	return steps.Reboot(ctx, c.h, steps.RebootOptions{Delay: delay})
}

func (c *commandsStepper) planCommands(step string, a planArgs) []string {
	disk := a.disk
	if disk == "" {
		disk = "DISK"
	}
	switch step {
	case "identify":
		return []string{
			"cat /sys/class/dmi/id/product_serial",
			"ls -1A /sys/class/net; cat /sys/class/net/NIC/address",
			"cat /proc/sys/kernel/random/boot_id",
			"ls -lLd /sys/firmware/efi",
			"ipmitool lan print   (after modprobe ipmi_si, ipmi_devintf if /dev/ipmi0 is missing)",
		}
	case "resolve-disk":
		if a.disk == "" {
			return []string{"cat /proc/self/mountinfo", "ls -ld /sys/dev/block/MAJ:MIN (…/slaves, …/partition, removable, ro, size)"}
		}
		return []string{"ls -ld " + host.Quote(a.disk) + " (links resolved)", "ls -lLd DEVICE", "cat /sys/dev/block/MAJ:MIN/{partition,removable,ro,size,queue/logical_block_size}"}
	case "wipe-boot-sector":
		var cmds []string
		for _, r := range rangesOrDefault(a.ranges) {
			cmds = append(cmds, host.ReadCommand(disk, r.Offset, r.Length)+"   # save to the state dir first")
		}
		for _, r := range rangesOrDefault(a.ranges) {
			cmds = append(cmds, host.ZeroCommand(disk, r.Offset, r.Length))
		}
		cmds = append(cmds, host.FlushCommand(disk))
		for _, r := range rangesOrDefault(a.ranges) {
			cmds = append(cmds, host.ReadCommand(disk, r.Offset, r.Length)+"   # verify zeroes")
		}
		return cmds
	case "next-boot":
		var cmds []string
		if a.dryNext != nil {
			if a.dryNext.EFI != nil {
				cmds = append(cmds, "efibootmgr -v")
				cmds = append(cmds, a.dryNext.EFI.Commands...)
				cmds = append(cmds, "efibootmgr   # read back BootNext")
			}
			cmds = append(cmds, a.dryNext.IPMI.Commands...)
			return cmds
		}
		if a.nextBoot.Mode == "uefi" {
			cmds = append(cmds, "efibootmgr -v", "efibootmgr -n NNNN   # the network entry", "efibootmgr   # read back BootNext", "ipmitool raw 0x00 0x08 0x03 0x08",
				"ipmitool raw 0x00 0x08 0x05 0xa0 0x04 0x00 0x00 0x00", "ipmitool chassis bootparam get 5")
			return cmds
		}
		return []string{"ipmitool raw 0x00 0x08 0x03 0x08", "ipmitool chassis bootparam set bootflag force_pxe", "ipmitool chassis bootparam get 5   # read back: must show Force PXE"}
	case "reboot":
		return []string{host.RebootShellCommand(a.delay)}
	}
	return nil
}

func rangesOrDefault(r []steps.Range) []steps.Range {
	if len(r) > 0 {
		return r
	}
	return []steps.Range{{Offset: 0, Length: 512, What: "LBA 0 (MBR); on GPT: LBA 0..33 and the last 33 sectors"}}
}

func (c *commandsStepper) close(context.Context) error { return nil }

// pushStepper runs the steps in a reprov-agent binary pushed to the node.
type pushStepper struct {
	s      *Session
	dir    string
	bin    string
	pushed bool
	// self is set when the pushed binary is reprov itself: its steps are
	// the `reprov agent` subcommands.
	self bool
}

// command is the node command line of an agent step run from bin.
func (p *pushStepper) command(bin, step string, args []string) string {
	if p.self {
		step = "agent " + step
	}
	return agentCommand(bin, step, args)
}

// agentBaseDirs are tried in order for the agent's directory; a noexec
// mount fails the version check and the next one is tried.
var agentBaseDirs = []string{"/tmp", "/var/tmp", "/dev/shm", "/run"}

// unameArch maps `uname -m` to the ELF machine a binary must have.
var unameArch = map[string]elf.Machine{
	"x86_64": elf.EM_X86_64, "amd64": elf.EM_X86_64,
	"aarch64": elf.EM_AARCH64, "arm64": elf.EM_AARCH64,
	"armv7l": elf.EM_ARM, "armv6l": elf.EM_ARM,
	"ppc64le": elf.EM_PPC64, "s390x": elf.EM_S390, "riscv64": elf.EM_RISCV,
	"i686": elf.EM_386, "i386": elf.EM_386,
}

// goarchOf maps `uname -m` to Go's GOARCH.
var goarchOf = map[string]string{
	"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm", "armv6l": "arm",
	"ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64", "i686": "386", "i386": "386",
}

// FindAgentBinary finds the reprov-agent build for a node whose `uname -m`
// is unameM: reprov-agent-linux-GOARCH, then reprov-agent of that
// architecture, next to the running executable, in ../lib/reprov from it
// (make install PREFIX=…), then in /usr/local/lib/reprov and
// /usr/lib/reprov. The error says which
// architecture is missing and where it looked:
//
//	no reprov-agent for linux/arm64 (tried …); build it with …
func FindAgentBinary(unameM string) (string, error) {
	p, _, err := findAgent(unameM, false)
	return p, err
}

// reprovMainPackage is the main package of the reprov controller, whose
// `reprov agent` subcommands are the agent's.
const reprovMainPackage = "github.com/reprov/reprov/cmd/reprov"

// findAgent is FindAgentBinary; with allowSelf, when no reprov-agent build
// is found and the running executable is reprov (go build or go install of
// cmd/reprov) for the node's architecture, that executable is the agent
// (self is then true: run it as `reprov agent …`).
func findAgent(unameM string, allowSelf bool) (path string, self bool, err error) {
	goarch, ok := goarchOf[unameM]
	if !ok {
		return "", false, fmt.Errorf("no reprov-agent for architecture %q (uname -m): reprov builds the agent for linux/amd64 and linux/arm64", unameM)
	}
	var dirs []string
	exe, exeErr := os.Executable()
	if exeErr == nil {
		dirs = append(dirs, filepath.Dir(exe), filepath.Join(filepath.Dir(exe), "..", "lib", "reprov"))
	}
	dirs = append(dirs, "/usr/local/lib/reprov", "/usr/lib/reprov")
	var tried []string
	for _, d := range dirs {
		for _, name := range []string{"reprov-agent-linux-" + goarch, "reprov-agent"} {
			p := filepath.Join(d, name)
			tried = append(tried, p)
			if elfMachine(p) == unameArch[unameM] {
				return p, false, nil
			}
		}
	}
	selfNote := ""
	if allowSelf && exeErr == nil {
		switch isReprov, m := isReprovExecutable(exe); {
		case isReprov && m == unameArch[unameM]:
			return exe, true, nil
		case isReprov:
			selfNote = fmt.Sprintf("; reprov itself (%s) is built for %s, not for the node", exe, m)
		}
	}
	return "", false, fmt.Errorf("no reprov-agent for linux/%s (tried %s%s); build it with CGO_ENABLED=0 GOOS=linux GOARCH=%s go build -o reprov-agent-linux-%s ./cmd/reprov-agent (make build does), or use ssh.agent: commands",
		goarch, strings.Join(tried, ", "), selfNote, goarch, goarch)
}

// elfMachine is the ELF machine of the file at p, or EM_NONE.
func elfMachine(p string) elf.Machine {
	f, err := elf.Open(p)
	if err != nil {
		return elf.EM_NONE
	}
	defer f.Close()
	return f.Machine
}

// isReprovExecutable reports whether exe is a build of cmd/reprov (which
// contains the `reprov agent` subcommands), and its ELF machine.
func isReprovExecutable(exe string) (bool, elf.Machine) {
	bi, err := buildinfo.ReadFile(exe)
	if err != nil || bi.Path != reprovMainPackage {
		return false, elf.EM_NONE
	}
	return true, elfMachine(exe)
}

// ensure pushes the agent once per session.
func (p *pushStepper) ensure(ctx context.Context) error {
	if p.pushed {
		return nil
	}
	s := p.s
	out, err := s.conn.Exec(ctx, "uname -m", nil)
	if err != nil {
		return fmt.Errorf("node %s: uname -m: %w", s.node.Name, err)
	}
	arch := strings.TrimSpace(string(out))
	binPath := s.cfg.AgentBinary
	if binPath == "" {
		if binPath, p.self, err = findAgent(arch, true); err != nil {
			return fmt.Errorf("node %s: %w", s.node.Name, err)
		}
	}
	bin, want, machine, err := s.cfg.AgentFiles.read(binPath)
	if err != nil {
		return fmt.Errorf("node %s: %w", s.node.Name, err)
	}
	if m, ok := unameArch[arch]; ok && m != machine {
		return fmt.Errorf("node %s: the node is %s, the agent binary %s is built for %s", s.node.Name, arch, binPath, machine)
	}

	return s.audited(ctx, ActionPushAgent, false, map[string]any{"binary": binPath, "sha256": want, "bytes": len(bin)},
		func(ctx context.Context) (map[string]any, error) {
			var errs []error
			for _, base := range agentBaseDirs {
				dir := base + "/reprov-agent-" + randomHex(8)
				err := p.pushTo(ctx, dir, bin, want)
				if err == nil {
					return map[string]any{"path": p.bin}, nil
				}
				errs = append(errs, err)
				if errors.Is(err, sshx.ErrConnectionLost) || ctx.Err() != nil {
					break
				}
			}
			return nil, fmt.Errorf("node %s: push agent: %w", s.node.Name, errors.Join(errs...))
		})
}

func (p *pushStepper) pushTo(ctx context.Context, dir string, bin []byte, want string) error {
	conn := p.s.conn
	q := host.Quote(dir)
	path := dir + "/reprov-agent"
	qp := host.Quote(path)
	if _, err := conn.Exec(ctx, "umask 077 && mkdir -m 700 "+q, nil); err != nil {
		return fmt.Errorf("mkdir %s: %w", dir, err)
	}
	cleanup := func() { conn.Exec(context.WithoutCancel(ctx), "rm -rf -- "+q, nil) }
	if _, err := conn.Exec(ctx, "cat > "+qp+" && chmod 700 "+qp, bytes.NewReader(bin)); err != nil {
		cleanup()
		return fmt.Errorf("upload to %s: %w", path, err)
	}
	out, err := conn.Exec(ctx, "if command -v sha256sum >/dev/null 2>&1; then sha256sum -- "+qp+"; else echo no-sha256sum; fi", nil)
	if err != nil {
		cleanup()
		return fmt.Errorf("checksum %s: %w", path, err)
	}
	got := strings.Fields(string(out))
	var have string
	if len(got) > 0 && got[0] != "no-sha256sum" {
		have = strings.ToLower(got[0])
	} else {
		// No sha256sum on the node: read the file back and hash it here.
		back, err := conn.Exec(ctx, "cat -- "+qp, nil)
		if err != nil {
			cleanup()
			return fmt.Errorf("read back %s: %w", path, err)
		}
		s := sha256.Sum256(back)
		have = hex.EncodeToString(s[:])
	}
	if have != want {
		cleanup()
		return fmt.Errorf("uploaded agent %s has sha256 %s, want %s", path, have, want)
	}
	p.dir, p.bin, p.pushed = dir, path, true
	var v struct {
		Protocol int    `json:"protocol"`
		Host     string `json:"host"`
	}
	if err := p.call(ctx, "version", nil, &v); err != nil {
		p.pushed = false
		cleanup()
		return fmt.Errorf("run %s: %w", path, err)
	}
	if v.Protocol != steps.ProtocolVersion {
		p.pushed = false
		cleanup()
		return fmt.Errorf("agent %s speaks protocol %d, the controller %d", path, v.Protocol, steps.ProtocolVersion)
	}
	p.s.log.Debug("agent pushed", "path", path, "host", v.Host)
	return nil
}

// agentCommand is the command line of an agent subcommand.
func agentCommand(bin, step string, args []string) string {
	parts := []string{host.Quote(bin)}
	parts = append(parts, strings.Fields(step)...)
	for _, a := range args {
		parts = append(parts, host.Quote(a))
	}
	parts = append(parts, "-o", "json")
	return strings.Join(parts, " ")
}

// call runs an agent subcommand and decodes its JSON result into out. A
// failing step comes back as a *steps.RemoteError.
func (p *pushStepper) call(ctx context.Context, step string, args []string, out any) error {
	return p.callCmd(ctx, step, p.command(p.bin, step, args), out)
}

func (p *pushStepper) callCmd(ctx context.Context, step, cmd string, out any) error {
	stdout, err := p.s.conn.Exec(ctx, cmd, nil)
	line := lastLine(stdout)
	if err != nil {
		var ee *host.ExitError
		if errors.As(err, &ee) {
			var er steps.ErrorResult
			if json.Unmarshal(line, &er) == nil && er.Code != "" {
				return &steps.RemoteError{Step: er.Step, Code: er.Code, Message: er.Error}
			}
			return fmt.Errorf("agent %s: %w", step, err)
		}
		return err
	}
	if err := json.Unmarshal(line, out); err != nil {
		return fmt.Errorf("agent %s: bad result %q: %w", step, truncate(string(line), 200), err)
	}
	return nil
}

func lastLine(b []byte) []byte {
	b = bytes.TrimRight(b, "\n")
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		return b[i+1:]
	}
	return b
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func (p *pushStepper) identify(ctx context.Context) (*steps.Identity, error) {
	if err := p.ensure(ctx); err != nil {
		return nil, err
	}
	var id steps.Identity
	if err := p.call(ctx, "identify", nil, &id); err != nil {
		return nil, err
	}
	return &id, nil
}

func diskArgs(disk string) []string {
	if disk == "" {
		return nil
	}
	return []string{"--disk", disk}
}

func (p *pushStepper) resolveDisk(ctx context.Context, disk string) (*steps.DiskInfo, error) {
	if err := p.ensure(ctx); err != nil {
		return nil, err
	}
	var info steps.DiskInfo
	if err := p.call(ctx, "resolve-disk", diskArgs(disk), &info); err != nil {
		return nil, err
	}
	return &info, nil
}

// wipeOutput is the agent's wipe-boot-sector result.
type wipeOutput struct {
	steps.WipeResult
	Saved *steps.SavedSectors `json:"saved,omitempty"`
}

func (p *pushStepper) planWipe(ctx context.Context, disk, scope string) (*steps.WipePlan, *steps.SavedSectors, error) {
	if err := p.ensure(ctx); err != nil {
		return nil, nil, err
	}
	var out wipeOutput
	if err := p.call(ctx, "wipe-boot-sector", planWipeArgs(disk, scope), &out); err != nil {
		return nil, nil, err
	}
	if out.Saved == nil {
		return nil, nil, errors.New("agent wipe-boot-sector --dry-run returned no data")
	}
	if err := out.Saved.Verify(); err != nil {
		return nil, nil, fmt.Errorf("agent returned damaged sectors: %w", err)
	}
	if out.Saved.SHA256 != out.SavedSHA256 {
		return nil, nil, fmt.Errorf("agent returned sectors with sha256 %s, announced %s", out.Saved.SHA256, out.SavedSHA256)
	}
	plan := &steps.WipePlan{Version: out.Version, Disk: out.Disk, Table: out.Table, TableReason: out.TableReason,
		Ranges: out.Ranges, SavedSHA256: out.SavedSHA256}
	for _, r := range out.Ranges {
		plan.Bytes += r.Length
	}
	return plan, out.Saved, nil
}

func planWipeArgs(disk, scope string) []string {
	args := []string{"--disk", disk, "--dry-run", "--include-data"}
	if scope != "" {
		args = append(args, "--scope", scope)
	}
	return args
}

func wipeArgs(disk, sha, scope string) []string {
	args := []string{"--disk", disk, "--saved-sha256", sha, "--yes", "--no-audit"}
	if scope != "" {
		args = append(args, "--scope", scope)
	}
	return args
}

func (p *pushStepper) wipe(ctx context.Context, disk, savedSHA, scope string) (*steps.WipeResult, error) {
	if err := p.ensure(ctx); err != nil {
		return nil, err
	}
	var out wipeOutput
	if err := p.call(ctx, "wipe-boot-sector", wipeArgs(disk, savedSHA, scope), &out); err != nil {
		return nil, err
	}
	return &out.WipeResult, nil
}

func (p *pushStepper) restore(ctx context.Context, saved *steps.SavedSectors, disk string, force bool) (*steps.RestoreResult, error) {
	if err := p.ensure(ctx); err != nil {
		return nil, err
	}
	b, err := json.Marshal(saved)
	if err != nil {
		return nil, err
	}
	args := []string{"--from", "-", "--yes", "--no-audit"}
	if disk != "" {
		args = append(args, "--disk", disk)
	}
	if force {
		args = append(args, "--force")
	}
	stdout, err := p.s.conn.Exec(ctx, p.command(p.bin, "restore-boot-sector", args), bytes.NewReader(b))
	line := lastLine(stdout)
	if err != nil {
		var ee *host.ExitError
		var er steps.ErrorResult
		if errors.As(err, &ee) && json.Unmarshal(line, &er) == nil && er.Code != "" {
			return nil, &steps.RemoteError{Step: er.Step, Code: er.Code, Message: er.Error}
		}
		return nil, fmt.Errorf("agent restore-boot-sector: %w", err)
	}
	var r steps.RestoreResult
	if err := json.Unmarshal(line, &r); err != nil {
		return nil, fmt.Errorf("agent restore-boot-sector: bad result: %w", err)
	}
	return &r, nil
}

func nextBootArgs(o steps.NextBootOptions, dryRun bool) []string {
	args := []string{"pxe"}
	mode := o.Mode
	if mode == "" {
		mode = "auto"
	}
	args = append(args, "--mode", mode)
	for _, m := range o.MACs {
		args = append(args, "--mac", m)
	}
	if o.Verify != "" {
		args = append(args, "--verify", o.Verify)
	}
	if o.BootFlagTimeout != "" {
		args = append(args, "--boot-flag-timeout", o.BootFlagTimeout)
	}
	if dryRun {
		args = append(args, "--dry-run")
	} else {
		args = append(args, "--no-audit")
	}
	return args
}

func (p *pushStepper) nextBoot(ctx context.Context, opts steps.NextBootOptions) (*steps.NextBootResult, error) {
	if err := p.ensure(ctx); err != nil {
		return nil, err
	}
	var r steps.NextBootResult
	if err := p.call(ctx, "next-boot", nextBootArgs(opts, opts.DryRun), &r); err != nil {
		return nil, err
	}
	return &r, nil
}

func (p *pushStepper) rebootCommand(delay time.Duration) string {
	return p.command(p.bin, "reboot", []string{"--delay", delay.String(), "--no-audit"}) +
		"; rc=$?; rm -rf -- " + host.Quote(p.dir) + "; exit $rc"
}

func (p *pushStepper) reboot(ctx context.Context, delay time.Duration) (*steps.RebootResult, error) {
	if err := p.ensure(ctx); err != nil {
		return nil, err
	}
	var r steps.RebootResult
	err := p.callCmd(ctx, "reboot", p.rebootCommand(delay), &r)
	// The command removed the agent, or the node is going down with it.
	p.pushed = false
	if err != nil {
		return nil, err
	}
	return &r, nil
}

func (p *pushStepper) planCommands(step string, a planArgs) []string {
	bin := p.bin
	if bin == "" {
		bin = "/tmp/reprov-agent-XXXXXXXXXXXXXXXX/reprov-agent"
	}
	disk := a.disk
	if disk == "" {
		disk = "DISK"
	}
	switch step {
	case "push-agent":
		dir := strings.TrimSuffix(bin, "/reprov-agent")
		return []string{
			"uname -m   # must match the agent binary",
			"umask 077 && mkdir -m 700 " + dir + "   # else /var/tmp, /dev/shm, /run",
			"cat > " + bin + " && chmod 700 " + bin + "   # " + p.s.cfg.AgentBinary,
			"sha256sum -- " + bin + "   # or read back and hash on the controller",
			p.command(bin, "version", nil),
		}
	case "identify":
		return []string{p.command(bin, "identify", nil)}
	case "resolve-disk":
		return []string{p.command(bin, "resolve-disk", diskArgs(a.disk))}
	case "wipe-boot-sector":
		sha := a.savedSHA
		if sha == "" {
			sha = "SHA256"
		}
		return []string{
			p.command(bin, "wipe-boot-sector", planWipeArgs(disk, a.scope)) + "   # save to the state dir first",
			p.command(bin, "wipe-boot-sector", wipeArgs(disk, sha, a.scope)),
		}
	case "next-boot":
		cmds := []string{p.command(bin, "next-boot", nextBootArgs(a.nextBoot, false))}
		if a.dryNext != nil {
			for _, c := range a.dryNext.IPMI.Commands {
				cmds = append(cmds, "  (in the agent) "+c)
			}
			if a.dryNext.EFI != nil {
				for _, c := range a.dryNext.EFI.Commands {
					cmds = append(cmds, "  (in the agent) "+c)
				}
			}
		}
		return cmds
	case "reboot":
		if p.dir == "" {
			return []string{p.command(bin, "reboot", []string{"--delay", a.delay.String(), "--no-audit"}) + "; rm -rf -- AGENTDIR"}
		}
		return []string{p.rebootCommand(a.delay)}
	}
	return nil
}

func (p *pushStepper) close(ctx context.Context) error {
	if !p.pushed {
		return nil
	}
	p.pushed = false
	_, err := p.s.conn.Exec(ctx, "rm -rf -- "+host.Quote(p.dir), nil)
	if errors.Is(err, sshx.ErrConnectionLost) {
		return nil
	}
	return err
}
