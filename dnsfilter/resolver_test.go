package dnsfilter

import (
	"context"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func TestModes(t *testing.T) {
	up := startUpstream(t)
	r, _ := newTestResolver(t, up, Options{BlockPrivateAnswers: true})
	tests := []struct {
		name      string
		src       netip.Addr
		qname     string
		qtype     uint16
		wantNil   bool // no answer at all
		wantRcode int
		wantAddrs []string
		wantEDE   int
	}{
		{name: "custom allowed exact", src: srcCustom, qname: "allowed.test.", qtype: dns.TypeA, wantAddrs: []string{"198.51.100.10"}, wantEDE: -1},
		{name: "custom allowed ipv6 source", src: srcCustom6, qname: "allowed.test.", qtype: dns.TypeAAAA, wantAddrs: []string{"2001:db8::10"}, wantEDE: -1},
		{name: "custom allowed wildcard through cname", src: srcCustom, qname: "www.allowed.test.", qtype: dns.TypeA, wantAddrs: []string{"198.51.100.20", "198.51.100.21"}, wantEDE: -1},
		{name: "custom case-insensitive", src: srcCustom, qname: "ALLOWED.Test.", qtype: dns.TypeA, wantAddrs: []string{"198.51.100.10"}, wantEDE: -1},
		{name: "custom nxdomain passed on", src: srcCustom, qname: "nope.allowed.test.", qtype: dns.TypeA, wantRcode: dns.RcodeNameError, wantEDE: -1},
		{name: "custom denied name refused", src: srcCustom, qname: "evil.test.", qtype: dns.TypeA, wantRcode: dns.RcodeRefused, wantEDE: int(dns.ExtendedErrorCodeProhibited)},
		{name: "custom label aligned", src: srcCustom, qname: "evilallowed.test.", qtype: dns.TypeA, wantRcode: dns.RcodeRefused, wantEDE: int(dns.ExtendedErrorCodeProhibited)},
		{name: "custom root refused", src: srcCustom, qname: ".", qtype: dns.TypeNS, wantRcode: dns.RcodeRefused, wantEDE: int(dns.ExtendedErrorCodeProhibited)},
		{name: "custom invalid name refused", src: srcCustom, qname: "a\\000b.allowed.test.", qtype: dns.TypeA, wantRcode: dns.RcodeRefused, wantEDE: int(dns.ExtendedErrorCodeProhibited)},
		{name: "allow-all forwards anything", src: srcAllowAll, qname: "evil.test.", qtype: dns.TypeA, wantAddrs: []string{"198.51.100.66"}, wantEDE: -1},
		{name: "allow-all invalid name refused", src: srcAllowAll, qname: "a b.test.", qtype: dns.TypeA, wantRcode: dns.RcodeRefused, wantEDE: int(dns.ExtendedErrorCodeProhibited)},
		{name: "deny-all gets nothing", src: srcDenyAll, qname: "allowed.test.", qtype: dns.TypeA, wantNil: true},
		{name: "unknown source gets nothing", src: srcUnknown, qname: "allowed.test.", qtype: dns.TypeA, wantNil: true},
		{name: "mapped source is the ipv4 sandbox", src: netip.MustParseAddr("::ffff:10.231.0.2"), qname: "allowed.test.", qtype: dns.TypeA, wantAddrs: []string{"198.51.100.10"}, wantEDE: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ask(r, tt.src, tt.qname, tt.qtype, true)
			if tt.wantNil {
				if got != nil {
					t.Fatalf("got an answer, want none:\n%v", got)
				}
				return
			}
			if got == nil {
				t.Fatal("no answer")
			}
			if got.Rcode != tt.wantRcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[got.Rcode], dns.RcodeToString[tt.wantRcode])
			}
			if addrs := answerAddrs(got); !slices.Equal(addrs, tt.wantAddrs) {
				t.Errorf("addresses %v, want %v", addrs, tt.wantAddrs)
			}
			if e := ede(got); e != tt.wantEDE {
				t.Errorf("EDE %d, want %d", e, tt.wantEDE)
			}
			if !got.Response || got.Question[0].Name != tt.qname {
				t.Errorf("reply header/question wrong: %v", got)
			}
		})
	}
}

