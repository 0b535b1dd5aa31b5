// Package config reads egressd's TOML config file into a validated Config.
//
// It works in two layers: the toml package decodes the file into
// file-schema structs holding the user's raw text (schema.go), then
// validation turns that into the domain model — ports, addresses,
// durations and a compiled policy.Set — or reports every problem at once,
// each with its file, line and field:
//
//	egressd.toml:14: sandbox "sb1": allow_domains[2] "a.*.b": a wildcard may only be the whole leftmost label
//
// Unknown keys are errors. Parse never half-applies: it returns a complete,
// valid Config or an error.
package config

import (
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/egressd/egressd/policy"
)

// Config is a validated egressd configuration.
type Config struct {
	Path      string // the file it was read from (the name given to Parse)
	Proxy     Proxy
	Admin     Admin
	State     State
	DNS       DNS
	Host      Host
	Sandboxes *policy.Set // at least one
}

// Proxy is the [proxy] section: the interception data path.
type Proxy struct {
	TProxyPort      int              // TCP interception port, IPv4 and IPv6
	DNSPort         int              // filtering resolver port
	UpstreamDNS     []netip.AddrPort // where allowed queries go
	PeekTimeout     time.Duration    // wait for a ClientHello or HTTP request head
	DialTimeout     time.Duration    // upstream connect timeout
	ShutdownTimeout time.Duration    // how long live flows may drain on SIGTERM
	IdleTimeout     time.Duration    // a proxied flow with no byte either way for this long is closed; 0: never
	// MaxPeekBytesPerSandbox and MaxPeekBytes bound the memory of flows
	// still sending their first bytes (ClientHello, request head).
	MaxPeekBytesPerSandbox, MaxPeekBytes int64
	MaxConnsPerSandbox                   int // concurrent proxied connections per sandbox
}

// DNS is the [dns] section: the filtering resolver (package dnsfilter).
type DNS struct {
	MinBindingTTL         time.Duration // an answered address stays bound to its name at least this long
	BlockPrivateAnswers   bool          // strip private, loopback, link-local, CGNAT and ULA answers for allow_domains names
	CacheSize             int           // answers kept in the shared cache; 0: no cache
	MaxBindingsPerSandbox int           // (name, address) bindings kept per sandbox, least recently used evicted
}

// Host is the [host] section: how egressd guards the host it runs on.
type Host struct {
	// SandboxInterfaces are names and prefix* patterns of every interface
	// that may carry sandbox traffic; nil when unset.
	SandboxInterfaces []string
	ProtectHost       bool // no sandbox reaches an address of the host itself
	IsolateSandboxes  bool // no sandbox reaches another sandbox's sources
	// Reject is how the kernel refuses what it denies: RejectICMP answers
	// with ICMP administratively prohibited (TCP with a reset), RejectDrop
	// drops silently.
	Reject string
}

// The values of host.reject.
const (
	RejectICMP = "icmp"
	RejectDrop = "drop"
)

// Guard is the host-wide part of every sandbox's policy. The caller sets
// IsLocal: this package knows nothing of the host's addresses.
func (h Host) Guard() policy.Guard {
	return policy.Guard{ProtectHost: h.ProtectHost, IsolateSandboxes: h.IsolateSandboxes}
}

// Warnings are things a valid config does that an operator should know:
// they are printed by validate and logged by run.
func (c *Config) Warnings() []string {
	var out []string
	if len(c.Host.SandboxInterfaces) == 0 {
		out = append(out, "host.sandbox_interfaces is unset: an interface no sandbox ever named "+
			"(a new tap, a mistyped interface) is not guarded; list every sandbox interface, e.g. [\"veth-sb*\", \"tap*\"]")
	}
	for _, sb := range c.Sandboxes.All() {
		for _, l := range sb.Listen {
			if ap, err := netip.ParseAddrPort(l.Address); err == nil && l.Network == "tcp" && !ap.Addr().IsLoopback() && l.User == "" {
				out = append(out, fmt.Sprintf("sandbox %q: listen %s is reachable from other hosts and has no listen_auth: "+
					"whoever reaches it is this sandbox", sb.Name, l))
			}
		}
		if sb.Policy.Audit() {
			out = append(out, fmt.Sprintf("sandbox %q is in report-only mode (audit = true): what its policy denies "+
				"passes, reported as would-deny; remove audit to enforce", sb.Name))
		}
	}
	return out
}

// Admin is the [admin] section.
type Admin struct {
	Socket  string // absolute path of the admin API's unix socket
	Metrics string // Prometheus listen address; "" when off
}

// State is the [state] section.
type State struct {
	Dir string // absolute; runtime policy changes persist here
}

// Load reads and parses the config file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse parses and validates a config file's contents; name is used in
// error messages and as Config.Path. The error lists up to 20 problems,
// one per line, each an *Error.
func Parse(name string, data []byte) (*Config, error) {
	v := newValidator(name, data)
	fc, err := v.decode(data)
	if err != nil {
		return nil, err
	}
	cfg := &Config{
		Path:  name,
		Proxy: v.proxy(fc.Proxy),
		Admin: v.admin(fc.Admin),
		State: v.state(fc.State),
		DNS:   v.dns(fc.DNS),
		Host:  v.host(fc.Host),
	}
	sbs := v.sandboxes(fc.Sandbox, cfg.Host.SandboxInterfaces)
	if err := v.errs.err(); err != nil {
		return nil, err
	}
	set, err := policy.NewSet(sbs, cfg.Host.Guard())
	if err != nil { // the checks above should have caught it
		return nil, &Error{File: name, Err: err}
	}
	cfg.Sandboxes = set
	return cfg, nil
}
