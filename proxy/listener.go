package proxy

import (
	"context"
	"fmt"
	"net"
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
