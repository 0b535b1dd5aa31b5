package dnsfilter

import (
	"net"
	"net/netip"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/policy"
)

// guard decides which answered addresses a sandbox may see for one
// question: never one inside deny_cidrs, of the host itself
// (host.protect_host) or of another sandbox (host.isolate_sandboxes); for
// a name allowed by allow_domains with block_private_answers, no internal
// address unless allow_cidrs lists it.
type guard struct {
	set          *policy.Set
	sb           *policy.Sandbox
	blockPrivate bool // block_private_answers and the name matched allow_domains
}

func newGuard(set *policy.Set, sb *policy.Sandbox, d policy.Decision, blockPrivate bool) guard {
	// A name admitted by a domain rule, or one report-only mode lets
	// through, never leads to an internal address (the proxy's rule).
	byName := d.Reason == policy.ReasonAllowDomain || d.Verdict == policy.WouldDeny
	return guard{set: set, sb: sb, blockPrivate: blockPrivate && byName}
}

// keep reports whether a may appear in the answer: the rule the proxy
// applies when it dials for such a name (policy.Set.NameMayReach).
func (g guard) keep(a netip.Addr) bool {
	return g.set.NameMayReach(g.sb, a, g.blockPrivate)
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
			if !g.filterHints(&v.Hint, &hints, &changed) {
				continue
			}
		case *dns.SVCBIPv6Hint:
			if !g.filterHints(&v.Hint, &hints, &changed) {
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

// filterHints keeps the hint addresses guard accepts, appending them to
// kept and setting changed if it dropped any; it reports whether any remain.
func (g guard) filterHints(ips *[]net.IP, kept *[]netip.Addr, changed *bool) bool {
	out := (*ips)[:0]
	for _, ip := range *ips {
		a, ok := netip.AddrFromSlice(ip)
		if !ok || !g.keep(a) {
			continue
		}
		*kept = append(*kept, a.Unmap())
		out = append(out, ip)
	}
	*changed = *changed || len(out) != len(*ips)
	*ips = out
	return len(out) > 0
}
