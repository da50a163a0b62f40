package inband

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/reprov/reprov/agent/inband/host"
	"github.com/reprov/reprov/agent/inband/steps"
	"github.com/reprov/reprov/inventory"
)

// Plan says exactly what the in-band step would do on a node: the identity
// facts it compares, the disk and byte ranges it would zero, and the
// commands it would run, step by step.
type Plan struct {
	Version int    `json:"version"`
	Node    string `json:"node"`
	// Mode is the agent mode: push or commands.
	Mode string `json:"mode"`
	// Connected is set when the plan read the node (identity, disk,
	// ranges are then the node's own); otherwise it is from the inventory.
	Connected bool         `json:"connected"`
	Identity  PlanIdentity `json:"identity"`
	Disk      PlanDisk     `json:"disk"`
	Steps     []PlanStep   `json:"steps"`
	// Notes are things an operator should know (sudo, opt-outs).
	Notes []string `json:"notes,omitempty"`
}

// PlanIdentity is the identity interlock of a plan.
type PlanIdentity struct {
	OptedOut bool           `json:"opted_out,omitempty"`
	Expected steps.Expected `json:"expected"`
	// Found and Check are set on a connected plan.
	Found *steps.Identity      `json:"found,omitempty"`
	Check *steps.IdentityCheck `json:"check,omitempty"`
}

// PlanDisk is the disk of a plan.
type PlanDisk struct {
	Configured string `json:"configured,omitempty"`
	// Rule says how the disk is chosen.
	Rule string `json:"rule"`
	// Resolved is set on a connected plan.
	Resolved *steps.DiskInfo `json:"resolved,omitempty"`
	// Table and Ranges are what would be zeroed (connected plan).
	Table  string        `json:"partition_table,omitempty"`
	Ranges []steps.Range `json:"ranges,omitempty"`
}

// PlanStep is one step of a plan.
type PlanStep struct {
	Step        string   `json:"step"`
	Destructive bool     `json:"destructive"`
	What        string   `json:"what"`
	Commands    []string `json:"commands"`
}

// PlanOffline is the plan of node from the inventory alone, without
// connecting: disk and ranges are decided on the node.
func PlanOffline(node inventory.Node, cfg Config) (*Plan, error) {
	s, err := NewSession(node, noConn{}, cfg)
	if err != nil {
		return nil, err
	}
	p := s.basePlan(context.Background())
	fw := "legacy"
	if node.Boot.Mode == "uefi" {
		fw = "uefi"
	}
	a := planArgs{disk: node.Boot.Disk, nextBoot: s.nextBootOptions(), delay: s.cfg.RebootDelay}
	a.scope, a.write, a.why = s.cfg.Wipe.Decide(fw)
	a.why += " (assuming the OS booted " + fw + "; decided on the node)"
	s.planSteps(p, a)
	return p, nil
}

// noConn is the connection of an offline plan: it runs nothing.
type noConn struct{}

func (noConn) Exec(context.Context, string, io.Reader) ([]byte, error) {
	return nil, fmt.Errorf("plan: not connected")
}

func (s *Session) nextBootOptions() steps.NextBootOptions {
	return steps.NextBootOptions{Mode: s.node.Boot.Mode, MACs: s.node.MACs, Verify: s.node.BMC.Options.Verify,
		BootFlagTimeout: s.node.BMC.Options.BootFlagTimeout}
}

func (s *Session) basePlan(ctx context.Context) *Plan {
	p := &Plan{Version: steps.ProtocolVersion, Node: s.node.Name, Mode: s.mode}
	p.Identity.Expected = ExpectedFor(ctx, s.node, nil)
	if s.node.SkipIdentityCheck {
		p.Identity.OptedOut = true
		p.Notes = append(p.Notes, "identity check SKIPPED: the node opts out (skip_identity_check)")
	}
	p.Disk.Configured = s.node.Boot.Disk
	if s.node.Boot.Disk != "" {
		p.Disk.Rule = "configured boot.disk " + s.node.Boot.Disk + " (links resolved), checked to be a whole, fixed, writable disk"
	} else {
		p.Disk.Rule = "the disk holding /boot, else /, checked to be a whole, fixed, writable disk"
	}
	if r, ok := s.conn.(interface{ IsRoot() bool }); ok && !r.IsRoot() {
		p.Notes = append(p.Notes, "the login user is not root: every command runs under sudo -n")
	}
	if s.mode == ModeCommands {
		p.Notes = append(p.Notes, "agent mode commands: no binary is copied to the node; the controller runs these POSIX commands")
	}
	return p
}

