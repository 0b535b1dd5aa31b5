package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
)

// benchRules is the size of each rule list the benchmarks use: 100,000
// allow_domains and 100,000 CIDRs (half allow, half deny; half IPv4, half
// IPv6).
const benchRules = 100_000

var benchFixture = sync.OnceValue(func() (f struct {
	spec                Spec
	hitNames, missNames []string
	hitAddrs, missAddrs []netip.Addr
	policy              *Policy
}) {
	r := rand.New(rand.NewPCG(7, 7))
	for i := range benchRules {
		if i%2 == 0 {
			f.spec.AllowDomains = append(f.spec.AllowDomains, fmt.Sprintf("api%d.svc%d.example%d.test", i, i%1000, i%97))
		} else {
			f.spec.AllowDomains = append(f.spec.AllowDomains, fmt.Sprintf("*.zone%d.corp%d.test", i, i%13))
		}
	}
	for i := range benchRules {
		var p netip.Prefix
		if i%2 == 0 {
			a := netip.AddrFrom4([4]byte{10 + byte(r.IntN(100)), byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))})
			p, _ = a.Prefix(24 + r.IntN(9))
		} else {
			b := netip.MustParseAddr("2001:db8::").As16()
			b[4], b[5], b[6], b[7] = byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))
			p, _ = netip.AddrFrom16(b).Prefix(48 + r.IntN(17))
		}
		if i%4 < 2 {
			f.spec.AllowCIDRs = append(f.spec.AllowCIDRs, p.String())
		} else {
			f.spec.DenyCIDRs = append(f.spec.DenyCIDRs, p.String())
		}
	}
	f.spec.Mode = ModeCustom
	p, err := Compile(f.spec)
	if err != nil {
		panic(err)
	}
	f.policy = p
	for i := range 4096 {
		j := r.IntN(benchRules)
		if j%2 == 0 {
			f.hitNames = append(f.hitNames, f.spec.AllowDomains[j])
		} else {
			f.hitNames = append(f.hitNames, fmt.Sprintf("a.b.host%d.zone%d.corp%d.test", i, j, j%13))
		}
		f.missNames = append(f.missNames, fmt.Sprintf("www.host%d.zone%d.corp%d.test", i, j, j%13+1))
		pfx := netip.MustParsePrefix(f.spec.AllowCIDRs[r.IntN(len(f.spec.AllowCIDRs))])
		f.hitAddrs = append(f.hitAddrs, pfx.Addr())
		if i%2 == 0 {
			f.missAddrs = append(f.missAddrs, netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}))
		} else {
			f.missAddrs = append(f.missAddrs, netip.AddrFrom16([16]byte{0x3f, 0xff, 15: byte(i)})) // 3fff::/20, outside every rule
		}
	}
	return f
})

func BenchmarkDecideName(b *testing.B) {
	f := benchFixture()
	for _, bc := range []struct {
		name   string
		names  []string
		reason Reason
	}{{"hit", f.hitNames, ReasonAllowDomain}, {"miss", f.missNames, ReasonNoMatch}} {
		b.Run(bc.name, func(b *testing.B) {
			if d := f.policy.DecideName(bc.names[0]); d.Reason != bc.reason {
				b.Fatalf("DecideName(%q) = %s", bc.names[0], d)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				f.policy.DecideName(bc.names[i&4095])
				i++
			}
		})
	}
}

func BenchmarkDecideAddr(b *testing.B) {
	f := benchFixture()
	for _, bc := range []struct {
		name  string
		addrs []netip.Addr
		miss  bool
	}{{"hit", f.hitAddrs, false}, {"miss", f.missAddrs, true}} {
		b.Run(bc.name, func(b *testing.B) {
			if d := f.policy.DecideAddr(bc.addrs[1]); d.NeedsName() != bc.miss {
				b.Fatalf("DecideAddr(%s) = %s", bc.addrs[1], d)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				f.policy.DecideAddr(bc.addrs[i&4095])
				i++
			}
		})
	}
}

func BenchmarkCompile(b *testing.B) {
	spec := benchFixture().spec
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(spec); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBySource(b *testing.B) {
	pol := benchFixture().policy
	sbs := make([]Sandbox, 256)
	for i := range sbs {
		sbs[i] = Sandbox{Name: fmt.Sprint("sb", i), Policy: pol,
			Sources: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 200, byte(i), 0}), 24)}}
	}
	set, err := NewSet(sbs, Guard{})
	if err != nil {
		b.Fatal(err)
	}
	a := netip.MustParseAddr("10.200.77.9")
	b.ReportAllocs()
	for b.Loop() {
		set.BySource(a)
	}
}
