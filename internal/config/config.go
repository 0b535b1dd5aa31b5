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
	Sandboxes *policy.Set // at least one
}

// Proxy is the [proxy] section: the interception data path.
type Proxy struct {
	TProxyPort         int              // TCP interception port, IPv4 and IPv6
	DNSPort            int              // filtering resolver port
	UpstreamDNS        []netip.AddrPort // where allowed queries go
	PeekTimeout        time.Duration    // wait for a ClientHello or HTTP request head
	DialTimeout        time.Duration    // upstream connect timeout
	ShutdownTimeout    time.Duration    // how long live flows may drain on SIGTERM
	MaxConnsPerSandbox int              // concurrent proxied connections per sandbox
}

// DNS is the [dns] section: the filtering resolver (package dnsfilter).
type DNS struct {
	MinBindingTTL         time.Duration // an answered address stays bound to its name at least this long
	BlockPrivateAnswers   bool          // strip private, loopback, link-local, CGNAT and ULA answers for allow_domains names
	CacheSize             int           // answers kept in the shared cache; 0: no cache
	MaxBindingsPerSandbox int           // (name, address) bindings kept per sandbox, least recently used evicted
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
	}
	sbs := v.sandboxes(fc.Sandbox)
	if err := v.errs.err(); err != nil {
		return nil, err
	}
	set, err := policy.NewSet(sbs)
	if err != nil { // the checks above should have caught it
		return nil, &Error{File: name, Err: err}
	}
	cfg.Sandboxes = set
	return cfg, nil
}
