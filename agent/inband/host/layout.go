package host

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Layout describes a stand-in node for the lab and for tests: a directory
// tree standing in for /sys, /proc and /dev, image files standing in for
// block devices, executables standing in for node commands, a marker file
// standing in for a reboot, and a BMC reached over LAN standing in for
// /dev/ipmi0. A Host given a Layout opens no disk but the images and runs
// no command but the listed tools.
//
// The real node never has a Layout: a normal build of the agent cannot be
// given one (no flag, config key or environment variable selects it), and
// the controller's Shell host only takes one from Go code (the lab and
// tests).
type Layout struct {
	// Root is the directory standing in for /: /sys/... is read from
	// Root/sys/..., /proc/... from Root/proc/..., /dev/ipmi0 from Root/dev/ipmi0.
	Root string `json:"root"`
	// Devices are the image files that stand in for block devices.
	Devices []Device `json:"devices,omitempty"`
	// Tools maps a command name (ipmitool, efibootmgr) to the executable
	// that stands in for it. A command not listed is not on the node.
	Tools map[string]string `json:"tools,omitempty"`
	// RebootMarker is the file a reboot writes instead of rebooting.
	RebootMarker string `json:"reboot_marker"`
	// RebootDropsLink makes a reboot also kill the SSH session it runs in,
	// like a real reboot dropping the link before the command returns.
	RebootDropsLink bool `json:"reboot_drops_link,omitempty"`
	// ModprobeLog is the file Modprobe appends module names to. Loading
	// ipmi_devintf creates Root/dev/ipmi0, as udev would.
	ModprobeLog string `json:"modprobe_log,omitempty"`
	// IPMI is the BMC that stands in for /dev/ipmi0, reached over lanplus.
	IPMI *LANTarget `json:"ipmi,omitempty"`
}

// Device is an image file standing in for a block device.
type Device struct {
	// Image is the absolute path of the image file. It is also the
	// device's node path: nothing else names it.
	Image string `json:"image"`
	// Dev is the device number "major:minor" the image pretends to have;
	// Root/sys/dev/block/<Dev> describes it.
	Dev string `json:"dev"`
}

// LANTarget is a BMC reached over RMCP+.
type LANTarget struct {
	Host         string `json:"host"`
	Port         int    `json:"port"`
	Username     string `json:"username"`
	PasswordFile string `json:"password_file"`
	CipherSuite  int    `json:"cipher_suite,omitempty"`
}

// LoadLayout reads a Layout from a JSON file.
func LoadLayout(path string) (*Layout, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read layout: %w", err)
	}
	var l Layout
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("layout %s: %w", path, err)
	}
	if err := l.Validate(); err != nil {
		return nil, fmt.Errorf("layout %s: %w", path, err)
	}
	return &l, nil
}

// Save writes the Layout as JSON.
func (l *Layout) Save(path string) error {
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// Validate checks that the layout can only touch its own files.
func (l *Layout) Validate() error {
	if l.Root == "" || !filepath.IsAbs(l.Root) || filepath.Clean(l.Root) == "/" {
		return fmt.Errorf("root %q must be an absolute directory other than /", l.Root)
	}
	if l.RebootMarker == "" || !filepath.IsAbs(l.RebootMarker) {
		return fmt.Errorf("reboot_marker %q must be an absolute path", l.RebootMarker)
	}
	for _, d := range l.Devices {
		if !filepath.IsAbs(d.Image) || strings.HasPrefix(filepath.Clean(d.Image), "/dev/") {
			return fmt.Errorf("device image %q must be an absolute path outside /dev", d.Image)
		}
		if d.Dev == "" {
			return fmt.Errorf("device image %q has no dev number", d.Image)
		}
	}
	return nil
}

// Map returns where the layout keeps the node path p: an image path stays
// as it is, anything else moves under Root.
func (l *Layout) Map(p string) string {
	p = filepath.Clean(p)
	if l.DeviceByImage(p) != nil {
		return p
	}
	return filepath.Join(l.Root, p)
}

// Unmap turns a path under Root back into the node path. Image paths stay
// as they are; anything else outside Root is an error.
func (l *Layout) Unmap(p string) (string, error) {
	p = filepath.Clean(p)
	if l.DeviceByImage(p) != nil {
		return p, nil
	}
	root := filepath.Clean(l.Root)
	if p == root {
		return "/", nil
	}
	if rest, ok := strings.CutPrefix(p, root+"/"); ok {
		return "/" + rest, nil
	}
	return "", fmt.Errorf("%w: %s resolves outside the layout root", ErrNotAllowed, p)
}

// DeviceByImage returns the device whose image is p.
func (l *Layout) DeviceByImage(p string) *Device {
	p = filepath.Clean(p)
	for i := range l.Devices {
		if filepath.Clean(l.Devices[i].Image) == p {
			return &l.Devices[i]
		}
	}
	return nil
}

// DeviceByDev returns the device numbered dev.
func (l *Layout) DeviceByDev(dev string) *Device {
	for i := range l.Devices {
		if l.Devices[i].Dev == dev {
			return &l.Devices[i]
		}
	}
	return nil
}
