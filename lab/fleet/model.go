package fleet

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Model is a kind of simulated machine: its BMC and how its firmware
// decides where to boot.
type Model string

// The models of the lab.
const (
	// ModelIPMI is an IPMI board that honours a valid PXE override.
	ModelIPMI Model = "ipmi"
	// ModelRedfish is a Redfish BMC whose firmware honours
	// BootSourceOverrideTarget=Pxe.
	ModelRedfish Model = "redfish"
	// ModelDL360G7 is an HP ProLiant DL360 G7 (iLO 3): its BMC accepts a
	// PXE override, out-of-band or in-band, and the board ignores it; it
	// boots the network only when the disk's boot sector is not bootable.
	ModelDL360G7 Model = "hp-dl360-g7"
	// ModelUEFI is a UEFI board: it boots the network for BootNext set to
	// its network entry or an IPMI PXE override with the EFI bit, and
	// ignores a legacy force_pxe; it boots the disk while either GPT copy
	// is intact.
	ModelUEFI Model = "uefi"
	// ModelFlaky is an ipmi model whose BMC sits behind a UDP proxy that
	// loses and delays datagrams.
	ModelFlaky Model = "flaky"
	// ModelDeadBMC is an ipmi model whose BMC never answers.
	ModelDeadBMC Model = "dead-bmc"
	// ModelWrongIdentity behaves like a DL360 G7, but the OS reachable at
	// its SSH address reports another DMI serial and another BMC address
	// than the inventory has: the identity interlock must stop it.
	ModelWrongIdentity Model = "wrong-identity"
	// ModelWrongBMC is an ipmi board whose BMC answers for another
	// machine: it reports another system GUID and product serial than the
	// inventory has (as when two nodes' bmc.address are swapped). Its OS
	// is the right one. The out-of-band identity check must stop it
	// before any power action.
	ModelWrongBMC Model = "wrong-bmc"
)

// Models lists every model, in the order summaries show them.
func Models() []Model {
	return []Model{ModelIPMI, ModelDL360G7, ModelRedfish, ModelUEFI, ModelFlaky, ModelDeadBMC, ModelWrongIdentity, ModelWrongBMC}
}

// Valid reports whether m is a known model.
func (m Model) Valid() bool { return slices.Contains(Models(), m) }

// Protocol is the node's BMC protocol: "ipmi" or "redfish".
func (m Model) Protocol() string {
	if m == ModelRedfish {
		return "redfish"
	}
	return "ipmi"
}

// UEFI reports whether the model boots in UEFI mode.
func (m Model) UEFI() bool { return m == ModelUEFI }

// ignoresOverride reports whether the board ignores every boot override
// (the DL360 G7 behaviour).
func (m Model) ignoresOverride() bool { return m == ModelDL360G7 || m == ModelWrongIdentity }

// namePrefix is the prefix of the model's node names.
func (m Model) namePrefix() string {
	switch m {
	case ModelDL360G7:
		return "dl360g7"
	case ModelDeadBMC:
		return "deadbmc"
	case ModelWrongIdentity:
		return "wrongid"
	case ModelWrongBMC:
		return "wrongbmc"
	}
	return string(m)
}

// ModelCount is how many nodes of a model a lab has.
type ModelCount struct {
	Model Model
	Count int
}

// DefaultMix is the mix of `reprov lab up` without --mix: a rack of 24.
func DefaultMix() []ModelCount {
	return []ModelCount{{ModelIPMI, 12}, {ModelDL360G7, 6}, {ModelRedfish, 4}, {ModelUEFI, 2}}
}

// ParseMix parses "ipmi=12,hp-dl360-g7=6,redfish=4,uefi=2". A model may
// appear once; counts are non-negative and at least one is positive.
func ParseMix(s string) ([]ModelCount, error) {
	var mix []ModelCount
	seen := map[Model]bool{}
	total := 0
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, count, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("mix %q: %q is not MODEL=COUNT", s, part)
		}
		m := Model(strings.TrimSpace(name))
		if !m.Valid() {
			return nil, fmt.Errorf("mix %q: unknown model %q (known: %s)", s, name, modelList())
		}
		if seen[m] {
			return nil, fmt.Errorf("mix %q: model %s appears twice", s, m)
		}
		seen[m] = true
		n, err := strconv.Atoi(strings.TrimSpace(count))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("mix %q: count of %s: %q is not a non-negative number", s, m, count)
		}
		total += n
		mix = append(mix, ModelCount{Model: m, Count: n})
	}
	if total == 0 {
		return nil, fmt.Errorf("mix %q: no nodes", s)
	}
	return mix, nil
}

// FormatMix is the inverse of ParseMix.
func FormatMix(mix []ModelCount) string {
	parts := make([]string, 0, len(mix))
	for _, mc := range mix {
		parts = append(parts, fmt.Sprintf("%s=%d", mc.Model, mc.Count))
	}
	return strings.Join(parts, ",")
}

func modelList() string {
	var names []string
	for _, m := range Models() {
		names = append(names, string(m))
	}
	return strings.Join(names, ", ")
}

// ScaleMix scales the counts of mix, taken as weights, to n nodes in
// total (largest remainder first; ties go to the earlier model). n ≤ 0
// returns the mix unchanged.
func ScaleMix(mix []ModelCount, n int) []ModelCount {
	total := 0
	for _, mc := range mix {
		total += mc.Count
	}
	if n <= 0 || total == 0 || total == n {
		return slices.Clone(mix)
	}
	out := make([]ModelCount, len(mix))
	rem := make([]int, len(mix))
	sum := 0
	for i, mc := range mix {
		out[i] = ModelCount{Model: mc.Model, Count: mc.Count * n / total}
		rem[i] = mc.Count * n % total
		sum += out[i].Count
	}
	for sum < n {
		best := -1
		for i := range rem {
			if mix[i].Count > 0 && (best < 0 || rem[i] > rem[best]) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		out[best].Count++
		rem[best] = -1
		sum++
	}
	return out
}
