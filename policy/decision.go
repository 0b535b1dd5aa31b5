package policy

import (
	"net/netip"
	"strconv"
)

// Verdict is what happens to a flow. The zero value denies.
type Verdict uint8

// The verdicts.
const (
	Deny  Verdict = iota
	Allow         // the policy allows
	// WouldDeny: the policy denies, but the sandbox is in report-only
	// mode (Spec.Audit), so the flow passes and is reported.
	WouldDeny
)

func (v Verdict) String() string {
	switch v {
	case Deny:
		return "deny"
	case Allow:
		return "allow"
	case WouldDeny:
		return "would-deny"
	}
	return "verdict(" + strconv.Itoa(int(v)) + ")"
}

// Reason says which step of the policy decided. Its String is short, fixed
// and machine readable: fit for a metric label.
type Reason uint8

// The reasons. The zero Reason is none of them, so that a zero Decision
// neither allows nor asks for a name. ReasonNoName, ReasonUnknownSource,
// ReasonNotResolved, ReasonUnsafeHTTP, ReasonMalformed, ReasonHostChanged,
// ReasonConnLimit, ReasonDialFailed, ReasonPeekLimit, ReasonNameMismatch,
// ReasonUnsupported and ReasonAuth are not produced by this package: the proxy and the
// resolver use them for flows they refuse before or after asking the policy.
const (
	reasonUnset         Reason = iota
	ReasonAllowAll             // mode allow-all
	ReasonDenyAll              // mode deny-all
	ReasonDenyCIDR             // the address is in deny_cidrs
	ReasonAllowCIDR            // the address is in allow_cidrs
	ReasonAllowDomain          // the name matches allow_domains
	ReasonNoMatch              // custom mode, no rule matched
	ReasonInvalidName          // the name carried by the flow is malformed
	ReasonNoName               // the flow carries no name (no SNI, no Host)
	ReasonUnknownSource        // the source address belongs to no sandbox
	ReasonNotResolved          // the allowed name has no usable address
	ReasonProtectHost          // the address is the host's own (host.protect_host)
	ReasonIsolated             // the address is another sandbox's (host.isolate_sandboxes)
	ReasonUnsafeHTTP           // a plain-HTTP request the upstream could read otherwise (CONNECT, Upgrade, smuggling-prone body)
	ReasonMalformed            // the first bytes are neither a valid TLS ClientHello nor a valid HTTP/1.x request head
	ReasonHostChanged          // a keep-alive request named another host than the connection's first
	ReasonConnLimit            // the sandbox has proxy.max_conns_per_sandbox connections open
	ReasonDialFailed           // the allowed destination did not accept the connection
	ReasonPeekLimit            // the memory for flows still being peeked is used up (proxy.max_peek_bytes*)
	ReasonNameMismatch         // explicit proxy: the TLS SNI or HTTP Host is not the name the client asked the proxy for
	ReasonUnsupported          // explicit proxy: a request it does not serve (SOCKS5 BIND or UDP ASSOCIATE, SOCKS4, https:// absolute-form)
	ReasonAuth                 // explicit proxy: listen_auth credentials missing or wrong
	numReasons
)

var reasonNames = [numReasons]string{
	reasonUnset:         "unset",
	ReasonAllowAll:      "allow-all",
	ReasonDenyAll:       "deny-all",
	ReasonDenyCIDR:      "deny-cidr",
	ReasonAllowCIDR:     "allow-cidr",
	ReasonAllowDomain:   "allow-domain",
	ReasonNoMatch:       "no-match",
	ReasonInvalidName:   "invalid-name",
	ReasonNoName:        "no-name",
	ReasonUnknownSource: "unknown-source",
	ReasonNotResolved:   "not-resolved",
	ReasonProtectHost:   "protect-host",
	ReasonIsolated:      "isolate-sandboxes",
	ReasonUnsafeHTTP:    "unsafe-http",
	ReasonMalformed:     "malformed",
	ReasonHostChanged:   "host-changed",
	ReasonConnLimit:     "conn-limit",
	ReasonDialFailed:    "dial-failed",
	ReasonPeekLimit:     "peek-limit",
	ReasonNameMismatch:  "name-mismatch",
	ReasonUnsupported:   "unsupported",
	ReasonAuth:          "auth",
}

func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}

// Decision is a verdict with everything needed to explain it. Building one
// allocates nothing; String and Rule build text only when asked.
type Decision struct {
	Verdict Verdict
	Reason  Reason
	Addr    netip.Addr   // address judged, if any
	Name    string       // name judged, if any: normalised, or raw when invalid
	Prefix  netip.Prefix // CIDR rule that decided, if any
	Scope   string       // its ports and protocol, as written after the prefix (":53/udp"); "" for none
	Pattern string       // domain rule that decided, if any
}

