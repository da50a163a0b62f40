package inventory

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/reprov/reprov/internal/suggest"
)

// Default ports of the BMC protocols.
const (
	DefaultIPMIPort         = 623
	DefaultRedfishHTTPSPort = 443
	DefaultRedfishHTTPPort  = 80
)

// BMCAddress is a parsed bmc.address, in metal3's URL conventions:
//
//	ipmi://host[:port]
//	redfish://host[:port][/redfish/v1/Systems/ID]        (HTTPS)
//	redfish+https://host[:port][/redfish/v1/Systems/ID]
//	redfish+http://host[:port][/redfish/v1/Systems/ID]
//	host[:port]                                          (detect the protocol)
type BMCAddress struct {
	// Protocol is "ipmi", "redfish", or "" to detect.
	Protocol string
	// Scheme is "https" or "http" for Redfish, "" otherwise.
	Scheme string
	// Host is an IP address or DNS name, without brackets.
	Host string
	// Port is the port given, 0 for the protocol's default.
	Port int
	// Path is the Redfish system resource (/redfish/v1/Systems/ID), without
	// a trailing slash; "" means the only system the BMC lists.
	Path string
}

// String returns the address in canonical form: redfish:// for HTTPS,
// redfish+http:// for plain HTTP, IPv6 hosts in brackets.
func (a BMCAddress) String() string {
	host := a.Host
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if a.Port != 0 {
		host += ":" + strconv.Itoa(a.Port)
	}
	switch a.Protocol {
	case "ipmi":
		return "ipmi://" + host
	case "redfish":
		if a.Scheme == "http" {
			return "redfish+http://" + host + a.Path
		}
		return "redfish://" + host + a.Path
	}
	return host
}

// DefaultPort returns the port the address means: Port if set, else the
// protocol's default (0 for a bare address, whose protocol is detected).
func (a BMCAddress) DefaultPort() int {
	if a.Port != 0 {
		return a.Port
	}
	return a.protocolPort()
}

func (a BMCAddress) protocolPort() int {
	switch {
	case a.Protocol == "ipmi":
		return DefaultIPMIPort
	case a.Protocol == "redfish" && a.Scheme == "http":
		return DefaultRedfishHTTPPort
	case a.Protocol == "redfish":
		return DefaultRedfishHTTPSPort
	}
	return 0
}

// key identifies the BMC for duplicate detection: the normalized host, the
// port unless it is the protocol's default, and the Redfish system path (one
// BMC may serve several systems).
func (a BMCAddress) key() string {
	host := strings.ToLower(a.Host)
	if ip, err := netip.ParseAddr(host); err == nil {
		host = ip.Unmap().String()
	}
	if a.Port != 0 && a.Port != a.protocolPort() {
		host = net.JoinHostPort(host, strconv.Itoa(a.Port))
	}
	return host + a.Path
}

// bmcSchemes are the schemes bmc.address accepts.
var bmcSchemes = []string{"ipmi", "redfish", "redfish+http", "redfish+https"}

// ParseBMCAddress parses a bmc.address. Errors say what is wrong without
// repeating credentials: an address with user:password@ in it is refused
// without being echoed.
func ParseBMCAddress(s string) (BMCAddress, error) {
	if s == "" {
		return BMCAddress{}, errors.New("empty address")
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return BMCAddress{}, errors.New("address contains spaces or control characters")
	}
	if rawScheme, rest, ok := strings.Cut(s, "://"); ok {
		return parseBMCURL(s, rawScheme, rest)
	}
	if strings.Contains(s, "@") {
		return BMCAddress{}, errCredentialsInAddress
	}
	if before, _, ok := strings.Cut(s, ":"); ok && isBMCScheme(strings.ToLower(before)) {
		return BMCAddress{}, fmt.Errorf("missing // after %q: write %s://HOST", before+":", strings.ToLower(before))
	}
	if strings.ContainsAny(s, "/?#") {
		return BMCAddress{}, fmt.Errorf("%q: a bare address is host[:port]; a path needs redfish://host/redfish/v1/Systems/ID", s)
	}
	host, port, err := splitHostPortLoose(s)
	if err != nil {
		return BMCAddress{}, err
	}
	return BMCAddress{Host: host, Port: port}, nil
}

var errCredentialsInAddress = errors.New("address must not contain credentials (user:password@): use bmc.username and bmc.password; the address is not shown")

func isBMCScheme(s string) bool {
	for _, x := range bmcSchemes {
		if s == x {
			return true
		}
	}
	return false
}

// refusedSchemes are the metal3 (Ironic) schemes reprov does not speak,
// with the scheme to use instead.
var refusedSchemes = map[string]string{
	"idrac":                      "iDRAC's WS-Management is not spoken; use redfish://HOST (iDRAC 7 and later) or ipmi://HOST",
	"ilo4":                       "HP's RIBCL (proliantutils) is not spoken; use ipmi://HOST, or redfish://HOST on iLO 4 firmware 2.30 and later",
	"ilo5":                       "HP's RIBCL (proliantutils) is not spoken; use redfish://HOST (iLO 5 speaks Redfish) or ipmi://HOST",
	"irmc":                       "Fujitsu's iRMC SCCI is not spoken; use redfish://HOST or ipmi://HOST",
	"redfish-virtualmedia":       "reprov boots the network through the boot override, not virtual media; use redfish://HOST",
	"redfish-virtualmedia+http":  "reprov boots the network through the boot override, not virtual media; use redfish+http://HOST",
	"redfish-virtualmedia+https": "reprov boots the network through the boot override, not virtual media; use redfish://HOST",
	"idrac-virtualmedia":         "reprov boots the network through the boot override, not virtual media; use redfish://HOST",
	"ilo4-virtualmedia":          "reprov boots the network through the boot override, not virtual media; use ipmi://HOST",
	"ilo5-virtualmedia":          "reprov boots the network through the boot override, not virtual media; use redfish://HOST",
	"redfish-uefihttp":           "reprov boots the network through the PXE boot override, not UEFI HTTP boot; use redfish://HOST",
}

