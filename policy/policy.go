// Package policy is egressd's policy model: what a sandbox may reach.
//
// A Spec is a policy as the user writes it (mode plus lists). Compile
// normalises and validates a Spec once and returns an immutable *Policy whose
// Decide methods answer in constant time with no allocations, whatever the
// number of rules. The package knows nothing of sockets, logging or the
// kernel; proxy, dnsfilter and iptables depend on it, never the reverse.
//
// A flow is judged in two steps. DecideAddr looks at the destination
// address: deny_cidrs first (they win over everything), then the mode, then
// allow_cidrs. In custom mode an address that matched no CIDR rule leaves
// the decision to the name the flow carries (Decision.NeedsName), which
// DecideName checks against allow_domains. A caller that admits a flow by
// name and then dials another address must check that address with
// DeniedAddr, so deny_cidrs win over allow_domains too.
package policy

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
)

// Mode is a sandbox's base behaviour.
type Mode string

// The three modes.
const (
	ModeAllowAll Mode = "allow-all" // everything passes except deny_cidrs
	ModeDenyAll  Mode = "deny-all"  // nothing passes, DNS included
	ModeCustom   Mode = "custom"    // deny by default, plus the allow lists
)

var (
	errModeEmpty   = errors.New("required; want one of allow-all, deny-all, custom")
	errModeUnknown = errors.New("not a mode; want one of allow-all, deny-all, custom")
)

// ParseMode reads a mode as written in a config: exactly one of
// "allow-all", "deny-all" and "custom".
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeAllowAll, ModeDenyAll, ModeCustom:
		return m, nil
	case "":
		return "", errModeEmpty
	}
	return "", errModeUnknown
}

// Spec is a policy as written in the config file or sent to the admin API.
type Spec struct {
	Mode         Mode     `json:"mode"`
	AllowDomains []string `json:"allow_domains"`
	AllowCIDRs   []string `json:"allow_cidrs"`
	DenyCIDRs    []string `json:"deny_cidrs"`
	// Audit is report-only mode: the policy is judged as always, but what
	// it denies passes as WouldDeny, logged and counted with the rule that
	// would have denied it.
	Audit bool `json:"audit,omitempty"`
}

// FieldError is a Spec entry that does not compile:
//
//	allow_domains[2] "a.*.b": a wildcard may only be the whole leftmost label
//	mode "permissive": not a mode; want one of allow-all, deny-all, custom
type FieldError struct {
	Field string // "mode", "allow_domains", "allow_cidrs" or "deny_cidrs"
	Index int    // position in the list; -1 for mode
	Value string // the entry as written
	Err   error  // what is wrong with it
}

func (e *FieldError) Error() string {
	s := e.Field
	if e.Index >= 0 {
		s += "[" + strconv.Itoa(e.Index) + "]"
	}
	return s + " " + strconv.Quote(e.Value) + ": " + e.Err.Error()
}

func (e *FieldError) Unwrap() error { return e.Err }

// Policy is a compiled, immutable Spec. It is safe for concurrent use.
type Policy struct {
	mode     Mode
	audit    bool
	patterns []string // allow_domains patterns, normalised, without ports, in config order
	domains  domainTable
	allow    cidrTable
	deny     cidrTable
}

// Compile validates and normalises s. The error names the field, index and
// value that are wrong (a *FieldError). Patterns and prefixes are
// normalised (ParsePattern, ParsePrefix) and duplicates dropped. Lists a
// mode does not use (allow lists in allow-all, every list in deny-all) are
// validated and kept, so switching the mode back restores them.
func Compile(s Spec) (*Policy, error) {
	mode, err := ParseMode(string(s.Mode))
	if err != nil {
		return nil, &FieldError{Field: "mode", Index: -1, Value: string(s.Mode), Err: err}
	}
	p := &Policy{
		mode:     mode,
		audit:    s.Audit,
		patterns: make([]string, 0, len(s.AllowDomains)),
		domains:  newDomainTable(len(s.AllowDomains)),
	}
	for i, d := range s.AllowDomains {
		pat, ports, err := ParseDomainEntry(d)
		if err != nil {
			return nil, &FieldError{Field: "allow_domains", Index: i, Value: d, Err: err}
		}
		if p.domains.add(pat, ports) {
			p.patterns = append(p.patterns, pat)
		}
	}
	if err := addPrefixes(&p.allow, "allow_cidrs", s.AllowCIDRs); err != nil {
		return nil, err
	}
	if err := addPrefixes(&p.deny, "deny_cidrs", s.DenyCIDRs); err != nil {
		return nil, err
	}
	return p, nil
}

