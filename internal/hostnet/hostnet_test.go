package hostnet

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/egressd/egressd/internal/netnstest"
)

func TestIsLocal(t *testing.T) {
	tp := netnstest.New(t)
	// An address added after the topology was built counts at once.
	tp.AddAddr(tp.Firewall, netnstest.FirewallInternetIface, "203.0.113.99/32")
	cases := []struct {
		addr string
		want bool
	}{
		{"10.231.0.1", true},   // gateway
		{"198.51.100.1", true}, // uplink
		{"203.0.113.99", true}, // added late
		{"127.0.0.1", true},    // loopback
		{"127.1.2.3", true},    // the whole of 127/8
		{"10.231.0.255", true}, // the sandbox subnet's broadcast
		{"224.0.0.1", true},    // multicast
		{"fd00:231::1", true},  // gateway, IPv6
		{"2001:db8::1", true},  // uplink, IPv6
		{"::1", true},          // loopback, IPv6
		{"::ffff:10.231.0.1", true},
		{"10.231.0.2", false},    // the sandbox
		{"198.51.100.10", false}, // the internet
		{"2001:db8::10", false},
		{"fd00:231::2", false},
	}
	err := netnstest.Do(tp.Firewall, func() error {
		for _, c := range cases {
			if got := IsLocal(netip.MustParseAddr(c.addr)); got != c.want {
				t.Errorf("IsLocal(%s) = %v, want %v", c.addr, got, c.want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestIsLocalWithoutRoute(t *testing.T) {
	ns := netnstest.NewNamespace(t) // lo only: no route to anything else
	netnstest.Do(ns, func() error {
		if IsLocal(netip.MustParseAddr("198.51.100.10")) {
			t.Error("an unroutable address counted as local")
		}
		if !IsLocal(netip.MustParseAddr("127.0.0.1")) {
			t.Error("loopback not local")
		}
		return nil
	})
}

func TestLinksMaster(t *testing.T) {
	ns := netnstest.NewNamespace(t)
	for _, args := range [][]string{
		{"link", "add", "br-t", "type", "bridge"},
		{"link", "add", "veth-a", "type", "veth", "peer", "name", "veth-b"},
		{"link", "set", "veth-a", "master", "br-t"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	var links []Link
	if err := netnstest.Do(ns, func() (err error) { links, err = Links(); return err }); err != nil {
		t.Fatal(err)
	}
	got := map[string]Link{}
	for _, l := range links {
		got[l.Name] = l
	}
	if l := got["veth-a"]; l.Master != "br-t" || l.MasterKind != "bridge" {
		t.Errorf("veth-a = %+v, want a port of bridge br-t", l)
	}
	if l, ok := got["veth-b"]; !ok || l.Master != "" {
		t.Errorf("veth-b = %+v (present %v), want no master", l, ok)
	}
	if _, ok := got["lo"]; !ok {
		t.Errorf("no lo in %v", links)
	}
	netnstest.Do(ns, func() error {
		if l, ok, err := LinkByName("veth-a"); err != nil || !ok || l.Master != "br-t" || l.MasterKind != "bridge" {
			t.Errorf("LinkByName(veth-a) = %+v, %v, %v; want a port of bridge br-t", l, ok, err)
		}
		if l, ok, err := LinkByName("veth-b"); err != nil || !ok || l.Master != "" || l.Index == 0 {
			t.Errorf("LinkByName(veth-b) = %+v, %v, %v", l, ok, err)
		}
		if _, ok, err := LinkByName("nope0"); err != nil || ok {
			t.Errorf("LinkByName(nope0) = %v, %v; want not found", ok, err)
		}
		return nil
	})
}

// vethPairs adds n veth pairs (v0..v(n-1), peers p0..) to namespace ns.
func vethPairs(tb testing.TB, ns string, n int) {
	tb.Helper()
	var batch strings.Builder
	for i := range n {
		fmt.Fprintf(&batch, "link add v%d type veth peer name p%d\n", i, i)
	}
	cmd := exec.Command("ip", "-n", ns, "-batch", "-")
	cmd.Stdin = strings.NewReader(batch.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("ip -batch: %v: %s", err, out)
	}
}

// TestLinksMany lists more links than one read of the dump holds.
func TestLinksMany(t *testing.T) {
	ns := netnstest.NewNamespace(t)
	vethPairs(t, ns, 300)
	var links []Link
	if err := netnstest.Do(ns, func() (err error) { links, err = Links(); return err }); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, l := range links {
		if names[l.Name] || l.Index == 0 {
			t.Errorf("link %+v listed twice or without index", l)
		}
		names[l.Name] = true
	}
	for i := range 300 {
		if l := fmt.Sprintf("p%d", i); !names[l] || !names[fmt.Sprintf("v%d", i)] {
			t.Fatalf("v%d or p%d missing from %d links", i, i, len(links))
		}
	}
	if len(links) != 601 {
		t.Errorf("%d links, want 601 (lo and 300 pairs)", len(links))
	}
}

// BenchmarkLinks lists 2,001 links (1,000 veth pairs and lo), as a SIGHUP
// among 1,000 sandboxes does, against the dump with statistics through
// syscall.NetlinkRIB (how Links read it up to 7fc815d).
func BenchmarkLinks(b *testing.B) {
	ns := netnstest.NewNamespace(b)
	vethPairs(b, ns, 1000)
	inNS := func(b *testing.B, f func() error) {
		err := netnstest.Do(ns, func() error {
			for b.Loop() {
				if err := f(); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.Run("Links", func(b *testing.B) {
		inNS(b, func() error {
			links, err := Links()
			if err == nil && len(links) != 2001 {
				err = fmt.Errorf("%d links", len(links))
			}
			return err
		})
	})
	b.Run("NetlinkRIB", func(b *testing.B) {
		inNS(b, func() error {
			rib, err := syscall.NetlinkRIB(unix.RTM_GETLINK, unix.AF_UNSPEC)
			if err != nil {
				return err
			}
			msgs, err := syscall.ParseNetlinkMessage(rib)
			for i := range msgs {
				if msgs[i].Header.Type == unix.RTM_NEWLINK {
					_, _, err = parseLink(&msgs[i])
				}
			}
			return err
		})
	})
}

// BenchmarkIsLocal is the price of protect_host per raw or pinned dial
// and per DNS answer address: one rtnetlink round trip.
func BenchmarkIsLocal(b *testing.B) {
	a := netip.MustParseAddr("198.51.100.10")
	for b.Loop() {
		IsLocal(a)
	}
}

// TestLocalCacheFollowsChanges: an address added or removed after the
// cache answered for it is judged anew at once, by route changes too.
func TestLocalCacheFollowsChanges(t *testing.T) {
	tp := netnstest.New(t)
	a := netip.MustParseAddr("203.0.113.77")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var c *LocalCache
	ask := func() (got bool) {
		netnstest.Do(tp.Firewall, func() error { got = c.IsLocal(a); return nil })
		return got
	}
	// eventually waits for the announcement; the bound is generous, the
	// wait is usually microseconds.
	eventually := func(want bool, what string) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Second)
		for ask() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: IsLocal(%s) still %v", what, a, !want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	if err := netnstest.Do(tp.Firewall, func() (err error) { c, err = WatchLocal(ctx); return err }); err != nil {
		t.Fatal(err)
	}
	if ask() || ask() { // the second answer is the kept one
		t.Fatal("not yet an address of the host, yet local")
	}
	tp.AddAddr(tp.Firewall, netnstest.FirewallInternetIface, a.String()+"/32")
	eventually(true, "after the address was added")
	tp.Run(tp.Firewall, "ip", "addr", "del", a.String()+"/32", "dev", netnstest.FirewallInternetIface)
	eventually(false, "after the address was removed")
	tp.Run(tp.Firewall, "ip", "route", "add", "local", a.String()+"/32", "dev", "lo")
	eventually(true, "after a local route was added")
	cancel()
	// Unwatched: every call asks the kernel, so it still sees changes.
	time.Sleep(50 * time.Millisecond)
	tp.Run(tp.Firewall, "ip", "route", "del", "local", a.String()+"/32", "dev", "lo")
	if ask() {
		t.Error("after the watch ended, a removed local route still counted")
	}
}

// BenchmarkLocalCache is the price of protect_host per dial once the
// answer is kept (next to BenchmarkIsLocal's lookup).
func BenchmarkLocalCache(b *testing.B) {
	c, err := WatchLocal(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	a := netip.MustParseAddr("198.51.100.10")
	for b.Loop() {
		c.IsLocal(a)
	}
}
