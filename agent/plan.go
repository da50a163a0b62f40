package agent

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/reprov/reprov/agent/fleet"
	"github.com/reprov/reprov/agent/inband"
	"github.com/reprov/reprov/agent/inband/sshx"
	"github.com/reprov/reprov/agent/inband/steps"
	"github.com/reprov/reprov/agent/landing"
	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/inventory"
	"github.com/reprov/reprov/playbooks"
)

// PlanOptions configure Plan.
type PlanOptions struct {
	// Offline plans from the inventory (and the store's learned quirks)
	// alone: no BMC and no node is contacted.
	Offline bool
	// LandingURL is where the node's network boot is expected to ask
	// (landing.url).
	LandingURL string
	// NeedProfile reports a node without an install profile as a problem
	// (reinstall --dry-run: the real run refuses it); DefaultProfile says
	// landing.kernel provides one for every playbook without its own.
	NeedProfile, DefaultProfile bool
}

// NodePlan is what a reinstall would do to one node, step by step, with
// the exact commands, the disk it would touch, and why.
type NodePlan struct {
	Node     string `json:"node"`
	Rack     string `json:"rack,omitempty"`
	Playbook string `json:"playbook"`
	// PlaybookSource is where the playbook is defined.
	PlaybookSource string `json:"playbook_source"`
	// Paths are the paths in the order they would be tried.
	Paths []playbooks.Path `json:"paths"`
	// Offline is set when nothing was contacted.
	Offline bool `json:"offline"`
	// Why explains the order and what was found.
	Why []string `json:"why"`
	// BMC is what the BMC said (online) or what the inventory says.
	BMC PlanBMC `json:"bmc"`
	// SSH is what SSH said: "answers", "does not answer: …", "no address",
	// or "not contacted" offline.
	SSH string `json:"ssh"`
	// Disk is the disk the in-band path would touch (resolved online;
	// configured or the rule offline).
	Disk string `json:"disk,omitempty"`
	// Steps are the steps, common and per path, in order.
	Steps []PlanStep `json:"steps"`
	// Inband is the in-band step's own plan (identity, disk, ranges,
	// commands on the node).
	Inband *inband.Plan `json:"inband,omitempty"`
	// PreHooks and PostHooks are the hooks a reinstall would run (plan
	// never runs them).
	PreHooks  []string `json:"pre_hooks,omitempty"`
	PostHooks []string `json:"post_hooks,omitempty"`
	// Problems would stop the node at precheck (nothing changed).
	Problems []string `json:"problems,omitempty"`
	// Proposal is advice from quirks learned on other nodes of its model.
	Proposal string `json:"proposal,omitempty"`
}

// PlanBMC is the BMC part of a plan.
type PlanBMC struct {
	Address  string            `json:"address,omitempty"`
	Protocol string            `json:"protocol,omitempty"`
	Power    bmc.PowerState    `json:"power,omitempty"`
	Override *bmc.BootOverride `json:"override,omitempty"`
	Identity *bmc.Identity     `json:"identity,omitempty"`
}

// PlanStep is one step of a plan.
type PlanStep struct {
	// Path is the path the step belongs to ("" for common steps).
	Path string `json:"path,omitempty"`
	Step string `json:"step"`
	// When says under which condition the step runs ("" always).
	When        string   `json:"when,omitempty"`
	Destructive bool     `json:"destructive"`
	What        string   `json:"what"`
	Commands    []string `json:"commands,omitempty"`
}

