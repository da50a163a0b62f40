package main

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/reprov/reprov/internal/suggest"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/reprov/reprov/agent/landing"
)

// Config is reprov's own configuration: flags, REPROV_* environment
// variables and the config file, in that order of precedence, through
// viper. docs/configuration.md is the one table of every key; keep them in
// step (TestConfigDocListsEveryKey checks it).
type Config struct {
	// Inventory is the node inventory file.
	Inventory string `mapstructure:"inventory"`
	// StateDir holds jobs, the audit log and learned quirks.
	StateDir string `mapstructure:"state_dir"`
	// Output is table or json.
	Output string `mapstructure:"output"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `mapstructure:"log_level"`
	// MaxParallel bounds how many nodes are worked on at once.
	MaxParallel int `mapstructure:"max_parallel"`
	// PerRack bounds how many nodes of one rack are worked on at once (0: no limit).
	PerRack int `mapstructure:"per_rack"`
	// Landing is the landing endpoint (docs/netboot.md).
	Landing LandingConfig `mapstructure:"landing"`
	// Store is the job store (docs/architecture.md).
	Store StoreConfig `mapstructure:"store"`
	// Playbooks says where operator playbooks are.
	Playbooks PlaybooksConfig `mapstructure:"playbooks"`
	// Inband configures the in-band step.
	Inband InbandConfig `mapstructure:"inband"`
	// Server is reprov serve's API, and the CLI's way to it.
	Server ServerConfig `mapstructure:"server"`
	// Log configures logging beyond its level.
	Log LogConfig `mapstructure:"log"`
}

// ServerConfig configures reprov serve's API and the CLI as its client.
type ServerConfig struct {
	// Listen is the address the API binds (serve).
	Listen string `mapstructure:"listen"`
	// URL is the API the CLI goes through; empty: the CLI works in-process.
	URL string `mapstructure:"url"`
	// Token is the CLI's API token, a reference (env:NAME, file:PATH).
	Token string `mapstructure:"token"`
	// TLSCert and TLSKey make serve's API speak HTTPS.
	TLSCert string `mapstructure:"tls_cert"`
	TLSKey  string `mapstructure:"tls_key"`
	// PublicPage serves the status page without a login (a trusted network).
	PublicPage bool `mapstructure:"public_page"`
	// MetricsToken, a reference (env:NAME, file:PATH), makes /metrics
	// require "Authorization: Bearer" with it; empty: /metrics is open.
	MetricsToken string `mapstructure:"metrics_token"`
}

// LogConfig configures logging.
type LogConfig struct {
	// Format is text or json.
	Format string `mapstructure:"format"`
}

// LandingConfig configures the landing endpoint.
type LandingConfig struct {
	// Listen is the address the endpoint binds.
	Listen string `mapstructure:"listen"`
	// URL is what iPXE scripts request.
	URL string `mapstructure:"url"`
	// Allow lists the source networks (CIDR) the endpoint answers; empty: all.
	Allow []string `mapstructure:"allow"`
	// Kernel, Initrd and Cmdline are the default install profile (a
	// playbook's install overrides it).
	Kernel  string   `mapstructure:"kernel"`
	Initrd  []string `mapstructure:"initrd"`
	Cmdline string   `mapstructure:"cmdline"`
	// ProbeInterval is how often a waiting node's BMC and old OS are probed.
	ProbeInterval time.Duration `mapstructure:"probe_interval"`
	// RetryWindow is how long after its landing a node whose job ended
	// landed still gets its install script and may call back (0: never).
	RetryWindow time.Duration `mapstructure:"retry_window"`
	// MatchSource requires a landing to come from the node's provisioning
	// address (its ssh.address when that is an IP).
	MatchSource bool `mapstructure:"match_source"`
}

// StoreConfig configures the job store.
type StoreConfig struct {
	// URL is sqlite:///path or postgres://…; empty: sqlite in the state dir.
	URL string `mapstructure:"url"`
	// Lease is how long a controller's claim on a node job lasts unrenewed.
	Lease time.Duration `mapstructure:"lease"`
}

// PlaybooksConfig says where operator playbooks are.
type PlaybooksConfig struct {
	// Dir holds operator playbook files (*.yaml, *.yml); empty: built-ins only.
	Dir string `mapstructure:"dir"`
}

// InbandConfig configures the in-band step.
type InbandConfig struct {
	// AgentBinary is the reprov-agent binary pushed to nodes (agent mode push).
	AgentBinary string `mapstructure:"agent_binary"`
}

// configKey describes one configuration key for defaults, env binding,
// checking and docs.
type configKey struct {
	key  string
	def  any
	help string
	// kind is the value's type, and enum (for kindEnum) its allowed values.
	kind valueKind
	enum []string
}

// configKeys lists every key. Order is the order of docs/configuration.md.
func configKeys() []configKey {
	return []configKey{
		{"inventory", "", "node inventory file (native YAML/TOML/JSON, Ansible, NetBox CSV)", kindString, nil},
		{"state_dir", "", "jobs, audit log, learned quirks (default /var/lib/reprov as root, else $XDG_STATE_HOME/reprov)", kindString, nil},
		{"output", "table", "output format: table, wide, json or yaml", kindEnum, outputFormats},
		{"log_level", "info", "log level: debug, info, warn, error", kindEnum, []string{"debug", "info", "warn", "error"}},
		{"max_parallel", 64, "nodes worked on at once", kindPositiveInt, nil},
		{"per_rack", 0, "nodes of one rack worked on at once (0: no limit)", kindCount, nil},
		{"landing.listen", "127.0.0.1:8086", "address the landing endpoint binds", kindString, nil},
		{"landing.url", "http://127.0.0.1:8086", "base URL iPXE scripts request", kindString, nil},
		{"landing.allow", []string{}, "source networks (CIDR) the landing endpoint answers; empty: every source", kindList, nil},
		{"landing.kernel", "", "default install profile: kernel URL (a playbook's install overrides it)", kindString, nil},
		{"landing.initrd", []string{}, "default install profile: initrd URLs, in order", kindList, nil},
		{"landing.cmdline", "", "default install profile: kernel command line", kindString, nil},
		{"landing.probe_interval", "15s", "how often a waiting node's BMC and old OS are probed", kindDuration, nil},
		{"store.url", "", "job store: sqlite:///path/reprov.db or postgres://… (default: sqlite in the state dir)", kindString, nil},
		{"store.lease", "30s", "how long a controller's claim on a node job lasts unrenewed", kindDuration, nil},
		{"playbooks.dir", "", "directory of operator playbooks (*.yaml); empty: built-ins only", kindString, nil},
		{"inband.agent_binary", "", "reprov-agent binary pushed to nodes (default: the build for each node's architecture next to reprov)", kindString, nil},
		{"landing.retry_window", "15m", "how long after its landing a node whose job ended landed still gets its install script (0: off)", kindDurationOrZero, nil},
		{"landing.match_source", false, "require a landing to come from the node's provisioning address (its ssh.address)", kindBool, nil},
		{"server.listen", "127.0.0.1:8087", "address reprov serve's API binds", kindString, nil},
		{"server.url", "", "reprov serve's API the CLI goes through; several comma-separated (empty: in-process)", kindString, nil},
		{"server.token", "", "the CLI's API token: env:NAME or file:PATH", kindString, nil},
		{"server.tls_cert", "", "TLS certificate file of serve's API", kindString, nil},
		{"server.tls_key", "", "TLS key file of serve's API", kindString, nil},
		{"server.public_page", false, "serve the status page without a login", kindBool, nil},
		{"server.metrics_token", "", "token /metrics requires: env:NAME or file:PATH (empty: open)", kindString, nil},
		{"log.format", "text", "log format: text or json", kindEnum, []string{"text", "json"}},
	}
}

// flagKeys maps global flag names to config keys.
var flagKeys = map[string]string{
	"inventory":    "inventory",
	"state-dir":    "state_dir",
	"output":       "output",
	"log-level":    "log_level",
	"max-parallel": "max_parallel",
	"per-rack":     "per_rack",
	"server":       "server.url",
}

// loadConfig builds the configuration from the config file (explicit path
// or the default search), REPROV_* environment variables and the flags
// that were set. Unknown keys in the file are errors.
func loadConfig(explicit string, flags *pflag.FlagSet, getenv func(string) string) (*Config, string, error) {
	v := viper.New()
	for _, k := range configKeys() {
		v.SetDefault(k.key, k.def)
	}
	if explicit == "" {
		explicit = getenv("REPROV_CONFIG")
	}
	path, err := findConfig(explicit, getenv)
	if err != nil {
		return nil, "", err
	}
	// Every problem at once, each where the operator can fix it: the
	// file's line, the variable, the flag.
	var ps configProblems
	fileOK := true
	if path != "" {
		if err := checkConfigFile(path); err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) {
				return nil, path, err
			}
			ps = append(ps, ce.Problems...)
			fileOK = false
		}
	}
	// Precedence: flag > REPROV_* environment > config file > default.
	overridden := make(map[string]bool)
	for _, k := range configKeys() {
		if val := getenv(envName(k.key)); val != "" {
			if msg := checkScalar(k, val); msg != "" {
				ps.add(envName(k.key), "", "%s", msg)
			}
			v.Set(k.key, val)
			overridden[k.key] = true
		}
	}
	for _, name := range slices.Sorted(maps.Keys(flagKeys)) {
		key := flagKeys[name]
		if f := flags.Lookup(name); f != nil && f.Changed {
			k, _ := keyByName(key)
			if msg := checkScalar(k, f.Value.String()); msg != "" {
				ps.add("--"+name, "", "%s", msg)
			}
			v.Set(key, f.Value.String())
			overridden[key] = true
		}
	}
	if path != "" && fileOK {
		v.SetConfigFile(path)
		if err := v.ReadInConfig(); err != nil {
			ps.add(path, "", "%v", err)
		} else if err := checkKnownKeys(path, v.AllKeys()); err != nil {
			// TOML files, which checkConfigFile does not read by line.
			ps.add(path, "", "%v", err)
		}
	}
	if err := ps.err(); err != nil {
		return nil, path, err
	}
	var cfg Config
	if err := v.UnmarshalExact(&cfg); err != nil {
		return nil, path, fmt.Errorf("config %s: %w", path, err)
	}
	if path != "" && !overridden["inventory"] && cfg.Inventory != "" && !filepath.IsAbs(cfg.Inventory) {
		// A relative inventory path in a config file is relative to that file.
		cfg.Inventory = filepath.Join(filepath.Dir(path), cfg.Inventory)
	}
	if cfg.StateDir == "" {
		cfg.StateDir = defaultStateDir(getenv)
	}
	if f := flags.Lookup("local"); f != nil && f.Changed && f.Value.String() == "true" {
		// --local: work in-process whatever server.url says.
		cfg.Server.URL = ""
	}
	if err := cfg.validate(path); err != nil {
		return nil, path, err
	}
	return &cfg, path, nil
}

// envName is the environment variable of a config key: REPROV_LANDING_LISTEN.
func envName(key string) string {
	return "REPROV_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// checkKnownKeys rejects keys the configuration does not define.
func checkKnownKeys(path string, keys []string) error {
	known := make(map[string]bool)
	for _, k := range configKeys() {
		known[k.key] = true
	}
	var errs []error
	for _, k := range keys {
		if !known[k] {
			errs = append(errs, fmt.Errorf("unknown key %q%s", k, suggest.DidYouMean(k, configKeyNames())))
		}
	}
	return errors.Join(errs...)
}

func (c *Config) validate(path string) error {
	where := "configuration"
	if path != "" {
		where = "config " + path
	}
	var errs []error
	switch c.Output {
	case "table", "wide", "json", "yaml":
	default:
		errs = append(errs, fmt.Errorf("%s: output: %q is not %s", where, c.Output, orList(outputFormats)))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("%s: log_level: %q is not debug, info, warn or error", where, c.LogLevel))
	}
	if c.MaxParallel < 1 {
		errs = append(errs, fmt.Errorf("%s: max_parallel: %d is not a positive number", where, c.MaxParallel))
	}
	if c.PerRack < 0 {
		errs = append(errs, fmt.Errorf("%s: per_rack: %d is negative", where, c.PerRack))
	}
	if c.Store.Lease <= 0 {
		errs = append(errs, fmt.Errorf("%s: store.lease: %s is not a positive duration", where, c.Store.Lease))
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("%s: log.format: %q is not text or json", where, c.Log.Format))
	}
	if (c.Server.TLSCert == "") != (c.Server.TLSKey == "") {
		errs = append(errs, fmt.Errorf("%s: server.tls_cert and server.tls_key: set both or neither", where))
	}
	if c.Landing.ProbeInterval <= 0 {
		errs = append(errs, fmt.Errorf("%s: landing.probe_interval: %s is not a positive duration", where, c.Landing.ProbeInterval))
	}
	if c.Landing.RetryWindow < 0 {
		errs = append(errs, fmt.Errorf("%s: landing.retry_window: %s is negative", where, c.Landing.RetryWindow))
	}
	if !landing.ListenIsLoopback(c.Landing.Listen) && !slices.ContainsFunc(c.Landing.Allow, func(a string) bool { return strings.TrimSpace(a) != "" }) {
		errs = append(errs, fmt.Errorf("%s: landing.allow is required when landing.listen (%s) is not a loopback address: list the networks nodes netboot from, e.g. landing.allow: [10.20.0.0/16] (docs/netboot.md)",
			where, c.Landing.Listen))
	}
	return errors.Join(errs...)
}

// findConfig returns the config file to read: the explicit one (which must
// exist), else the first of ./reprov.yaml, $XDG_CONFIG_HOME/reprov/config.yaml,
// /etc/reprov/config.yaml that exists, else "".
func findConfig(explicit string, getenv func(string) string) (string, error) {
	if explicit != "" {
		if _, err := os.Stat(explicit); err != nil {
			return "", fmt.Errorf("config: %w", err)
		}
		return explicit, nil
	}
	for _, p := range configSearchPath(getenv) {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", nil
}

func configSearchPath(getenv func(string) string) []string {
	xdg := getenv("XDG_CONFIG_HOME")
	if xdg == "" {
		if home := getenv("HOME"); home != "" {
			xdg = filepath.Join(home, ".config")
		}
	}
	paths := []string{"reprov.yaml"}
	if xdg != "" {
		paths = append(paths, filepath.Join(xdg, "reprov", "config.yaml"))
	}
	return append(paths, "/etc/reprov/config.yaml")
}

// defaultStateDir is /var/lib/reprov as root, else $XDG_STATE_HOME/reprov.
func defaultStateDir(getenv func(string) string) string {
	if os.Geteuid() == 0 {
		return "/var/lib/reprov"
	}
	if x := getenv("XDG_STATE_HOME"); x != "" {
		return filepath.Join(x, "reprov")
	}
	return filepath.Join(getenv("HOME"), ".local", "state", "reprov")
}
