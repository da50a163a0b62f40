// Package fleet is reprov's simulated rack: many virtual nodes in one
// process, each with a BMC on loopback (go-ipmi's reference BMC from
// lab/ipmibmc, or the Redfish test BMC from lab/redfishbmc), firmware that
// decides at every power-on, cycle, reset or reboot where the node boots,
// and — while it runs from its disk — an OS reachable over SSH that runs
// reprov's in-band agent subcommands against the node's virtual Host
// (disk, sysfs identity, in-band IPMI, reboot).
//
// Booting from the network is an HTTP GET of <landing URL>/boot/ipxe?mac=…,
// as iPXE sends it, retried with backoff until answered or until the node
// is powered off or booted again. Booting from the disk brings the SSH
// server back on the same address with the same host key and a new boot id.
//
// The reinstall engine and the tests drive a lab through real reprov
// code: the BMCs over IPMI and Redfish, the in-band step over SSH
// (agent/inband), the landing endpoint over HTTP. Start writes the lab's
// credentials (BMC password, SSH client key, known_hosts, Redfish CA) to
// Config.Dir; WriteFiles writes an inventory and a reprov configuration
// that every reprov command can use.
//
// A lab of 10,000 nodes runs in one process: nodes cost little until they
// boot, an SSH listener is open only while a node's OS is up, and at most
// Config.MaxOSUp OSes are up at once (the open-file limit).
package fleet

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/reprov/reprov/lab/redfishbmc"
)

// Defaults of Config.
const (
	// DefaultMaxOSUp keeps the lab's SSH listeners and connections within
	// the ~20,000 open files a process may have here, next to one socket
	// per BMC.
	DefaultMaxOSUp        = 9000
	DefaultFlakyLoss      = 0.1
	DefaultFlakyDelay     = 5 * time.Millisecond
	DefaultNetbootRetry   = 250 * time.Millisecond
	DefaultNetbootMax     = 5 * time.Second
	DefaultPowerPoll      = 100 * time.Millisecond
	nodesPerRack          = 40
	bmcUsername           = "admin"
	sshUser               = "root"
	hpManufacturerID      = 11     // Hewlett-Packard (IANA)
	dl360G7ProductID      = 0x2000 // iLO 3
	landingUserAgent      = "iPXE/1.21.1 (reprov lab)"
	maxLandingScriptBytes = 64 << 10
)

// Names of the files Start writes to Config.Dir (WriteFiles adds the
// inventory and reprov.yaml).
const (
	FileBMCPassword = "reprov-lab-bmc-password"
	FileIdentity    = "reprov-lab-id_ed25519"
	FileKnownHosts  = "reprov-lab-known_hosts"
	FileCA          = "reprov-lab-ca.pem"
	FileConfig      = "reprov.yaml"
)

// Config configures a lab.
type Config struct {
	// Nodes is the number of nodes. With Mix, Mix's counts are weights
	// scaled to Nodes; 0 takes Mix's counts as they are.
	Nodes int
	// Mix is how many nodes of each model (default DefaultMix).
	Mix []ModelCount
	// Dir receives the lab's credential files (Files); empty means a
	// temporary directory that Close removes.
	Dir string
	// BootDelay is how long the firmware takes, from power-on (or reset,
	// or reboot) to deciding where to boot.
	BootDelay time.Duration
	// BootDelaySpread spreads the firmware's time over the fleet, as real
	// machines differ: node i takes BootDelay + BootDelaySpread×(i mod 5)/4,
	// so with BootDelay 2s and BootDelaySpread 2s boots take 2 to 4 s.
	BootDelaySpread time.Duration
	// OSBootTime is how long the OS takes from the disk boot until SSH
	// answers.
	OSBootTime time.Duration
	// Latency is added to every SSH exchange (each command) and to every
	// datagram through a flaky BMC's proxy.
	Latency time.Duration
	// LandingURL is the base URL the firmware requests when it boots from
	// the network (<LandingURL>/boot/ipxe?mac=…). Empty picks a free
	// 127.0.0.1 port (LandingListen); SetLandingURL changes it later.
	LandingURL string
	// PoweredOff starts every node powered off (a fleet waiting for its
	// window). By default nodes start powered on, their OS up.
	PoweredOff bool
	// MaxOSUp bounds the OSes up at once; a node that boots from its
	// disk beyond it waits for a slot. The default is DefaultMaxOSUp, or
	// less where the open-file limit, after one socket per BMC (two for a
	// flaky one) and a reserve for connections, allows less.
	MaxOSUp int
	// FlakyLoss is the datagram loss probability of flaky BMCs (default
	// DefaultFlakyLoss); negative means none.
	FlakyLoss float64
	// NetbootRetry and NetbootRetryMax bound the backoff between landing
	// requests (defaults DefaultNetbootRetry, DefaultNetbootMax).
	NetbootRetry, NetbootRetryMax time.Duration
	// PowerPoll is how often the lab notices IPMI machines powered off
	// (default DefaultPowerPoll).
	PowerPoll time.Duration
	// Subnet is the second octet of the lab's loopback addresses:
	// nodes are 127.Subnet.x.y. 0 picks a free one at random in 64–249.
	// A lab holds its subnet for its life (claimSubnet), so labs running at
	// once, in one process or several, never share addresses.
	Subnet int
	// Faults are the faults of each node, by node name (AssignFaults
	// picks nodes for fault counts; docs/reliability.md).
	Faults map[string][]Fault
	// Logger receives the lab's events (debug: every boot); nil discards.
	Logger *slog.Logger
}

