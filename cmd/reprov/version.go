package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// versionInfo is what `reprov version` reports.
type versionInfo struct {
	Version   string `json:"version"`
	GoVersion string `json:"go_version"`
	Revision  string `json:"revision,omitempty"`
	Modified  bool   `json:"modified,omitempty"`
}

func newVersionCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print reprov's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runVersion(a)
		},
	}
}

func runVersion(a *app) error {
	info := versionInfo{Version: version}
	if bi, ok := debug.ReadBuildInfo(); ok {
		info.GoVersion = bi.GoVersion
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Revision = s.Value
			case "vcs.modified":
				info.Modified = s.Value == "true"
			}
		}
	}
	if a.jsonOutput() {
		return a.writeJSON(info)
	}
	rev := info.Revision
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if info.Modified {
		rev += "+dirty"
	}
	_, err := fmt.Fprintf(a.stdout, "reprov %s (%s, %s)\n", info.Version, rev, info.GoVersion)
	return err
}
