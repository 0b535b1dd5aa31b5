package proxy

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/egressd/egressd/policy"
	"time"
)

// pin picks the address a flow admitted for name may reach: the original
// destination when the sandbox learned it for name through egressd's
// resolver (Bindings) or when name resolves to it, otherwise another address name
// resolves to (preferring dst's family). A sandbox that points an allowed
// SNI or Host at some other address therefore never reaches that address.
// Addresses in deny_cidrs, of the host and of other sandboxes are never
// chosen, nor, with BlockPrivate, internal ones that allow_cidrs does not
// list: the same rule (policy.Set.NameMayReach) as the resolver's
// rebinding guard, so egressd's own lookups are no way around it.
func (s *Server) pin(ctx context.Context, f *flow, set *policy.Set, sb *policy.Sandbox, name string) (netip.AddrPort, policy.Decision, error) {
	dst := f.dst
	if dst.Addr().IsValid() && set.NameMayReachPort(sb, dst, policy.ProtoTCP, s.opts.BlockPrivate) &&
		s.opts.Bindings != nil && s.opts.Bindings.Bound(f.sandbox, name, dst.Addr()) {
		return dst, policy.Decision{}, nil
	}
	// With no destination (an explicit proxy's request for a name), IPv4
	// is preferred.
	want4 := dst.Addr().Is4() || !dst.Addr().IsValid()
	notResolved := policy.Decision{Reason: policy.ReasonNotResolved, Name: name, Addr: dst.Addr()}
	if s.opts.Resolver == nil {
		return netip.AddrPort{}, notResolved, fmt.Errorf("proxy: no resolver to pin %s", name)
	}
	addrs, err := s.opts.Resolver.LookupAddrs(ctx, name)
	if err != nil {
		return netip.AddrPort{}, notResolved, fmt.Errorf("proxy: resolve %s: %w", name, err)
	}
	var other netip.Addr
	for _, a := range addrs {
		a = a.Unmap()
		if !set.NameMayReachPort(sb, netip.AddrPortFrom(a, dst.Port()), policy.ProtoTCP, s.opts.BlockPrivate) {
			continue
		}
		if a == dst.Addr() {
			return dst, policy.Decision{}, nil
		}
		if !other.IsValid() || (a.Is4() == want4 && other.Is4() != want4) {
			other = a
		}
	}
	if !other.IsValid() {
		return netip.AddrPort{}, notResolved, fmt.Errorf("proxy: %s resolves to no usable address", name)
	}
	return netip.AddrPortFrom(other, dst.Port()), policy.Decision{}, nil
}

// noKeepAlive turns off the TCP keepalive Go enables on every socket by
// default (four setsockopt calls each, ~6% of the CPU a short flow costs).
// Like HAProxy's default, egressd relays the endpoints' own traffic and
// leaves dead-peer detection to them; an idle flow whose peer vanished
// stays until the other side closes.
const noKeepAlive = -1

// dial connects to target within DialTimeout and records it on f.
func (s *Server) dial(ctx context.Context, f *flow, target netip.AddrPort) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: s.opts.DialTimeout, KeepAlive: noKeepAlive}
	start := time.Now()
	tc, err := d.DialTCP(ctx, "tcp", netip.AddrPort{}, target)
	s.dialLat.Observe(time.Since(start))
	if err != nil {
		return nil, fmt.Errorf("proxy: dial %s: %w", target, err)
	}
	if !f.setRemote(tc) {
		tc.Close()
		return nil, fmt.Errorf("proxy: dial %s: flow closed", target)
	}
	return tc, nil
}
