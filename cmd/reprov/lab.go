package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/reprov/reprov/lab/fleet"
)

// labUpOptions are the options of `reprov lab up`.
type labUpOptions struct {
	// Nodes is the number of nodes (0: the mix's counts).
	Nodes int
	// Mix is MODEL=COUNT,… ("": fleet.DefaultMix).
	Mix string
	// WriteInventory is the inventory file to write; reprov.yaml and the
	// lab's credential files go next to it.
	WriteInventory string
	BootDelay      time.Duration
	// BootDelaySpread spreads the firmware time over the nodes
	// (fleet.Config.BootDelaySpread).
	BootDelaySpread time.Duration
	OSBootTime      time.Duration
	Latency         time.Duration
	// PoweredOff starts the nodes off; it is implied when the lab has more
	// nodes than MaxOSUp.
	PoweredOff bool
	// MaxOSUp bounds the OSes up at once (0: fleet.MaxOSUpFor the mix).
	MaxOSUp int
	// Faults is FAULT=COUNT,…: faults given to the first nodes of their
	// base models (fleet.AssignFaults; docs/reliability.md).
	Faults []string
	// ready, if set, gets the lab's files once they are written (tests).
	ready func(fleet.Files)
}

func newLabCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Run a simulated rack on this machine's loopback (BMCs, SSH, network boot) to try reprov on",
	}
	var o labUpOptions
	up := &cobra.Command{
		Use:   "up --write-inventory FILE",
		Short: "Start a simulated rack in the foreground and write its inventory and reprov.yaml; Ctrl-C stops it",
		Long: `Start a simulated rack in this process, on 127.x.y.z loopback addresses, until Ctrl-C:
every node has a BMC (go-ipmi's reference BMC, or a Redfish BMC with the lab's CA), firmware
that decides at each power-on where the node boots, and — while it runs from its disk — an OS
that answers SSH and runs reprov's in-band agent against a virtual disk, sysfs and in-band IPMI.
A node booting from the network requests <landing.url>/boot/ipxe?mac=MAC, as iPXE does, until
the landing endpoint answers.

Models: ipmi (honours a PXE override), hp-dl360-g7 (accepts the override and ignores it; boots
the network only when its boot sector is blank), redfish, uefi (needs BootNext or the EFI bit),
flaky (its BMC loses and delays datagrams), dead-bmc (never answers), wrong-identity (its OS is
another machine: the identity check must stop it), wrong-bmc (its BMC answers for another
machine: another system GUID and serial).

Faults (--fault FAULT=COUNT, repeatable; docs/reliability.md says what reprov must do about each)
go to the first COUNT nodes of the fault's base model that have no other fault: loss1, loss10,
loss30, latency, bad-credentials, bmc-reboot, ignores-override, override-second-cycle,
ssh-hostkey-changed, ssh-refuses-auth (ipmi nodes); redfish-503, redfish-409,
redfish-session-limit (redfish); slow-os, disk-refuses-write (hp-dl360-g7); wrong-identity,
wrong-bmc, dead-bmc (the models of those names).

Written next to the inventory: reprov.yaml (inventory, state_dir, landing.listen and landing.url
on a free 127.0.0.1 port), the BMC password (file: reference, mode 0600), the controller's SSH
key and the nodes' known_hosts, and the Redfish CA. Every reprov command can use them:
  reprov power status --all --config DIR/reprov.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runLabUp(cmd.Context(), a, o)
		},
	}
	f := up.Flags()
	f.IntVar(&o.Nodes, "nodes", 0, "number of nodes (default: the mix's counts; with --mix, its counts are scaled to it)")
	f.StringVar(&o.Mix, "mix", "", "nodes per model, MODEL=COUNT,… (default "+fleet.FormatMix(fleet.DefaultMix())+")")
	f.StringVar(&o.WriteInventory, "write-inventory", "", "inventory file to write (required); reprov.yaml and the lab's keys go next to it")
	f.DurationVar(&o.BootDelay, "boot-delay", 2*time.Second, "firmware time from power-on to the boot decision")
	f.DurationVar(&o.BootDelaySpread, "boot-delay-spread", 0, "spread of the firmware time over the nodes: from --boot-delay to --boot-delay plus this")
	f.DurationVar(&o.OSBootTime, "os-boot-time", time.Second, "OS time from the disk boot until SSH answers")
	f.DurationVar(&o.Latency, "latency", 0, "added to every SSH exchange and to flaky BMCs' datagrams")
	f.BoolVar(&o.PoweredOff, "powered-off", false, "start every node powered off (implied beyond --max-os-up nodes)")
	f.IntVar(&o.MaxOSUp, "max-os-up", 0, "OSes up at once; each holds an SSH listener (default 9000, or less if the open-file limit says so)")
	f.StringArrayVar(&o.Faults, "fault", nil, "FAULT=COUNT[,FAULT=COUNT…]: inject a fault on the first COUNT nodes of its base model (repeatable)")
	cmd.AddCommand(up)
	return cmd
}

func runLabUp(ctx context.Context, a *app, o labUpOptions) error {
	if o.WriteInventory == "" {
		return usagef("lab up: --write-inventory FILE is required")
	}
	if o.Nodes < 0 {
		return usagef("lab up: --nodes %d is negative", o.Nodes)
	}
	if o.MaxOSUp < 0 {
		return usagef("lab up: --max-os-up %d is negative", o.MaxOSUp)
	}
	mix := fleet.DefaultMix()
	if o.Mix != "" {
		var err error
		if mix, err = fleet.ParseMix(o.Mix); err != nil {
			return usageError(err)
		}
	}
	mix = fleet.ScaleMix(mix, o.Nodes)
	total := 0
	for _, mc := range mix {
		total += mc.Count
	}
	if total == 0 {
		return usagef("lab up: no nodes")
	}
	var counts []fleet.FaultCount
	for _, s := range o.Faults {
		fc, err := fleet.ParseFaults(s)
		if err != nil {
			return usageError(err)
		}
		counts = append(counts, fc...)
	}
	faults, err := fleet.AssignFaults(mix, counts)
	if err != nil {
		return usageError(err)
	}
	maxUp := o.MaxOSUp
	if maxUp == 0 {
		maxUp = fleet.MaxOSUpFor(mix)
	}
	poweredOff := o.PoweredOff || total > maxUp
	invPath, err := filepath.Abs(o.WriteInventory)
	if err != nil {
		return usagef("lab up: --write-inventory: %w", err)
	}
	lab, err := fleet.Start(ctx, fleet.Config{
		Mix:             mix,
		Dir:             filepath.Dir(invPath),
		BootDelay:       o.BootDelay,
		BootDelaySpread: o.BootDelaySpread,
		OSBootTime:      o.OSBootTime,
		Latency:         o.Latency,
		PoweredOff:      poweredOff,
		MaxOSUp:         maxUp,
		Faults:          faults,
		Logger:          a.log,
	})
	if err != nil {
		return failedError(err)
	}
	defer lab.Close()
	files, err := lab.WriteFiles(invPath)
	if err != nil {
		return failedError(err)
	}
	if err := printLabSummary(a, lab, files, poweredOff && !o.PoweredOff); err != nil {
		return err
	}
	if o.ready != nil {
		o.ready(files)
	}
	<-ctx.Done()
	if err := lab.Close(); err != nil {
		a.log.Warn("lab stopped with errors", "err", err)
	}
	fmt.Fprintln(a.stderr, "reprov lab: stopped")
	return nil
}

// labSummary is the JSON form of the lab's summary.
type labSummary struct {
	Nodes      int               `json:"nodes"`
	Subnet     string            `json:"subnet"`
	Models     []labModelSummary `json:"models"`
	PoweredOff bool              `json:"powered_off"`
	LandingURL string            `json:"landing_url"`
	Files      fleet.Files       `json:"files"`
	// Faults lists the nodes of each injected fault.
	Faults map[fleet.Fault][]string `json:"faults,omitempty"`
}

type labModelSummary struct {
	Model     string         `json:"model"`
	Nodes     int            `json:"nodes"`
	Protocol  string         `json:"protocol"`
	Playbooks map[string]int `json:"playbooks"`
}

func printLabSummary(a *app, lab *fleet.Lab, files fleet.Files, impliedOff bool) error {
	sum := labSummary{Subnet: fmt.Sprintf("127.%d.0.0/16", lab.Subnet()), LandingURL: lab.LandingURL(), Files: files}
	for _, mc := range lab.Mix() {
		if mc.Count == 0 {
			continue
		}
		ms := labModelSummary{Model: string(mc.Model), Nodes: mc.Count, Protocol: mc.Model.Protocol(), Playbooks: map[string]int{}}
		for _, n := range lab.NodesOf(mc.Model) {
			ms.Playbooks[n.Playbook()]++
		}
		sum.Nodes += mc.Count
		sum.Models = append(sum.Models, ms)
	}
	for _, n := range lab.Nodes() {
		for _, f := range n.Faults() {
			if sum.Faults == nil {
				sum.Faults = map[fleet.Fault][]string{}
			}
			sum.Faults[f] = append(sum.Faults[f], n.Name())
		}
	}
	if len(lab.Nodes()) > 0 {
		sum.PoweredOff = !lab.Nodes()[0].Status().Powered
	}
	if a.jsonOutput() {
		return a.writeJSON(sum)
	}
	state := "powered on, their OS up"
	if sum.PoweredOff {
		state = "powered off"
		if impliedOff {
			state += fmt.Sprintf(" (more nodes than the %d OSes it keeps up at once)", lab.MaxOSUp())
		}
	}
	fmt.Fprintf(a.stdout, "reprov lab: %d nodes on %s, %s\n\n", sum.Nodes, sum.Subnet, state)
	rows := make([][]string, 0, len(sum.Models))
	for _, m := range sum.Models {
		var pbs []string
		for _, pb := range []string{"default", "hp-dl360-g7"} {
			if k := m.Playbooks[pb]; k > 0 {
				pbs = append(pbs, pb+" ×"+strconv.Itoa(k))
			}
		}
		rows = append(rows, []string{m.Model, strconv.Itoa(m.Nodes), m.Protocol, strings.Join(pbs, ", ")})
	}
	if err := a.table([]string{"MODEL", "NODES", "BMC", "PLAYBOOK"}, rows); err != nil {
		return err
	}
	for _, f := range fleet.Faults() {
		if names := sum.Faults[f]; len(names) > 0 {
			fmt.Fprintf(a.stdout, "fault %s: %s\n", f, strings.Join(names, ", "))
		}
	}
	fmt.Fprintf(a.stdout, "\ninventory:    %s\n", files.Inventory)
	fmt.Fprintf(a.stdout, "config:       %s\n", files.Config)
	fmt.Fprintf(a.stdout, "landing:      nodes booting from the network request %s/boot/ipxe?mac=…\n", sum.LandingURL)
	fmt.Fprintf(a.stdout, "known_hosts:  %s\n", files.KnownHosts)
	fmt.Fprintf(a.stdout, "ssh key:      %s\n", files.Identity)
	fmt.Fprintf(a.stdout, "bmc password: %s (file: reference in the inventory)\n", files.BMCPassword)
	if files.CA != "" {
		fmt.Fprintf(a.stdout, "redfish CA:   %s\n", files.CA)
	}
	fmt.Fprintf(a.stdout, "\ntry:  reprov power status --all --config %s\n", files.Config)
	fmt.Fprintln(a.stdout, "The lab runs until Ctrl-C.")
	return nil
}
