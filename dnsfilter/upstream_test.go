package dnsfilter

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// silentServer is a UDP socket that reads queries and never answers.
func silentServer(t *testing.T) netip.AddrPort {
	t.Helper()
	ap, _ := countingSilentServer(t)
	return ap
}

// countingSilentServer is silentServer that also counts what it read.
func countingSilentServer(t *testing.T) (netip.AddrPort, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			n.Add(1)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).AddrPort(), &n
}

// closedPort is a UDP port on loopback nobody listens on.
func closedPort(t *testing.T) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ap := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	pc.Close()
	return ap
}

func exchangeA(u *Upstream, name string) (*dns.Msg, error) {
	q := new(dns.Msg)
	q.SetQuestion(name, dns.TypeA)
	return u.Exchange(context.Background(), q)
}

func TestUpstreamFailover(t *testing.T) {
	good := startUpstream(t)
	failing := startUpstream(t)
	failing.set(func(u *fakeUpstream) { u.rcode = dns.RcodeServerFailure })
	lying := startUpstream(t)
	lying.set(func(u *fakeUpstream) { u.wrongName = true })
	tests := []struct {
		name    string
		servers []netip.AddrPort
	}{
		{"first answers", []netip.AddrPort{good.addr}},
		{"servfail then good", []netip.AddrPort{failing.addr, good.addr}},
		{"refused port then good", []netip.AddrPort{closedPort(t), good.addr}},
		{"timeout then good", []netip.AddrPort{silentServer(t), good.addr}},
		{"mismatched question then good", []netip.AddrPort{lying.addr, good.addr}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := NewUpstream(tt.servers, 200*time.Millisecond)
			r, err := exchangeA(u, "allowed.test.")
			if err != nil {
				t.Fatal(err)
			}
			if addrs := answerAddrs(r); len(addrs) != 1 || addrs[0] != "198.51.100.10" {
				t.Errorf("answer %v", addrs)
			}
			if got := u.preferred.Load(); int(got) != len(tt.servers)-1 {
				t.Errorf("preferred server %d, want the one that answered (%d)", got, len(tt.servers)-1)
			}
		})
	}
	t.Run("all fail", func(t *testing.T) {
		u := NewUpstream([]netip.AddrPort{failing.addr, lying.addr}, 200*time.Millisecond)
		if r, err := exchangeA(u, "allowed.test."); err == nil {
			t.Fatalf("got %v, want an error", r)
		}
	})
	t.Run("starts with the last good server", func(t *testing.T) {
		dead, deadSaw := countingSilentServer(t)
		u := NewUpstream([]netip.AddrPort{dead, good.addr}, 200*time.Millisecond)
		for range 3 {
			if _, err := exchangeA(u, "allowed.test."); err != nil {
				t.Fatal(err)
			}
		}
		if n := deadSaw.Load(); n != 1 {
			t.Errorf("dead server asked %d times, want only by the first query", n)
		}
	})
}

func TestUpstreamTruncationRetriesTCP(t *testing.T) {
	up := startUpstream(t)
	up.set(func(u *fakeUpstream) { u.truncUDP = true })
	u := NewUpstream([]netip.AddrPort{up.addr}, time.Second)
	r, err := exchangeA(u, "allowed.test.")
	if err != nil {
		t.Fatal(err)
	}
	if r.Truncated || len(r.Answer) != 1 {
		t.Fatalf("answer %v, want the full TCP answer", r)
	}
	if n := len(up.asked()); n != 2 {
		t.Errorf("upstream asked %d times, want UDP then TCP", n)
	}
}

func TestUpstreamQueryShape(t *testing.T) {
	up := startUpstream(t)
	u := NewUpstream([]netip.AddrPort{up.addr}, time.Second)
	ids := map[uint16]bool{}
	for range 8 {
		if _, err := exchangeA(u, "allowed.test."); err != nil {
			t.Fatal(err)
		}
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	for _, q := range up.queries {
		ids[q.Id] = true
		if !q.RecursionDesired || q.IsEdns0() == nil || q.IsEdns0().UDPSize() != upstreamUDPSize {
			t.Errorf("query %v: want RD and EDNS0 with size %d", q, upstreamUDPSize)
		}
	}
	if len(ids) < 6 {
		t.Errorf("%d distinct IDs in 8 queries: IDs are not random", len(ids))
	}
}

func TestLookupAddrs(t *testing.T) {
	up := startUpstream(t)
	u := NewUpstream([]netip.AddrPort{up.addr}, time.Second)
	addrs, err := u.LookupAddrs(context.Background(), "www.allowed.test")
	if err != nil || len(addrs) != 2 {
		t.Fatalf("LookupAddrs = %v, %v; want the two addresses behind the CNAME", addrs, err)
	}
	if _, err := u.LookupAddrs(context.Background(), "nope.allowed.test"); err == nil {
		t.Error("LookupAddrs of a missing name succeeded")
	}
}

// TestLookupCoalescesAndBounds: concurrent misses for one name cost one
// lookup (one A and one AAAA query), and a name with a thousand addresses
// is cached with maxCachedAddrs of them.
func TestLookupCoalescesAndBounds(t *testing.T) {
	records := []string{}
	for i := range 1000 {
		records = append(records, fmt.Sprintf("many.test. 60 IN A 198.51.%d.%d", 100+i/250, 1+i%250))
	}
	up := startUpstream(t, append(records, "one.test. 60 IN A 198.51.100.10")...)
	u := NewUpstream([]netip.AddrPort{up.addr}, 2*time.Second)
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := u.LookupAddrs(context.Background(), "one.test"); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := len(up.asked()); n > 4 { // A and AAAA; a late goroutine may miss the flight, not the cache
		t.Errorf("50 concurrent lookups of one name cost %d upstream queries: %v", n, up.asked())
	}
	addrs, err := u.LookupAddrs(context.Background(), "many.test")
	if err != nil || len(addrs) != maxCachedAddrs {
		t.Fatalf("many.test: %d addresses, %v; want %d", len(addrs), err, maxCachedAddrs)
	}
}
