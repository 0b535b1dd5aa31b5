package dnsfilter

import (
	"net/netip"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/egressd/egressd/policy"
	"github.com/miekg/dns"
)

func TestBindings(t *testing.T) {
	up := startUpstream(t)
	r, clock := newTestResolver(t, up, Options{MinBindingTTL: 10 * time.Minute})
	ask(r, srcCustom, "www.allowed.test.", dns.TypeA, false) // CNAME to edge.cdn.test, TTL 30
	ask(r, srcCustom, "Allowed.Test.", dns.TypeAAAA, false)
	ask(r, srcAllowAll, "evil.test.", dns.TypeA, false)
	ip := netip.MustParseAddr
	tests := []struct {
		name    string
		sandbox string
		qname   string
		addr    netip.Addr
		want    bool
	}{
		{"question name through cname", "custom", "www.allowed.test", ip("198.51.100.20"), true},
		{"every address of the answer", "custom", "www.allowed.test", ip("198.51.100.21"), true},
		{"not the cname target", "custom", "edge.cdn.test", ip("198.51.100.20"), false},
		{"normalised name", "custom", "allowed.test", ip("2001:db8::10"), true},
		{"mapped address", "custom", "www.allowed.test", ip("::ffff:198.51.100.20"), true},
		{"address not answered", "custom", "www.allowed.test", ip("198.51.100.10"), false},
		{"other name", "custom", "allowed.test", ip("198.51.100.20"), false},
		{"other sandbox", "open", "www.allowed.test", ip("198.51.100.20"), false},
		{"allow-all sandbox", "open", "evil.test", ip("198.51.100.66"), true},
		{"unknown sandbox", "nobody", "evil.test", ip("198.51.100.66"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := r.Bound(tt.sandbox, tt.qname, tt.addr); got != tt.want {
				t.Errorf("Bound(%s, %s, %s) = %v, want %v", tt.sandbox, tt.qname, tt.addr, got, tt.want)
			}
		})
	}
	t.Run("lives min_binding_ttl past a short TTL", func(t *testing.T) {
		clock.advance(9 * time.Minute) // record TTL 30 s
		if !r.Bound("custom", "www.allowed.test", ip("198.51.100.20")) {
			t.Error("binding gone before min_binding_ttl")
		}
		clock.advance(2 * time.Minute)
		if r.Bound("custom", "www.allowed.test", ip("198.51.100.20")) {
			t.Error("binding outlived min_binding_ttl")
		}
	})
}

func TestBindingLongTTL(t *testing.T) {
	up := startUpstream(t, "long.allowed.test. 7200 IN A 198.51.100.40")
	r, clock := newTestResolver(t, up, Options{MinBindingTTL: time.Minute})
	ask(r, srcCustom, "long.allowed.test.", dns.TypeA, false)
	clock.advance(time.Hour + 59*time.Minute)
	if !r.Bound("custom", "long.allowed.test", netip.MustParseAddr("198.51.100.40")) {
		t.Error("binding gone before the record's TTL")
	}
	clock.advance(2 * time.Minute)
	if r.Bound("custom", "long.allowed.test", netip.MustParseAddr("198.51.100.40")) {
		t.Error("binding outlived the record's TTL")
	}
}

// TestRotation: a name whose short-TTL answers change at every query keeps
// every address answered recently, so a client still using an older
// answer is not denied.
func TestRotation(t *testing.T) {
	up := startUpstream(t, "rot.allowed.test. 1 IN A 198.51.100.1")
	r, clock := newTestResolver(t, up, Options{})
	for i := 1; i <= 20; i++ {
		up.set(func(u *fakeUpstream) {
			u.zone = []dns.RR{mustRR(t, "rot.allowed.test. 1 IN A 198.51.100."+strconv.Itoa(i))}
		})
		got := ask(r, srcCustom, "rot.allowed.test.", dns.TypeA, false)
		if want := "198.51.100." + strconv.Itoa(i); len(answerAddrs(got)) != 1 || answerAddrs(got)[0] != want {
			t.Fatalf("round %d: answer %v, want %s (TTL 1 s must not be served stale)", i, answerAddrs(got), want)
		}
		clock.advance(2 * time.Second)
	}
	for i := 1; i <= 20; i++ {
		if a := netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}); !r.Bound("custom", "rot.allowed.test", a) {
			t.Errorf("%s no longer bound", a)
		}
	}
}

