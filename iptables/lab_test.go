package iptables

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"github.com/egressd/egressd/internal/netnstest"
)

// waitFor bounds every "eventually" in the traffic tests; nothing takes
// longer than milliseconds when it works.
const waitFor = 5 * time.Second

// lab is a netnstest topology with egressd's rules in the firewall namespace
// and recorders in the internet namespace.
type lab struct {
	*netnstest.Topology
	in  Installer
	udp *recorder // UDP on port 9999 and 53, every internet address
}

func newLab(t *testing.T) *lab {
	t.Helper()
	requireKernel(t)
	tp := netnstest.New(t)
	l := &lab{Topology: tp, in: Installer{Run: InNetns(tp.Firewall), NetNS: tp.Firewall}, udp: newRecorder()}
	for _, port := range []string{"9999", "53"} {
		l.udp.listen(t, tp, "[::]:"+port)
	}
	return l
}

func (l *lab) apply(t *testing.T, sb Sandbox, p Ports) {
	t.Helper()
	sb.Name, sb.Interface = "sb1", netnstest.FirewallSandboxIface
	if err := l.in.Apply(context.Background(), []Sandbox{sb}, p, Host{}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	l.beat(t)
}

// beat refreshes the heartbeat set, as a running egressd does, until the
// test ends.
func (l *lab) beat(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.in.Heartbeat(ctx, func(error) {}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Heartbeat: %v", err)
		}
	})
}

var counterRE = regexp.MustCompile(`counter packets (\d+) bytes \d+ .*comment "([^"]*)"`)

// drops returns the firewall's drop counters, summed by comment.
func (l *lab) drops(t *testing.T) map[string]uint64 {
	t.Helper()
	out := l.Run(l.Firewall, "nft", "list", "table", "inet", Table)
	m := map[string]uint64{}
	for _, sub := range counterRE.FindAllStringSubmatch(out, -1) {
		n, _ := strconv.ParseUint(sub[1], 10, 64)
		m[sub[2]] += n
	}
	return m
}

// expectDropped runs send and waits until the firewall counts a drop for
// reason.
func (l *lab) expectDropped(t *testing.T, reason string, send func() error) {
	t.Helper()
	before := l.drops(t)[reason]
	if err := send(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(waitFor); l.drops(t)[reason] == before; {
		if time.Now().After(deadline) {
			t.Fatalf("no drop counted for %q in %v:\n%s", reason, waitFor,
				l.Run(l.Firewall, "nft", "list", "table", "inet", Table))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sendUDP sends payload from the sandbox to dst, from src if valid.
func (l *lab) sendUDP(src netip.Addr, dst netip.AddrPort, payload string) error {
	return l.Do(l.Sandbox, func() error {
		var laddr *net.UDPAddr
		if src.IsValid() {
			laddr = &net.UDPAddr{IP: src.AsSlice()}
		}
		c, err := net.DialUDP("udp", laddr, net.UDPAddrFromAddrPort(dst))
		if err != nil {
			return fmt.Errorf("udp from %s to %s: %w", src, dst, err)
		}
		defer c.Close()
		_, err = c.Write([]byte(payload))
		return err
	})
}

// dialTCP connects from the sandbox to dst within timeout.
func (l *lab) dialTCP(dst netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := l.Do(l.Sandbox, func() (err error) {
		c, err = net.DialTimeout("tcp", dst.String(), timeout)
		return err
	})
	return c, err
}

// ping sends one ICMP echo from the sandbox to dst; with wait, it returns an
// error unless the reply comes within waitFor.
func (l *lab) ping(dst netip.Addr, wait bool) error {
	network, typ := "ip4:icmp", icmp.Type(ipv4.ICMPTypeEcho)
	if dst.Is6() {
		network, typ = "ip6:ipv6-icmp", ipv6.ICMPTypeEchoRequest
	}
	var c *icmp.PacketConn
	err := l.Do(l.Sandbox, func() (err error) {
		c, err = icmp.ListenPacket(network, "")
		return err
	})
	if err != nil {
		return fmt.Errorf("icmp socket: %w", err)
	}
	defer c.Close()
	id := os.Getpid() & 0xffff
	msg, err := (&icmp.Message{Type: typ, Body: &icmp.Echo{ID: id, Seq: 1, Data: []byte("egressd")}}).Marshal(nil)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(msg, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		return fmt.Errorf("ping %s: %w", dst, err)
	}
	if !wait {
		return nil
	}
	return awaitEchoReply(c, dst, id)
}

// sendNeighborSolicitation sends an ICMPv6 neighbour solicitation for dst to
// dst itself, hop limit 255, from the sandbox: valid ND, but off-link.
func (l *lab) sendNeighborSolicitation(dst netip.Addr) error {
	var c *icmp.PacketConn
	err := l.Do(l.Sandbox, func() (err error) {
		c, err = icmp.ListenPacket("ip6:ipv6-icmp", "")
		return err
	})
	if err != nil {
		return fmt.Errorf("icmp socket: %w", err)
	}
	defer c.Close()
	if err := c.IPv6PacketConn().SetHopLimit(255); err != nil {
		return err
	}
	target := dst.As16()
	body := &icmp.RawBody{Data: append(make([]byte, 4), target[:]...)} // reserved, target
	msg, err := (&icmp.Message{Type: ipv6.ICMPTypeNeighborSolicitation, Body: body}).Marshal(nil)
	if err != nil {
		return err
	}
	_, err = c.WriteTo(msg, &net.IPAddr{IP: dst.AsSlice()})
	return err
}

func awaitEchoReply(c *icmp.PacketConn, dst netip.Addr, id int) error {
	proto := 1
	if dst.Is6() {
		proto = 58
	}
	c.SetReadDeadline(time.Now().Add(waitFor))
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return fmt.Errorf("no echo reply from %s: %w", dst, err)
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil {
			continue
		}
		echo, ok := m.Body.(*icmp.Echo)
		if ok && echo.ID == id && from.String() == dst.String() &&
			(m.Type == ipv4.ICMPTypeEchoReply || m.Type == ipv6.ICMPTypeEchoReply) {
			return nil
		}
	}
}

// transparentControl sets IP_TRANSPARENT or IPV6_TRANSPARENT, as egressd's
// listeners do.
func transparentControl(network, _ string, rc syscall.RawConn) error {
	level, opt := unix.SOL_IP, unix.IP_TRANSPARENT
	if network == "tcp6" || network == "udp6" {
		level, opt = unix.SOL_IPV6, unix.IPV6_TRANSPARENT
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), level, opt, 1) }); err != nil {
		return err
	}
	return serr
}

