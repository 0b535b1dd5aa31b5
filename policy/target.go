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
	Name string
	Addr netip.Addr
}

var errTarget = errors.New(`want host[:port], ip[:port] or [ipv6]:port`)

// ParseTarget reads host[:port], ip[:port], a bare IPv6 address or
// [ipv6]:port. The port is checked, then dropped: policies do not look at
// it.
func ParseTarget(s string) (Target, error) {
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
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return Target{}, fmt.Errorf("target %q: port must be in 1..65535", s)
		}
	}
	if host == "" {
		return Target{}, fmt.Errorf("target %q: %w", s, errTarget)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return Target{Addr: a.WithZone("")}, nil
	}
	if strings.HasPrefix(s, "[") {
		return Target{}, fmt.Errorf("target %q: brackets hold an IPv6 address", s)
	}
	return Target{Name: host}, nil
}

// Check asks the policy the question the proxy would. A name is judged as
// the flow's SNI or Host alone: the address it would connect to is
// unknown here. An address in mode custom that only a name could allow
// (NeedsName) stays the deny DecideAddr returned. An address is judged
// with the host guard too (protect_host asks the set's IsLocal).
func (s *Set) Check(sb *Sandbox, t Target) Decision {
	if t.Name != "" {
		return sb.Policy.DecideName(t.Name)
	}
	d := s.DecideAddr(sb, t.Addr)
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
