package hostnet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// IsLocal reports whether the kernel would deliver a packet for a to this
// host rather than forward it: its route is local, broadcast, anycast or
// multicast. An IPv6 address that embeds an IPv4 one is not translated
// here (callers judge both forms). Any error counts as local: the caller
// is guarding the host, and doubt must fail closed.
func IsLocal(a netip.Addr) bool {
	local, _ := isLocal(a)
	return local
}

// isLocal is IsLocal; final reports whether the answer is the kernel's
// (a route, or none at all) rather than a failure counted as local.
func isLocal(a netip.Addr) (local, final bool) {
	t, err := routeType(a.Unmap())
	if err != nil {
		unreachable := errors.Is(err, unix.ENETUNREACH) || errors.Is(err, unix.EHOSTUNREACH)
		return !unreachable, unreachable
	}
	switch t {
	case unix.RTN_LOCAL, unix.RTN_BROADCAST, unix.RTN_ANYCAST, unix.RTN_MULTICAST:
		return true, true
	}
	return false, true
}

// routeType asks the kernel for the route to a (RTM_GETROUTE, as
// `ip route get` does) and returns its type (RTN_*).
func routeType(a netip.Addr) (uint8, error) {
	if !a.IsValid() {
		return 0, errors.New("hostnet: invalid address")
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return 0, fmt.Errorf("hostnet: netlink socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Sendto(fd, routeRequest(a), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("hostnet: route request: %w", err)
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return 0, fmt.Errorf("hostnet: route answer: %w", err)
	}
	return parseRouteAnswer(buf[:n])
}

const seq = 1

// routeRequest is an RTM_GETROUTE message for one destination.
func routeRequest(a netip.Addr) []byte {
	addr := a.AsSlice()
	family := uint8(unix.AF_INET)
	if a.Is6() {
		family = unix.AF_INET6
	}
	attrLen := unix.SizeofRtAttr + len(addr)
	size := unix.SizeofNlMsghdr + unix.SizeofRtMsg + rtaAlign(attrLen)
	b := make([]byte, size)
	hdr := (*unix.NlMsghdr)(unsafe.Pointer(&b[0]))
	*hdr = unix.NlMsghdr{Len: uint32(size), Type: unix.RTM_GETROUTE, Flags: unix.NLM_F_REQUEST, Seq: seq}
	rtm := (*unix.RtMsg)(unsafe.Pointer(&b[unix.SizeofNlMsghdr]))
	*rtm = unix.RtMsg{Family: family, Dst_len: uint8(len(addr) * 8)}
	at := b[unix.SizeofNlMsghdr+unix.SizeofRtMsg:]
	binary.NativeEndian.PutUint16(at[0:2], uint16(attrLen))
	binary.NativeEndian.PutUint16(at[2:4], unix.RTA_DST)
	copy(at[unix.SizeofRtAttr:], addr)
	return b
}

func rtaAlign(n int) int { return (n + unix.RTA_ALIGNTO - 1) &^ (unix.RTA_ALIGNTO - 1) }

// parseRouteAnswer reads the route's type from an RTM_NEWROUTE answer, or
// the error of an NLMSG_ERROR one.
func parseRouteAnswer(b []byte) (uint8, error) {
	msgs, err := syscall.ParseNetlinkMessage(b)
	if err != nil {
		return 0, fmt.Errorf("hostnet: route answer: %w", err)
	}
	for _, m := range msgs {
		switch m.Header.Type {
		case unix.NLMSG_ERROR:
			if len(m.Data) < 4 {
				return 0, errors.New("hostnet: short netlink error")
			}
			if code := int32(binary.NativeEndian.Uint32(m.Data[:4])); code != 0 {
				return 0, fmt.Errorf("hostnet: route lookup: %w", unix.Errno(-code))
			}
		case unix.RTM_NEWROUTE:
			if len(m.Data) < unix.SizeofRtMsg {
				return 0, errors.New("hostnet: short route answer")
			}
			return (*unix.RtMsg)(unsafe.Pointer(&m.Data[0])).Type, nil
		}
	}
	return 0, errors.New("hostnet: no route in the answer")
}