func parseBMCURL(s, rawScheme, rest string) (BMCAddress, error) {
	authority := rest
	if i := strings.IndexAny(authority, "/?#"); i >= 0 {
		authority = authority[:i]
	}
	if strings.Contains(authority, "@") {
		return BMCAddress{}, errCredentialsInAddress
	}
	var a BMCAddress
	switch scheme := strings.ToLower(rawScheme); scheme {
	case "ipmi":
		a.Protocol = "ipmi"
	case "redfish", "redfish+https":
		a.Protocol, a.Scheme = "redfish", "https"
	case "redfish+http":
		a.Protocol, a.Scheme = "redfish", "http"
	case "https", "idrac-redfish", "idrac-redfish+https", "ilo5-redfish", "ilo5-redfish+https", "ibmc", "ibmc+https":
		// https:// as most tools write a Redfish BMC; metal3's vendor
		// Redfish schemes are plain Redfish for what reprov does (the
		// boot override and power), docs/inventory.md.
		a.Protocol, a.Scheme = "redfish", "https"
	case "idrac-redfish+http", "ilo5-redfish+http", "ibmc+http":
		a.Protocol, a.Scheme = "redfish", "http"
	default:
		if use, ok := refusedSchemes[scheme]; ok {
			return BMCAddress{}, fmt.Errorf("scheme %q is not supported: %s", rawScheme, use)
		}
		hint := suggest.DidYouMean(scheme, bmcSchemes)
		switch {
		case hint != "":
		case strings.Contains(scheme, "redfish"):
			hint = ` (did you mean "redfish"? vendor variants are not needed)`
		default:
			hint = " (want ipmi://, redfish://, redfish+http://, redfish+https:// or a bare host[:port])"
		}
		return BMCAddress{}, fmt.Errorf("unknown scheme %q%s", rawScheme, hint)
	}
	u, err := url.Parse(s)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return BMCAddress{}, fmt.Errorf("not a valid URL: %v", err)
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return BMCAddress{}, fmt.Errorf("%q: a BMC address has no query or fragment", s)
	}
	if u.Host == "" {
		return BMCAddress{}, fmt.Errorf("%q has no host", s)
	}
	host, port, err := splitHostPortLoose(u.Host)
	if err != nil {
		return BMCAddress{}, err
	}
	a.Host, a.Port = host, port
	p := strings.TrimRight(u.Path, "/")
	switch {
	case p == "":
	case a.Protocol == "ipmi":
		return BMCAddress{}, fmt.Errorf("%q: an ipmi:// address has no path", s)
	default:
		id, ok := strings.CutPrefix(p, "/redfish/v1/Systems/")
		if !ok || id == "" || strings.Contains(id, "/") {
			return BMCAddress{}, fmt.Errorf("path %q is not a Redfish system (want /redfish/v1/Systems/ID)", u.Path)
		}
		a.Path = p
	}
	return a, nil
}

// splitHostPortLoose splits host[:port], [v6][:port] or a bare IPv6 address
// and validates both parts.
func splitHostPortLoose(s string) (host string, port int, err error) {
	portStr := ""
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", 0, fmt.Errorf("%q: missing ] after IPv6 address", s)
		}
		host = s[1:end]
		rest := s[end+1:]
		if rest != "" {
			p, ok := strings.CutPrefix(rest, ":")
			if !ok {
				return "", 0, fmt.Errorf("%q: unexpected %q after ]", s, rest)
			}
			portStr = p
			if portStr == "" {
				return "", 0, fmt.Errorf("%q: empty port", s)
			}
		}
		if _, err := netip.ParseAddr(host); err != nil || !strings.Contains(host, ":") {
			return "", 0, fmt.Errorf("%q: only an IPv6 address goes in brackets", s)
		}
	case strings.Count(s, ":") == 1:
		host, portStr, _ = strings.Cut(s, ":")
		if portStr == "" {
			return "", 0, fmt.Errorf("%q: empty port", s)
		}
	case strings.Count(s, ":") > 1:
		if _, err := netip.ParseAddr(s); err != nil {
			return "", 0, fmt.Errorf("%q is not a valid IPv6 address (write [v6addr]:port to give a port)", s)
		}
		host = s
	default:
		host = s
	}
	if !validHost(host) {
		return "", 0, fmt.Errorf("host %q is not a valid host name or IP address", host)
	}
	if portStr != "" {
		port, err = parsePort(portStr)
		if err != nil {
			return "", 0, err
		}
	}
	return host, port, nil
}

func parsePort(s string) (int, error) {
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("port %q is not a number", s)
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %s is out of range (1-65535)", s)
	}
	return n, nil
}

// validHost reports whether h is an IP address or a DNS name (labels of
// letters, digits, '-' and '_', separated by dots).
func validHost(h string) bool {
	if h == "" {
		return false
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	if len(h) > 253 {
		return false
	}
	allDigitsOrDots := true
	for label := range strings.SplitSeq(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case c >= '0' && c <= '9':
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '-', c == '_':
				allDigitsOrDots = false
			default:
				return false
			}
		}
	}
	// "10.0.0.300" is a mistyped IP, not a host name.
	return !allDigitsOrDots
}
