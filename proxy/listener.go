package proxy

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// listenTransparent opens the IPv4 and IPv6 IP_TRANSPARENT listeners on port.
// TPROXY hands a diverted connection only to a socket with that option; the
// accepted socket's local address is then the original destination.
func listenTransparent(ctx context.Context, port int) ([]*net.TCPListener, error) {
	var lns []*net.TCPListener
	for _, nw := range []string{"tcp4", "tcp6"} {
		ln, err := listenOne(ctx, nw, port)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, err
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

func listenOne(ctx context.Context, network string, port int) (*net.TCPListener, error) {
	// No TCP keepalive on accepted sockets (see noKeepAlive).
	lc := net.ListenConfig{Control: transparentControl(network), KeepAlive: noKeepAlive}
	host := "0.0.0.0"
	if network == "tcp6" {
		host = "::"
	}
	ln, err := lc.Listen(ctx, network, net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("proxy: listen %s port %d: %w", network, port, err)
	}
	return ln.(*net.TCPListener), nil
}

func transparentControl(network string) func(string, string, syscall.RawConn) error {
	level, opt := unix.SOL_IP, unix.IP_TRANSPARENT
	if network == "tcp6" {
		level, opt = unix.SOL_IPV6, unix.IPV6_TRANSPARENT
	}
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), level, opt, 1)
		})
		if err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("set transparent: %w", serr)
		}
		return nil
	}
}

// originalDst is where c's client sent its connection. TPROXY leaves the
// destination in place, so it is c's local address. A connection that
// arrived on a bridge was redirected by NAT to the proxy's own port
// (iptables.NATMark); conntrack keeps its destination (SO_ORIGINAL_DST).
// Should that lookup fail, the local address stands: an address of this
// host, which protect_host and every custom policy deny.
// ip6tSoOriginalDst is IP6T_SO_ORIGINAL_DST (linux/netfilter_ipv6/ip6_tables.h).
const ip6tSoOriginalDst = 80

func originalDst(c *net.TCPConn, port int) netip.AddrPort {
	local := addrPort(c.LocalAddr())
	if int(local.Port()) != port {
		return local
	}
	raw, err := c.SyscallConn()
	if err != nil {
		return local
	}
	dst := local
	raw.Control(func(fd uintptr) {
		if local.Addr().Is4() {
			// sockaddr_in, read through a 20-byte option struct
			m, err := unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST)
			if err == nil {
				b := m.Multiaddr
				dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), binary.BigEndian.Uint16(b[2:4]))
			}
			return
		}
		// sockaddr_in6, read through a 32-byte option struct
		m, err := unix.GetsockoptIPv6MTUInfo(int(fd), unix.SOL_IPV6, ip6tSoOriginalDst)
		if err == nil {
			var port [2]byte // network order, as the kernel wrote it
			binary.NativeEndian.PutUint16(port[:], m.Addr.Port)
			dst = netip.AddrPortFrom(netip.AddrFrom16(m.Addr.Addr).Unmap(), binary.BigEndian.Uint16(port[:]))
		}
	})
	return dst
}
