package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/reprov/reprov/agent"
	"github.com/reprov/reprov/agent/api"
	"github.com/reprov/reprov/agent/inband"
	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/inventory"
)

// restoreOptions are the options of `reprov restore NODE`.
type restoreOptions struct {
	Node string
	// Run picks the run whose saved boot sector to put back (0: the newest).
	Run int64
	// File is a saved boot sector file to put back instead.
	File string
	// Force writes over a disk whose boot sector changed since the wipe,
	// and restores a node with an active job.
	Force bool
	Yes   bool
}

func newRestoreCmd(a *app) *cobra.Command {
	var o restoreOptions
	cmd := &cobra.Command{
		Use:   "restore NODE",
		Short: "Put back the boot sector saved before an in-band wipe",
		Long: `Put back, over SSH, the boot sector that reinstall saved (state dir,
boot-sectors/NODE/run-ID.json) before zeroing it: the newest, or the one of --run.
The node must run an OS reachable over SSH (its old OS, or a rescue system). It
refuses a disk whose saved ranges hold something other than the zeroes the wipe
left or the saved bytes (someone installed since), and a node with an active
reinstall job; --force overrides both. Asks for confirmation unless --yes.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Node = args[0]
			return runRestore(cmd.Context(), a, o)
		},
	}
	f := cmd.Flags()
	f.Int64Var(&o.Run, "run", 0, "restore the boot sector saved by this run (default: the newest)")
	f.StringVar(&o.File, "file", "", "restore this saved boot sector file")
	f.BoolVar(&o.Force, "force", false, "write even over a changed boot sector, and for a node with an active job")
	f.BoolVarP(&o.Yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}

// restoreDetail is the result of `reprov restore` in JSON (the same
// through serve's API).
type restoreDetail = api.RestoreResult

func runRestore(ctx context.Context, a *app, o restoreOptions) error {
	if o.File != "" && o.Run != 0 {
		return usagef("restore: --file and --run exclude each other")
	}
	if c, err := a.serverClient(); err != nil {
		return err
	} else if c != nil {
		d, err := restoreViaServer(ctx, a, c, o)
		if err != nil {
			return err
		}
		return renderRestore(a, d)
	}
	inv, err := a.loadInventory()
	if err != nil {
		return err
	}
	node, ok := inv.Node(o.Node)
	if !ok {
		return usagef("restore: no node %q in the inventory", o.Node)
	}
	env, err := a.newEngineEnv(ctx, inv, true, nil)
	if err != nil {
		return err
	}
	defer env.close()
	file, err := env.restoreFile(ctx, node, o)
	if err != nil {
		return err
	}
	if !o.Yes {
		if err := a.confirm(confirmation{Verb: "write back the boot sector of", Nodes: []inventory.Node{node},
			Detail: fmt.Sprintf("  from %s, over SSH\n", file)}); err != nil {
			return err
		}
	}
	d, err := env.restore(ctx, node, file, o.Force)
	if err != nil {
		return err
	}
	return renderRestore(a, d)
}

// restoreFile refuses a node with an active job (unless --force) and
// finds the saved boot sector to put back.
func (env *engineEnv) restoreFile(ctx context.Context, node inventory.Node, o restoreOptions) (string, error) {
	if j, err := env.st.ActiveJob(ctx, node.Name); err == nil && !o.Force {
		return "", usagef("restore: node %s has an active reinstall job (job %d of run %d, %s at step %s); reprov jobs cancel %s first, or --force",
			node.Name, j.ID, j.RunID, j.State, j.Step, node.Name)
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		return "", failedError(err)
	}
	return env.savedFile(ctx, node.Name, o)
}

// restore writes file back to node's boot disk over SSH.
func (env *engineEnv) restore(ctx context.Context, node inventory.Node, file string, force bool) (restoreDetail, error) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	res, err := env.engine.Restore(rctx, node, file, force)
	if err != nil {
		return restoreDetail{}, failedError(err)
	}
	d := restoreDetail{Node: node.Name, File: file, Before: res.Before, BytesWritten: res.BytesWritten, Verified: res.Verified}
	if res.Disk != nil {
		d.Disk = res.Disk.Path
	}
	return d, nil
}

func renderRestore(a *app, d restoreDetail) error {
	if a.jsonOutput() {
		return a.writeJSON(d)
	}
	fmt.Fprintf(a.stdout, "node %s: restored %d bytes to %s from %s (before: %s), verified %t\n", d.Node, d.BytesWritten, d.Disk, d.File, d.Before, d.Verified)
	return nil
}

// savedFile finds the saved boot sector to restore: --file, the store's
// record of --run (or the newest), else the newest file in the state dir.
func (env *engineEnv) savedFile(ctx context.Context, node string, o restoreOptions) (string, error) {
	if o.File != "" {
		if _, err := os.Stat(o.File); err != nil {
			return "", usagef("restore: %w", err)
		}
		return o.File, nil
	}
	recs, err := env.st.SectorRecords(ctx, node, o.Run)
	if err != nil {
		return "", failedError(err)
	}
	var zeroes []string
	for _, r := range recs {
		if _, err := os.Stat(r.Path); err != nil {
			continue
		}
		// A copy taken after an earlier wipe holds zeroes: restoring it
		// would write the wipe back. Take the earlier attempt's.
		if !inband.RestorableSaved(r.Path) {
			zeroes = append(zeroes, r.Path)
			continue
		}
		return r.Path, nil
	}
	if o.Run != 0 {
		files := inband.SavedOfRun(env.a.cfg.StateDir, node, agent.RunTag(o.Run))
		for _, p := range files {
			if inband.RestorableSaved(p) {
				return p, nil
			}
		}
		zeroes = append(zeroes, files...)
		return "", usagef("restore: no boot sector of node %s saved by run %d holds anything but zeroes (looked in the store and in %s%s)",
			node, o.Run, filepath.Dir(inband.SavedPath(env.a.cfg.StateDir, node, agent.RunTag(o.Run))), zeroNote(zeroes))
	}
	p, err := inband.LatestSaved(env.a.cfg.StateDir, node)
	if err != nil {
		return "", usagef("restore: %w%s", err, zeroNote(zeroes))
	}
	return p, nil
}

func zeroNote(files []string) string {
	if len(files) == 0 {
		return ""
	}
	return "; only zeroes in " + shortList(files, 3)
}
