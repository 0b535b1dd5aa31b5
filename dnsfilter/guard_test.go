package dnsfilter

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func TestRebindingGuard(t *testing.T) {
	up := startUpstream(t)
	tests := []struct {
		name         string
		blockPrivate bool
		src          netip.Addr
		qname        string
		qtype        uint16
		want         []string
		wantEdited   bool
	}{
		{"deny_cidrs stripped", true, srcCustom, "inside-deny.allowed.test.", dns.TypeA, []string{"198.51.100.11"}, true},
		{"deny_cidrs stripped without block_private", false, srcCustom, "inside-deny.allowed.test.", dns.TypeA, []string{"198.51.100.11"}, true},
		{"deny_cidrs stripped in allow-all", true, srcAllowAll, "inside-deny.allowed.test.", dns.TypeA, []string{"198.51.100.11"}, true},
		{"private stripped", true, srcCustom, "private.allowed.test.", dns.TypeA, []string{"198.51.100.12"}, true},
		{"metadata stripped", true, srcCustom, "meta.allowed.test.", dns.TypeA, nil, true},
		{"ula stripped", true, srcCustom, "ula.allowed.test.", dns.TypeAAAA, nil, true},
		{"cgnat stripped", true, srcCustom, "cgnat.allowed.test.", dns.TypeA, nil, true},
		{"nat64 of private stripped", true, srcCustom, "nat64.allowed.test.", dns.TypeAAAA, nil, true},
		{"private in allow_cidrs kept", true, srcCustom, "allowcidr.allowed.test.", dns.TypeA, []string{"10.9.0.1"}, false},
		{"private kept without block_private", false, srcCustom, "private.allowed.test.", dns.TypeA, []string{"10.1.2.3", "198.51.100.12"}, false},
		{"private kept in allow-all", true, srcAllowAll, "private.allowed.test.", dns.TypeA, []string{"10.1.2.3", "198.51.100.12"}, false},
		{"public untouched", true, srcCustom, "allowed.test.", dns.TypeA, []string{"198.51.100.10"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newTestResolver(t, up, Options{BlockPrivateAnswers: tt.blockPrivate})
			got := ask(r, tt.src, tt.qname, tt.qtype, true)
			if addrs := answerAddrs(got); !slices.Equal(addrs, tt.want) {
				t.Errorf("answer %v, want %v", addrs, tt.want)
			}
			if edited := ede(got) == int(dns.ExtendedErrorCodeFiltered); edited != tt.wantEdited {
				t.Errorf("EDE Filtered present = %v, want %v", edited, tt.wantEdited)
			}
			sb := "custom"
			if tt.src == srcAllowAll {
				sb = "open"
			}
			for _, s := range []string{"198.51.100.130", "10.1.2.3", "169.254.169.254"} {
				if slices.Contains(tt.want, s) {
					continue
				}
				if r.Bound(sb, strings.TrimSuffix(tt.qname, "."), netip.MustParseAddr(s)) {
					t.Errorf("stripped %s is bound", s)
				}
			}
		})
	}
}

// TestOutOfChainRecords: records about names outside the question's CNAME
// chain are removed and never bound; no address leaves in the authority or
// additional section, not even one for an allowed name.
func TestOutOfChainRecords(t *testing.T) {
	m := new(dns.Msg)
	m.SetQuestion("a.allowed.test.", dns.TypeA)
	for _, s := range []string{
		"a.allowed.test. 60 IN CNAME b.cdn.test.",
		"b.cdn.test. 60 IN A 198.51.100.5",
		"bank.test. 60 IN A 198.51.100.6",
		"B.CDN.TEST. 60 IN A 198.51.100.7",
	} {
		m.Answer = append(m.Answer, mustRR(t, s))
	}
	m.Extra = append(m.Extra, mustRR(t, "ns.test. 60 IN A 10.0.0.1"), mustRR(t, "allowed.test. 60 IN A 198.51.100.8"))
	m.Ns = append(m.Ns, mustRR(t, "allowed.test. 60 IN NS ns.test."), mustRR(t, "allowed.test. 60 IN A 198.51.100.9"))
	r, _ := newTestResolver(t, nil, Options{})
	set := r.sandboxes.Load()
	sb, _ := set.ByName("custom")
	d := sb.Policy.DecideName("a.allowed.test")
	s := shape(m, "a.allowed.test.", newGuard(set, sb, d, true))
	if got := answerAddrs(m); !slices.Equal(got, []string{"198.51.100.5", "198.51.100.7"}) {
		t.Errorf("answer %v, want the chain's addresses only", got)
	}
	if len(m.Extra) != 0 {
		t.Errorf("additional %v, want it empty: no address outside the answer's chain", m.Extra)
	}
	if len(m.Ns) != 1 || m.Ns[0].Header().Rrtype != dns.TypeNS {
		t.Errorf("authority %v, want its NS record only", m.Ns)
	}
	if !s.changed || len(s.addrs) != 2 {
		t.Errorf("shaped %+v, want 2 addresses and changed", s)
	}
}

func TestECHStripped(t *testing.T) {
	up := startUpstream(t)
	r, _ := newTestResolver(t, up, Options{BlockPrivateAnswers: true})
	t.Run("ech and private hint removed", func(t *testing.T) {
		got := ask(r, srcCustom, "svc.allowed.test.", dns.TypeHTTPS, true)
		if len(got.Answer) != 1 {
			t.Fatalf("answer %v", got.Answer)
		}
		s := got.Answer[0].String()
		if strings.Contains(s, "ech=") || strings.Contains(s, "10.0.0.1") || !strings.Contains(s, "alpn=\"h2\"") ||
			!strings.Contains(s, "ipv4hint=\"198.51.100.10\"") {
			t.Errorf("record %s: want alpn and the public hint, no ech", s)
		}
		if ede(got) != int(dns.ExtendedErrorCodeFiltered) {
			t.Errorf("no EDE Filtered")
		}
		if !r.Bound("custom", "svc.allowed.test", netip.MustParseAddr("198.51.100.10")) {
			t.Error("hint address not bound")
		}
		if _, err := got.Pack(); err != nil {
			t.Errorf("does not pack: %v", err)
		}
	})
	t.Run("ech removed from mandatory", func(t *testing.T) {
		got := ask(r, srcCustom, "svc2.allowed.test.", dns.TypeHTTPS, true)
		s := got.Answer[0].String()
		if strings.Contains(s, "ech") || !strings.Contains(s, "mandatory=\"alpn\"") {
			t.Errorf("record %s: want mandatory=alpn and no ech", s)
		}
	})
	t.Run("svcb type too", func(t *testing.T) {
		m := new(dns.Msg)
		m.Answer = []dns.RR{mustRR(t, "_dns.allowed.test. 60 IN SVCB 1 dns.allowed.test. alpn=dot ech=ZWNo")}
		set := r.sandboxes.Load()
		sb, _ := set.ByName("custom")
		shape(m, "_dns.allowed.test.", newGuard(set, sb, sb.Policy.DecideName("_dns.allowed.test"), true))
		if s := m.Answer[0].String(); strings.Contains(s, "ech") {
			t.Errorf("record %s still has ech", s)
		}
	})
}
