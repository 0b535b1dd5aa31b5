package iptables

import (
	"fmt"
	"net/netip"
	"testing"
)

// scaleSandboxes are n sandboxes of the scale benchmark's shape: one /32
// source each, 5 domains (not the kernel's business) and 2 CIDRs.
func scaleSandboxes(n int) []Sandbox {
	sbs := make([]Sandbox, n)
	for i := range sbs {
		src := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		sbs[i] = Sandbox{Name: fmt.Sprintf("sb%d", i), Interface: fmt.Sprintf("veth%d", i), Mode: ModeCustom,
			Sources:    []netip.Prefix{netip.PrefixFrom(src, 32)},
			AllowCIDRs: prefixes("198.51.100.77/32"), DenyCIDRs: prefixes("198.51.100.128/25")}
	}
	return sbs
}

// BenchmarkChangeOne is the userspace part of one sandbox's change among
// 1,000: the new ruleset and its difference from the installed one.
func BenchmarkChangeOne(b *testing.B) {
	sbs := scaleSandboxes(1000)
	host := Host{ProtectHost: true, IsolateSandboxes: true}
	cur, err := NewRuleset(sbs, ports, host)
	if err != nil {
		b.Fatal(err)
	}
	sbs[500].Mode = ModeDenyAll
	for b.Loop() {
		next, _ := cur.Next(sbs, ports, host)
		gone, added := diffRulesets(cur, next)
		if len(gone) == 0 || len(added) == 0 {
			b.Fatal("no change")
		}
	}
}
