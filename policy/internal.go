package policy

import "net/netip"

// internalPrefixes are the host's, the site's and the cloud's own
// networks. A name allowed by allow_domains must not become a way into
// them (DNS rebinding): with dns.block_private_answers, neither the
// resolver's answers nor the proxy's dials for such a name lead there
// unless allow_cidrs lists the address.
//
// The source is IANA's IPv4 and IPv6 Special-Purpose Address Registries
// (iana-ipv4-special-registry, iana-ipv6-special-registry, as of 2025):
// every entry whose "Globally Reachable" is False, except the
// documentation prefixes (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
// 2001:db8::/32, 3fff::/20), which are on no network, internal or not,
// and which demos and egressd's own tests use as "the internet". Entries
// that hold globally reachable exceptions (2001::/23) are listed by their
// non-reachable parts. Site-local fec0::/10 (deprecated, not in the
// registry) is kept: old networks still route it.
var internalPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),      // "this network"; 0.0.0.0 reaches the local host on Linux
	netip.MustParsePrefix("10.0.0.0/8"),     // private-use (RFC 1918)
	netip.MustParsePrefix("100.64.0.0/10"),  // shared address space, CGNAT (RFC 6598)
	netip.MustParsePrefix("127.0.0.0/8"),    // loopback
	netip.MustParsePrefix("169.254.0.0/16"), // link-local, incl. the cloud metadata address 169.254.169.254
	netip.MustParsePrefix("172.16.0.0/12"),  // private-use
	netip.MustParsePrefix("192.0.0.0/24"),   // IETF protocol assignments (DS-Lite, NAT64 discovery, …)
	netip.MustParsePrefix("192.168.0.0/16"), // private-use
	netip.MustParsePrefix("198.18.0.0/15"),  // benchmarking (RFC 2544)
	netip.MustParsePrefix("240.0.0.0/4"),    // reserved, and 255.255.255.255, limited broadcast
	netip.MustParsePrefix("::/127"),         // unspecified and loopback
	netip.MustParsePrefix("64:ff9b:1::/48"), // NAT64 local use (RFC 8215): the operator's own translation
	netip.MustParsePrefix("100::/64"),       // discard-only (RFC 6666)
	netip.MustParsePrefix("100:0:0:1::/64"), // dummy IPv6 prefix (RFC 9780)
	netip.MustParsePrefix("2001:2::/48"),    // benchmarking (RFC 5180)
	netip.MustParsePrefix("2001:10::/28"),   // deprecated ORCHID
	netip.MustParsePrefix("5f00::/16"),      // SRv6 SIDs (RFC 9602)
	netip.MustParsePrefix("fc00::/7"),       // unique local (ULA)
	netip.MustParsePrefix("fe80::/10"),      // link-local
	netip.MustParsePrefix("fec0::/10"),      // deprecated site-local
}

// embeddedIPv4 are IPv6 forms that carry an IPv4 address in a known place:
// such an address is judged as the IPv4 address it leads to as well, by
// deny_cidrs, the guard and the internal ranges alike (one rule
// everywhere, Embedded).
var embeddedIPv4 = []struct {
	prefix netip.Prefix
	at     int  // byte offset of the IPv4 address
	xor    bool // stored inverted (Teredo's client address)
}{
	{netip.MustParsePrefix("::ffff:0:0/96"), 12, false},  // IPv4-mapped
	{netip.MustParsePrefix("::/96"), 12, false},          // IPv4-compatible (deprecated)
	{netip.MustParsePrefix("64:ff9b::/96"), 12, false},   // NAT64 well-known prefix (RFC 6052)
	{netip.MustParsePrefix("64:ff9b:1::/48"), 12, false}, // NAT64 local use (RFC 8215), in its /96 layout
	{netip.MustParsePrefix("2002::/16"), 2, false},       // 6to4
	{netip.MustParsePrefix("2001::/32"), 4, false},       // Teredo server (RFC 4380)
	{netip.MustParsePrefix("2001::/32"), 12, true},       // Teredo client, obfuscated
}

// IsInternal reports whether a is in one of the internal ranges, directly
// or through an IPv4 address embedded in an IPv6 one.
func IsInternal(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	if inInternal(a) {
		return true
	}
	v4s, n := embedded(a)
	for _, v4 := range v4s[:n] {
		if inInternal(v4) {
			return true
		}
	}
	return false
}

func inInternal(a netip.Addr) bool {
	for _, p := range internalPrefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Embedded returns the IPv4 addresses an IPv6 address carries (none, one,
// or Teredo's two): where NAT64, 6to4 or a relay would deliver it.
func Embedded(a netip.Addr) []netip.Addr {
	v4s, n := embedded(a)
	return v4s[:n:n]
}

// embedded is Embedded without allocating.
func embedded(a netip.Addr) (v4s [2]netip.Addr, n int) {
	a = a.WithZone("")
	if !a.Is6() {
		return v4s, 0
	}
	b := a.As16()
	for _, e := range embeddedIPv4 {
		if n < len(v4s) && e.prefix.Contains(a) {
			v4 := [4]byte(b[e.at : e.at+4])
			if e.xor {
				for i := range v4 {
					v4[i] ^= 0xff
				}
			}
			v4s[n] = netip.AddrFrom4(v4)
			n++
		}
	}
	return v4s, n
}

// EmbeddingPrefixes returns the IPv6 prefixes whose addresses embed an
// address of p (IPv4) at a fixed place, for rules that match prefixes
// (kernel sets): the forms of embeddedIPv4 whose IPv4 address follows the
// prefix directly. Teredo's client and NAT64 local use, with bits between
// the prefix and the IPv4 address, cannot be written as a prefix.
func EmbeddingPrefixes(p netip.Prefix) []netip.Prefix {
	if !p.Addr().Is4() {
		return nil
	}
	v4 := p.Masked().Addr().As4()
	var out []netip.Prefix
	for _, e := range embeddedIPv4 {
		if e.xor || e.at*8 != e.prefix.Bits() {
			continue
		}
		b := e.prefix.Addr().As16()
		copy(b[e.at:], v4[:])
		out = append(out, netip.PrefixFrom(netip.AddrFrom16(b), e.prefix.Bits()+p.Bits()))
	}
	return out
}

// NameMayReach reports whether a flow or an answer for a name that
// allow_domains admitted may lead to a: never inside deny_cidrs (also
// through an embedded IPv4 address); with blockPrivate, an internal
// address only when allow_cidrs lists it. In report-only mode deny_cidrs
// do not stop it: the flow's decision reports them (WouldDeny).
func (p *Policy) NameMayReach(a netip.Addr, blockPrivate bool) bool {
	return p.NameMayReachPort(netip.AddrPortFrom(a, 0), ProtoAny, blockPrivate)
}

// NameMayReachPort is NameMayReach for a flow of proto to ap's port:
// entries with ports or a protocol take part.
func (p *Policy) NameMayReachPort(ap netip.AddrPort, proto Proto, blockPrivate bool) bool {
	a := ap.Addr()
	if _, denied := p.deniedFlow(a, proto, ap.Port()); denied && !p.audit {
		return false
	}
	if blockPrivate && IsInternal(a) {
		return p.DecideAddrPort(ap, proto).Reason == ReasonAllowCIDR
	}
	return true
}
