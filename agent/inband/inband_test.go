package inband_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/reprov/reprov/agent/audit"
	"github.com/reprov/reprov/agent/inband"
	"github.com/reprov/reprov/agent/inband/host/fixture"
	"github.com/reprov/reprov/agent/inband/steps"
	"github.com/reprov/reprov/inventory"
)

func TestReinstallPushMBR(t *testing.T) {
	r := newRig(t, rigOpts{label: "dos"})
	s := r.session(nil)
	res, err := s.Reinstall(context.Background())
	if err != nil {
		t.Fatalf("reinstall: %v\nlogs:\n%s", err, r.logs)
	}
	r.assertZeroed([][2]int64{{0, 512}})
	if !res.Wipe.Verified || res.Wipe.Table != "mbr" || res.Disk.Path != r.image || res.Disk.Name != "sda" {
		t.Fatalf("wipe %+v disk %+v", res.Wipe, res.Disk)
	}
	if !res.Identity.Check.OK || res.Identity.Check.Matched != 3 {
		t.Fatalf("identity check %+v: want serial, MAC and BMC address matched", res.Identity.Check)
	}
	if res.BootIDBefore != "9c1b7a34-6d5e-4f27-a3b8-0c2d4e6f8a10" {
		t.Fatalf("boot id %q", res.BootIDBefore)
	}
	saved, err := steps.ReadSavedFile(res.SavedFile)
	if err != nil {
		t.Fatal(err)
	}
	if saved.Node != "web-014" || !bytes.Equal(saved.Ranges[0].Data, r.orig[:512]) {
		t.Fatal("saved file does not hold the original LBA 0 of web-014")
	}
	if f := r.bmc.Machine().BootFlags(); !f.Valid || f.Device != "pxe" || f.EFI || f.Persistent {
		t.Fatalf("BMC boot flags %+v, want one-time legacy PXE", f)
	}
	if !res.NextBoot.IPMI.Verified || res.NextBoot.IPMI.Via != "open" {
		t.Fatalf("next-boot %+v", res.NextBoot.IPMI)
	}
	if !r.rebooted() {
		t.Fatal("no reboot")
	}
	// The pushed agent is gone.
	var agentPath string
	for _, rec := range r.records() {
		if rec.Action == inband.ActionPushAgent && rec.Phase == audit.PhaseOutcome {
			agentPath, _ = rec.Detail["path"].(string)
		}
	}
	if agentPath == "" || !strings.HasPrefix(agentPath, "/tmp/reprov-agent-") {
		t.Fatalf("agent path %q not recorded", agentPath)
	}
	if _, err := os.Stat(agentPath); !os.IsNotExist(err) {
		t.Fatalf("the agent %s is still on the node (%v)", agentPath, err)
	}
}

func TestReinstallPushGPTThenRestore(t *testing.T) {
	r := newRig(t, rigOpts{label: "gpt", ipmitool: true})
	res, err := r.session(nil).Reinstall(context.Background())
	if err != nil {
		t.Fatalf("reinstall: %v", err)
	}
	r.assertZeroed([][2]int64{{0, 34 * 512}, {imageSize - 33*512, imageSize}})
	if res.NextBoot.IPMI.Via != "ipmitool" || !res.NextBoot.IPMI.Verified {
		t.Fatalf("next-boot %+v", res.NextBoot.IPMI)
	}
	// reprov restore NODE: a new session, the newest saved file.
	file, err := inband.LatestSaved(r.stateDir, "web-014")
	if err != nil || file != res.SavedFile {
		t.Fatalf("latest saved %q, %v; want %q", file, err, res.SavedFile)
	}
	rr, err := r.session(nil).Restore(context.Background(), file, false)
	if err != nil {
		t.Fatal(err)
	}
	if rr.Before != "zero" || !rr.Verified {
		t.Fatalf("restore %+v", rr)
	}
	if !bytes.Equal(r.read(), r.orig) {
		t.Fatal("the image differs from the original after the restore")
	}
}

