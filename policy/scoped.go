package policy

import (
	"errors"
	"net/netip"
	"strings"
)

// Proto is the transport protocol of a flow, or of a CIDR entry's scope.
type Proto uint8

// The protocols. As a flow's, ProtoAny means unknown (a DNS answer, a
// check without a port): only entries without a scope match it. As an
// entry's, ProtoAny with ports means TCP and UDP on those ports, and
// without ports every protocol (an entry as before ports existed).
const (
	ProtoAny Proto = iota
	ProtoTCP
	ProtoUDP
	ProtoICMP // ICMP for IPv4, ICMPv6 for IPv6; takes no port
)

var protoNames = map[string]Proto{"tcp": ProtoTCP, "udp": ProtoUDP, "icmp": ProtoICMP}

func (p Proto) String() string {
	switch p {
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoICMP:
		return "icmp"
	}
	return ""
}

// CIDRRule is one allow_cidrs or deny_cidrs entry: a prefix, and
// optionally the ports and protocol it applies to.
type CIDRRule struct {
	Prefix netip.Prefix
	Ports  PortSet // nil: every port
	Proto  Proto
	scope  string // ":53/udp", "/icmp", "" when unscoped: the entry's text after the prefix
}

// Scoped reports whether r applies to some ports or one protocol only.
func (r CIDRRule) Scoped() bool { return r.scope != "" }

// Scope is the entry's text after the prefix (":53/udp"), "" when
// unscoped: Decision.Scope.
func (r CIDRRule) Scope() string { return r.scope }

// String is the entry, normalised: "198.51.100.0/24",
// "203.0.113.7/32:53/udp", "[2001:db8::/32]:443/tcp", "198.51.100.0/24/icmp".
func (r CIDRRule) String() string {
	if strings.HasPrefix(r.scope, ":") && r.Prefix.Addr().Is6() {
		return "[" + r.Prefix.String() + "]" + r.scope
	}
	return r.Prefix.String() + r.scope
}

// matches reports whether r applies to a flow of proto to port (ProtoAny:
// unknown; port 0: unknown).
func (r CIDRRule) matches(proto Proto, port uint16) bool {
	if !r.Scoped() {
		return true
	}
	switch r.Proto {
	case ProtoAny:
		if proto != ProtoTCP && proto != ProtoUDP {
			return false
		}
	case ProtoICMP:
		return proto == ProtoICMP
	default:
		if proto != r.Proto {
			return false
		}
	}
	return r.Ports == nil || (port != 0 && r.Ports.Contains(port))
}

var (
	errICMPPorts  = errors.New("icmp takes no port")
	errScopeForm  = errors.New("want PREFIX, PREFIX:PORTS, PREFIX/PROTO or PREFIX:PORTS/PROTO (an IPv6 prefix with ports in brackets: [2001:db8::/32]:443/tcp); PROTO is tcp, udp or icmp")
	errV6Brackets = errors.New("an IPv6 prefix followed by ports goes in brackets: [2001:db8::/32]:443")
	errV6Proto    = errors.New("an IPv6 address with a protocol takes a prefix length or brackets: 2001:db8::1/128/udp, or [2001:db8::1]:53/udp for a port")
)

// ParseCIDREntry reads an allow_cidrs or deny_cidrs entry: a prefix
// (ParsePrefix), optionally followed by ports (":53", ":22,443",
// ":8000-8100") and a protocol ("/tcp", "/udp", "/icmp"; ports without a
// protocol are TCP and UDP).
func ParseCIDREntry(s string) (CIDRRule, error) {
	rest, proto := s, ProtoAny
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		if p, ok := protoNames[strings.ToLower(s[i+1:])]; ok {
			rest, proto = s[:i], p
		}
	}
	if proto != ProtoAny && !strings.HasPrefix(rest, "[") && strings.Count(rest, ":") > 1 && !strings.Contains(rest, "/") {
		return CIDRRule{}, errV6Proto // 2001:db8::1:53/udp: a port, or the address's last group?
	}
	prefix, portList, hasPorts := rest, "", false
	switch {
	case strings.HasPrefix(rest, "["):
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return CIDRRule{}, errScopeForm
		}
		prefix, portList = rest[1:end], strings.TrimPrefix(rest[end+1:], ":")
		hasPorts = rest[end+1:] != ""
		if hasPorts && !strings.HasPrefix(rest[end+1:], ":") {
			return CIDRRule{}, errScopeForm
		}
	case strings.Count(rest, ":") == 1: // IPv4 with ports
		prefix, portList, _ = strings.Cut(rest, ":")
		hasPorts = true
	}
	pfx, err := ParsePrefix(prefix)
	if err != nil {
		if addr, bits, ok := strings.Cut(rest, "/"); ok && strings.Contains(addr, ":") && strings.Contains(bits, ":") {
			return CIDRRule{}, errV6Brackets // 2001:db8::/32:443
		}
		return CIDRRule{}, err
	}
	r := CIDRRule{Prefix: pfx, Proto: proto}
	if hasPorts {
		if proto == ProtoICMP {
			return CIDRRule{}, errICMPPorts
		}
		if r.Ports, err = ParsePorts(portList); err != nil {
			return CIDRRule{}, err
		}
		r.scope = ":" + r.Ports.String()
	}
	if proto != ProtoAny {
		r.scope += "/" + proto.String()
	}
	return r, nil
}