// Lab is a running simulated rack. Its methods are safe for concurrent use.
type Lab struct {
	cfg    Config
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	dir    string
	tmpDir bool
	subnet int
	claim  net.Listener // holds the subnet (claimSubnet)

	nodes  []*Node
	byName map[string]*Node
	mix    []ModelCount

	password   string
	clientPub  ssh.PublicKey
	files      Files
	ca         *redfishbmc.CA
	vfsLegacy  *vfs
	vfsUEFI    *vfs
	imgMBR     diskImage
	imgGPT     diskImage
	slots      chan struct{}
	httpClient *http.Client
	landingLn  string

	landingMu sync.RWMutex
	landing   string

	wg        sync.WaitGroup
	closeOnce sync.Once
}

// Files are the files of a lab.
type Files struct {
	// Inventory and Config are set by WriteFiles.
	Inventory string `json:"inventory,omitempty"`
	Config    string `json:"config,omitempty"`
	// KnownHosts holds every node's SSH host key.
	KnownHosts string `json:"known_hosts"`
	// Identity is the controller's SSH private key (its .pub next to it).
	Identity string `json:"identity"`
	// BMCPassword holds the password of every BMC (mode 0600).
	BMCPassword string `json:"bmc_password"`
	// CA is the Redfish BMCs' CA certificate ("" without Redfish nodes).
	CA string `json:"ca,omitempty"`
}

// Start starts a lab: every node's BMC, then the OS of every node that
// starts powered on. ctx bounds the lab's life as Close does.
func Start(ctx context.Context, cfg Config) (*Lab, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	claim, subnet, err := claimSubnet(cfg.Subnet)
	if err != nil {
		return nil, err
	}
	cfg.Subnet = subnet
	l := &Lab{cfg: cfg, log: cfg.Logger, byName: map[string]*Node{}, subnet: subnet, claim: claim}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	l.mix = cfg.Mix
	total := 0
	for _, mc := range l.mix {
		total += mc.Count
	}
	if total > 250*256 {
		_ = claim.Close()
		return nil, fmt.Errorf("fleet: %d nodes exceed one 127.%d.0.0/16 (64,000)", total, l.subnet)
	}
	l.ctx, l.cancel = context.WithCancel(context.WithoutCancel(ctx))
	l.slots = make(chan struct{}, cfg.MaxOSUp)
	l.httpClient = &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			Proxy:               nil,
			MaxConnsPerHost:     128,
			MaxIdleConnsPerHost: 32,
			IdleConnTimeout:     30 * time.Second,
		},
	}
	l.vfsLegacy, l.vfsUEFI = buildVFS(false), buildVFS(true)
	l.imgMBR, l.imgGPT = mbrImage(), gptImage()
	if err := l.setup(); err != nil {
		l.Close()
		return nil, err
	}
	if err := l.startNodes(total); err != nil {
		l.Close()
		return nil, err
	}
	if err := l.writeKnownHosts(); err != nil {
		l.Close()
		return nil, err
	}
	l.wg.Add(1)
	go l.watchPower()
	if !cfg.PoweredOff {
		for _, n := range l.nodes {
			n.startRunning()
		}
	}
	context.AfterFunc(ctx, func() { l.Close() })
	l.log.Info("lab started", "nodes", total, "mix", FormatMix(l.mix), "subnet", fmt.Sprintf("127.%d.0.0/16", l.subnet), "dir", l.dir)
	return l, nil
}