// listenTCP listens in namespace ns (transparently if asked) and returns the
// local addresses of accepted connections, which it closes.
func (l *lab) listenTCP(t *testing.T, ns, network, addr string, transparent bool) <-chan netip.AddrPort {
	t.Helper()
	lc := net.ListenConfig{}
	if transparent {
		lc.Control = transparentControl
	}
	var ln net.Listener
	if err := l.Do(ns, func() (err error) { ln, err = lc.Listen(context.Background(), network, addr); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got := make(chan netip.AddrPort, 16)
	go acceptLoop(ln, got)
	return got
}

func acceptLoop(ln net.Listener, got chan<- netip.AddrPort) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		got <- c.LocalAddr().(*net.TCPAddr).AddrPort()
		c.Close()
	}
}

// listenUDP listens transparently in the firewall, like egressd's resolver,
// and returns the payloads received.
func (l *lab) listenUDP(t *testing.T, network, addr string) <-chan string {
	t.Helper()
	lc := net.ListenConfig{Control: transparentControl}
	var pc net.PacketConn
	if err := l.Do(l.Firewall, func() (err error) { pc, err = lc.ListenPacket(context.Background(), network, addr); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	got := make(chan string, 16)
	go readLoop(pc, func(p string) { got <- p })
	return got
}

func readLoop(pc net.PacketConn, record func(string)) {
	buf := make([]byte, 2048)
	for {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		record(string(buf[:n]))
	}
}

// recorder remembers every UDP payload the internet namespace received.
type recorder struct {
	mu   sync.Mutex
	seen map[string]bool
	news chan struct{} // closed and replaced on each arrival
}

func newRecorder() *recorder {
	return &recorder{seen: map[string]bool{}, news: make(chan struct{})}
}

func (r *recorder) listen(t *testing.T, tp *netnstest.Topology, addr string) {
	t.Helper()
	var pc net.PacketConn
	if err := tp.Do(tp.Internet, func() (err error) { pc, err = net.ListenPacket("udp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go readLoop(pc, r.record)
}

func (r *recorder) record(p string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen[p] = true
	close(r.news)
	r.news = make(chan struct{})
}

func (r *recorder) has(p string) (bool, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[p], r.news
}

// await waits until payload p has arrived.
func (r *recorder) await(t *testing.T, p string) {
	t.Helper()
	timeout := time.After(waitFor)
	for {
		ok, news := r.has(p)
		if ok {
			return
		}
		select {
		case <-news:
		case <-timeout:
			t.Fatalf("%q did not arrive in %v", p, waitFor)
		}
	}
}
