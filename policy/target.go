package policy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Target is what `egressd check` and GET /v1/sandboxes/{name}/check
// judge: a name (as a flow's SNI or Host carries it) or an address (a raw
// destination).
type Target struct {
	Name  string
	Addr  netip.Addr
	Port  uint16 // 0: none given
	Proto Proto  // of an address: tcp (the default with a port), udp or icmp; ProtoAny: none given
}

var errTarget = errors.New(`want host[:port], ip[:port][/tcp|/udp|/icmp] or [ipv6]:port`)

// ParseTarget reads host[:port], ip[:port], a bare IPv6 address or
// [ipv6]:port. A name's port is judged by allow_domains entries with
// ports; an address's is not looked at (CIDR rules take no port yet).
func ParseTarget(s string) (Target, error) {
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		p, ok := protoNames[strings.ToLower(s[i+1:])]
		if !ok {
			return Target{}, fmt.Errorf("target %q: %w", s, errTarget)
		}
		t, err := ParseTarget(s[:i])
		if err == nil && t.Name != "" {
			return Target{}, fmt.Errorf("target %q: a protocol goes with an address (ip:port/udp)", s)
		}
		if err == nil && p == ProtoICMP && t.Port != 0 {
			return Target{}, fmt.Errorf("target %q: %w", s, errICMPPorts)
		}
		t.Proto = p
		return t, err
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return Target{Addr: a.WithZone("")}, nil
	}
	host, port := s, ""
	if strings.HasPrefix(s, "[") || strings.Contains(s, ":") {
		h, p, err := net.SplitHostPort(s)
		if err != nil {
			return Target{}, fmt.Errorf("target %q: %w", s, errTarget)
		}
		host, port = h, p
	}
	var portN uint16
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return Target{}, fmt.Errorf("target %q: port must be in 1..65535", s)
		}
		portN = uint16(n)
	}
	if host == "" {
		return Target{}, fmt.Errorf("target %q: %w", s, errTarget)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return Target{Addr: a.WithZone(""), Port: portN}, nil
	}
	if strings.HasPrefix(s, "[") {
		return Target{}, fmt.Errorf("target %q: brackets hold an IPv6 address", s)
	}
	return Target{Name: host, Port: portN}, nil
}

// Check asks the policy the question the proxy would. A name is judged as
// the flow's SNI or Host alone: the address it would connect to is
// unknown here. An address in mode custom that only a name could allow
// (NeedsName) stays the deny DecideAddr returned. An address is judged
// with the host guard too (protect_host asks the set's IsLocal).
func (s *Set) Check(sb *Sandbox, t Target) Decision {
	if t.Name != "" {
		return sb.Policy.DecideNamePort(t.Name, t.Port)
	}
	proto := t.Proto
	if proto == ProtoAny && t.Port != 0 {
		proto = ProtoTCP // what the proxy judges
	}
	d := s.DecideAddrPort(sb, netip.AddrPortFrom(t.Addr, t.Port), proto)
	if d.NeedsName() && sb.Policy.Audit() {
		// Report-only: a raw flow there passes, and so does one that
		// carries no name.
		if _, bad := s.Guarded(sb, t.Addr); !bad {
			d.Verdict = WouldDeny
			if sb.Policy.Mode() == ModeDenyAll {
				d.Reason = ReasonDenyAll
			}
		}
	}
	return d
}