func TestDeniedNeverReachesUpstream(t *testing.T) {
	up := startUpstream(t)
	r, _ := newTestResolver(t, up, Options{})
	denied := []struct {
		src   netip.Addr
		name  string
		qtype uint16
	}{
		{srcCustom, "evil.test.", dns.TypeA},
		{srcCustom, "secret-data-1234.exfil.test.", dns.TypeTXT},
		{srcCustom, "allowed.test.evil.test.", dns.TypeA},
		{srcCustom, "allowed.test.", dns.TypeANY},
		{srcCustom, "allowed.test.", dns.TypeNULL},
		{srcCustom, "allowed.test.", dns.TypeAXFR},
		{srcCustom, "allowed.test.", dns.TypeIXFR},
		{srcAllowAll, "evil.test.", dns.TypeANY},
		{srcDenyAll, "allowed.test.", dns.TypeA},
		{srcUnknown, "allowed.test.", dns.TypeA},
	}
	for _, d := range denied {
		ask(r, d.src, d.name, d.qtype, false)
	}
	if got := up.asked(); len(got) != 0 {
		t.Fatalf("upstream saw %q", got)
	}
	ask(r, srcCustom, "allowed.test.", dns.TypeA, false) // the recorder works
	if got := up.asked(); !slices.Equal(got, []string{"allowed.test. A"}) {
		t.Fatalf("upstream saw %q, want the allowed question", got)
	}
}

func TestRefusedRequests(t *testing.T) {
	up := startUpstream(t)
	r, _ := newTestResolver(t, up, Options{})
	mk := func(edit func(m *dns.Msg)) *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion("allowed.test.", dns.TypeA)
		edit(m)
		return m
	}
	tests := []struct {
		name      string
		req       *dns.Msg
		wantRcode int // -1: no answer
	}{
		{"type ANY", mk(func(m *dns.Msg) { m.Question[0].Qtype = dns.TypeANY }), dns.RcodeRefused},
		{"type NULL", mk(func(m *dns.Msg) { m.Question[0].Qtype = dns.TypeNULL }), dns.RcodeRefused},
		{"type AXFR", mk(func(m *dns.Msg) { m.Question[0].Qtype = dns.TypeAXFR }), dns.RcodeRefused},
		{"type IXFR", mk(func(m *dns.Msg) { m.Question[0].Qtype = dns.TypeIXFR }), dns.RcodeRefused},
		{"class CH", mk(func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS }), dns.RcodeRefused},
		{"opcode update", mk(func(m *dns.Msg) { m.Opcode = dns.OpcodeUpdate }), dns.RcodeNotImplemented},
		{"two questions", mk(func(m *dns.Msg) { m.Question = append(m.Question, m.Question[0]) }), dns.RcodeFormatError},
		{"no question", mk(func(m *dns.Msg) { m.Question = nil }), dns.RcodeFormatError},
		{"edns version 1", mk(func(m *dns.Msg) { m.SetEdns0(1232, false); m.IsEdns0().SetVersion(1) }), dns.RcodeBadVers},
		{"a response", mk(func(m *dns.Msg) { m.Response = true }), -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := r.Query(context.Background(), srcCustom, tt.req)
			if tt.wantRcode < 0 {
				if got != nil {
					t.Fatalf("got an answer, want none: %v", got)
				}
				return
			}
			if got == nil || got.Rcode != tt.wantRcode {
				t.Fatalf("got %v, want rcode %s", got, dns.RcodeToString[tt.wantRcode])
			}
			if _, err := got.Pack(); err != nil {
				t.Errorf("reply does not pack: %v", err)
			}
		})
	}
	if got := up.asked(); len(got) != 0 {
		t.Errorf("upstream saw %q", got)
	}
}

