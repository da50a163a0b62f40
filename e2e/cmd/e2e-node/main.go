// Command e2e-node boots the end-to-end test's virtual node by hand — the
// same QEMU machine, ipmi_sim BMC, disk and netboot chain the e2e test
// uses — writes a reprov configuration and inventory for it, prints the
// commands to watch and drive it, and runs until interrupted.
//
//	go run ./e2e/cmd/e2e-node -board ignores
//
// See docs/testing.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/reprov/reprov/e2e/rig"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e-node:", err)
		os.Exit(1)
	}
}

func run() error {
	board := flag.String("board", "ignores", "how the board treats the BMC's PXE override: honours or ignores (an HP DL360 G7)")
	serial := flag.String("serial", "", "DMI serial of the node (default random)")
	dir := flag.String("dir", "", "directory for the node, its logs and reprov's files (default a new temporary one)")
	image := flag.String("image", "", "built image directory (default: run scripts/e2e/build-image.sh)")
	landingPort := flag.Int("landing-port", 0, "port of reprov's landing endpoint on 127.0.0.1 (default a free one)")
	powerOn := flag.Bool("power-on", true, "power the node on at once (it boots its disk)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	if *dir == "" {
		d, err := os.MkdirTemp("", "reprov-e2e-node-")
		if err != nil {
			return err
		}
		*dir = d
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	*dir = abs
	img := rig.Image{Dir: *image}
	if *image == "" {
		root, err := repoRoot()
		if err != nil {
			return err
		}
		if img, err = rig.BuildImage(ctx, root, os.Stderr); err != nil {
			return err
		}
	}
	if *landingPort == 0 {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		*landingPort = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	inst, err := rig.ServeInstaller(img)
	if err != nil {
		return err
	}
	defer inst.Close()

	nodeDir := filepath.Join(*dir, "node")
	if err := os.MkdirAll(nodeDir, 0o755); err != nil {
		return err
	}
	node, err := rig.Start(ctx, rig.Config{Image: img, Dir: nodeDir, Name: "e2e-node", Serial: *serial,
		Board: rig.Board(*board), LandingURL: rig.LandingURL(*landingPort), Logger: log})
	if err != nil {
		return err
	}
	defer node.Close()
	files, err := rig.WriteReprov(rig.ReprovSetup{Dir: *dir, LandingPort: *landingPort, InstallURL: inst.GuestURL(),
		Nodes: []rig.InventoryNode{{Node: node}}})
	if err != nil {
		return err
	}
	if *powerOn {
		if err := node.PowerOn(ctx); err != nil {
			return err
		}
	}
	fmt.Printf(`
e2e node %s is up (board %s the BMC's PXE override), directory %s

  watch its console       tail -f %s
  watch its board         tail -f %s
  its BMC                 ipmitool -I lanplus -C 3 -H 127.0.0.1 -p %d -U %s -f %s power status
  its OS (once booted)    ssh -i %s -o UserKnownHostsFile=%s -p %d root@127.0.0.1
  reinstall it            reprov --config %s reinstall %s --yes
  its installer server    http://127.0.0.1:%d/vmlinuz (the guest: %s)

Ctrl-C powers it off and stops its BMC.
`, node.Name(), *board, *dir,
		filepath.Join(nodeDir, "console.log"), filepath.Join(nodeDir, "chassis.log"),
		node.BMCPort(), node.BMCUser(), filepath.Join(*dir, "bmc-password-0"),
		img.SSHKey(), files.KnownHosts, node.SSHPort(),
		files.Config, node.Name(),
		inst.Port(), inst.GuestURL())
	if *powerOn {
		wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		err := node.WaitSSH(wctx)
		cancel()
		if err == nil {
			fmt.Println("its OS answers SSH on port " + strconv.Itoa(node.SSHPort()))
		} else if !errors.Is(ctx.Err(), context.Canceled) {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	<-ctx.Done()
	return nil
}

// repoRoot finds the repository's top directory from the working directory.
func repoRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "scripts", "e2e", "build-image.sh")); err == nil {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", errors.New("run it inside the reprov repository (or pass -image)")
		}
		d = parent
	}
}