// Allowed reports whether the flow may pass: the policy allows it, or it
// would deny it but the sandbox is in report-only mode (WouldDeny).
func (d Decision) Allowed() bool { return d.Verdict == Allow || d.Verdict == WouldDeny }

// NeedsName reports whether DecideAddr left the decision to the flow's
// name: custom mode and the address matched no CIDR rule. Ask DecideName.
func (d Decision) NeedsName() bool {
	return d.Verdict == Deny && d.Reason == ReasonNoMatch && d.Name == ""
}

// Rule names the rule that decided, as written in the config:
// "deny_cidrs 198.51.100.64/26", "allow_domains *.example.com",
// "mode allow-all". It is "" when no rule decided.
func (d Decision) Rule() string {
	switch d.Reason {
	case ReasonDenyCIDR:
		return "deny_cidrs " + CIDRRule{Prefix: d.Prefix, scope: d.Scope}.String()
	case ReasonAllowCIDR:
		return "allow_cidrs " + CIDRRule{Prefix: d.Prefix, scope: d.Scope}.String()
	case ReasonAllowDomain:
		return "allow_domains " + d.Pattern
	case ReasonAllowAll:
		return "mode " + string(ModeAllowAll)
	case ReasonDenyAll:
		return "mode " + string(ModeDenyAll)
	case ReasonProtectHost:
		return "host.protect_host"
	case ReasonIsolated:
		return "host.isolate_sandboxes"
	}
	return ""
}

// maxQuoted bounds how much of an invalid name String repeats.
const maxQuoted = 255

// String explains the decision in one line, e.g.
// "deny: 198.51.100.66 in deny_cidrs 198.51.100.64/26" or
// "allow: a.example.com matches allow_domains *.example.com".
func (d Decision) String() string {
	v := d.Verdict.String() + ": "
	switch d.Reason {
	case ReasonDenyCIDR, ReasonAllowCIDR:
		return v + d.addr() + " in " + d.Rule()
	case ReasonAllowDomain:
		return v + d.subject() + " matches " + d.Rule()
	case ReasonAllowAll, ReasonDenyAll:
		return v + d.Rule()
	case ReasonNoMatch:
		return v + d.subject() + " matches no rule (mode custom)"
	case ReasonInvalidName:
		return v + "invalid name " + quoteBounded(d.Name)
	case ReasonNoName:
		return v + "flow to " + d.addr() + " carries no name"
	case ReasonUnknownSource:
		return v + d.addr() + " unknown source"
	case ReasonNotResolved:
		return v + d.subject() + " has no usable address (flow to " + d.addr() + ")"
	case ReasonProtectHost:
		return v + d.addr() + " is an address of this host (" + d.Rule() + ")"
	case ReasonIsolated:
		return v + d.addr() + " belongs to another sandbox (" + d.Rule() + ")"
	case ReasonUnsafeHTTP:
		return v + "request to " + d.subject() + " could reach the upstream unchecked (CONNECT, Upgrade or a body a backend could read as a request)"
	case ReasonMalformed:
		return v + "flow to " + d.addr() + " starts with neither a valid TLS ClientHello nor a valid HTTP/1.x request"
	case ReasonHostChanged:
		return v + "request for " + quoteBounded(d.Name) + " on a connection opened for another host"
	case ReasonConnLimit:
		return v + "flow to " + d.addr() + ": the sandbox has proxy.max_conns_per_sandbox connections open"
	case ReasonDialFailed:
		return v + d.subject() + " did not accept the connection (flow to " + d.addr() + ")"
	case ReasonPeekLimit:
		return v + "flow to " + d.addr() + ": the memory for connections still sending their first bytes is used up"
	case ReasonNameMismatch:
		return v + "TLS SNI or HTTP Host " + quoteBounded(d.Name) + " is not the name the client asked the proxy for"
	case ReasonUnsupported:
		return v + "explicit proxy request not served: " + quoteBounded(d.Name)
	case ReasonAuth:
		return v + "explicit proxy: listen_auth credentials missing or wrong"
	}
	return v + d.Reason.String() + " " + d.subject()
}

// subject is the name judged, or else the address.
func (d Decision) subject() string {
	if d.Name != "" {
		return d.Name
	}
	return d.addr()
}

func (d Decision) addr() string {
	if !d.Addr.IsValid() {
		return "-"
	}
	return d.Addr.String()
}

func quoteBounded(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:maxQuoted]) + "..." + strconv.Itoa(len(s)-maxQuoted) + " more bytes"
}
