package dnsfilter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// maxInflight bounds the UDP queries waiting for upstream at once, and
// maxInflightPerSandbox one sandbox's share of them; beyond either,
// queries are dropped (and counted), as an overloaded resolver would. A
// sandbox flooding names whose servers never answer fills its own share
// only: it takes 16 such sandboxes to fill the whole.
const (
	maxInflight           = 4096
	maxInflightPerSandbox = 256
)

// udpRcvBuf is the UDP listeners' receive buffer: a few thousand queries.
const udpRcvBuf = 4 << 20

// Listen opens the resolver's sockets: UDP and TCP listeners on the
// wildcard addresses (IPv4 and IPv6) with IP_TRANSPARENT, so that TPROXY
// may hand them queries sent to any address, and the raw sockets UDP
// replies leave by. Port 0 picks a free port (the same for all four
// listeners). Call it before Serve and before the kernel rules divert DNS,
// so that a bad port or missing privilege (CAP_NET_ADMIN, CAP_NET_RAW) is
// reported first.
func (r *Resolver) Listen(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			r.closeSockets()
		}
	}()
	port := r.opts.Port
	for _, nw := range []string{"udp4", "udp6"} {
		c, err := listenUDP(ctx, nw, port)
		if err != nil {
			return err
		}
		r.udp = append(r.udp, c)
		port = c.LocalAddr().(*net.UDPAddr).Port
	}
	for _, nw := range []string{"tcp4", "tcp6"} {
		lc := net.ListenConfig{Control: sockopts(nw, false)}
		ln, err := lc.Listen(ctx, nw, wildcard(nw, port))
		if err != nil {
			return fmt.Errorf("dnsfilter: listen %s port %d: %w", nw, port, err)
		}
		r.tcp = append(r.tcp, ln.(*net.TCPListener))
	}
	if r.raw4, err = openRaw(ctx, "ip4"); err != nil {
		return err
	}
	r.raw6, err = openRaw(ctx, "ip6")
	return err
}

func listenUDP(ctx context.Context, network string, port int) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: sockopts(network, true)}
	pc, err := lc.ListenPacket(ctx, network, wildcard(network, port))
	if err != nil {
		return nil, fmt.Errorf("dnsfilter: listen %s port %d: %w", network, port, err)
	}
	return pc.(*net.UDPConn), nil
}

func wildcard(network string, port int) string {
	host := "0.0.0.0"
	if network[len(network)-1] == '6' {
		host = "::"
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// sockopts sets IP_TRANSPARENT (IPV6_TRANSPARENT) and, on UDP sockets,
// IP_RECVORIGDSTADDR (IPV6_RECVORIGDSTADDR): each datagram then comes with
// the address and port the client sent it to; and a larger receive
// buffer.
func sockopts(network string, udp bool) func(string, string, syscall.RawConn) error {
	level, transparent, origDst := unix.SOL_IP, unix.IP_TRANSPARENT, unix.IP_RECVORIGDSTADDR
	if network[len(network)-1] == '6' {
		level, transparent, origDst = unix.SOL_IPV6, unix.IPV6_TRANSPARENT, unix.IPV6_RECVORIGDSTADDR
	}
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), level, transparent, 1)
			if serr == nil && udp {
				serr = unix.SetsockoptInt(int(fd), level, origDst, 1)
			}
			if serr == nil && udp {
				// Best effort: room for bursts (needs CAP_NET_ADMIN).
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, udpRcvBuf)
			}
		})
		if err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("set transparent socket options: %w", serr)
		}
		return nil
	}
}

// Addrs returns the listeners' addresses: UDP ones first, then TCP.
func (r *Resolver) Addrs() []net.Addr {
	var out []net.Addr
	for _, c := range r.udp {
		out = append(out, c.LocalAddr())
	}
	for _, ln := range r.tcp {
		out = append(out, ln.Addr())
	}
	return out
}

// Serve answers queries until ctx is done, then closes the sockets and
// waits for the queries being answered.
func (r *Resolver) Serve(ctx context.Context) error {
	if len(r.udp) == 0 || r.raw4 == nil {
		return errors.New("dnsfilter: Serve called before Listen")
	}
	var wg sync.WaitGroup
	conns := newConnSet()
	for _, c := range r.udp {
		wg.Add(1)
		go r.serveUDP(ctx, c, &wg)
	}
	for _, ln := range r.tcp {
		wg.Add(1)
		go r.serveTCP(ctx, ln, conns, &wg)
	}
	<-ctx.Done()
	r.closeSockets()
	conns.closeAll()
	wg.Wait()
	return nil
}

func (r *Resolver) closeSockets() {
	for _, c := range r.udp {
		c.Close()
	}
	for _, ln := range r.tcp {
		ln.Close()
	}
	for _, c := range []*net.IPConn{r.raw4, r.raw6} {
		if c != nil {
			c.Close()
		}
	}
}

// addrPortOf returns a socket address as an unmapped netip.AddrPort.
func addrPortOf(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch v := a.(type) {
	case *net.TCPAddr:
		ap = v.AddrPort()
	case *net.UDPAddr:
		ap = v.AddrPort()
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