func addPrefixes(t *cidrTable, field string, list []string) error {
	t.list = make([]netip.Prefix, 0, len(list))
	for i, s := range list {
		r, err := ParseCIDREntry(s)
		if err != nil {
			return &FieldError{Field: field, Index: i, Value: s, Err: err}
		}
		t.addRule(r)
	}
	return nil
}

// Mode returns the policy's mode.
func (p *Policy) Mode() Mode { return p.mode }

// Audit reports whether the policy is in report-only mode (Spec.Audit).
func (p *Policy) Audit() bool { return p.audit }

// Audited is d as the policy's mode of enforcement has it: in report-only
// mode, a denial by the policy itself (mode deny-all, deny_cidrs, no
// matching rule, a flow without a usable name) becomes WouldDeny, with its
// reason and rule kept. Denials that are not the policy's (the host guard,
// an unknown source, malformed bytes, limits) stand. A decision that asks
// for a name (NeedsName) is not final and stays as it is.
func (p *Policy) Audited(d Decision) Decision {
	if !p.audit || d.Verdict != Deny || d.NeedsName() {
		return d
	}
	switch d.Reason {
	case ReasonDenyAll, ReasonDenyCIDR, ReasonNoMatch, ReasonNoName, ReasonInvalidName:
		d.Verdict = WouldDeny
	}
	return d
}

// Spec returns the normalised lists the policy was compiled from: patterns
// as ParsePattern returns them, prefixes in canonical form, duplicates
// dropped, config order kept. The slices are the caller's.
func (p *Policy) Spec() Spec {
	return Spec{
		Mode:         p.mode,
		AllowDomains: p.domainEntries(),
		AllowCIDRs:   p.allow.strings(),
		DenyCIDRs:    p.deny.strings(),
		Audit:        p.audit,
	}
}

// domainEntries are allow_domains as compiled: patterns with their ports.
func (p *Policy) domainEntries() []string {
	out := make([]string, len(p.patterns))
	for i, pat := range p.patterns {
		out[i] = p.domains.entryOf(pat)
	}
	return out
}

// CIDRs returns the entries of allow_cidrs and deny_cidrs without ports or
// protocol, as compiled, in config order. The slices are shared: the
// caller must not modify them.
func (p *Policy) CIDRs() (allow, deny []netip.Prefix) { return p.allow.list, p.deny.list }

// ScopedCIDRs returns the entries of allow_cidrs and deny_cidrs with ports
// or a protocol, in config order.
func (p *Policy) ScopedCIDRs() (allow, deny []CIDRRule) {
	return p.allow.scopedRules(), p.deny.scopedRules()
}

// DecideAddr judges a raw destination address, in this order: deny_cidrs,
// mode allow-all, mode deny-all, allow_cidrs. In custom mode an address that
// matches no CIDR rule yields a deny whose NeedsName reports true: the name
// the flow carries decides; in report-only mode, so does every address of
// mode deny-all. A denial is Audited. IPv4-mapped IPv6 addresses are
// judged as the IPv4 address they carry. It allocates nothing.
func (p *Policy) DecideAddr(dst netip.Addr) Decision {
	return p.DecideAddrPort(netip.AddrPortFrom(dst, 0), ProtoAny)
}

