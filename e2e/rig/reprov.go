package rig

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// InstallServer serves the "installer" (the image's kernel and initramfs)
// over HTTP on the host's loopback — what landing.kernel and
// landing.initrd point at — and records every request, so a test can see
// that the VM's iPXE ran reprov's install script.
type InstallServer struct {
	img  Image
	l    net.Listener
	srv  *http.Server
	done chan struct{}

	mu   sync.Mutex
	reqs []Request
}

// Request is one request the InstallServer answered.
type Request struct {
	Time      time.Time
	Path      string
	Remote    string
	UserAgent string
	Status    int
}

// ServeInstaller starts an InstallServer on 127.0.0.1 (a free port).
func ServeInstaller(img Image) (*InstallServer, error) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("rig: install server: %w", err)
	}
	s := &InstallServer{img: img, l: l, done: make(chan struct{})}
	mux := http.NewServeMux()
	serve := func(path string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			rec := &statusWriter{ResponseWriter: w, status: http.StatusOK}
			http.ServeFile(rec, r, path)
			s.record(r, rec.status)
		}
	}
	mux.HandleFunc("GET /vmlinuz", serve(img.Kernel()))
	mux.HandleFunc("GET /initrd.gz", serve(img.Initrd()))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.NotFound(w, r)
		s.record(r, http.StatusNotFound)
	})
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(l)
	}()
	return s, nil
}

func (s *InstallServer) record(r *http.Request, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, Request{Time: time.Now(), Path: r.URL.Path, Remote: r.RemoteAddr, UserAgent: r.UserAgent(), Status: status})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// Port is the server's port on the host's loopback.
func (s *InstallServer) Port() int { return s.l.Addr().(*net.TCPAddr).Port }

// GuestURL is the server's base URL as the guest reaches it.
func (s *InstallServer) GuestURL() string {
	return "http://" + GuestHost + ":" + strconv.Itoa(s.Port())
}

// Requests returns the requests answered so far.
func (s *InstallServer) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.reqs...)
}

// Fetched reports whether path was served successfully since t.
func (s *InstallServer) Fetched(path string, since time.Time) bool {
	for _, r := range s.Requests() {
		if r.Path == path && r.Status == http.StatusOK && !r.Time.Before(since) {
			return true
		}
	}
	return false
}

// Close stops the server.
func (s *InstallServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	<-s.done
	return err
}

// InventoryNode is a node as the generated inventory describes it.
type InventoryNode struct {
	Node *Node
	// Name in the inventory; default the node's name.
	Name string
	// Serial in the inventory; default the node's DMI serial (set another
	// to make the identity check fail).
	Serial string
	// Playbook; default none (reprov's "default").
	Playbook string
}

// ReprovSetup is what WriteReprov writes.
type ReprovSetup struct {
	// Dir receives reprov.yaml, inventory.yaml, known_hosts, the BMC
	// password file and the state directory.
	Dir string
	// LandingPort is the landing endpoint's port on 127.0.0.1; the guests
	// reach it as http://10.0.2.2:PORT. It must be the port the nodes'
	// boot.ipxe chains to.
	LandingPort int
	// InstallURL is the base URL of the installer (InstallServer.GuestURL);
	// empty leaves reprov without an install profile.
	InstallURL string
	// ProbeInterval is landing.probe_interval; default 3s.
	ProbeInterval time.Duration
	// AgentBinary is inband.agent_binary; empty: next to reprov.
	AgentBinary string
	Nodes       []InventoryNode
}

// ReprovFiles are the files WriteReprov wrote.
type ReprovFiles struct {
	Config, Inventory, KnownHosts, StateDir string
}

// LandingURL is the landing URL as guests reach it, for a landing endpoint
// on 127.0.0.1:port.
func LandingURL(port int) string { return "http://" + GuestHost + ":" + strconv.Itoa(port) }

