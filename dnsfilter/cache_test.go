package dnsfilter

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestCacheTTL(t *testing.T) {
	msg := func(rcode int, rrs ...string) *dns.Msg {
		m := new(dns.Msg)
		m.Rcode = rcode
		for _, s := range rrs {
			rr := mustRR(t, s)
			if rr.Header().Rrtype == dns.TypeSOA {
				m.Ns = append(m.Ns, rr)
			} else {
				m.Answer = append(m.Answer, rr)
			}
		}
		return m
	}
	tests := []struct {
		name  string
		m     *dns.Msg
		qtype uint16
		want  time.Duration
	}{
		{"positive: smallest ttl", msg(dns.RcodeSuccess, "a.test. 300 IN CNAME b.test.", "b.test. 60 IN A 192.0.2.1"), dns.TypeA, 60 * time.Second},
		{"positive: capped", msg(dns.RcodeSuccess, "a.test. 604800 IN A 192.0.2.1"), dns.TypeA, maxAnswerTTL},
		{"positive: ttl 0 not cached", msg(dns.RcodeSuccess, "a.test. 0 IN A 192.0.2.1"), dns.TypeA, 0},
		{"nxdomain: soa minimum", msg(dns.RcodeNameError, "test. 3600 IN SOA ns.test. a.test. 1 2 3 4 30"), dns.TypeA, 30 * time.Second},
		{"nxdomain: soa ttl", msg(dns.RcodeNameError, "test. 20 IN SOA ns.test. a.test. 1 2 3 4 300"), dns.TypeA, 20 * time.Second},
		{"nxdomain: no soa not cached", msg(dns.RcodeNameError), dns.TypeA, 0},
		{"nodata: soa", msg(dns.RcodeSuccess, "test. 3600 IN SOA ns.test. a.test. 1 2 3 4 45"), dns.TypeAAAA, 45 * time.Second},
		{"nodata after cname", msg(dns.RcodeSuccess, "a.test. 10 IN CNAME b.test.", "test. 3600 IN SOA ns.test. a.test. 1 2 3 4 45"), dns.TypeAAAA, 10 * time.Second},
		{"negative capped", msg(dns.RcodeNameError, "test. 86400 IN SOA ns.test. a.test. 1 2 3 4 86400"), dns.TypeA, maxNegativeTTL},
		{"servfail not cached", msg(dns.RcodeServerFailure), dns.TypeA, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := cacheTTL(tt.m, tt.qtype); got != tt.want {
				t.Errorf("cacheTTL = %v, want %v", got, tt.want)
			}
		})
	}
	truncated := msg(dns.RcodeSuccess, "a.test. 60 IN A 192.0.2.1")
	truncated.Truncated = true
	if got := cacheTTL(truncated, dns.TypeA); got != 0 {
		t.Errorf("truncated answer cached for %v", got)
	}
}

func TestCacheServesAndAges(t *testing.T) {
	up := startUpstream(t)
	r, clock := newTestResolver(t, up, Options{})
	first := ask(r, srcCustom, "allowed.test.", dns.TypeA, false)
	clock.advance(25 * time.Second)
	second := ask(r, srcCustom, "ALLOWED.test.", dns.TypeA, false)
	if n := len(up.asked()); n != 1 {
		t.Fatalf("upstream asked %d times, want 1", n)
	}
	if got := second.Answer[0].Header().Ttl; got != 35 {
		t.Errorf("cached TTL %d, want 60-25 = 35", got)
	}
	if second.Question[0].Name != "ALLOWED.test." {
		t.Errorf("question %q: the client's spelling must be echoed", second.Question[0].Name)
	}
	if first.Answer[0].Header().Ttl != 60 {
		t.Errorf("first answer TTL %d changed by the cache", first.Answer[0].Header().Ttl)
	}
	t.Run("negative answers cached by SOA minimum", func(t *testing.T) {
		ask(r, srcCustom, "nope.allowed.test.", dns.TypeA, false)
		ask(r, srcCustom, "nope.allowed.test.", dns.TypeA, false)
		clock.advance(31 * time.Second)
		got := ask(r, srcCustom, "nope.allowed.test.", dns.TypeA, false)
		if got.Rcode != dns.RcodeNameError {
			t.Errorf("rcode %s", dns.RcodeToString[got.Rcode])
		}
		n := 0
		for _, q := range up.asked() {
			if q == "nope.allowed.test. A" {
				n++
			}
		}
		if n != 2 {
			t.Errorf("upstream asked %d times for the name, want 2 (cached 30 s)", n)
		}
	})
	t.Run("cache shared across sandboxes behind policy", func(t *testing.T) {
		ask(r, srcAllowAll, "evil.test.", dns.TypeA, false)
		got := ask(r, srcCustom, "evil.test.", dns.TypeA, false)
		if got.Rcode != dns.RcodeRefused {
			t.Errorf("custom sandbox got %v for a name cached by another sandbox", got)
		}
	})
	if s := r.Stats(); s.CacheHits < 2 {
		t.Errorf("stats %+v: want cache hits", s)
	}
}

func TestCacheLRU(t *testing.T) {
	c := newAnswerCache(2)
	now := time.Unix(0, 0)
	m := new(dns.Msg)
	keys := []cacheKey{{name: "a"}, {name: "b"}, {name: "c"}}
	c.put(keys[0], m, time.Minute, now)
	c.put(keys[1], m, time.Minute, now)
	c.get(keys[0], now) // a is now most recently used
	c.put(keys[2], m, time.Minute, now)
	var have []string
	for _, k := range keys {
		if _, _, _, ok := c.get(k, now); ok {
			have = append(have, k.name)
		}
	}
	if !slices.Equal(have, []string{"a", "c"}) || c.evictions.Load() != 1 {
		t.Errorf("cache holds %v with %d evictions, want [a c] and 1", have, c.evictions.Load())
	}
	if _, _, _, ok := c.get(keys[0], now.Add(time.Minute)); ok {
		t.Error("expired entry served")
	}
	off := newAnswerCache(0)
	off.put(keys[0], m, time.Minute, now)
	if _, _, _, ok := off.get(keys[0], now); ok {
		t.Error("a cache of size 0 stored an answer")
	}
}

// TestAnswerCacheBytes: large answers are bounded by bytes, not by count:
// the cache holds at most max × cacheBytesPerAnswer wire bytes, however
// many entries that leaves.
func TestAnswerCacheBytes(t *testing.T) {
	c := newAnswerCache(10) // 20 KiB
	now := time.Now()
	big := func(name string) *dns.Msg {
		m := new(dns.Msg).SetQuestion(name, dns.TypeTXT)
		for range 40 {
			m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60},
				Txt: []string{strings.Repeat("x", 200)}})
		}
		return m
	}
	for i := range 10 {
		name := fmt.Sprintf("n%d.test.", i)
		c.put(cacheKey{name: name, qtype: dns.TypeTXT}, big(name), time.Minute, now)
	}
	if c.bytes > c.maxBytes || c.lru.Len() >= 10 {
		t.Fatalf("cache holds %d answers, %d bytes; want at most %d bytes", c.lru.Len(), c.bytes, c.maxBytes)
	}
	c.removeNames(func(string) bool { return true })
	if c.bytes != 0 || c.lru.Len() != 0 {
		t.Fatalf("after removing everything: %d answers, %d bytes", c.lru.Len(), c.bytes)
	}
}
