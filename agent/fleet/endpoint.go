package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/bmc/connect"
	"github.com/reprov/reprov/inventory"
)

// ErrBMCConfig is wrapped by EndpointFor's errors about a node's BMC
// settings (no or bad address, unknown option value).
var ErrBMCConfig = errors.New("BMC configuration")

// EndpointFor turns a node's inventory BMC settings into a bmc.Endpoint:
// the address parsed (metal3 URL conventions, inventory.ParseBMCAddress),
// the password reference resolved, and the per-node options mapped
// (boot_flag_timeout: keep → KeepBootFlagTimeout, verify → VerifyLevel
// with full as the default, ...). Errors name the node and the credential
// reference, never a resolved value. The password is resolved through
// secrets (nil: read every time).
func EndpointFor(n inventory.Node, secrets *inventory.SecretCache) (bmc.Endpoint, error) {
	if n.BMC.Address == "" {
		return bmc.Endpoint{}, fmt.Errorf("node %s: %w: no bmc.address", n.Name, ErrBMCConfig)
	}
	addr, err := inventory.ParseBMCAddress(n.BMC.Address)
	if err != nil {
		return bmc.Endpoint{}, fmt.Errorf("node %s: %w: bmc.address: %v", n.Name, ErrBMCConfig, err)
	}
	opts, err := optionsFor(n.BMC.Options)
	if err != nil {
		return bmc.Endpoint{}, fmt.Errorf("node %s: %w: %v", n.Name, ErrBMCConfig, err)
	}
	password, err := secrets.Resolve(n.BMC.Password)
	if err != nil {
		return bmc.Endpoint{}, fmt.Errorf("node %s: bmc.password: %w", n.Name, err)
	}
	return bmc.Endpoint{
		Protocol:   addr.Protocol,
		Scheme:     addr.Scheme,
		Host:       addr.Host,
		Port:       addr.Port,
		SystemPath: addr.Path,
		Username:   n.BMC.Username,
		Password:   password,
		Options:    opts,
	}, nil
}

// optionsFor maps inventory bmc.options to bmc.Options.
func optionsFor(o inventory.BMCOptions) (bmc.Options, error) {
	out := bmc.Options{
		CipherSuites:      o.CipherSuites,
		Privilege:         o.Privilege,
		AllowInsecureIPMI: o.AllowInsecureIPMI,
		InsecureTLS:       o.InsecureTLS,
		CAFile:            o.CAFile,
		RedfishSession:    o.RedfishSession,
		BootModeOverride:  o.BootModeOverride,
		Timeout:           o.Timeout,
		Retries:           o.Retries,
		MinInterval:       o.MinInterval,
		MaxConcurrent:     o.MaxConcurrent,
	}
	switch o.BootFlagTimeout {
	case "", "disable":
	case "keep":
		out.KeepBootFlagTimeout = true
	default:
		return out, fmt.Errorf("bmc.options.boot_flag_timeout %q: want disable or keep", o.BootFlagTimeout)
	}
	switch v := bmc.VerifyLevel(o.Verify); v {
	case "":
		out.Verify = bmc.VerifyFull
	case bmc.VerifyFull, bmc.VerifyDeviceOnly, bmc.VerifyOff:
		out.Verify = v
	default:
		return out, fmt.Errorf("bmc.options.verify %q: want full, device-only or off", o.Verify)
	}
	switch o.BootModeOverride {
	case "", "auto", "always", "never":
	default:
		return out, fmt.Errorf("bmc.options.boot_mode_override %q: want auto, always or never", o.BootModeOverride)
	}
	return out, nil
}

// OpenBMC opens the node's BMC: EndpointFor (with the run's secrets, which
// may be nil), then connect.Open with the run's limiter. The client is
// wrapped in the per-BMC limit and retry; the caller closes it. log may be
// nil.
func OpenBMC(ctx context.Context, n inventory.Node, lim *bmc.Limiter, secrets *inventory.SecretCache, log *slog.Logger) (bmc.Client, connect.Detected, error) {
	ep, err := EndpointFor(n, secrets)
	if err != nil {
		return nil, connect.Detected{}, err
	}
	if log != nil {
		log = log.With("node", n.Name)
	}
	c, det, err := connect.Open(ctx, ep, lim, log)
	if err != nil {
		return nil, det, fmt.Errorf("node %s: %w", n.Name, err)
	}
	return c, det, nil
}