func (s *Session) planSteps(p *Plan, a planArgs) {
	add := func(step string, destructive bool, what string) {
		p.Steps = append(p.Steps, PlanStep{Step: step, Destructive: destructive, What: what, Commands: s.steps.planCommands(step, a)})
	}
	if s.mode == ModePush {
		add("push-agent", false, "copy the reprov-agent binary to the node, verify its sha256, remove it after the run")
	}
	idWhat := "read DMI serial, MACs, boot id, firmware mode and the BMC LAN address; every fact both sides have must match, at least one must"
	if s.node.SkipIdentityCheck {
		idWhat = "read the identity (boot id baseline); the comparison is skipped: the node opts out"
	}
	add("identify", false, idWhat)
	if a.write {
		add("resolve-disk", false, p.Disk.Rule)
	}
	wipeWhat := "save to " + SavedPath(s.cfg.StateDir, s.node.Name, s.cfg.Run) + ", then zero: MBR disk LBA 0; GPT disk LBA 0..33 and the last 33 sectors; flush; read back"
	if len(a.ranges) > 0 {
		var parts []string
		for _, r := range a.ranges {
			parts = append(parts, fmt.Sprintf("bytes %d..%d (%s)", r.Offset, r.End()-1, r.What))
		}
		wipeWhat = "save to " + SavedPath(s.cfg.StateDir, s.node.Name, s.cfg.Run) + ", then zero " + a.disk + " " + strings.Join(parts, ", ") + "; flush; read back"
	}
	if a.write {
		add("wipe-boot-sector", true, wipeWhat+" ["+a.why+"]")
	} else {
		p.Steps = append(p.Steps, PlanStep{Step: "wipe-boot-sector", What: "skipped: " + a.why})
	}
	mode := s.node.Boot.Mode
	if a.dryNext != nil {
		mode = a.dryNext.Mode
	}
	nbWhat := "IPMI boot flags: force PXE, next boot only, through /dev/ipmi0; read back"
	if mode == "uefi" {
		nbWhat = "efibootmgr BootNext to the network entry, read back; IPMI boot flags force PXE with the EFI bit"
	} else if mode == "" {
		nbWhat += " (UEFI nodes: also efibootmgr BootNext)"
	}
	add("next-boot", true, nbWhat)
	add("reboot", true, fmt.Sprintf("detached after %s: systemctl reboot, then reboot -f, then sysrq b; a dropped link is success", a.delay))
}

// Plan reads the node (identity, disk, the bytes that would be zeroed,
// which boot entry and IPMI path would be used) and says exactly what
// Reinstall would do. It writes nothing on the node — in push mode too: it
// copies no agent there but reads with the same step code through
// read-only POSIX commands (cat, ls, dd); a node that lacks them is not
// read, and the plan says so in a note — and it loads no kernel module (a
// BMC address that needs ipmi_si is then not read). An identity mismatch
// or a refused disk is returned as the error, with the plan so far.
func (s *Session) Plan(ctx context.Context) (*Plan, error) {
	var reader stepper
	switch st := s.steps.(type) {
	case *commandsStepper:
		st.planOnly = true
		defer func() { st.planOnly = false }()
		reader = st
	case *pushStepper:
		sh, err := host.NewShell(s.conn, s.cfg.Layout)
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", s.node.Name, err)
		}
		reader = &commandsStepper{s: s, h: sh, planOnly: true}
	default:
		reader = s.steps
	}
	p, err := s.plan(ctx, reader)
	var ee *host.ExitError
	if err != nil && s.mode == ModePush && errors.As(err, &ee) && ee.Status == 127 {
		// A node without the POSIX tools: the real run pushes its agent
		// and checks identity and disk before any write.
		p.Connected = false
		p.Notes = append(p.Notes, fmt.Sprintf("not read: plan copies nothing to a push-mode node and reads it with POSIX commands, which it lacks (%v); the real run checks identity and disk with the pushed agent before any write", err))
		return p, nil
	}
	if s.mode == ModePush && p != nil {
		p.Notes = append(p.Notes, "read with read-only POSIX commands (cat, ls, dd): plan copies no agent to the node")
	}
	return p, err
}

