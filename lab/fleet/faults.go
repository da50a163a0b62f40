package fleet

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Fault is a fault injected on one node of the lab (Config.Faults). Each
// has a base model: the model of the nodes it may be given to.
// docs/reliability.md lists what reprov is expected to do about each.
type Fault string

// The faults of the lab.
const (
	// FaultLoss1, FaultLoss10 and FaultLoss30 put a UDP proxy in front
	// of the node's IPMI BMC that drops 1 %, 10 % or 30 % of the
	// datagrams in each direction (replies to power actions included).
	FaultLoss1  Fault = "loss1"
	FaultLoss10 Fault = "loss10"
	FaultLoss30 Fault = "loss30"
	// FaultLatency delays every datagram to and from the IPMI BMC by
	// FaultLatencyOneWay: each exchange takes twice that.
	FaultLatency Fault = "latency"
	// FaultBadCredentials gives the BMC another password than the
	// inventory's: it answers and refuses the session.
	FaultBadCredentials Fault = "bad-credentials"
	// FaultBMCReboot makes the IPMI BMC reboot itself at the first
	// datagram after the boot override is written: its sessions are
	// dropped and it answers nothing for FaultBMCRebootDown.
	FaultBMCReboot Fault = "bmc-reboot"
	// FaultRedfish503 makes the Redfish BMC answer its next
	// FaultRedfish503Count requests 503 with Retry-After, at start and
	// again after every power transition.
	FaultRedfish503 Fault = "redfish-503"
	// FaultRedfish409 makes the Redfish BMC answer its first
	// FaultRedfish409Count Reset actions 409 Conflict.
	FaultRedfish409 Fault = "redfish-409"
	// FaultRedfishSessionLimit lets the Redfish BMC hold one session at a
	// time.
	FaultRedfishSessionLimit Fault = "redfish-session-limit"
	// FaultIgnoresOverride makes the board ignore every boot override
	// (as the DL360 G7 does).
	FaultIgnoresOverride Fault = "ignores-override"
	// FaultOverrideSecondCycle makes the board ignore the override of
	// its first boot that has one, and honour it from the second on.
	FaultOverrideSecondCycle Fault = "override-second-cycle"
	// FaultSSHHostKeyChanged writes another host key than the node's
	// into the lab's known_hosts.
	FaultSSHHostKeyChanged Fault = "ssh-hostkey-changed"
	// FaultSSHRefusesAuth makes the node's sshd refuse every key.
	FaultSSHRefusesAuth Fault = "ssh-refuses-auth"
	// FaultSlowOS makes the OS take FaultSlowOSFactor × Config.OSBootTime
	// to answer SSH after a disk boot.
	FaultSlowOS Fault = "slow-os"
	// FaultDiskRefusesWrite makes every write to the boot disk fail with
	// an I/O error.
	FaultDiskRefusesWrite Fault = "disk-refuses-write"
	// FaultWrongIdentity, FaultWrongBMC and FaultDeadBMC are the models
	// of the same names, as faults (a node of that model).
	FaultWrongIdentity Fault = "wrong-identity"
	FaultWrongBMC      Fault = "wrong-bmc"
	FaultDeadBMC       Fault = "dead-bmc"
)

// Parameters of the faults.
const (
	FaultLatencyOneWay   = time.Second
	FaultBMCRebootDown   = 3 * time.Second
	FaultRedfish503Count = 3
	FaultRedfish409Count = 2
	FaultSlowOSFactor    = 5
)

// Faults lists every fault, in the order reports show them.
func Faults() []Fault {
	return []Fault{FaultLoss1, FaultLoss10, FaultLoss30, FaultLatency, FaultBadCredentials, FaultBMCReboot,
		FaultRedfish503, FaultRedfish409, FaultRedfishSessionLimit, FaultIgnoresOverride, FaultOverrideSecondCycle,
		FaultSSHHostKeyChanged, FaultSSHRefusesAuth, FaultSlowOS, FaultDiskRefusesWrite,
		FaultWrongIdentity, FaultWrongBMC, FaultDeadBMC}
}

// Valid reports whether f is a known fault.
func (f Fault) Valid() bool { return slices.Contains(Faults(), f) }

// BaseModel is the model of the nodes the fault is given to.
func (f Fault) BaseModel() Model {
	switch f {
	case FaultRedfish503, FaultRedfish409, FaultRedfishSessionLimit:
		return ModelRedfish
	case FaultSlowOS, FaultDiskRefusesWrite:
		return ModelDL360G7
	case FaultWrongIdentity:
		return ModelWrongIdentity
	case FaultWrongBMC:
		return ModelWrongBMC
	case FaultDeadBMC:
		return ModelDeadBMC
	}
	return ModelIPMI
}

// Playbook is the playbook a node with the fault gets ("": the model's
// usual one). A disk that refuses writes matters on the in-band-first
// playbook; a slow OS where the engine waits for the old OS to come back
// (the default playbook on a board that ignores the override).
func (f Fault) Playbook() string {
	switch f {
	case FaultDiskRefusesWrite:
		return "hp-dl360-g7"
	case FaultSlowOS:
		return "default"
	}
	return ""
}

// lossOf is the datagram loss of a loss fault.
func (f Fault) lossOf() float64 {
	switch f {
	case FaultLoss1:
		return 0.01
	case FaultLoss10:
		return 0.10
	case FaultLoss30:
		return 0.30
	}
	return 0
}

// FaultCount asks for Count nodes with Fault.
type FaultCount struct {
	Fault Fault
	Count int
}