func (c *Config) defaults() error {
	if len(c.Mix) == 0 {
		c.Mix = DefaultMix()
	}
	for _, mc := range c.Mix {
		if !mc.Model.Valid() {
			return fmt.Errorf("fleet: unknown model %q (known: %s)", mc.Model, modelList())
		}
		if mc.Count < 0 {
			return fmt.Errorf("fleet: negative count %d of model %s", mc.Count, mc.Model)
		}
	}
	if c.Nodes < 0 {
		return fmt.Errorf("fleet: negative node count %d", c.Nodes)
	}
	c.Mix = ScaleMix(c.Mix, c.Nodes)
	if err := validateFaults(c.Mix, c.Faults); err != nil {
		return err
	}
	if c.MaxOSUp <= 0 {
		c.MaxOSUp = MaxOSUpFor(c.Mix)
	}
	if c.FlakyLoss == 0 {
		c.FlakyLoss = DefaultFlakyLoss
	}
	if c.FlakyLoss < 0 {
		c.FlakyLoss = 0
	}
	if c.NetbootRetry <= 0 {
		c.NetbootRetry = DefaultNetbootRetry
	}
	if c.NetbootRetryMax < c.NetbootRetry {
		c.NetbootRetryMax = max(DefaultNetbootMax, c.NetbootRetry)
	}
	if c.PowerPoll <= 0 {
		c.PowerPoll = DefaultPowerPoll
	}
	if c.Subnet < 0 || c.Subnet > 254 {
		return fmt.Errorf("fleet: subnet %d: want 1–254 (the second octet of 127.x.0.0)", c.Subnet)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"boot delay", c.BootDelay}, {"boot delay spread", c.BootDelaySpread}, {"OS boot time", c.OSBootTime}, {"latency", c.Latency}} {
		if d.v < 0 {
			return fmt.Errorf("fleet: negative %s %s", d.name, d.v)
		}
	}
	return nil
}

// MaxOSUpFor is the default Config.MaxOSUp of a lab of mix in this
// process: DefaultMaxOSUp, or what the open-file limit leaves after the
// BMCs' sockets and a reserve for SSH and HTTP connections (a quarter of
// the limit, at most 1,000), but at least 1.
func MaxOSUpFor(mix []ModelCount) int { return maxOSUp(mix, openFileLimit()) }

func maxOSUp(mix []ModelCount, limit int) int {
	if limit <= 0 {
		return DefaultMaxOSUp
	}
	sockets := 0
	for _, mc := range mix {
		sockets += mc.Count
		if mc.Model == ModelFlaky {
			sockets += mc.Count
		}
	}
	return max(1, min(DefaultMaxOSUp, limit-sockets-min(1000, limit/4)))
}

