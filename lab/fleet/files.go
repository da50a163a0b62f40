package fleet

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/reprov/reprov/inventory"
)

// configHeader starts every reprov.yaml the lab writes; WriteFiles
// overwrites a reprov.yaml only if it starts with it.
const configHeader = "# Written by reprov lab up"

// ErrForeignConfig is returned by WriteFiles when the inventory's
// directory holds a reprov.yaml the lab did not write.
var ErrForeignConfig = errors.New("reprov.yaml exists and was not written by the lab")

// Inventory is the lab's inventory: every node with its BMC (password
// as a file: reference), its SSH endpoint (the lab's controller key and
// known_hosts), MAC, serial, system GUID, boot mode and playbook.
func (l *Lab) Inventory() *inventory.Inventory {
	inv := &inventory.Inventory{Source: l.files.Inventory, Nodes: make([]inventory.Node, 0, len(l.nodes))}
	for _, n := range l.nodes {
		inv.Nodes = append(inv.Nodes, n.InventoryNode())
	}
	return inv
}

// WriteFiles writes the lab's inventory to inventoryPath (default
// Dir/inventory.yaml) and, next to it, reprov.yaml: a reprov
// configuration whose inventory is that file, whose state_dir is the
// state directory next to it, and whose landing.listen and landing.url
// are the lab's landing endpoint. The credential files stay where Start
// wrote them (Files). The written inventory is loaded back to check it.
func (l *Lab) WriteFiles(inventoryPath string) (Files, error) {
	if inventoryPath == "" {
		inventoryPath = filepath.Join(l.dir, "inventory.yaml")
	}
	inventoryPath, err := filepath.Abs(inventoryPath)
	if err != nil {
		return Files{}, fmt.Errorf("fleet: inventory path: %w", err)
	}
	dir := filepath.Dir(inventoryPath)
	cfgPath := filepath.Join(dir, FileConfig)
	if err := checkOurs(cfgPath); err != nil {
		return Files{}, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Files{}, fmt.Errorf("fleet: %w", err)
	}
	if err := writeAtomic(inventoryPath, l.inventoryYAML(), 0o644); err != nil {
		return Files{}, fmt.Errorf("fleet: write inventory: %w", err)
	}
	if _, _, err := inventory.Load(inventoryPath); err != nil {
		return Files{}, fmt.Errorf("fleet: the written inventory %s does not load: %w", inventoryPath, err)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s at %s: the configuration of the lab whose inventory is next to it.\n", configHeader, time.Now().UTC().Format(time.RFC3339))
	b.WriteString("# Use it while the lab runs: reprov power status --all --config " + cfgPath + "\n")
	fmt.Fprintf(&b, "inventory: %s\n", strconv.Quote(inventoryPath))
	fmt.Fprintf(&b, "state_dir: %s\n", strconv.Quote(filepath.Join(dir, "state")))
	b.WriteString("landing:\n")
	fmt.Fprintf(&b, "  listen: %s\n", strconv.Quote(l.LandingListen()))
	fmt.Fprintf(&b, "  url: %s\n", strconv.Quote(l.LandingURL()))
	// The install profile the landing endpoint hands out. Virtual firmware
	// never fetches it; a real rig points these at its netboot image.
	b.WriteString("  kernel: \"http://netboot.lab.invalid/live/vmlinuz\"\n")
	b.WriteString("  initrd: [\"http://netboot.lab.invalid/live/initrd.img\"]\n")
	b.WriteString("  cmdline: \"boot=live fetch=http://netboot.lab.invalid/live/root.squashfs toram\"\n")
	if err := writeAtomic(cfgPath, b.Bytes(), 0o644); err != nil {
		return Files{}, fmt.Errorf("fleet: write %s: %w", cfgPath, err)
	}
	l.files.Inventory, l.files.Config = inventoryPath, cfgPath
	return l.files, nil
}

// checkOurs refuses to overwrite a reprov.yaml the lab did not write.
func checkOurs(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	defer f.Close()
	line, _ := bufio.NewReader(f).ReadString('\n')
	if !strings.HasPrefix(line, configHeader) {
		return fmt.Errorf("fleet: %s: %w; write the inventory to another directory", path, ErrForeignConfig)
	}
	return nil
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// inventoryYAML is the inventory in reprov's native YAML.
func (l *Lab) inventoryYAML() []byte {
	q := strconv.Quote
	var b bytes.Buffer
	b.Grow(400 * len(l.nodes))
	fmt.Fprintf(&b, "# reprov lab inventory, written at %s: %d nodes (%s).\n", time.Now().UTC().Format(time.RFC3339), len(l.nodes), FormatMix(l.mix))
	b.WriteString("# The nodes answer while `reprov lab up` runs; credentials are files next to it.\n")
	b.WriteString("defaults:\n")
	fmt.Fprintf(&b, "  bmc:\n    username: %s\n    password: %s\n", bmcUsername, q("file:"+l.files.BMCPassword))
	fmt.Fprintf(&b, "  ssh:\n    user: %s\n    identity: %s\n    known_hosts: %s\n", sshUser, q(l.files.Identity), q(l.files.KnownHosts))
	b.WriteString("nodes:\n")
	for _, n := range l.nodes {
		in := n.InventoryNode()
		fmt.Fprintf(&b, "  - name: %s\n    rack: %s\n", in.Name, in.Rack)
		fmt.Fprintf(&b, "    labels: {model: %s, lab: reprov}\n", n.model)
		if in.BMC.Options.CAFile != "" {
			fmt.Fprintf(&b, "    bmc: {address: %s, options: {ca_file: %s}}\n", q(in.BMC.Address), q(in.BMC.Options.CAFile))
		} else {
			fmt.Fprintf(&b, "    bmc: {address: %s}\n", q(in.BMC.Address))
		}
		fmt.Fprintf(&b, "    ssh: {address: %s, port: %d}\n", in.SSH.Address, in.SSH.Port)
		fmt.Fprintf(&b, "    macs: [%s]\n", q(n.mac))
		fmt.Fprintf(&b, "    serial: %s\n", in.Serial)
		fmt.Fprintf(&b, "    guid: %s\n", in.GUID)
		fmt.Fprintf(&b, "    boot: {mode: %s}\n", in.Boot.Mode)
		fmt.Fprintf(&b, "    playbook: %s\n", in.Playbook)
	}
	return b.Bytes()
}
