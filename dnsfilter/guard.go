package dnsfilter

import (
	"net"
	"net/netip"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/policy"
)

// internalPrefixes are the ranges block_private_answers keeps out of
// answers for names allowed by allow_domains: a name the sandbox may
// resolve must not become a way into the host's or the cloud's own
// networks (DNS rebinding).
var internalPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),      // "this network"; 0.0.0.0 reaches the local host on Linux
	netip.MustParsePrefix("10.0.0.0/8"),     // private (RFC 1918)
	netip.MustParsePrefix("100.64.0.0/10"),  // CGNAT (RFC 6598)
	netip.MustParsePrefix("127.0.0.0/8"),    // loopback
	netip.MustParsePrefix("169.254.0.0/16"), // link-local, incl. the cloud metadata address 169.254.169.254
	netip.MustParsePrefix("172.16.0.0/12"),  // private
	netip.MustParsePrefix("192.168.0.0/16"), // private
	netip.MustParsePrefix("::/127"),         // unspecified and loopback
	netip.MustParsePrefix("fc00::/7"),       // unique local (ULA)
	netip.MustParsePrefix("fe80::/10"),      // link-local
	netip.MustParsePrefix("fec0::/10"),      // deprecated site-local
}

// embeddedIPv4 are IPv6 forms that carry an IPv4 address in a known place,
// with the bit offset of that address: such an answer is judged as the
// IPv4 address it leads to as well.
var embeddedIPv4 = []struct {
	prefix netip.Prefix
	at     int // byte offset of the IPv4 address
}{
	{netip.MustParsePrefix("::ffff:0:0/96"), 12},  // IPv4-mapped
	{netip.MustParsePrefix("::/96"), 12},          // IPv4-compatible (deprecated)
	{netip.MustParsePrefix("64:ff9b::/96"), 12},   // NAT64 well-known prefix
	{netip.MustParsePrefix("64:ff9b:1::/48"), 12}, // NAT64 local use
	{netip.MustParsePrefix("2002::/16"), 2},       // 6to4
}

// isInternal reports whether a is in internalPrefixes, directly or through
// an IPv4 address embedded in an IPv6 one.
func isInternal(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	if inPrefixes(a) {
		return true
	}
	if !a.Is6() {
		return false
	}
	b := a.As16()
	for _, e := range embeddedIPv4 {
		if e.prefix.Contains(a) && inPrefixes(netip.AddrFrom4([4]byte(b[e.at:e.at+4]))) {
			return true
		}
	}
	return false
}

func inPrefixes(a netip.Addr) bool {
	for _, p := range internalPrefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// guard decides which answered addresses a sandbox may see for one
// question: never one inside deny_cidrs; for a name allowed by
// allow_domains with block_private_answers, no internal address unless
// allow_cidrs lists it.
type guard struct {
	pol          *policy.Policy
	blockPrivate bool // block_private_answers and the name matched allow_domains
}

func newGuard(pol *policy.Policy, d policy.Decision, blockPrivate bool) guard {
	return guard{pol: pol, blockPrivate: blockPrivate && d.Reason == policy.ReasonAllowDomain}
}

// keep reports whether a may appear in the answer.
func (g guard) keep(a netip.Addr) bool {
	if _, denied := g.pol.DeniedAddr(a); denied {
		return false
	}
	if g.blockPrivate && isInternal(a) {
		return g.pol.DecideAddr(a).Reason == policy.ReasonAllowCIDR
	}
	return true
}

// filterSVCB removes the ech parameter from an SVCB or HTTPS record (and
// from its mandatory list) and the hint addresses guard rejects. Without
// ECH configuration a client sends a visible SNI, which the proxy needs.
// It returns the hint addresses kept and whether it changed anything.
func (g guard) filterSVCB(s *dns.SVCB) (hints []netip.Addr, changed bool) {
	out := s.Value[:0]
	for _, kv := range s.Value {
		switch v := kv.(type) {
		case *dns.SVCBECHConfig:
			changed = true
			continue
		case *dns.SVCBMandatory:
			if !dropKey(v, dns.SVCB_ECHCONFIG) {
				break
			}
			changed = true
			if len(v.Code) == 0 {
				continue
			}
		case *dns.SVCBIPv4Hint:
			var c bool
			v.Hint, hints, c = g.filterHints(v.Hint, hints)
			changed = changed || c
			if len(v.Hint) == 0 {
				continue
			}
		case *dns.SVCBIPv6Hint:
			var c bool
			v.Hint, hints, c = g.filterHints(v.Hint, hints)
			changed = changed || c
			if len(v.Hint) == 0 {
				continue
			}
		}
		out = append(out, kv)
	}
	clear(s.Value[len(out):])
	s.Value = out
	return hints, changed
}

// dropKey removes key from a mandatory list and reports whether it was there.
func dropKey(m *dns.SVCBMandatory, key dns.SVCBKey) bool {
	out := m.Code[:0]
	for _, k := range m.Code {
		if k != key {
			out = append(out, k)
		}
	}
	found := len(out) != len(m.Code)
	m.Code = out
	return found
}

// filterHints keeps the hint addresses guard accepts, appending them to kept.
func (g guard) filterHints(ips []net.IP, kept []netip.Addr) ([]net.IP, []netip.Addr, bool) {
	out := ips[:0]
	for _, ip := range ips {
		a, ok := netip.AddrFromSlice(ip)
		if !ok || !g.keep(a) {
			continue
		}
		kept = append(kept, a.Unmap())
		out = append(out, ip)
	}
	return out, kept, len(out) != len(ips)
}
