package dnsfilter

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("needs root (CI=true)")
	}
	t.Skip("needs root: transparent and raw sockets")
}

// TestListeners runs the socket shell on loopback: UDP replies, sent by
// the raw sockets, must come from the address and port the query went to
// (a connected UDP socket receives nothing else), and TCP answers in order
// on one connection. The TPROXY part is covered by internal/e2e.
func TestListeners(t *testing.T) {
	requireRoot(t)
	up := startUpstream(t)
	r, _ := newTestResolver(t, up, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	if err := r.Listen(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- r.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	port := r.Addrs()[0].(*net.UDPAddr).Port
	for _, host := range []string{"127.0.0.1", "::1"} {
		addr := net.JoinHostPort(host, itoaPort(port))
		t.Run("udp "+host, func(t *testing.T) {
			c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
			checkExchange(t, c, addr)
		})
		t.Run("tcp "+host, func(t *testing.T) {
			c := &dns.Client{Net: "tcp", Timeout: 2 * time.Second}
			conn, err := c.Dial(addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			for _, name := range []string{"allowed.test.", "www.allowed.test.", "evil.test."} {
				q := new(dns.Msg)
				q.SetQuestion(name, dns.TypeA)
				m, _, err := c.ExchangeWithConn(q, conn)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if want := name != "evil.test."; (m.Rcode == dns.RcodeSuccess) != want {
					t.Errorf("%s: rcode %s", name, dns.RcodeToString[m.Rcode])
				}
			}
		})
	}
}

func checkExchange(t *testing.T, c *dns.Client, addr string) {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion("allowed.test.", dns.TypeA)
	m, _, err := c.Exchange(q, addr)
	if err != nil {
		t.Fatal(err)
	}
	if got := answerAddrs(m); len(got) != 1 || got[0] != "198.51.100.10" {
		t.Errorf("answer %v", got)
	}
}

func itoaPort(p int) string { return strconv.Itoa(p) }

func TestUDPPacketChecksum(t *testing.T) {
	payload := []byte("odd-length payload")
	tests := []struct {
		name     string
		src, dst netip.AddrPort
		hdr      int
	}{
		{"ipv4", netip.MustParseAddrPort("198.51.100.53:53"), netip.MustParseAddrPort("10.231.0.2:40000"), ipv4HeaderLen},
		{"ipv6", netip.MustParseAddrPort("[2001:db8::53]:53"), netip.MustParseAddrPort("[fd00:231::2]:40000"), ipv6HeaderLen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dirty := make([]byte, 200)
			for i := range dirty {
				dirty[i] = 0xaa // a reused buffer
			}
			pkt := buildUDPPacket(dirty, tt.src, tt.dst, payload)
			if pkt[0]>>4 != 4 && pkt[0]>>4 != 6 || len(pkt) != tt.hdr+udpHeaderLen+len(payload) {
				t.Fatalf("packet % x", pkt)
			}
			udp := pkt[tt.hdr:]
			if binary.BigEndian.Uint16(udp[0:]) != 53 || binary.BigEndian.Uint16(udp[2:]) != 40000 ||
				int(binary.BigEndian.Uint16(udp[4:])) != udpHeaderLen+len(payload) {
				t.Fatalf("udp header % x", udp[:8])
			}
			s, d := tt.src.Addr().AsSlice(), tt.dst.Addr().AsSlice()
			sum := sum16(s, sum16(d, 17+uint32(len(udp))))
			if got := fold(sum16(udp, sum)); got != 0xffff {
				t.Errorf("checksum does not verify: %#x", got)
			}
		})
	}
}
