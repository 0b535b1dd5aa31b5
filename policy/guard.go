package policy

import "net/netip"

// Guard is the host-wide rule every sandbox meets on top of its own
// policy, in every mode (allow-all included): the [host] section.
type Guard struct {
	// ProtectHost: no sandbox reaches an address of the host itself,
	// unless its allow_cidrs names that address exactly (a /32 or /128).
	ProtectHost bool
	// IsolateSandboxes: no sandbox reaches another sandbox's sources,
	// unless its allow_cidrs names them: an entry that lies inside the
	// other sandbox's sources. A broad entry (10.0.0.0/8) that merely
	// contains them does not.
	IsolateSandboxes bool
	// IsLocal reports whether a is an address of the host, as the kernel
	// sees it at the moment of the call. The daemon sets it; with nil, no
	// address counts as the host's (this package knows no sockets).
	IsLocal func(a netip.Addr) bool
}

// WithIsLocal returns a copy of s whose guard tells the host's addresses
// with isLocal.
func (s *Set) WithIsLocal(isLocal func(netip.Addr) bool) *Set {
	sbs := make([]Sandbox, len(s.list))
	for i, sb := range s.list {
		sbs[i] = Sandbox{Name: sb.Name, Interface: sb.Interface, Sources: sb.Sources, Listen: sb.Listen, Policy: sb.Policy}
	}
	g := s.guard
	g.IsLocal = isLocal
	out, err := NewSet(sbs, g)
	if err != nil {
		panic("policy: a valid set failed to copy: " + err.Error())
	}
	return out
}

// Guard returns the set's host-wide guard.
func (s *Set) Guard() Guard { return s.guard }

// notePeers records, for each sandbox, the allow_cidrs entries that name
// another sandbox's sources (each lies inside one of that sandbox's
// source prefixes). Call it once every sandbox is indexed.
func (s *Set) notePeers() {
	for i, sb := range s.list {
		for _, p := range sb.Policy.allow.list {
			if j, ok := s.bySource.LookupPrefix(p); ok && j != i {
				if sb.peers == nil {
					sb.peers = &cidrTable{}
				}
				sb.peers.add(p)
			}
		}
	}
}

// Guarded checks a, an address sb's flow would reach, against the guard.
// It returns a deny decision (ReasonProtectHost, ReasonIsolated) and true
// when the guard forbids it.
func (s *Set) Guarded(sb *Sandbox, a netip.Addr) (Decision, bool) {
	a = a.Unmap().WithZone("")
	// a and, for an IPv6 address that embeds an IPv4 one, that IPv4
	// address too: NAT64 or 6to4 would deliver the flow there.
	v4s, n := embedded(a)
	for _, c := range append([]netip.Addr{a}, v4s[:n]...) { // on the stack
		if d, bad := s.guarded(sb, c); bad {
			d.Addr = a
			return d, true
		}
	}
	return Decision{}, false
}

func (s *Set) guarded(sb *Sandbox, a netip.Addr) (Decision, bool) {
	if s.guard.IsolateSandboxes {
		if other, ok := s.BySource(a); ok && other != sb {
			if sb.peers == nil || !sb.peers.contains(a) {
				return Decision{Verdict: Deny, Reason: ReasonIsolated}, true
			}
		}
	}
	if s.guard.ProtectHost && s.guard.IsLocal != nil && s.guard.IsLocal(a) {
		if pfx, ok := sb.Policy.allow.lookup(a); !ok || pfx.Bits() != a.BitLen() {
			return Decision{Verdict: Deny, Reason: ReasonProtectHost}, true
		}
	}
	return Decision{}, false
}

// DecideAddr judges a raw destination of sb: sb's policy
// (Policy.DecideAddr), and an address it allows must pass the guard too.
func (s *Set) DecideAddr(sb *Sandbox, a netip.Addr) Decision {
	return s.DecideAddrPort(sb, netip.AddrPortFrom(a, 0), ProtoAny)
}

// DecideAddrPort is DecideAddr for a flow of proto to ap's port.
func (s *Set) DecideAddrPort(sb *Sandbox, ap netip.AddrPort, proto Proto) Decision {
	d := sb.Policy.DecideAddrPort(ap, proto)
	if d.Allowed() {
		if g, bad := s.Guarded(sb, ap.Addr()); bad {
			return g
		}
	}
	return d
}

// NameMayReach reports whether a flow or an answer for a name that sb's
// allow_domains admitted may lead to a: Policy.NameMayReach and the guard.
func (s *Set) NameMayReach(sb *Sandbox, a netip.Addr, blockPrivate bool) bool {
	return s.NameMayReachPort(sb, netip.AddrPortFrom(a, 0), ProtoAny, blockPrivate)
}

// NameMayReachPort is NameMayReach for a flow of proto to ap's port.
func (s *Set) NameMayReachPort(sb *Sandbox, ap netip.AddrPort, proto Proto, blockPrivate bool) bool {
	if !sb.Policy.NameMayReachPort(ap, proto, blockPrivate) {
		return false
	}
	_, bad := s.Guarded(sb, ap.Addr())
	return !bad
}