func TestBindingEviction(t *testing.T) {
	b := newBindings(4, nil)
	now := time.Unix(0, 0)
	add := func(name string, last byte, expires time.Time) {
		b.add(nil, "sb", name, []boundAddr{{addr: netip.AddrFrom4([4]byte{192, 0, 2, last}), expires: expires}}, now)
	}
	add("expired.test", 1, now.Add(-time.Second))
	for i := byte(2); i <= 4; i++ {
		add("a.test", i, now.Add(time.Hour))
	}
	add("a.test", 5, now.Add(time.Hour)) // pushes out the expired pair: not counted
	if n := b.evicted.Load(); n != 0 {
		t.Fatalf("evicted %d, want 0 (the pair pushed out had expired)", n)
	}
	if !b.bound("sb", "a.test", netip.MustParseAddr("192.0.2.2"), now) { // now most recently used
		t.Fatal("192.0.2.2 not bound")
	}
	add("a.test", 6, now.Add(time.Hour)) // pushes out 192.0.2.3, the least recently used
	if n := b.evicted.Load(); n != 1 {
		t.Fatalf("evicted %d, want 1", n)
	}
	if b.bound("sb", "a.test", netip.MustParseAddr("192.0.2.3"), now) {
		t.Error("least recently used pair kept")
	}
	for _, last := range []byte{2, 4, 5, 6} {
		if !b.bound("sb", "a.test", netip.AddrFrom4([4]byte{192, 0, 2, last}), now) {
			t.Errorf("192.0.2.%d evicted", last)
		}
	}
	if n := b.count("sb"); n != 4 {
		t.Errorf("%d pairs, want the bound 4", n)
	}
}

func TestResolverBindingEvictionCounter(t *testing.T) {
	var zone []string
	for i := range 300 {
		zone = append(zone, "many.allowed.test. 60 IN A 203.0.113."+strconv.Itoa(i%250+1))
	}
	zone = append(zone, "one.allowed.test. 60 IN A 198.51.100.1")
	up := startUpstream(t, zone...)
	r, _ := newTestResolver(t, up, Options{MaxBindingsPerSandbox: 256})
	ask(r, srcCustom, "many.allowed.test.", dns.TypeA, true)
	if n := r.Stats().BindingEvictions; n != 0 {
		t.Fatalf("evictions %d after 250 pairs, want 0", n)
	}
	for i := range 10 {
		up.set(func(u *fakeUpstream) {
			u.zone = append(u.zone, mustRR(t, "n"+strconv.Itoa(i)+".allowed.test. 60 IN A 198.51.100.2"))
		})
		ask(r, srcCustom, "n"+strconv.Itoa(i)+".allowed.test.", dns.TypeA, true)
	}
	if n := r.Stats().BindingEvictions; n != 4 {
		t.Errorf("evictions %d, want 4 (260 pairs, bound 256)", n)
	}
	if n := r.Stats().BindingEvictions; n != 4 {
		t.Errorf("Stats().BindingEvictions = %d, want 4", n)
	}
}

// TestBindingsJudgedWithStaleSet: pairs judged with a set that a policy
// change has replaced are not added.
func TestBindingsJudgedWithStaleSet(t *testing.T) {
	var live atomic.Pointer[policy.Set]
	oldSet, newSet := &policy.Set{}, &policy.Set{}
	live.Store(newSet)
	b := newBindings(4, &live)
	now := time.Now()
	a := netip.MustParseAddr("192.0.2.1")
	b.add(oldSet, "sb", "a.test", []boundAddr{{addr: a, expires: now.Add(time.Hour)}}, now)
	if b.bound("sb", "a.test", a, now) {
		t.Error("pair judged with the replaced set was bound")
	}
	b.add(newSet, "sb", "a.test", []boundAddr{{addr: a, expires: now.Add(time.Hour)}}, now)
	if !b.bound("sb", "a.test", a, now) {
		t.Error("pair judged with the set in force was not bound")
	}
}

// count returns how many pairs sandbox holds, expired ones included.
func (b *bindings) count(sandbox string) int {
	sb := b.sandbox(sandbox, false)
	if sb == nil {
		return 0
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return sb.lru.Len()
}
