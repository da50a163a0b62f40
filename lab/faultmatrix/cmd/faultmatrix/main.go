// Command faultmatrix runs reprov's fault matrix (docs/reliability.md)
// against a reprov binary: `make fault-matrix` builds bin/reprov and runs
//
//	faultmatrix -reprov bin/reprov -matrix full -out DIR
//
// It prints the report as a table, writes DIR/fault-matrix.json and
// DIR/fault-matrix.md, and exits 1 when a node did not end as expected or
// an invariant did not hold.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/reprov/reprov/lab/faultmatrix"
)

func main() {
	reprov := flag.String("reprov", "bin/reprov", "the reprov binary to run as the controller")
	matrix := flag.String("matrix", "full", "the matrix: full (1,000 nodes) or small")
	out := flag.String("out", "", "directory for the lab, the state and the report (default: a new temporary directory)")
	commit := flag.String("commit", "", "the commit measured, for the report")
	flag.Parse()
	os.Exit(run(*reprov, *matrix, *out, *commit))
}

func run(reprov, matrix, out, commit string) int {
	spec := faultmatrix.Full()
	switch matrix {
	case "full":
	case "small":
		spec = faultmatrix.Small()
	default:
		fmt.Fprintf(os.Stderr, "faultmatrix: -matrix %q: want full or small\n", matrix)
		return 2
	}
	bin, err := filepath.Abs(reprov)
	if err == nil {
		_, err = os.Stat(bin)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "faultmatrix: -reprov: %v\n", err)
		return 2
	}
	if out == "" {
		if out, err = os.MkdirTemp("", "reprov-fault-matrix-"); err != nil {
			fmt.Fprintln(os.Stderr, "faultmatrix:", err)
			return 2
		}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "faultmatrix:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	home := filepath.Join(out, "home")
	rep, err := faultmatrix.Run(ctx, spec, faultmatrix.Options{
		Dir:      out,
		Progress: os.Stderr,
		Commit:   commit,
		Reprov: func(ctx context.Context, args ...string) *exec.Cmd {
			cmd := exec.CommandContext(ctx, bin, args...)
			cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, "config"))
			return cmd
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "faultmatrix:", err)
		return 1
	}
	rep.Table(os.Stdout)
	if err := rep.Write(out); err != nil {
		fmt.Fprintln(os.Stderr, "faultmatrix:", err)
		return 1
	}
	fmt.Printf("\nreport: %s/fault-matrix.json, %s/fault-matrix.md\n", out, out)
	if !rep.OK() {
		return 1
	}
	return 0
}