// DecideAddrPort is DecideAddr for a flow of proto to dst's port: entries
// with ports or a protocol take part (with ProtoAny, an unknown protocol,
// they do not).
func (p *Policy) DecideAddrPort(ap netip.AddrPort, proto Proto) Decision {
	dst, port := ap.Addr().Unmap().WithZone(""), ap.Port()
	if r, ok := p.deniedFlow(dst, proto, port); ok {
		return p.Audited(Decision{Verdict: Deny, Reason: ReasonDenyCIDR, Addr: dst, Prefix: r.Prefix, Scope: r.scope})
	}
	switch p.mode {
	case ModeAllowAll:
		return Decision{Verdict: Allow, Reason: ReasonAllowAll, Addr: dst}
	case ModeDenyAll:
		if p.audit {
			// Report-only: let the flow's name be read, so that the
			// report names what it reached.
			return Decision{Verdict: Deny, Reason: ReasonNoMatch, Addr: dst}
		}
		return Decision{Verdict: Deny, Reason: ReasonDenyAll, Addr: dst}
	}
	if r, ok := p.allow.lookupFlow(dst, proto, port); ok {
		return Decision{Verdict: Allow, Reason: ReasonAllowCIDR, Addr: dst, Prefix: r.Prefix, Scope: r.scope}
	}
	return Decision{Verdict: Deny, Reason: ReasonNoMatch, Addr: dst}
}

// DecideName judges a name as carried by a flow (TLS SNI, HTTP Host, DNS
// question). The name is validated strictly first (NormalizeName): "" is
// denied with ReasonNoName and a malformed name with ReasonInvalidName in
// every mode, allow-all included. Otherwise allow-all allows, deny-all
// denies, and custom allows when allow_domains has a matching pattern
// (Decision.Pattern: the exact name first, then the most specific
// wildcard, then "*"). A denial is Audited. Decision.Name is the
// normalised name. It allocates
// nothing, except one lowercase copy for a name holding capitals.
//
// DecideName knows no address: deny_cidrs are enforced by DecideAddr and
// DeniedAddr.
func (p *Policy) DecideName(name string) Decision { return p.DecideNamePort(name, 0) }

// DecideNamePort is DecideName for a flow to port: an allow_domains entry
// with ports allows only those (port 0: a question with no port, a DNS
// query, is allowed when some entry allows the name on some port).
func (p *Policy) DecideNamePort(name string, port uint16) Decision {
	if name == "" {
		return p.Audited(Decision{Verdict: Deny, Reason: ReasonNoName})
	}
	info, _, err := checkName(name)
	if err != nil {
		return p.Audited(Decision{Verdict: Deny, Reason: ReasonInvalidName, Name: name})
	}
	n := info.name
	if info.upper {
		n = strings.ToLower(n)
	}
	switch p.mode {
	case ModeAllowAll:
		return Decision{Verdict: Allow, Reason: ReasonAllowAll, Name: n}
	case ModeDenyAll:
		return p.Audited(Decision{Verdict: Deny, Reason: ReasonDenyAll, Name: n})
	}
	if pat, ok := p.domains.match(n, info.labels, port); ok {
		return Decision{Verdict: Allow, Reason: ReasonAllowDomain, Name: n, Pattern: pat}
	}
	return p.Audited(Decision{Verdict: Deny, Reason: ReasonNoMatch, Name: n})
}

// DeniedAddr reports whether a is inside deny_cidrs and which prefix
// matched: a itself, or an IPv4 address it embeds (NAT64, 6to4, Teredo,
// mapped, compatible: Embedded), which is where it would lead.
func (p *Policy) DeniedAddr(a netip.Addr) (netip.Prefix, bool) {
	r, ok := p.deniedFlow(a, ProtoAny, 0)
	return r.Prefix, ok
}

// DeniedAddrPort is DeniedAddr for a flow of proto to port: deny_cidrs
// entries with ports or a protocol take part.
func (p *Policy) DeniedAddrPort(a netip.Addr, proto Proto, port uint16) (CIDRRule, bool) {
	return p.deniedFlow(a, proto, port)
}

func (p *Policy) deniedFlow(a netip.Addr, proto Proto, port uint16) (CIDRRule, bool) {
	a = a.Unmap().WithZone("")
	if r, ok := p.deny.lookupFlow(a, proto, port); ok {
		return r, true
	}
	v4s, n := embedded(a)
	for _, v4 := range v4s[:n] {
		if r, ok := p.deny.lookupFlow(v4, proto, port); ok {
			return r, true
		}
	}
	return CIDRRule{}, false
}
