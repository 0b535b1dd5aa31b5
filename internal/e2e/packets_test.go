package e2e

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/egressd/egressd/internal/netnstest"
)

// Packet and frame crafting for the tests that attack the kernel rules
// with what a hostile sandbox can send on its own interface.

func csum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

func ip4hdr(src, dst netip.Addr, proto byte, plen int) []byte {
	h := make([]byte, 20)
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+plen))
	binary.BigEndian.PutUint16(h[4:], 0x1234)
	h[8] = 64
	h[9] = proto
	s, d := src.As4(), dst.As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	binary.BigEndian.PutUint16(h[10:], csum(h))
	return h
}

func l4sum4(src, dst netip.Addr, proto byte, seg []byte) uint16 {
	s, d := src.As4(), dst.As4()
	p := append(append([]byte{}, s[:]...), d[:]...)
	p = append(p, 0, proto, byte(len(seg)>>8), byte(len(seg)))
	return csum(append(p, seg...))
}

func l4sum6(src, dst netip.Addr, proto byte, seg []byte) uint16 {
	s, d := src.As16(), dst.As16()
	p := append(append([]byte{}, s[:]...), d[:]...)
	p = append(p, 0, 0, byte(len(seg)>>8), byte(len(seg)), 0, 0, 0, proto)
	return csum(append(p, seg...))
}

func udp4(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	u := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(u[0:], sport)
	binary.BigEndian.PutUint16(u[2:], dport)
	binary.BigEndian.PutUint16(u[4:], uint16(len(u)))
	copy(u[8:], payload)
	binary.BigEndian.PutUint16(u[6:], l4sum4(src, dst, 17, u))
	return append(ip4hdr(src, dst, 17, len(u)), u...)
}

func udp6(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	u := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(u[0:], sport)
	binary.BigEndian.PutUint16(u[2:], dport)
	binary.BigEndian.PutUint16(u[4:], uint16(len(u)))
	copy(u[8:], payload)
	binary.BigEndian.PutUint16(u[6:], l4sum6(src, dst, 17, u))
	h := make([]byte, 40)
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(len(u)))
	h[6] = 17
	h[7] = 64
	s, d := src.As16(), dst.As16()
	copy(h[8:], s[:])
	copy(h[24:], d[:])
	return append(h, u...)
}

func tcp4(src, dst netip.Addr, sport, dport uint16, flags byte, seq, ack uint32, payload []byte) []byte {
	t := make([]byte, 20+len(payload))
	binary.BigEndian.PutUint16(t[0:], sport)
	binary.BigEndian.PutUint16(t[2:], dport)
	binary.BigEndian.PutUint32(t[4:], seq)
	binary.BigEndian.PutUint32(t[8:], ack)
	t[12] = 5 << 4
	t[13] = flags
	binary.BigEndian.PutUint16(t[14:], 65000)
	copy(t[20:], payload)
	binary.BigEndian.PutUint16(t[16:], l4sum4(src, dst, 6, t))
	return append(ip4hdr(src, dst, 6, len(t)), t...)
}

// icmpErr4 is an ICMP error (type/code) from src to dst quoting inner,
// followed by extra bytes.
func icmpErr4(src, dst netip.Addr, typ, code byte, inner []byte) []byte {
	m := make([]byte, 8+len(inner))
	m[0], m[1] = typ, code
	copy(m[8:], inner)
	binary.BigEndian.PutUint16(m[2:], csum(m))
	return append(ip4hdr(src, dst, 1, len(m)), m...)
}

// sendRaw4 sends whole IPv4 packets from namespace ns.
func sendRaw4(t *testing.T, ns string, pkts ...[]byte) {
	t.Helper()
	err := netnstest.Do(ns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for _, p := range pkts {
			var sa unix.SockaddrInet4
			copy(sa.Addr[:], p[16:20])
			if err := unix.Sendto(fd, p, 0, &sa); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("raw send in %s: %v", ns, err)
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// sendFrames sends whole Ethernet frames on dev in ns.
func sendFrames(t *testing.T, ns, dev string, frames ...[]byte) {
	t.Helper()
	err := netnstest.Do(ns, func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for _, f := range frames {
			sa := &unix.SockaddrLinklayer{Ifindex: ifi.Index, Protocol: htons(unix.ETH_P_ALL), Halen: 6}
			copy(sa.Addr[:], f[:6])
			if err := unix.Sendto(fd, f, 0, sa); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("frame send in %s: %v", ns, err)
	}
}

func macOf(t *testing.T, ns, dev string) net.HardwareAddr {
	t.Helper()
	var mac net.HardwareAddr
	if err := netnstest.Do(ns, func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		mac = ifi.HardwareAddr
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return mac
}

// frame builds dst|src|[8100 tag vid]|etype|payload.
func frame(dst, src net.HardwareAddr, tagged bool, vid uint16, etype uint16, payload []byte) []byte {
	f := append(append([]byte{}, dst...), src...)
	if tagged {
		f = append(f, 0x81, 0x00, byte(vid>>8), byte(vid))
	}
	f = append(f, byte(etype>>8), byte(etype))
	return append(f, payload...)
}

// icmpSink records the payload of every ICMP message reaching ns.
func icmpSink(t *testing.T, ns string) *recorder {
	t.Helper()
	rec := &recorder{}
	var pc net.PacketConn
	if err := netnstest.Do(ns, func() (err error) {
		pc, err = net.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		b := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(b)
			if err != nil {
				return
			}
			rec.add("icmp from=%s %q", from, b[:n])
		}
	}()
	return rec
}

// nftCount counts packets matching match at the end of ns's input and
// forward hooks.
func nftCount(t *testing.T, tp *netnstest.Topology, ns, name, match string) func() string {
	tp.Run(ns, "nft", "add table inet review")
	tp.Run(ns, "nft", "add chain inet review input { type filter hook input priority 2147483647 ; policy accept ; }")
	tp.Run(ns, "nft", "add counter inet review "+name)
	tp.Run(ns, "nft", "add rule inet review input "+match+" counter name "+name)
	return func() string {
		out := tp.Run(ns, "nft", "list", "counter", "inet", "review", name)
		m := packetsRE.FindString(out)
		return m
	}
}

func waitRec(rec *recorder, marker string) []string {
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		if got := rec.matching(marker); len(got) > 0 {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// ---- attack 1: 802.1Q priority tag (VID 0) over a shared bridge ----