func TestUpstreamFailureIsServfail(t *testing.T) {
	up := startUpstream(t)
	up.set(func(u *fakeUpstream) { u.rcode = dns.RcodeServerFailure })
	r, _ := newTestResolver(t, up, Options{})
	got := ask(r, srcCustom, "allowed.test.", dns.TypeA, true)
	if got == nil || got.Rcode != dns.RcodeServerFailure || ede(got) != int(dns.ExtendedErrorCodeNoReachableAuthority) {
		t.Fatalf("got %v, want SERVFAIL with EDE 22", got)
	}
	if s := r.Stats(); s.UpstreamErrors != 1 {
		t.Errorf("stats %+v, want 1 upstream error", s)
	}
}

func TestEDNS(t *testing.T) {
	up := startUpstream(t)
	r, _ := newTestResolver(t, up, Options{})
	t.Run("client without edns gets none", func(t *testing.T) {
		got := ask(r, srcCustom, "allowed.test.", dns.TypeA, false)
		if got.IsEdns0() != nil {
			t.Errorf("reply has OPT: %v", got)
		}
	})
	t.Run("client with edns and DO", func(t *testing.T) {
		q := new(dns.Msg)
		q.SetQuestion("allowed.test.", dns.TypeAAAA)
		q.SetEdns0(4096, true)
		q.IsEdns0().Option = append(q.IsEdns0().Option,
			&dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: srcCustom.AsSlice()})
		got := r.Query(context.Background(), srcCustom, q)
		opt := got.IsEdns0()
		if opt == nil || !opt.Do() || opt.UDPSize() != upstreamUDPSize {
			t.Errorf("reply OPT %v, want DO and size %d", opt, upstreamUDPSize)
		}
		up.mu.Lock()
		defer up.mu.Unlock()
		for _, uq := range up.queries {
			if uq.Question[0].Qtype != dns.TypeAAAA {
				continue
			}
			uopt := uq.IsEdns0()
			if uopt == nil || !uopt.Do() || len(uopt.Option) != 0 {
				t.Errorf("upstream query OPT %v: want DO and no client options", uopt)
			}
		}
	})
}

func TestTruncation(t *testing.T) {
	var zone []string
	for i := range 250 {
		zone = append(zone, "many.allowed.test. 60 IN A 203.0.113."+strconv.Itoa(i+1))
	}
	up := startUpstream(t, zone...)
	r, _ := newTestResolver(t, up, Options{})
	q := new(dns.Msg)
	q.SetQuestion("many.allowed.test.", dns.TypeA)
	b, _ := q.Pack()
	udp := r.answerWire(context.Background(), srcCustom, b, false)
	m := new(dns.Msg)
	if err := m.Unpack(udp); err != nil || !m.Truncated || len(udp) > dns.MinMsgSize {
		t.Fatalf("udp reply %d bytes, truncated=%v, err %v: want TC within 512 bytes", len(udp), m.Truncated, err)
	}
	tcp := r.answerWire(context.Background(), srcCustom, b, true)
	if err := m.Unpack(tcp); err != nil || m.Truncated || len(m.Answer) != 250 {
		t.Fatalf("tcp reply: truncated=%v, %d answers, err %v: want all 250", m.Truncated, len(m.Answer), err)
	}
	// The upstream answer needed TCP too (over 1232 bytes): all 250 are bound.
	for i := range 250 {
		a := netip.AddrFrom4([4]byte{203, 0, 113, byte(i + 1)})
		if !r.Bound("custom", "many.allowed.test", a) {
			t.Fatalf("%s not bound", a)
		}
	}
	if !strings.Contains(strings.Join(up.asked(), ","), "many.allowed.test. A") {
		t.Errorf("upstream not asked: %q", up.asked())
	}
}
