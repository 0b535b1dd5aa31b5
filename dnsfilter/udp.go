package dnsfilter

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// UDP is read and written in batches (recvmmsg, sendmmsg): on a virtual
// machine every system call is expensive. Each socket (one per family) has
// one reader goroutine, which answers cached names itself: a query that
// needs upstream goes to its own goroutine, at most maxInflight at once.
// More sockets (SO_REUSEPORT) or readers gained little throughput on two
// cores and doubled the p99 latency: goroutines handing work to each other
// cost more than the answers.
const (
	udpBatch     = 32
	udpFlush     = 8    // replies sent together: fewer calls, little added latency
	maxUDPQuery  = 4096 // larger datagrams are not DNS queries egressd answers
	replyBufSize = upstreamUDPSize + ipv6HeaderLen + udpHeaderLen
)

// batchConn is what ipv4.PacketConn and ipv6.PacketConn share.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

func batchOf(c net.PacketConn) batchConn {
	var ip net.IP
	switch a := c.LocalAddr().(type) {
	case *net.UDPAddr:
		ip = a.IP
	case *net.IPAddr:
		ip = a.IP
	}
	if ip.To4() == nil {
		return ipv6.NewPacketConn(c)
	}
	return ipv4.NewPacketConn(c)
}

// udpReader holds one reader's buffers.
type udpReader struct {
	in      []ipv4.Message
	out     []ipv4.Message
	packBuf []byte
	pktBufs [][]byte
	addrs   []net.IPAddr // reply destinations, reused
}

func newUDPReader() *udpReader {
	u := &udpReader{
		in:      make([]ipv4.Message, udpBatch),
		out:     make([]ipv4.Message, 0, udpBatch),
		packBuf: make([]byte, upstreamUDPSize),
		pktBufs: make([][]byte, udpBatch),
		addrs:   make([]net.IPAddr, udpBatch),
	}
	for i := range u.in {
		u.in[i].Buffers = [][]byte{make([]byte, maxUDPQuery)}
		u.in[i].OOB = make([]byte, 128)
		u.pktBufs[i] = make([]byte, replyBufSize)
		u.addrs[i].IP = make(net.IP, 0, net.IPv6len)
	}
	return u
}

// serveUDP reads batches of queries from c until it is closed.
func (r *Resolver) serveUDP(ctx context.Context, c *net.UDPConn, wg *sync.WaitGroup) {
	defer wg.Done()
	in := batchOf(c)
	raw := batchOf(r.raw4)
	if _, v4 := in.(*ipv4.PacketConn); !v4 {
		raw = batchOf(r.raw6)
	}
	u := newUDPReader()
	for {
		n, err := in.ReadBatch(u.in, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			r.log.Warn("dns udp read failed", zap.Error(err))
			time.Sleep(10 * time.Millisecond)
			continue
		}
		u.out = u.out[:0]
		for i := range n {
			r.answerDatagram(ctx, u, &u.in[i], wg)
			if len(u.out) == udpFlush {
				r.sendBatch(raw, u.out)
				u.out = u.out[:0]
			}
		}
		r.sendBatch(raw, u.out)
	}
}

// answerDatagram answers one received datagram into u.out, or defers it.
func (r *Resolver) answerDatagram(ctx context.Context, u *udpReader, m *ipv4.Message, wg *sync.WaitGroup) {
	from, ok := m.Addr.(*net.UDPAddr)
	dst, found := origDst(m.OOB[:m.NN])
	if !ok || !found || m.Flags&unix.MSG_TRUNC != 0 {
		r.stats.dropped.Add(1)
		return
	}
	client := addrPortOf(from)
	pkt := m.Buffers[0][:m.N]
	out, deferred := r.answerWireMode(ctx, client.Addr(), pkt, false, true, u.packBuf)
	switch {
	case deferred:
		r.deferUDP(ctx, bytes.Clone(pkt), client, dst, wg)
	case out != nil:
		if dst.Addr().Is4() != client.Addr().Is4() {
			return
		}
		j := len(u.out)
		b := buildUDPPacket(u.pktBufs[j], dst, client, out)
		to := &u.addrs[j]
		to.IP, to.Zone = appendIP(to.IP[:0], client.Addr()), client.Addr().Zone()
		u.out = append(u.out, ipv4.Message{Buffers: [][]byte{b}, Addr: to})
	}
}

// sendBatch sends the replies of one batch.
func (r *Resolver) sendBatch(raw batchConn, ms []ipv4.Message) {
	for len(ms) > 0 {
		n, err := raw.WriteBatch(ms, 0)
		if err != nil {
			r.log.Warn("dns replies not sent", zap.Int("replies", len(ms)), zap.Error(err))
			n = max(n, 1) // skip the one that failed
		}
		ms = ms[n:]
	}
}

// deferUDP answers a query that needs upstream in its own goroutine, or
// drops it when its sandbox, or all of them, already have as many waiting
// as they may (maxInflightPerSandbox, maxInflight).
func (r *Resolver) deferUDP(ctx context.Context, pkt []byte, from, dst netip.AddrPort, wg *sync.WaitGroup) {
	sandbox := r.sandboxOf(from.Addr())
	if !r.inflight.Take(sandbox, 1) {
		r.stats.dropped.Add(1) // overloaded
		return
	}
	wg.Add(1)
	go r.handleUDP(ctx, pkt, from, dst, sandbox, wg)
}

// sandboxOf names the sandbox src belongs to ("" for none), the key of
// the per-sandbox budgets.
func (r *Resolver) sandboxOf(src netip.Addr) string {
	if sb, ok := r.sandboxes.Load().BySource(src); ok {
		return sb.Name
	}
	return ""
}

// handleUDP answers one datagram that may wait for upstream.
func (r *Resolver) handleUDP(ctx context.Context, pkt []byte, from, dst netip.AddrPort, sandbox string, wg *sync.WaitGroup) {
	defer wg.Done()
	defer r.inflight.Give(sandbox, 1)
	out := r.answerWire(ctx, from.Addr(), pkt, false)
	if out == nil {
		return
	}
	if err := r.sendUDP(dst, from, out); err != nil {
		r.log.Warn("dns reply not sent", zap.Stringer(keySrc, from), zap.Error(err))
	}
}

// origDst finds the IP_ORIGDSTADDR or IPV6_ORIGDSTADDR control message:
// the address and port a TPROXY'd datagram was sent to.
func origDst(oob []byte) (netip.AddrPort, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return netip.AddrPort{}, false
	}
	for _, m := range msgs {
		d := m.Data
		switch {
		case m.Header.Level == unix.SOL_IP && m.Header.Type == unix.IP_ORIGDSTADDR && len(d) >= unix.SizeofSockaddrInet4:
			a := netip.AddrFrom4([4]byte(d[4:8]))
			return netip.AddrPortFrom(a, binary.BigEndian.Uint16(d[2:4])), true
		case m.Header.Level == unix.SOL_IPV6 && m.Header.Type == unix.IPV6_ORIGDSTADDR && len(d) >= unix.SizeofSockaddrInet6:
			a := netip.AddrFrom16([16]byte(d[8:24])).Unmap()
			return netip.AddrPortFrom(a, binary.BigEndian.Uint16(d[2:4])), true
		}
	}
	return netip.AddrPort{}, false
}

// appendIP appends a's bytes (4 or 16) to b.
func appendIP(b []byte, a netip.Addr) []byte {
	if a.Is4() {
		a4 := a.As4()
		return append(b, a4[:]...)
	}
	a16 := a.As16()
	return append(b, a16[:]...)
}