func TestReinstallCommandsPath(t *testing.T) {
	const sshSecret = "ssh-S3cret-91c4"
	t.Setenv("REPROV_TEST_SSH_PASSWORD", sshSecret)
	for _, label := range []string{"dos", "gpt"} {
		t.Run(label, func(t *testing.T) {
			// The GPT run's reboot also drops the link, as a real one does.
			r := newRig(t, rigOpts{label: label, mode: inband.ModeCommands, dropLink: label == "gpt",
				node: func(n *inventory.Node) { n.SSH.Password = inventory.NewSecret("env:REPROV_TEST_SSH_PASSWORD") }})
			spy := &spyConn{inner: r.dial()}
			seen := map[string]bool{}
			spy.before = intentBeforeEffect(t, r, seen)
			res, err := r.session(spy).Reinstall(context.Background())
			if err != nil {
				t.Fatalf("reinstall: %v\nlogs:\n%s", err, r.logs)
			}
			if label == "dos" {
				r.assertZeroed([][2]int64{{0, 512}})
			} else {
				r.assertZeroed([][2]int64{{0, 34 * 512}, {imageSize - 33*512, imageSize}})
				if !res.LinkDropped {
					t.Error("the dropped link was not noticed")
				}
			}
			if !res.Wipe.Verified || !res.NextBoot.IPMI.Verified || res.NextBoot.IPMI.Via != "ipmitool" || !r.rebooted() {
				t.Fatalf("result wipe %+v next-boot %+v rebooted %t", res.Wipe, res.NextBoot.IPMI, r.rebooted())
			}
			if f := r.bmc.Machine().BootFlags(); !f.Valid || f.Device != "pxe" {
				t.Fatalf("BMC flags %+v", f)
			}
			for _, a := range []string{inband.ActionWipe, inband.ActionNextBoot, inband.ActionReboot} {
				if !seen[a] {
					t.Errorf("no command of %s was seen", a)
				}
			}
			cmds := spy.commands()
			if contains(cmds, "reprov-agent") || contains(cmds, "cat > ") {
				t.Fatal("the commands path copied a binary to the node")
			}
			if !contains(cmds, "dd if=/dev/zero of="+r.image+" bs=512 seek=0 count=") {
				t.Fatalf("no dd of the image in %q", cmds)
			}
			// dd only ever wrote the image.
			for _, c := range cmds {
				if strings.Contains(c, "of=") && !strings.Contains(c, "of="+r.image+" ") {
					t.Fatalf("a dd wrote elsewhere: %s", c)
				}
			}
			for _, rec := range r.records() {
				if rec.Action == inband.ActionPushAgent {
					t.Fatal("the commands path pushed an agent")
				}
			}
			rj, _ := json.Marshal(res)
			audit, _ := os.ReadFile(r.audit)
			saved, _ := os.ReadFile(res.SavedFile)
			assertNoSecret(t, []string{bmcPassword, sshSecret}, string(rj), string(audit), string(saved), r.logs.String())
		})
	}
}

// intentBeforeEffect returns a spy hook that checks, at the moment each
// destructive command is sent, that its intent is already in the audit
// log file, and notes the actions it saw.
func intentBeforeEffect(t *testing.T, r *rig, seen map[string]bool) func(string) {
	return func(cmd string) {
		var action string
		switch {
		case strings.Contains(cmd, "wipe-boot-sector") && strings.Contains(cmd, "--yes"),
			strings.Contains(cmd, "dd if=/dev/zero"):
			action = inband.ActionWipe
		case strings.Contains(cmd, "next-boot pxe") && !strings.Contains(cmd, "--dry-run"),
			strings.Contains(cmd, "bootparam set bootflag"):
			action = inband.ActionNextBoot
		case strings.Contains(cmd, "reprov-agent reboot"), strings.Contains(cmd, r.layout.RebootMarker):
			action = inband.ActionReboot
		default:
			return
		}
		seen[action] = true
		open := false
		for _, u := range audit.Unsettled(r.records()) {
			open = open || u.Action == action
		}
		if !open {
			t.Errorf("%s ran before its intent was in the audit log: %s", action, cmd)
		}
	}
}