// Plan says what a reinstall of n would do. Online it reads the BMC
// (power, override, identity) and the node (identity, boot disk, the bytes
// that would be zeroed) without changing anything: in agent mode push too,
// nothing is copied to the node (inband.Session.Plan).
func (e *Engine) Plan(ctx context.Context, n inventory.Node, o PlanOptions) (*NodePlan, error) {
	pb, err := e.cfg.Playbooks.Get(n.Playbook)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", n.Name, err)
	}
	p := &NodePlan{Node: n.Name, Rack: n.Rack, Playbook: pb.Name, PlaybookSource: pb.Source.String(), Offline: o.Offline,
		BMC: PlanBMC{Address: n.BMC.Address}}
	p.Why = append(p.Why, fmt.Sprintf("playbook %s (%s): paths %s, escalate %t", pb.Name, pb.Source, joinPaths(pb.Paths), pb.Escalate))

	r := &nodeRun{e: e, n: n, pb: pb, rep: &NodeReport{}, ran: map[playbooks.Path]bool{}, cannot: map[playbooks.Path]string{}}
	if quirks, err := e.cfg.Store.Quirks(ctx, n.Name); err == nil {
		for _, q := range quirks {
			if q.Quirk == store.QuirkIgnoresOOBPXE && pb.Uses(playbooks.PathInband) {
				r.inbandQ = true
				p.Why = append(p.Why, fmt.Sprintf("learned in run %d: the board ignores the out-of-band PXE override: in-band first", q.RunID))
			}
		}
	}
	if model := n.Labels[ModelLabel]; model != "" && !r.inbandQ {
		if mq, err := e.cfg.Store.ModelQuirks(ctx, model); err == nil {
			for _, q := range mq {
				if q.Quirk == store.QuirkIgnoresOOBPXE && q.Node != n.Name {
					p.Proposal = fmt.Sprintf("model %s ignores the out-of-band PXE override (learned on %s in run %d): consider playbook hp-dl360-g7 for it", model, q.Node, q.RunID)
					break
				}
			}
		}
	}
	p.Paths = r.order()
	p.Problems = append(p.Problems, e.planRefusals(n, pb, o)...)

	protocol := ""
	if n.BMC.Address == "" {
		p.Why = append(p.Why, "no BMC address: the out-of-band path is not possible")
	} else if a, err := inventory.ParseBMCAddress(n.BMC.Address); err == nil {
		protocol = a.Protocol
	}
	if o.Offline {
		p.SSH = "not contacted"
	} else {
		protocol = e.planReadBMC(ctx, n, pb, p, protocol)
	}
	p.BMC.Protocol = protocol

	var ip *inband.Plan
	cfg := inband.Config{StateDir: e.cfg.StateDir, Run: "RUN", AgentBinary: e.cfg.AgentBinary, AgentFiles: e.agentFiles, Layout: e.layout(n),
		RebootDelay: e.cfg.RebootDelay, Wipe: wipePolicy(pb)}
	switch {
	case n.SSH.Address == "":
		p.SSH = "no address"
		p.Why = append(p.Why, "no SSH address: the in-band path is not possible")
		if !pb.Uses(playbooks.PathOOB) {
			p.Problems = append(p.Problems, ReasonNoSSH+": the playbook's only path is in-band")
		}
	case o.Offline:
		ip, err = inband.PlanOffline(n, cfg)
		if err != nil {
			p.Problems = append(p.Problems, err.Error())
		}
	default:
		ip = e.planReadNode(ctx, n, pb, p, cfg)
	}
	p.Inband = ip
	switch {
	case ip != nil && ip.Disk.Resolved != nil:
		p.Disk = ip.Disk.Resolved.Path
	case n.Boot.Disk != "":
		p.Disk = n.Boot.Disk + " (configured; resolved on the node)"
	case ip != nil:
		p.Disk = ip.Disk.Rule
	}
	for _, h := range pb.PreHooks {
		p.PreHooks = append(p.PreHooks, hookLine(h))
	}
	for _, h := range pb.PostHooks {
		p.PostHooks = append(p.PostHooks, hookLine(h))
	}
	p.Steps = e.planSteps(n, pb, p, protocol, ip, o.LandingURL)
	return p, nil
}