// setup writes the credentials: the BMC password, the controller's SSH
// key and the Redfish CA.
func (l *Lab) setup() error {
	l.dir = l.cfg.Dir
	if l.dir == "" {
		d, err := os.MkdirTemp("", "reprov-lab-")
		if err != nil {
			return fmt.Errorf("fleet: %w", err)
		}
		l.dir, l.tmpDir = d, true
	} else {
		abs, err := filepath.Abs(l.dir)
		if err != nil {
			return fmt.Errorf("fleet: dir %s: %w", l.dir, err)
		}
		l.dir = abs
		if err := os.MkdirAll(l.dir, 0o700); err != nil {
			return fmt.Errorf("fleet: %w", err)
		}
	}
	l.files = Files{
		KnownHosts:  filepath.Join(l.dir, FileKnownHosts),
		Identity:    filepath.Join(l.dir, FileIdentity),
		BMCPassword: filepath.Join(l.dir, FileBMCPassword),
	}
	l.password = randomPassword(16)
	if err := writeSecret(l.files.BMCPassword, []byte(l.password+"\n")); err != nil {
		return fmt.Errorf("fleet: BMC password file: %w", err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("fleet: controller key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "reprov lab controller")
	if err != nil {
		return fmt.Errorf("fleet: controller key: %w", err)
	}
	if err := writeSecret(l.files.Identity, pem.EncodeToMemory(block)); err != nil {
		return fmt.Errorf("fleet: controller key file: %w", err)
	}
	if l.clientPub, err = ssh.NewPublicKey(pub); err != nil {
		return fmt.Errorf("fleet: controller key: %w", err)
	}
	if err := os.WriteFile(l.files.Identity+".pub", ssh.MarshalAuthorizedKey(l.clientPub), 0o644); err != nil {
		return fmt.Errorf("fleet: controller public key file: %w", err)
	}
	for _, mc := range l.mix {
		if mc.Model.Protocol() == "redfish" && mc.Count > 0 {
			l.files.CA = filepath.Join(l.dir, FileCA)
			if l.ca, err = redfishbmc.NewCA(l.files.CA); err != nil {
				return fmt.Errorf("fleet: Redfish CA: %w", err)
			}
			break
		}
	}
	l.landing = strings.TrimRight(l.cfg.LandingURL, "/")
	if l.landing == "" {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("fleet: pick a landing port: %w", err)
		}
		l.landingLn = ln.Addr().String()
		ln.Close()
		l.landing = "http://" + l.landingLn
	} else if u, err := parseHTTPURL(l.landing); err != nil {
		return fmt.Errorf("fleet: landing URL: %w", err)
	} else {
		l.landingLn = u
	}
	return nil
}

// parseHTTPURL checks an http(s) URL and returns its host:port.
func parseHTTPURL(s string) (string, error) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || (scheme != "http" && scheme != "https") {
		return "", fmt.Errorf("%q is not an http:// or https:// URL", s)
	}
	hostport, _, _ := strings.Cut(rest, "/")
	if _, _, err := net.SplitHostPort(hostport); err != nil {
		port := "80"
		if scheme == "https" {
			port = "443"
		}
		hostport = net.JoinHostPort(strings.Trim(hostport, "[]"), port)
	}
	return hostport, nil
}

func writeSecret(path string, data []byte) error {
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return err
	}
	return os.Chmod(path, 0o600) // an existing file keeps its mode otherwise
}

func randomPassword(n int) string {
	const alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// subnetClaimPort is the TCP port on 127.S.0.1 a lab listens on to hold
// subnet S: above Linux's ephemeral range, on an address no node uses.
const subnetClaimPort = "65123"

// claimSubnet holds subnet (or, when 0, a free one picked at random in
// 64–249) for a lab: it listens on 127.subnet.0.1:subnetClaimPort, which a
// second lab, in this process or another, cannot. Without it two labs could
// pick the same subnet and one lab's node take another's SSH port.
func claimSubnet(subnet int) (net.Listener, int, error) {
	claim := func(s int) (net.Listener, error) {
		return net.Listen("tcp4", net.JoinHostPort(fmt.Sprintf("127.%d.0.1", s), subnetClaimPort))
	}
	if subnet != 0 {
		ln, err := claim(subnet)
		if err != nil {
			return nil, 0, fmt.Errorf("fleet: subnet 127.%d.0.0/16 is taken (another lab uses it?): %w", subnet, err)
		}
		return ln, subnet, nil
	}
	var last error
	for range 64 {
		s := 64 + mrand.IntN(186)
		ln, err := claim(s)
		if err == nil {
			return ln, s, nil
		}
		last = err
	}
	return nil, 0, fmt.Errorf("fleet: no free subnet in 127.64–249.0.0/16 after 64 tries: %w", last)
}

// nodeIP is the loopback address of node i: 127.subnet.(i/250).(2+i%250).
func (l *Lab) nodeIP(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, byte(l.subnet), byte(i / 250), byte(2 + i%250)})
}

func (l *Lab) startNodes(total int) error {
	rackWidth := max(2, len(strconv.Itoa((total-1)/nodesPerRack+1)))
	for i, nn := range NodeNames(l.mix) {
		rack := fmt.Sprintf("r%0*d", rackWidth, i/nodesPerRack+1)
		n, err := l.newNode(i, nn.Index, nn.Name, rack, nn.Model)
		if err != nil {
			return fmt.Errorf("fleet: node %s: %w", nn.Name, err)
		}
		l.nodes = append(l.nodes, n)
		l.byName[nn.Name] = n
	}
	return nil
}