func assertNoSecret(t *testing.T, secrets []string, outputs ...string) {
	t.Helper()
	for i, o := range outputs {
		for _, s := range secrets {
			if strings.Contains(o, s) {
				t.Errorf("output %d holds a secret: %s", i, o)
			}
		}
	}
}

func TestIdentityMismatchWipesNothing(t *testing.T) {
	for _, tc := range []struct {
		name   string
		edit   func(*inventory.Node)
		target error
		says   []string
	}{
		{"serial", func(n *inventory.Node) { n.Serial = "CZJ9999999" }, steps.ErrIdentityMismatch,
			[]string{"serial expected CZJ9999999, found CZJ1234ABC"}},
		{"mac", func(n *inventory.Node) { n.MACs = []string{"aa:bb:cc:dd:ee:ff"} }, steps.ErrIdentityMismatch,
			[]string{"mac expected aa:bb:cc:dd:ee:ff, found 3c:4a:92:11:22:33"}},
		{"bmc", func(n *inventory.Node) { n.BMC.Address = "ipmi://10.1.12.99" }, steps.ErrIdentityMismatch,
			[]string{"bmc_address expected 10.1.12.99, found 10.1.12.14"}},
		{"nothing to compare", func(n *inventory.Node) { n.Serial, n.MACs, n.BMC.Address = "", nil, "" }, steps.ErrNothingToCompare,
			[]string{"nothing to compare"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, rigOpts{node: tc.edit})
			res, err := r.session(nil).Reinstall(context.Background())
			if !errors.Is(err, tc.target) {
				t.Fatalf("err %v, want %v", err, tc.target)
			}
			var ie *steps.IdentityError
			if !errors.As(err, &ie) {
				t.Fatalf("err %T is not an IdentityError", err)
			}
			for _, s := range append(tc.says, "node web-014", "nothing was written") {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			if res.SavedFile != "" || res.Wipe != nil {
				t.Fatalf("result %+v went past identify", res)
			}
			r.assertUntouched()
		})
	}
}

func TestOptOutSkipsTheComparison(t *testing.T) {
	r := newRig(t, rigOpts{node: func(n *inventory.Node) { n.Serial = "SOMEONE-ELSE"; n.SkipIdentityCheck = true }})
	p, err := r.session(nil).Plan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !p.Identity.OptedOut || !p.Identity.Check.OptedOut || !strings.Contains(strings.Join(p.Notes, "\n"), "identity check SKIPPED") {
		t.Fatalf("plan does not show the opt-out: %+v", p.Identity)
	}
	r.assertUntouched()
}