// planRefusals are what a reinstall would refuse before contacting
// anything, found without contacting anything: a BMC address or option
// that does not parse, a credential reference that does not resolve, a
// landing URL that is not http(s), a node without an install profile.
func (e *Engine) planRefusals(n inventory.Node, pb *playbooks.Playbook, o PlanOptions) []string {
	var out []string
	if n.BMC.Address != "" {
		if _, err := fleet.EndpointFor(n, nil); err != nil {
			out = append(out, bmcFailure(err).Error())
		}
	}
	if o.LandingURL != "" {
		if _, err := landing.ParseURL(o.LandingURL); err != nil {
			out = append(out, "landing: "+err.Error())
		}
	}
	if o.NeedProfile && pb.Install.IsZero() && !o.DefaultProfile {
		out = append(out, fmt.Sprintf("no install profile: playbook %s has no install and landing.kernel is not set; a node that lands would have nothing to boot", pb.Name))
	}
	return out
}

func joinPaths(ps []playbooks.Path) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = string(p)
	}
	return strings.Join(s, ", ")
}

func hookLine(h playbooks.Hook) string {
	return fmt.Sprintf("%s: %s (timeout %s, %s)", h.Name, strings.Join(h.Command(), " "), h.Timeout, h.Pos)
}

// planReadBMC reads the BMC, read-only (a dry-run wrapper guards it).
func (e *Engine) planReadBMC(ctx context.Context, n inventory.Node, pb *playbooks.Playbook, p *NodePlan, protocol string) string {
	if n.BMC.Address == "" {
		return protocol
	}
	bctx, cancel := context.WithTimeout(ctx, pb.Timeouts.Precheck)
	defer cancel()
	c, err := e.cfg.OpenBMC(bctx, n)
	if err != nil {
		f := bmcFailure(err)
		p.Problems = append(p.Problems, f.Error())
		return protocol
	}
	c = bmc.DryRun(c, func(string) {})
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = c.Close(cctx)
	}()
	protocol = c.Protocol()
	if ps, err := c.PowerState(bctx); err == nil {
		p.BMC.Power = ps
	} else {
		p.Problems = append(p.Problems, bmcFailure(err).Error())
	}
	if ov, err := c.BootOverride(bctx); err == nil {
		p.BMC.Override = &ov
	}
	if id, err := c.Identity(bctx); err == nil {
		p.BMC.Identity = &id
	}
	p.Why = append(p.Why, fmt.Sprintf("the BMC answers (%s), power %s", protocol, p.BMC.Power))
	return protocol
}

// planReadNode reads the node over SSH: identity and disk, nothing written
// (but the pushed agent, removed after).
func (e *Engine) planReadNode(ctx context.Context, n inventory.Node, pb *playbooks.Playbook, p *NodePlan, cfg inband.Config) *inband.Plan {
	sctx, cancel := context.WithTimeout(ctx, pb.Timeouts.Precheck)
	defer cancel()
	conn, err := e.planDial(sctx, n)
	if err != nil && !sshx.Unreachable(err) {
		// A changed host key, refused credentials: the real run would
		// stop the node at precheck, whatever the playbook.
		p.SSH = "refused: " + err.Error()
		p.Problems = append(p.Problems, sshFailure(err).Error())
		ip, _ := inband.PlanOffline(n, cfg)
		return ip
	}
	if err != nil {
		p.SSH = "does not answer: " + err.Error()
		p.Why = append(p.Why, "SSH does not answer: the in-band path waits for the old OS to come back (escalation)")
		if !pb.Uses(playbooks.PathOOB) {
			p.Problems = append(p.Problems, ReasonSSHUnreachable+": "+err.Error())
		}
		ip, _ := inband.PlanOffline(n, cfg)
		return ip
	}
	defer conn.Close()
	p.SSH = "answers"
	sess, err := inband.NewSession(n, conn, cfg)
	if err != nil {
		p.Problems = append(p.Problems, err.Error())
		return nil
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
		defer cancel()
		_ = sess.Close(cctx)
	}()
	ip, err := sess.Plan(sctx)
	if err != nil {
		if f := identityFailure(err, nil); f != nil {
			p.Problems = append(p.Problems, f.Category+": "+err.Error()+" — the node would be stopped before any BMC write")
		} else {
			p.Problems = append(p.Problems, "in-band plan: "+err.Error())
		}
	}
	if ip != nil && ip.Identity.Found != nil {
		p.Why = append(p.Why, "the running OS answers, boot id "+ip.Identity.Found.BootID)
	}
	return ip
}

