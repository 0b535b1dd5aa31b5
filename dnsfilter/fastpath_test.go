package dnsfilter

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fullAnswer answers b with the fast path off.
func fullAnswer(r *Resolver, src netip.Addr, b []byte, tcp bool) []byte {
	fast := r.fast
	r.fast = nil
	defer func() { r.fast = fast }()
	return r.answerWire(context.Background(), src, b, tcp)
}

// fastOnly answers b from the fast path alone.
func fastOnly(r *Resolver, src netip.Addr, b []byte, tcp bool) ([]byte, bool) {
	return r.fastAnswer(src, b, tcp, nil)
}

func TestFastPathMatchesFullPath(t *testing.T) {
	up := startUpstream(t)
	type variant struct {
		name   string
		src    netip.Addr
		qname  string
		qtype  uint16
		edit   func(m *dns.Msg)
		tcp    bool
		isFast bool // the fast path must answer the repeat
	}
	edns := func(size uint16, do bool) func(m *dns.Msg) { return func(m *dns.Msg) { m.SetEdns0(size, do) } }
	variants := []variant{
		{"plain", srcCustom, "allowed.test.", dns.TypeA, nil, false, true},
		{"other case", srcCustom, "AllOwed.TEST.", dns.TypeA, nil, false, true},
		{"ipv6 source", srcCustom6, "allowed.test.", dns.TypeAAAA, nil, false, true},
		{"edns", srcCustom, "allowed.test.", dns.TypeA, edns(4096, false), false, true},
		{"edns small", srcCustom, "allowed.test.", dns.TypeA, edns(100, false), false, true},
		{"edns do", srcCustom, "allowed.test.", dns.TypeA, edns(1232, true), false, true},
		{"no rd", srcCustom, "allowed.test.", dns.TypeA, func(m *dns.Msg) { m.RecursionDesired = false }, false, true},
		{"ad cd", srcCustom, "allowed.test.", dns.TypeA, func(m *dns.Msg) { m.AuthenticatedData, m.CheckingDisabled = true, true }, false, true},
		{"tcp", srcCustom, "allowed.test.", dns.TypeA, nil, true, true},
		{"dig cookie", srcCustom, "allowed.test.", dns.TypeA, func(m *dns.Msg) {
			m.SetEdns0(1232, false)
			m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
		}, false, true},
		{"client subnet stays full", srcCustom, "allowed.test.", dns.TypeA, func(m *dns.Msg) {
			m.SetEdns0(1232, false)
			m.IsEdns0().Option = append(m.IsEdns0().Option,
				&dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: srcCustom.AsSlice()})
		}, false, false},
		{"cname chain", srcCustom, "www.allowed.test.", dns.TypeA, edns(1232, false), false, true},
		{"edited answer", srcCustom, "private.allowed.test.", dns.TypeA, edns(1232, false), false, true},
		{"ech stripped", srcCustom, "svc.allowed.test.", dns.TypeHTTPS, edns(1232, false), false, true},
		{"nxdomain", srcCustom, "nope.allowed.test.", dns.TypeA, nil, false, true},
		{"allow-all", srcAllowAll, "evil.test.", dns.TypeA, nil, false, true},
		{"denied stays full", srcCustom, "evil.test.", dns.TypeA, nil, false, false},
		{"deny-all stays full", srcDenyAll, "allowed.test.", dns.TypeA, nil, false, false},
		{"unknown stays full", srcUnknown, "allowed.test.", dns.TypeA, nil, false, false},
		{"escaped name stays full", srcCustom, "a\\.b.allowed.test.", dns.TypeA, nil, false, false},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			r, clock := newTestResolver(t, up, Options{BlockPrivateAnswers: true})
			q := new(dns.Msg)
			q.SetQuestion(v.qname, v.qtype)
			if v.edit != nil {
				v.edit(q)
			}
			for step, advance := range []time.Duration{0, 0, 7*time.Second + 500*time.Millisecond, 13 * time.Second} {
				clock.advance(advance)
				q.Id = uint16(1000 + step)
				b, _ := q.Pack()
				if step == 0 { // fill the caches, with the name in lowercase
					fill := q.Copy()
					fill.Question[0].Name = strings.ToLower(fill.Question[0].Name)
					fb, _ := fill.Pack()
					r.answerWire(context.Background(), v.src, fb, v.tcp)
				}
				fast, ok := fastOnly(r, v.src, b, v.tcp)
				if ok != v.isFast {
					t.Fatalf("step %d: fast path answered = %v, want %v", step, ok, v.isFast)
				}
				if full := fullAnswer(r, v.src, b, v.tcp); ok && !bytes.Equal(fast, full) {
					t.Fatalf("step %d: fast and full answers differ\nfast % x\nfull % x", step, fast, full)
				}
			}
		})
	}
}

func TestFastPathRefreshesBindings(t *testing.T) {
	up := startUpstream(t, "long.allowed.test. 3600 IN A 198.51.100.40")
	r, clock := newTestResolver(t, up, Options{MinBindingTTL: 2 * time.Hour})
	q := new(dns.Msg)
	q.SetQuestion("long.allowed.test.", dns.TypeA)
	b, _ := q.Pack()
	r.answerWire(context.Background(), srcCustom, b, false) // t0
	a := netip.MustParseAddr("198.51.100.40")
	for range 5 {
		clock.advance(50 * time.Second)
		if _, ok := fastOnly(r, srcCustom, b, false); !ok {
			t.Fatal("fast path did not answer")
		}
	}
	// The last answer (t0+250 s) binds until t0+250 s+2 h.
	clock.advance(2*time.Hour - 100*time.Second)
	if !r.Bound("custom", "long.allowed.test", a) {
		t.Error("binding not refreshed by fast-path answers")
	}
	clock.advance(200 * time.Second)
	if r.Bound("custom", "long.allowed.test", a) {
		t.Error("binding outlived min_binding_ttl after the last answer")
	}
}

func TestFastPathDroppedOnSwap(t *testing.T) {
	up := startUpstream(t)
	r, _ := newTestResolver(t, up, Options{})
	q := new(dns.Msg)
	q.SetQuestion("www.allowed.test.", dns.TypeA)
	b, _ := q.Pack()
	r.answerWire(context.Background(), srcCustom, b, false)
	narrower := customSpec
	narrower.AllowDomains = []string{"allowed.test"}
	r.SetSandboxes(testSet(t, narrower))
	if out, ok := fastOnly(r, srcCustom, b, false); ok {
		t.Fatalf("fast path answered after the name was denied: % x", out)
	}
	m := new(dns.Msg)
	if err := m.Unpack(r.answerWire(context.Background(), srcCustom, b, false)); err != nil || m.Rcode != dns.RcodeRefused {
		t.Errorf("got %v, %v; want REFUSED", m, err)
	}
}

// TestFastCacheVariantsBounded: a client cycling through EDNS sizes keeps
// at most maxFastVariants entries per name, the newest.
func TestFastCacheVariantsBounded(t *testing.T) {
	c := newFastCache(1000)
	for size := 512; size < 512+3*maxFastVariants; size++ {
		c.put(&fastEntry{name: "a.test.", key: fastKey{qtype: 1, size: size}})
	}
	list := c.byName["a.test."]
	if len(list) != maxFastVariants || c.n != maxFastVariants {
		t.Fatalf("%d variants, count %d; want %d", len(list), c.n, maxFastVariants)
	}
	if last := list[len(list)-1].key.size; last != 512+3*maxFastVariants-1 {
		t.Errorf("newest variant has size %d", last)
	}
}