// writeKnownHosts writes every node's host key.
func (l *Lab) writeKnownHosts() error {
	var b strings.Builder
	for _, n := range l.nodes {
		key := n.hostKey.PublicKey()
		if n.hasFault(FaultSSHHostKeyChanged) {
			// known_hosts has the key of the node's previous OS.
			pub, _, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				return fmt.Errorf("fleet: known_hosts: %w", err)
			}
			if key, err = ssh.NewPublicKey(pub); err != nil {
				return fmt.Errorf("fleet: known_hosts: %w", err)
			}
		}
		b.WriteString(knownhosts.Line([]string{knownhosts.Normalize(n.SSHAddr())}, key))
		b.WriteByte('\n')
	}
	if err := os.WriteFile(l.files.KnownHosts, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("fleet: known_hosts: %w", err)
	}
	return nil
}

// watchPower notices IPMI machines switched off (go-ipmi's HAL has no
// power-off hook; power-ons arrive through the boot hook).
func (l *Lab) watchPower() {
	defer l.wg.Done()
	t := time.NewTicker(l.cfg.PowerPoll)
	defer t.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
		}
		for _, n := range l.nodes {
			n.checkPower()
		}
	}
}

// acquireSlot waits for one of the MaxOSUp OS slots.
func (l *Lab) acquireSlot(ctx context.Context) bool {
	select {
	case l.slots <- struct{}{}:
		return true
	default:
	}
	select {
	case l.slots <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (l *Lab) releaseSlot() { <-l.slots }

// Nodes returns the nodes, in inventory order.
func (l *Lab) Nodes() []*Node { return append([]*Node(nil), l.nodes...) }

// Node returns the node called name, or nil.
func (l *Lab) Node(name string) *Node { return l.byName[name] }

// NodesOf returns the nodes of model m.
func (l *Lab) NodesOf(m Model) []*Node {
	var out []*Node
	for _, n := range l.nodes {
		if n.model == m {
			out = append(out, n)
		}
	}
	return out
}

// Mix is how many nodes of each model the lab has.
func (l *Lab) Mix() []ModelCount { return append([]ModelCount(nil), l.mix...) }

// Dir is the directory of the lab's files.
func (l *Lab) Dir() string { return l.dir }

// Files are the lab's files (Inventory and Config once WriteFiles ran).
func (l *Lab) Files() Files { return l.files }

// Subnet is the second octet of the lab's addresses (127.Subnet.x.y).
func (l *Lab) Subnet() int { return l.subnet }

// ClientPublicKey is the SSH key every node's OS accepts (for root).
func (l *Lab) ClientPublicKey() ssh.PublicKey { return l.clientPub }

// LandingURL is the base URL the firmware requests.
func (l *Lab) LandingURL() string {
	l.landingMu.RLock()
	defer l.landingMu.RUnlock()
	return l.landing
}

// LandingListen is the address a landing endpoint must bind for
// LandingURL (what reprov.yaml sets as landing.listen).
func (l *Lab) LandingListen() string {
	l.landingMu.RLock()
	defer l.landingMu.RUnlock()
	return l.landingLn
}

// SetLandingURL changes the base URL the firmware requests; requests in
// progress use it from their next attempt.
func (l *Lab) SetLandingURL(u string) error {
	hp, err := parseHTTPURL(strings.TrimRight(u, "/"))
	if err != nil {
		return fmt.Errorf("fleet: landing URL: %w", err)
	}
	l.landingMu.Lock()
	defer l.landingMu.Unlock()
	l.landing, l.landingLn = strings.TrimRight(u, "/"), hp
	return nil
}

// OSUp counts the nodes whose OS is up.
func (l *Lab) OSUp() int { return len(l.slots) }

// MaxOSUp is the most OSes the lab keeps up at once.
func (l *Lab) MaxOSUp() int { return cap(l.slots) }

// Close stops every node and BMC and removes a temporary Dir. It is safe
// to call more than once.
func (l *Lab) Close() error {
	var errs []error
	l.closeOnce.Do(func() {
		if l.cancel != nil {
			l.cancel()
		}
		l.wg.Wait()
		var wg sync.WaitGroup
		var mu sync.Mutex
		work := make(chan *Node)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := range work {
					if err := n.close(); err != nil {
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
					}
				}
			}()
		}
		for _, n := range l.nodes {
			work <- n
		}
		close(work)
		wg.Wait()
		if t, ok := l.httpClient.Transport.(*http.Transport); ok {
			t.CloseIdleConnections()
		}
		if l.tmpDir {
			if err := os.RemoveAll(l.dir); err != nil {
				errs = append(errs, err)
			}
		}
		if l.claim != nil {
			_ = l.claim.Close()
		}
	})
	return errors.Join(errs...)
}