// planSteps lists the steps in order with their commands.
func (e *Engine) planSteps(n inventory.Node, pb *playbooks.Playbook, p *NodePlan, protocol string, ip *inband.Plan, landingURL string) []PlanStep {
	var out []PlanStep
	pre := "read-only: "
	var checks []string
	if n.BMC.Address != "" {
		checks = append(checks, "the BMC answers with the credentials, power state known")
	}
	if n.SSH.Address != "" {
		checks = append(checks, "SSH answers (if it does: identify the running OS, record its boot id; a wrong identity stops the node before any BMC write)")
	}
	out = append(out, PlanStep{Step: StepPrecheck, What: pre + strings.Join(checks, "; ")})
	if len(pb.PreHooks) > 0 {
		out = append(out, PlanStep{Step: StepPreHooks, What: "on the controller, in order; the first failure stops the node (not run by plan)", Commands: p.PreHooks})
	}
	first := true
	for _, path := range p.Paths {
		when := ""
		if !first {
			when = "if the path before cannot be carried out"
			if path == playbooks.PathInband && pb.Escalate {
				when += ", or the board is caught ignoring the override (escalate)"
			}
		}
		if (path == playbooks.PathOOB && n.BMC.Address == "") || (path == playbooks.PathInband && n.SSH.Address == "") {
			continue
		}
		pc := &planContext{e: e, n: n, ip: ip, p: p, pb: pb, protocol: protocol, landingURL: landingURL, path: path, when: when}
		// The path's own steps, then the wait: as the step table declares them.
		for _, spec := range stepTable() {
			if spec.plan != nil && (spec.path == path || (spec.path == "" && spec.name == StepWaitLanding)) {
				out = append(out, spec.plan(pc)...)
			}
		}
		first = false
	}
	if len(pb.PostHooks) > 0 {
		out = append(out, PlanStep{Step: StepPostHooks, When: "if the pre-hooks ran", What: "on the controller, with REPROV_RESULT landed or failed (not run by plan)", Commands: p.PostHooks})
	}
	return out
}

// oobCommands are the commands equivalent to the out-of-band steps: the
// override (set, read back) and the power action.
func oobCommands(n inventory.Node, pb *playbooks.Playbook, protocol string) (set, pow []string) {
	mode := bmcMode(pb.BootModeFor(n.Boot.Mode))
	addr, _ := inventory.ParseBMCAddress(n.BMC.Address)
	user := n.BMC.Username
	if user == "" {
		user = "USER"
	}
	action := string(pb.PowerAction)
	if protocol == "redfish" {
		sys := "https://" + hostPort(addr.Host, addr.Port) + addr.Path
		if addr.Path == "" {
			sys = "https://" + hostPort(addr.Host, addr.Port) + "/redfish/v1/Systems/<the only system>"
		}
		body := `{"Boot":{"BootSourceOverrideTarget":"Pxe","BootSourceOverrideEnabled":"Once"}}`
		if mode == bmc.BootModeUEFI {
			body = `{"Boot":{"BootSourceOverrideTarget":"Pxe","BootSourceOverrideEnabled":"Once","BootSourceOverrideMode":"UEFI"}}`
		}
		set = []string{"GET " + sys + "   # ETag", "PATCH " + sys + " (If-Match: ETag) " + body, "GET " + sys + "   # read back Boot"}
		reset := map[string]string{"cycle": "PowerCycle (else ForceRestart, from the allowed values)", "reset": "ForceRestart", "off-on": "ForceOff, then On"}[action]
		pow = []string{"GET " + sys + "   # PowerState; off: ResetType On", "POST " + sys + "/Actions/ComputerSystem.Reset {\"ResetType\": " + reset + "}"}
		return set, pow
	}
	base := fmt.Sprintf("ipmitool -I lanplus -H %s -p %d -U %s -E", addr.Host, portOr(addr.Port, 623), user)
	flags := "0x80"
	if mode == bmc.BootModeUEFI {
		flags = "0xa0"
	}
	if n.BMC.Options.BootFlagTimeout != "keep" {
		set = append(set, base+" raw 0x00 0x08 0x03 0x08   # disable the 60 s boot-flag timer")
	}
	set = append(set, base+" raw 0x00 0x08 0x05 "+flags+" 0x04 0x00 0x00 0x00   # valid, next boot only, force PXE, "+string(mode),
		base+" chassis bootparam get 5   # read back")
	cmd := map[string]string{"cycle": "chassis power cycle", "reset": "chassis power reset", "off-on": "chassis power off; (wait for off); chassis power on"}[action]
	pow = []string{base + " chassis power status   # off: chassis power on", base + " " + cmd}
	if protocol == "" {
		set = append([]string{"# protocol detected at run time: Redfish if a service root answers over HTTPS, else IPMI (shown)"}, set...)
	}
	return set, pow
}

