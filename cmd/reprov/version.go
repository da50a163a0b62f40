package main

import (
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// Set at build time with -ldflags "-X main.version=… -X main.commit=…
// -X main.date=…" (make build, make install). A `go install` or `go build`
// without them reads the module version and the VCS stamp from the
// binary's build information instead.
var (
	version = ""
	commit  = ""
	date    = ""
)

// versionInfo is what `reprov version` and `reprov --version` report.
type versionInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit,omitempty"`
	Date      string `json:"date,omitempty"`
	GoVersion string `json:"go_version"`
	Modified  bool   `json:"modified,omitempty"`
}

// buildVersion is the version of this binary: the linker's values first,
// then the build information Go records (module version for go install
// …@vX.Y.Z; vcs.revision and vcs.time for builds in a checkout).
func buildVersion() versionInfo {
	info := versionInfo{Version: version, Commit: commit, Date: date}
	if bi, ok := debug.ReadBuildInfo(); ok {
		info.GoVersion = bi.GoVersion
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if info.Commit == "" {
					info.Commit = s.Value
				}
			case "vcs.time":
				if info.Date == "" {
					info.Date = s.Value
				}
			case "vcs.modified":
				info.Modified = s.Value == "true"
			}
		}
	}
	if info.Version == "" {
		info.Version = "dev"
	}
	return info
}

// String is the one-line form: reprov v1.2.0 (commit 1a2b3c4d5e6f, 2026-12-04T10:00:00Z, go1.26.8).
func (v versionInfo) String() string {
	var parts []string
	if v.Commit != "" {
		c := v.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		if v.Modified {
			c += "+dirty"
		}
		parts = append(parts, "commit "+c)
	}
	if v.Date != "" {
		parts = append(parts, v.Date)
	}
	parts = append(parts, v.GoVersion)
	return fmt.Sprintf("reprov %s (%s)", v.Version, strings.Join(parts, ", "))
}

func newVersionCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print reprov's version, commit, build date and Go version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runVersion(a)
		},
	}
}

func runVersion(a *app) error {
	info := buildVersion()
	if a.jsonOutput() {
		return a.writeJSON(info)
	}
	_, err := fmt.Fprintln(a.stdout, info.String())
	return err
}