// WriteReprov writes a reprov configuration and inventory for the nodes:
// landing.listen on 127.0.0.1:LandingPort, landing.url as the guests reach
// it, the installer as the install profile, a state dir of its own, and
// per node its BMC (ipmi://127.0.0.1:PORT, cipher suite 3: ipmi_sim has no
// 17; boot flags verified by device, all ipmi_sim reads back), its SSH (the forwarded port, the image's key, a known_hosts with the
// node's baked host key, strict checking), its MAC, serial and boot disk.
func WriteReprov(s ReprovSetup) (ReprovFiles, error) {
	if s.Dir == "" || s.LandingPort == 0 || len(s.Nodes) == 0 {
		return ReprovFiles{}, errors.New("rig: WriteReprov needs Dir, LandingPort and nodes")
	}
	if s.ProbeInterval == 0 {
		s.ProbeInterval = 3 * time.Second
	}
	f := ReprovFiles{
		Config:     filepath.Join(s.Dir, "reprov.yaml"),
		Inventory:  filepath.Join(s.Dir, "inventory.yaml"),
		KnownHosts: filepath.Join(s.Dir, "known_hosts"),
		StateDir:   filepath.Join(s.Dir, "state"),
	}
	var kh, inv strings.Builder
	inv.WriteString("# e2e inventory, generated by reprov e2e/rig\nnodes:\n")
	for i, in := range s.Nodes {
		n := in.Node
		line, err := n.KnownHostsLine()
		if err != nil {
			return ReprovFiles{}, err
		}
		kh.WriteString(line + "\n")
		pwFile := filepath.Join(s.Dir, fmt.Sprintf("bmc-password-%d", i))
		if err := os.WriteFile(pwFile, []byte(n.BMCPassword()+"\n"), 0o600); err != nil {
			return ReprovFiles{}, err
		}
		name, serial := in.Name, in.Serial
		if name == "" {
			name = n.Name()
		}
		if serial == "" {
			serial = n.Serial()
		}
		fmt.Fprintf(&inv, "  - name: %s\n", name)
		fmt.Fprintf(&inv, "    rack: e2e\n")
		fmt.Fprintf(&inv, "    labels: {model: e2e-qemu-%s-pxe}\n", n.cfg.Board)
		fmt.Fprintf(&inv, "    bmc:\n      address: ipmi://127.0.0.1:%d\n      username: %s\n      password: file:%s\n", n.BMCPort(), n.BMCUser(), pwFile)
		// ipmi_sim reads boot flags back with the device only (the valid
		// bit reads 0): verify what it can tell.
		fmt.Fprintf(&inv, "      options: {cipher_suites: [3], verify: device-only, timeout: 5s, retries: 3}\n")
		fmt.Fprintf(&inv, "    ssh:\n      address: 127.0.0.1\n      port: %d\n      user: root\n      identity: %s\n      known_hosts: %s\n      host_key_policy: strict\n",
			n.SSHPort(), n.Image().SSHKey(), f.KnownHosts)
		fmt.Fprintf(&inv, "    macs: [%q]\n", n.MAC())
		fmt.Fprintf(&inv, "    serial: %q\n", serial)
		// The running OS is an initramfs: nothing is mounted from the disk,
		// so the boot disk is named.
		fmt.Fprintf(&inv, "    boot: {mode: legacy, disk: /dev/sda}\n")
		if in.Playbook != "" {
			fmt.Fprintf(&inv, "    playbook: %s\n", in.Playbook)
		}
	}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "# e2e reprov configuration, generated by reprov e2e/rig\n")
	fmt.Fprintf(&cfg, "inventory: %s\nstate_dir: %s\nlog_level: debug\n", f.Inventory, f.StateDir)
	fmt.Fprintf(&cfg, "landing:\n  listen: 127.0.0.1:%d\n  url: %s\n  probe_interval: %s\n", s.LandingPort, LandingURL(s.LandingPort), s.ProbeInterval)
	if s.InstallURL != "" {
		fmt.Fprintf(&cfg, "  kernel: %s/vmlinuz\n  initrd: [%s/initrd.gz]\n  cmdline: console=ttyS0,115200 quiet loglevel=3 panic=5\n", s.InstallURL, s.InstallURL)
	}
	if s.AgentBinary != "" {
		fmt.Fprintf(&cfg, "inband:\n  agent_binary: %s\n", s.AgentBinary)
	}
	for path, content := range map[string]string{f.Config: cfg.String(), f.Inventory: inv.String(), f.KnownHosts: kh.String()} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			return ReprovFiles{}, err
		}
	}
	if err := os.MkdirAll(f.StateDir, 0o700); err != nil {
		return ReprovFiles{}, err
	}
	return f, nil
}