// planOOBBoot describes the override step (the step table's plan).
func planOOBBoot(pc *planContext) []PlanStep {
	set, _ := oobCommands(pc.n, pc.pb, pc.protocol)
	mode := bmcMode(pc.pb.BootModeFor(pc.n.Boot.Mode))
	return []PlanStep{{Path: string(playbooks.PathOOB), Step: StepOOBBoot, When: pc.when,
		What: fmt.Sprintf("one-time PXE boot override (%s) through the BMC, read back; timeout %s", mode, pc.pb.Timeouts.OOBBoot), Commands: set}}
}

// planPower describes the power step (the step table's plan).
func planPower(pc *planContext) []PlanStep {
	_, pow := oobCommands(pc.n, pc.pb, pc.protocol)
	return []PlanStep{{Path: string(playbooks.PathOOB), Step: StepPower, When: pc.when,
		What: fmt.Sprintf("power %s (power on if off); timeout %s", pc.pb.PowerAction, pc.pb.Timeouts.Power), Commands: pow}}
}

// planInband describes the in-band unit from the node's own plan (the
// step table's plan).
func planInband(pc *planContext) []PlanStep {
	if pc.ip == nil {
		return nil
	}
	out := make([]PlanStep, 0, len(pc.ip.Steps))
	for _, s := range pc.ip.Steps {
		out = append(out, PlanStep{Path: string(playbooks.PathInband), Step: s.Step, When: pc.when, Destructive: s.Destructive, What: s.What, Commands: s.Commands})
	}
	return out
}

// planWait describes the wait for landing after a path (the step table's
// plan).
func planWait(pc *planContext) []PlanStep {
	n, pb, path := pc.n, pc.pb, pc.path
	landingURL := pc.landingURL
	if landingURL == "" {
		landingURL = "<landing.url>"
	}
	macs := strings.Join(n.MACs, ", ")
	if macs == "" {
		macs = "(no MAC in the inventory: the landing endpoint cannot recognise the node)"
	}
	what := fmt.Sprintf("up to %s for GET %s/boot/ipxe?mac=… from %s (the proof)", pb.Timeouts.WaitLanding, strings.TrimRight(landingURL, "/"), macs)
	if path == playbooks.PathOOB {
		what += "; the BMC's override consumed is evidence only; the old OS answering SSH with a new boot id means the board ignored the override"
		if pb.Escalate && pb.Uses(playbooks.PathInband) {
			what += " → escalate to in-band and learn the quirk"
		}
	} else {
		what += fmt.Sprintf("; the old OS must go down within %s", pb.Timeouts.Reboot)
	}
	return []PlanStep{{Path: string(path), Step: StepWaitLanding, When: pc.when, What: what}}
}