func (s *Session) plan(ctx context.Context, reader stepper) (*Plan, error) {
	p := s.basePlan(ctx)
	p.Connected = true
	a := planArgs{disk: s.node.Boot.Disk, nextBoot: s.nextBootOptions(), delay: s.cfg.RebootDelay, write: true}
	a.scope, _, a.why = s.cfg.Wipe.Decide("legacy")
	defer func() { s.planSteps(p, a) }()

	id, err := reader.identify(ctx)
	if err != nil {
		return p, fmt.Errorf("node %s: identify: %w", s.node.Name, err)
	}
	p.Identity.Found = id
	p.Identity.Expected = s.expected(ctx)
	if s.node.SkipIdentityCheck {
		p.Identity.Check = steps.OptedOut(s.node.Name)
	} else {
		p.Identity.Check = steps.CompareIdentity(p.Identity.Expected, id)
		if err := p.Identity.Check.Err(); err != nil {
			return p, err
		}
	}
	a.scope, a.write, a.why = s.cfg.Wipe.Decide(id.Firmware)
	if a.write {
		info, err := reader.resolveDisk(ctx, s.node.Boot.Disk)
		if err != nil {
			return p, fmt.Errorf("node %s: resolve disk: %w", s.node.Name, err)
		}
		p.Disk.Resolved = info
		a.disk = info.Path
		plan, _, err := reader.planWipe(ctx, info.Path, a.scope)
		if err != nil {
			return p, fmt.Errorf("node %s: plan wipe: %w", s.node.Name, err)
		}
		p.Disk.Table, p.Disk.Ranges = plan.Table, plan.Ranges
		a.ranges, a.savedSHA = plan.Ranges, plan.SavedSHA256
	} else {
		p.Disk.Rule = "not written: " + a.why
	}
	nbo := s.nextBootOptions()
	nbo.DryRun = true
	nb, err := reader.nextBoot(ctx, nbo)
	if err != nil {
		return p, fmt.Errorf("node %s: plan next-boot: %w", s.node.Name, err)
	}
	a.dryNext = nb
	return p, nil
}

// Text renders the plan for an operator.
func (p *Plan) Text(w io.Writer) {
	fmt.Fprintf(w, "node %s: in-band, agent mode %s", p.Node, p.Mode)
	if !p.Connected {
		fmt.Fprint(w, " (from the inventory; not connected)")
	}
	fmt.Fprintln(w)
	for _, n := range p.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	e := p.Identity.Expected
	if !p.Identity.OptedOut {
		fmt.Fprintf(w, "  identity: serial %q, macs %v, bmc %v\n", e.Serial, e.MACs, e.BMCAddresses)
	}
	if c := p.Identity.Check; c != nil {
		for _, f := range c.Facts {
			fmt.Fprintf(w, "    %-11s %-8s expected %q found %q %s\n", f.Fact, f.Result, f.Expected, f.Found, f.Reason)
		}
	}
	if d := p.Disk.Resolved; d != nil {
		fmt.Fprintf(w, "  disk: %s (%s, %d bytes): %s\n", d.Path, d.Name, d.SizeBytes, d.Reason)
	} else {
		fmt.Fprintf(w, "  disk: %s\n", p.Disk.Rule)
	}
	for _, r := range p.Disk.Ranges {
		fmt.Fprintf(w, "  zero: bytes %d..%d (%d bytes) %s\n", r.Offset, r.End()-1, r.Length, r.What)
	}
	for i, st := range p.Steps {
		mark := ""
		if st.Destructive {
			mark = " [destructive]"
		}
		fmt.Fprintf(w, "  %d. %s%s: %s\n", i+1, st.Step, mark, st.What)
		for _, c := range st.Commands {
			fmt.Fprintf(w, "       $ %s\n", c)
		}
	}
}