func TestRefusedDiskWipesNothing(t *testing.T) {
	part := t.TempDir() + "/part.img"
	if err := os.WriteFile(part, bytes.Repeat([]byte{7}, 2<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{inband.ModePush, inband.ModeCommands} {
		t.Run(mode, func(t *testing.T) {
			r := newRig(t, rigOpts{mode: mode,
				fixture: func(n *fixture.Node) { n.Disks[0].Partitions[0].Image = part },
				node:    func(n *inventory.Node) { n.Boot.Disk = part }})
			before, _ := os.ReadFile(part)
			_, err := r.session(nil).Reinstall(context.Background())
			if !errors.Is(err, steps.ErrDiskRefused) || !strings.Contains(err.Error(), "is a partition (sda1 of disk sda)") {
				t.Fatalf("err %v, want the partition refused", err)
			}
			after, _ := os.ReadFile(part)
			if !bytes.Equal(before, after) {
				t.Fatal("the partition image changed")
			}
			r.assertUntouched()
		})
	}
}

// TestRebootDroppingTheLinkIsSuccess: push mode here, the commands path in
// TestReinstallCommandsPath/gpt.
func TestRebootDroppingTheLinkIsSuccess(t *testing.T) {
	for _, mode := range []string{inband.ModePush} {
		t.Run(mode, func(t *testing.T) {
			r := newRig(t, rigOpts{mode: mode, dropLink: true})
			res, err := r.session(nil).Reinstall(context.Background())
			if err != nil {
				t.Fatalf("reinstall: %v", err)
			}
			if !res.LinkDropped || !r.rebooted() {
				t.Fatalf("link dropped %t, rebooted %t", res.LinkDropped, r.rebooted())
			}
			var outcome *audit.Record
			for _, rec := range r.records() {
				if rec.Action == inband.ActionReboot && rec.Phase == audit.PhaseOutcome {
					outcome = &rec
				}
			}
			if outcome == nil || outcome.Result != audit.ResultOK {
				t.Fatalf("reboot outcome %+v, want ok", outcome)
			}
		})
	}
}

// TestAuditIntentBeforeEffect checks, at the moment each destructive
// command is sent, that its intent is already in the audit log file (push
// mode here, the commands path in TestReinstallCommandsPath).
func TestAuditIntentBeforeEffect(t *testing.T) {
	r := newRig(t, rigOpts{})
	seen := map[string]bool{}
	spy := &spyConn{inner: r.dial()}
	spy.before = intentBeforeEffect(t, r, seen)
	if _, err := r.session(spy).Reinstall(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{inband.ActionWipe, inband.ActionNextBoot, inband.ActionReboot} {
		if !seen[a] {
			t.Errorf("no command of %s was seen", a)
		}
	}
	if u := audit.Unsettled(r.records()); len(u) != 0 {
		t.Errorf("intents without an outcome: %+v", u)
	}
}

func TestInterruptAfterTheWipeFinishesTheUnit(t *testing.T) {
	r := newRig(t, rigOpts{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	spy := &spyConn{inner: r.dial(), before: func(cmd string) {
		if strings.Contains(cmd, "wipe-boot-sector") && strings.Contains(cmd, "--yes") {
			cancel() // Ctrl-C while the wipe runs
		}
	}}
	res, err := r.session(spy).Reinstall(ctx)
	if err != nil {
		t.Fatalf("reinstall: %v", err)
	}
	if !res.Interrupted || !r.rebooted() || !r.bmc.Machine().BootFlags().Valid {
		t.Fatalf("interrupted %t, rebooted %t: the unit must finish", res.Interrupted, r.rebooted())
	}
	r.assertZeroed([][2]int64{{0, 512}})

	// Cancelled before the wipe: nothing is written.
	r2 := newRig(t, rigOpts{})
	ctx2, cancel2 := context.WithCancel(context.Background())
	spy2 := &spyConn{inner: r2.dial(), before: func(cmd string) {
		if strings.Contains(cmd, "--dry-run --include-data") {
			cancel2()
		}
	}}
	if _, err := r2.session(spy2).Reinstall(ctx2); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	r2.assertUntouched()
}

func TestFailureAfterTheWipeRestoresTheSectors(t *testing.T) {
	for _, mode := range []string{inband.ModePush, inband.ModeCommands} {
		t.Run(mode, func(t *testing.T) {
			r := newRig(t, rigOpts{mode: mode})
			r.bmc.Faults().SetIgnoreBootWrites(true)
			res, err := r.session(nil).Reinstall(context.Background())
			if !errors.Is(err, steps.ErrVerifyFailed) || !strings.Contains(err.Error(), "the boot sector was restored") {
				t.Fatalf("err %v, want a verify failure and a restore", err)
			}
			if res.Restored == nil || !res.Restored.Verified {
				t.Fatalf("restored %+v", res.Restored)
			}
			if !bytes.Equal(r.read(), r.orig) {
				t.Fatal("the image was not restored")
			}
			if r.rebooted() {
				t.Fatal("rebooted after a failed next-boot")
			}
			var restores int
			for _, rec := range r.records() {
				if rec.Action == inband.ActionRestore {
					restores++
				}
			}
			if restores != 2 {
				t.Fatalf("%d restore records, want intent and outcome", restores)
			}
		})
	}
}

func TestPlan(t *testing.T) {
	for _, mode := range []string{inband.ModePush, inband.ModeCommands} {
		t.Run(mode, func(t *testing.T) {
			r := newRig(t, rigOpts{label: "gpt", mode: mode})
			s := r.session(nil)
			p, err := s.Plan(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !p.Connected || p.Disk.Resolved.Path != r.image || p.Disk.Table != "gpt" || len(p.Disk.Ranges) != 2 ||
				p.Disk.Ranges[0].Offset != 0 || p.Disk.Ranges[0].Length != 34*512 || p.Disk.Ranges[1].Offset != imageSize-33*512 {
				t.Fatalf("plan disk %+v", p.Disk)
			}
			var text bytes.Buffer
			p.Text(&text)
			if mode == inband.ModeCommands {
				for _, want := range []string{
					"dd if=/dev/zero of=" + r.image + " bs=512 seek=0 count=34 conv=notrunc",
					"dd if=/dev/zero of=" + r.image + " bs=512 seek=" + itoa((imageSize-33*512)/512) + " count=33 conv=notrunc",
					"ipmitool chassis bootparam set bootflag force_pxe",
					"systemctl reboot",
				} {
					if !strings.Contains(text.String(), want) {
						t.Errorf("plan does not show %q:\n%s", want, text.String())
					}
				}
			} else if !strings.Contains(text.String(), "wipe-boot-sector --disk "+r.image+" --saved-sha256 ") {
				t.Errorf("plan does not show the agent's wipe:\n%s", text.String())
			}
			s.Close(context.Background())
			r.assertUntouched()

			off, err := inband.PlanOffline(r.node, inband.Config{StateDir: r.stateDir, AgentBinary: "/usr/lib/reprov/reprov-agent"})
			if err != nil {
				t.Fatal(err)
			}
			if off.Connected || len(off.Steps) == 0 || !strings.Contains(off.Disk.Rule, r.image) {
				t.Fatalf("offline plan %+v", off)
			}
		})
	}
}

// TestNoSecretInAnyOutput: push mode with plan, run and a failing run; the
// commands path in TestReinstallCommandsPath.
func TestNoSecretInAnyOutput(t *testing.T) {
	const sshSecret = "ssh-S3cret-91c4"
	t.Setenv("REPROV_TEST_SSH_PASSWORD", sshSecret)
	withPassword := func(n *inventory.Node) { n.SSH.Password = inventory.NewSecret("env:REPROV_TEST_SSH_PASSWORD") }
	r := newRig(t, rigOpts{ipmitool: true, node: withPassword})
	s := r.session(nil)
	p, err := s.Plan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	p.Text(&text)
	pj, _ := json.Marshal(p)
	res, err := s.Reinstall(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rj, _ := json.Marshal(res)
	saved, _ := os.ReadFile(res.SavedFile)

	r2 := newRig(t, rigOpts{node: func(n *inventory.Node) { withPassword(n); n.Serial = "WRONG" }})
	_, err = r2.session(nil).Reinstall(context.Background())
	if err == nil {
		t.Fatal("wrong serial accepted")
	}
	a1, _ := os.ReadFile(r.audit)
	a2, _ := os.ReadFile(r2.audit)
	assertNoSecret(t, []string{bmcPassword, sshSecret}, text.String(), string(pj), string(rj), string(saved), err.Error(),
		string(a1), string(a2), r.logs.String(), r2.logs.String())
}

func TestUEFIBootNextOnly(t *testing.T) {
	r := newRig(t, rigOpts{label: "gpt", uefi: true, config: func(c *inband.Config) {
		c.Wipe = inband.WipePolicy{BootSector: inband.WipeMBR, UEFI: inband.UEFIBootNext}
	}})
	res, err := r.session(nil).Reinstall(context.Background())
	if err != nil {
		t.Fatalf("reinstall: %v", err)
	}
	if !bytes.Equal(r.read(), r.orig) || res.WipeSkipped == "" || res.Wipe != nil || res.SavedFile != "" {
		t.Fatalf("wipe.uefi bootnext wrote the disk (skipped %q)", res.WipeSkipped)
	}
	if b, _ := os.ReadFile(r.efiState); strings.TrimSpace(string(b)) != "0003" || !res.NextBoot.EFI.Verified {
		t.Fatalf("BootNext %q, want 0003", b)
	}
	if f := r.bmc.Machine().BootFlags(); !f.Valid || f.Device != "pxe" || !f.EFI {
		t.Fatalf("BMC flags %+v, want PXE with the EFI bit", f)
	}
	if !r.rebooted() {
		t.Fatal("no reboot")
	}
}
