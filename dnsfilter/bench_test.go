package dnsfilter

import (
	"context"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// BenchmarkAnswerWireCached is the resolver's per-query cost for a cached
// allowed name, bytes in to bytes out: parse, policy, cache, shape, bind,
// pack. The socket round trip is measured by bench/dns.
func BenchmarkAnswerWireCached(b *testing.B) {
	up := startUpstream(b)
	r, _ := newTestResolver(b, up, Options{BlockPrivateAnswers: true})
	queries := make([][]byte, 100)
	for i := range queries {
		name := "n" + strconv.Itoa(i) + ".allowed.test."
		up.set(func(u *fakeUpstream) {
			u.zone = append(u.zone, mustRR(b, name+" 3600 IN A 198.51.100."+strconv.Itoa(i+1)))
		})
		q := new(dns.Msg)
		q.SetQuestion(name, dns.TypeA)
		q.SetEdns0(1232, false)
		queries[i], _ = q.Pack()
		if r.answerWire(context.Background(), srcCustom, queries[i], false) == nil {
			b.Fatal("no answer")
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if r.answerWire(context.Background(), srcCustom, queries[i%len(queries)], false) == nil {
				b.Fatal("no answer")
			}
			i++
		}
	})
}

// BenchmarkBound is the proxy's lookup of a binding.
func BenchmarkBound(b *testing.B) {
	bs := newBindings(DefaultMaxBindingsPerSandbox, nil)
	now := time.Unix(1_700_000_000, 0)
	a := netip.MustParseAddr("198.51.100.10")
	bs.add(nil, "sb", "allowed.test", []boundAddr{{addr: a, expires: now.Add(DefaultMinBindingTTL)}}, now)
	b.ReportAllocs()
	for b.Loop() {
		if !bs.bound("sb", "allowed.test", a, now) {
			b.Fatal("not bound")
		}
	}
}
