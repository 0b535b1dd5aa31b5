package dnsfilter

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// UDP replies leave by raw sockets (IPPROTO_RAW: the caller writes the IP
// header) so that each one carries, as its source, the address and port
// the client sent its query to; see the package comment for why.

const (
	ipv4HeaderLen = 20
	ipv6HeaderLen = 40
	udpHeaderLen  = 8
	replyHopLimit = 64
)

// openRaw opens a send-only raw socket for network "ip4" or "ip6".
func openRaw(ctx context.Context, network string) (*net.IPConn, error) {
	host := "0.0.0.0"
	if network == "ip6" {
		host = "::"
	}
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, network+":"+fmt.Sprint(unix.IPPROTO_RAW), host)
	if err != nil {
		return nil, fmt.Errorf("dnsfilter: raw %s socket for UDP replies: %w", network, err)
	}
	c := pc.(*net.IPConn)
	if network == "ip6" { // implied by IPPROTO_RAW since Linux 4.5; say it anyway
		rc, err := c.SyscallConn()
		if err == nil {
			var serr error
			err = rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_HDRINCL, 1) })
			err = errors.Join(err, serr)
		}
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("dnsfilter: raw ip6 socket: IPV6_HDRINCL: %w", err)
		}
	}
	return c, nil
}

// sendUDP sends payload from src to dst as one UDP datagram.
func (r *Resolver) sendUDP(src, dst netip.AddrPort, payload []byte) error {
	if src.Addr().Is4() != dst.Addr().Is4() {
		return fmt.Errorf("dnsfilter: reply from %s to %s: families differ", src, dst)
	}
	conn := r.raw4
	if !src.Addr().Is4() {
		conn = r.raw6
	}
	pkt := buildUDPPacket(nil, src, dst, payload)
	to := &net.IPAddr{IP: dst.Addr().AsSlice(), Zone: dst.Addr().Zone()}
	if _, err := conn.WriteToIP(pkt, to); err != nil {
		return fmt.Errorf("dnsfilter: reply from %s to %s: %w", src, dst, err)
	}
	return nil
}

// buildUDPPacket builds the IP packet (of src's family) holding one UDP
// datagram from src to dst, in buf when it is large enough.
func buildUDPPacket(buf []byte, src, dst netip.AddrPort, payload []byte) []byte {
	n := ipv6HeaderLen + udpHeaderLen + len(payload)
	if src.Addr().Is4() {
		n = ipv4HeaderLen + udpHeaderLen + len(payload)
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	clear(buf[:n-len(payload)])
	if src.Addr().Is4() {
		return udpPacket4(buf, src, dst, payload)
	}
	return udpPacket6(buf, src, dst, payload)
}

// udpPacket4 fills b, zeroed and of the right length, with an IPv4 packet
// holding one UDP datagram. The kernel fills in the IP identification and
// header checksum.
func udpPacket4(b []byte, src, dst netip.AddrPort, payload []byte) []byte {
	n := len(b)
	b[0] = 0x45 // version 4, 5 words of header
	binary.BigEndian.PutUint16(b[2:], uint16(n))
	b[8] = replyHopLimit
	b[9] = unix.IPPROTO_UDP
	s, d := src.Addr().As4(), dst.Addr().As4()
	copy(b[12:16], s[:])
	copy(b[16:20], d[:])
	putUDP(b[ipv4HeaderLen:], src, dst, payload, s[:], d[:])
	return b
}

// udpPacket6 fills b, zeroed and of the right length, with an IPv6 packet
// holding one UDP datagram.
func udpPacket6(b []byte, src, dst netip.AddrPort, payload []byte) []byte {
	b[0] = 0x60 // version 6, traffic class and flow label 0
	binary.BigEndian.PutUint16(b[4:], uint16(udpHeaderLen+len(payload)))
	b[6] = unix.IPPROTO_UDP
	b[7] = replyHopLimit
	s, d := src.Addr().As16(), dst.Addr().As16()
	copy(b[8:24], s[:])
	copy(b[24:40], d[:])
	putUDP(b[ipv6HeaderLen:], src, dst, payload, s[:], d[:])
	return b
}

// putUDP writes the UDP header, payload and checksum (over the pseudo
// header of the addresses s and d) into b.
func putUDP(b []byte, src, dst netip.AddrPort, payload, s, d []byte) {
	n := udpHeaderLen + len(payload)
	binary.BigEndian.PutUint16(b[0:], src.Port())
	binary.BigEndian.PutUint16(b[2:], dst.Port())
	binary.BigEndian.PutUint16(b[4:], uint16(n))
	copy(b[udpHeaderLen:], payload)
	sum := sum16(s, 0)
	sum = sum16(d, sum)
	sum += uint32(unix.IPPROTO_UDP) + uint32(n)
	sum = sum16(b[:n], sum)
	c := ^fold(sum)
	if c == 0 {
		c = 0xffff // 0 means "no checksum" in UDP
	}
	binary.BigEndian.PutUint16(b[6:], c)
}

// sum16 adds b as big-endian 16-bit words (odd length padded) to sum.
func sum16(b []byte, sum uint32) uint32 {
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

func fold(sum uint32) uint16 {
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}