func hostPort(h string, port int) string {
	if port == 0 {
		return h
	}
	return h + ":" + strconv.Itoa(port)
}

func portOr(p, def int) int {
	if p == 0 {
		return def
	}
	return p
}

// Text renders the plan for an operator.
func (p *NodePlan) Text(w io.Writer) {
	fmt.Fprintf(w, "node %s", p.Node)
	if p.Rack != "" {
		fmt.Fprintf(w, " (rack %s)", p.Rack)
	}
	fmt.Fprintf(w, ": playbook %s, paths %s", p.Playbook, joinPaths(p.Paths))
	if p.Offline {
		fmt.Fprint(w, " — offline: from the inventory alone")
	}
	fmt.Fprintln(w)
	for _, y := range p.Why {
		fmt.Fprintf(w, "  why: %s\n", y)
	}
	if p.BMC.Address != "" {
		fmt.Fprintf(w, "  bmc: %s", p.BMC.Address)
		if p.BMC.Protocol != "" {
			fmt.Fprintf(w, " (%s)", p.BMC.Protocol)
		}
		if p.BMC.Power != "" {
			fmt.Fprintf(w, ", power %s", p.BMC.Power)
		}
		if p.BMC.Override != nil {
			fmt.Fprintf(w, ", override now %s", p.BMC.Override.Device)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "  ssh: %s\n", p.SSH)
	if p.Disk != "" {
		fmt.Fprintf(w, "  disk: %s\n", p.Disk)
	}
	if ip := p.Inband; ip != nil {
		for _, r := range ip.Disk.Ranges {
			fmt.Fprintf(w, "  zero: bytes %d..%d (%d bytes) %s\n", r.Offset, r.End()-1, r.Length, r.What)
		}
		if c := ip.Identity.Check; c != nil {
			for _, f := range c.Facts {
				fmt.Fprintf(w, "  identity: %-11s %-8s expected %q found %q %s\n", f.Fact, f.Result, f.Expected, f.Found, f.Reason)
			}
		}
		for _, note := range ip.Notes {
			fmt.Fprintf(w, "  note: %s\n", note)
		}
	}
	for _, pr := range p.Problems {
		fmt.Fprintf(w, "  PROBLEM: %s\n", pr)
	}
	if p.Proposal != "" {
		fmt.Fprintf(w, "  proposal: %s\n", p.Proposal)
	}
	for i, s := range p.Steps {
		mark := ""
		if s.Destructive {
			mark = " [destructive]"
		}
		label := s.Step
		if s.Path != "" {
			label = s.Path + "/" + s.Step
		}
		fmt.Fprintf(w, "  %d. %s%s: %s\n", i+1, label, mark, s.What)
		if s.When != "" {
			fmt.Fprintf(w, "       when: %s\n", s.When)
		}
		for _, c := range s.Commands {
			fmt.Fprintf(w, "       $ %s\n", c)
		}
	}
}

// Restore puts a node's saved boot sector (file, written before a wipe)
// back over SSH, unless the disk holds something other than the zeroes
// the wipe left or the saved bytes (force overrides). The write goes to
// the audit log first.
func (e *Engine) Restore(ctx context.Context, n inventory.Node, file string, force bool) (*steps.RestoreResult, error) {
	if e.cfg.Audit == nil {
		return nil, fmt.Errorf("node %s: restore needs the audit log", n.Name)
	}
	conn, err := e.cfg.DialSSH(ctx, n)
	if err != nil {
		return nil, fmt.Errorf("node %s: SSH: %w", n.Name, err)
	}
	defer conn.Close()
	sess, err := inband.NewSession(n, conn, inband.Config{StateDir: e.cfg.StateDir, Audit: e.cfg.Audit, Logger: e.log,
		AgentBinary: e.cfg.AgentBinary, AgentFiles: e.agentFiles, Layout: e.layout(n)})
	if err != nil {
		return nil, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
		defer cancel()
		_ = sess.Close(cctx)
	}()
	return sess.Restore(ctx, file, force)
}