// ParseFaults parses "loss10=3,latency=1".
func ParseFaults(s string) ([]FaultCount, error) {
	var out []FaultCount
	seen := map[Fault]bool{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, count, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("faults %q: %q is not FAULT=COUNT", s, part)
		}
		f := Fault(strings.TrimSpace(name))
		if !f.Valid() {
			return nil, fmt.Errorf("faults %q: unknown fault %q (known: %s)", s, name, faultList())
		}
		if seen[f] {
			return nil, fmt.Errorf("faults %q: fault %s appears twice", s, f)
		}
		seen[f] = true
		n, err := strconv.Atoi(strings.TrimSpace(count))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("faults %q: count of %s: %q is not a non-negative number", s, f, count)
		}
		out = append(out, FaultCount{Fault: f, Count: n})
	}
	return out, nil
}

func faultList() string {
	var names []string
	for _, f := range Faults() {
		names = append(names, string(f))
	}
	return strings.Join(names, ", ")
}

// NodeNames are the names a lab of mix gives its nodes, in inventory
// order, with their models.
func NodeNames(mix []ModelCount) []NodeName {
	var out []NodeName
	for _, mc := range mix {
		width := max(3, len(strconv.Itoa(mc.Count)))
		for k := range mc.Count {
			out = append(out, NodeName{Name: fmt.Sprintf("%s-%0*d", mc.Model.namePrefix(), width, k+1), Model: mc.Model, Index: k})
		}
	}
	return out
}

// NodeName is a node's name and model as a lab of a mix gives them.
type NodeName struct {
	Name  string
	Model Model
	// Index is the node's index among the nodes of its model.
	Index int
}

// AssignFaults gives each fault to the first Count nodes of its base
// model, in inventory order, that have no fault yet (the playbook of the
// node must suit the fault: see Fault.Playbook). It fails when the mix
// has too few such nodes.
func AssignFaults(mix []ModelCount, faults []FaultCount) (map[string][]Fault, error) {
	out := map[string][]Fault{}
	names := NodeNames(mix)
	for _, fc := range faults {
		if !fc.Fault.Valid() {
			return nil, fmt.Errorf("fleet: unknown fault %q (known: %s)", fc.Fault, faultList())
		}
		left := fc.Count
		for _, nn := range names {
			if left == 0 {
				break
			}
			if nn.Model != fc.Fault.BaseModel() || len(out[nn.Name]) > 0 {
				continue
			}
			if pb := fc.Fault.Playbook(); pb != "" && defaultPlaybook(nn.Model, nn.Index) != pb {
				continue
			}
			out[nn.Name] = []Fault{fc.Fault}
			left--
		}
		if left > 0 {
			return nil, fmt.Errorf("fleet: fault %s on %d nodes: the mix has only %d free %s nodes for it", fc.Fault, fc.Count, fc.Count-left, fc.Fault.BaseModel())
		}
	}
	return out, nil
}

// defaultPlaybook is the playbook the lab gives the k-th node of model m.
func defaultPlaybook(m Model, k int) string {
	switch {
	case m == ModelWrongIdentity:
		return "hp-dl360-g7"
	case m == ModelDL360G7 && k%2 == 1:
		// Half the DL360 G7s: the engine must detect the ignored
		// override and escalate; the other half go in-band first.
		return "hp-dl360-g7"
	}
	return "default"
}

// validateFaults checks Config.Faults against the mix.
func validateFaults(mix []ModelCount, faults map[string][]Fault) error {
	if len(faults) == 0 {
		return nil
	}
	known := map[string]Model{}
	for _, nn := range NodeNames(mix) {
		known[nn.Name] = nn.Model
	}
	for name, fs := range faults {
		m, ok := known[name]
		if !ok {
			return fmt.Errorf("fleet: fault for node %q, which the lab does not have", name)
		}
		for _, f := range fs {
			if !f.Valid() {
				return fmt.Errorf("fleet: node %s: unknown fault %q (known: %s)", name, f, faultList())
			}
			switch f {
			case FaultWrongIdentity, FaultWrongBMC, FaultDeadBMC:
				if m != f.BaseModel() {
					return fmt.Errorf("fleet: node %s: fault %s is the model %s, the node is %s", name, f, f.BaseModel(), m)
				}
			}
			if f.BaseModel().Protocol() != m.Protocol() {
				return fmt.Errorf("fleet: node %s: fault %s needs a %s BMC, the node is %s", name, f, f.BaseModel().Protocol(), m)
			}
		}
	}
	return nil
}

// hasFault reports whether the node has fault f.
func (n *Node) hasFault(f Fault) bool { return slices.Contains(n.faults, f) }

// Faults are the node's faults.
func (n *Node) Faults() []Fault { return slices.Clone(n.faults) }

// ignoresOverride reports whether the node's board ignores every boot
// override.
func (n *Node) ignoresOverride() bool {
	return n.model.ignoresOverride() || n.hasFault(FaultIgnoresOverride)
}

// osBootTime is how long the node's OS takes to answer SSH after a disk
// boot.
func (n *Node) osBootTime() time.Duration {
	if n.hasFault(FaultSlowOS) {
		return FaultSlowOSFactor * n.lab.cfg.OSBootTime
	}
	return n.lab.cfg.OSBootTime
}

// OpenBMCSessions is the number of sessions the node's BMC holds now: the
// RMCP+ session table of an IPMI BMC, the Redfish sessions of a Redfish
// one.
func (n *Node) OpenBMCSessions() int {
	if n.redfish != nil {
		return n.redfish.bmc.Sessions()
	}
	return n.ipmi.bmc.ActiveSessions()
}
