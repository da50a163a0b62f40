package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/playbooks"
)

// The typed records of the node step record (store.Step.Detail): one
// intent type and one outcome type per step, versioned. The engine writes
// them, and reads them back strictly when a job is resumed: a record that
// does not decode into its step's type, or has another version, is
// corrupt, and stops the node with ReasonCorruptRecord — the engine never
// guesses what a record it cannot read says (docs/architecture.md, "The
// step table").

// recordVersion is the version of the records this engine writes and the
// only one it reads.
const recordVersion = 1

// outcomeBase holds what every outcome records besides its step's own
// fields.
type outcomeBase struct {
	V int `json:"v"`
	// Error is the act's error, if it failed.
	Error string `json:"error,omitempty"`
	// NotPossible: the path could not be carried out; the next is tried.
	NotPossible bool `json:"not_possible,omitempty"`
	// Stopped says why the act stopped before its result (interrupted,
	// cancelled, handover, lease lost, node timeout).
	Stopped string `json:"stopped,omitempty"`
	// Settled is set on an outcome written by a later job that settled an
	// intent left without one, by looking at the node.
	Settled *settlement `json:"settled,omitempty"`
}

// settlement is how an intent left without an outcome was settled.
type settlement struct {
	// ByJob is the job that looked.
	ByJob int64 `json:"by_job"`
	// Seen is what it saw.
	Seen string `json:"seen"`
	// Assumed: nothing could be seen; the worst was assumed (the act
	// happened: never repeated blindly).
	Assumed bool `json:"assumed,omitempty"`
}

func (o *outcomeBase) base() *outcomeBase { return o }

// outcome is a step's typed outcome.
type outcome interface{ base() *outcomeBase }

type precheckIntent struct {
	V        int              `json:"v"`
	Playbook string           `json:"playbook"`
	Paths    []playbooks.Path `json:"paths"`
}

type precheckOutcome struct {
	outcomeBase
	BMC      string         `json:"bmc,omitempty"`
	Power    bmc.PowerState `json:"power,omitempty"`
	SSH      string         `json:"ssh,omitempty"`
	BootID   string         `json:"boot_id,omitempty"`
	Firmware string         `json:"firmware,omitempty"`
	Identity string         `json:"identity,omitempty"`
	// BMCIdentity is what comparing the BMC's system GUID/serial found.
	BMCIdentity string           `json:"bmc_identity,omitempty"`
	Quirk       string           `json:"quirk,omitempty"`
	Proposal    string           `json:"proposal,omitempty"`
	Order       []playbooks.Path `json:"order,omitempty"`
}

type hooksIntent struct {
	V     int      `json:"v"`
	Hooks []string `json:"hooks"`
	// Result is the node's result handed to post-hooks.
	Result string `json:"result,omitempty"`
}

type hooksOutcome struct {
	outcomeBase
	Hooks    []playbooks.HookResult `json:"hooks,omitempty"`
	Warnings []string               `json:"warnings,omitempty"`
}

type oobBootIntent struct {
	V        int              `json:"v"`
	Override bmc.BootOverride `json:"override"`
}

type oobBootOutcome struct {
	outcomeBase
	Protocol string            `json:"protocol,omitempty"`
	Verified bmc.VerifyLevel   `json:"verified,omitempty"`
	ReadBack *bmc.BootOverride `json:"read_back,omitempty"`
	Warnings []string          `json:"warnings,omitempty"`
	// Override is what the BMC held when a later job looked.
	Override *bmc.BootOverride `json:"override,omitempty"`
}

type powerIntent struct {
	V           int                   `json:"v"`
	PowerAction playbooks.PowerAction `json:"power_action"`
}

type powerOutcome struct {
	outcomeBase
	PowerBefore bmc.PowerState `json:"power_before,omitempty"`
	Action      string         `json:"action,omitempty"`
	// Unknown: the BMC's answer was lost; the act may have happened.
	Unknown  string            `json:"unknown,omitempty"`
	Override *bmc.BootOverride `json:"override,omitempty"`
}

type inbandIntent struct {
	V          int                  `json:"v"`
	SavedFile  string               `json:"saved_file"`
	BootID     string               `json:"boot_id,omitempty"`
	Escalated  bool                 `json:"escalated,omitempty"`
	Unit       string               `json:"unit"`
	WipePolicy playbooks.WipePolicy `json:"wipe_policy"`
}

type inbandOutcome struct {
	outcomeBase
	Mode           string `json:"mode,omitempty"`
	Identity       string `json:"identity,omitempty"`
	Disk           string `json:"disk,omitempty"`
	PartitionTable string `json:"partition_table,omitempty"`
	BytesZeroed    int64  `json:"bytes_zeroed,omitempty"`
	WipeVerified   bool   `json:"wipe_verified,omitempty"`
	NextBootMode   string `json:"next_boot_mode,omitempty"`
	BootNext       string `json:"boot_next,omitempty"`
	SavedFile      string `json:"saved_file,omitempty"`
	BootIDBefore   string `json:"boot_id_before,omitempty"`
	LinkDropped    bool   `json:"link_dropped,omitempty"`
	Restored       string `json:"restored,omitempty"`
	CutInUnit      bool   `json:"interrupted_during_unit,omitempty"`
	// What a later job saw when it settled the unit.
	BootIDNow  string `json:"boot_id_now,omitempty"`
	SectorZero *bool  `json:"sector_zero,omitempty"`
	FinishedBy string `json:"finished_by,omitempty"`
}

type waitIntent struct {
	V            int            `json:"v"`
	Path         playbooks.Path `json:"path"`
	Since        time.Time      `json:"since"`
	Deadline     time.Time      `json:"deadline"`
	BootIDBefore string         `json:"boot_id_before,omitempty"`
}

// waitEvidence is what a wait for landing saw.
type waitEvidence struct {
	Path             string            `json:"path,omitempty"`
	BootIDBefore     string            `json:"boot_id_before,omitempty"`
	BootIDNow        string            `json:"boot_id_now,omitempty"`
	SSH              string            `json:"ssh,omitempty"`
	Baseline         string            `json:"baseline,omitempty"`
	BMC              string            `json:"bmc,omitempty"`
	BMCOverride      *bmc.BootOverride `json:"bmc_override,omitempty"`
	OverrideConsumed bool              `json:"override_consumed,omitempty"`
	Landing          string            `json:"landing,omitempty"`
	LandedAt         *time.Time        `json:"landed_at,omitempty"`
	// Watched says how a wait resumed after its controller stopped was
	// judged: whether a landing endpoint answered meanwhile.
	Watched string `json:"watched,omitempty"`
}

type waitOutcome struct {
	outcomeBase
	Verdict string `json:"verdict,omitempty"`
	waitEvidence
}

// markRecord is a step that is a fact, not an act (interrupted, handed
// over).
type markRecord struct {
	V          int    `json:"v"`
	AtStep     string `json:"at_step,omitempty"`
	Controller string `json:"controller,omitempty"`
}

type markOutcome struct{ outcomeBase }

// decodeStrict decodes a record into v: unknown fields and other versions
// are errors.
func decodeStrict(raw []byte, v any) error {
	if len(raw) == 0 {
		return fmt.Errorf("empty record")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data")
	}
	var ver struct {
		V int `json:"v"`
	}
	_ = json.Unmarshal(raw, &ver)
	if ver.V != recordVersion {
		return fmt.Errorf("record version %d, this reprov reads version %d", ver.V, recordVersion)
	}
	return nil
}
