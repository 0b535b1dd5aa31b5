package iptables

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/netnstest"
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

// BenchmarkKernelChange is one sandbox's change among n through the
// kernel (the new ruleset, its difference, the netlink batch and the
// kernel's transaction), in a namespace of its own: removing it (µs-del),
// adding it back (µs-add), and replacing its allow_cidrs (µs-put). Needs
// root.
func BenchmarkKernelChange(b *testing.B) {
	for _, n := range []int{100, 1000, 3000} {
		for _, shape := range []string{"exact", "range"} {
			b.Run(fmt.Sprintf("N=%d/%s", n, shape), func(b *testing.B) {
				sbs := scaleSandboxes(n)
				if shape == "exact" { // the scale benchmark's: two /32 in allow_cidrs, no deny_cidrs
					for i := range sbs {
						sbs[i].AllowCIDRs, sbs[i].DenyCIDRs = prefixes("198.51.100.77/32", "203.0.113.7/32"), nil
					}
				}
				benchKernelChange(b, sbs)
			})
		}
	}
}

func benchKernelChange(b *testing.B, sbs []Sandbox) {
	netnstest.RequireRoot(b)
	ns := netnstest.NewNamespace(b)
	in := Installer{Run: InNetns(ns), NetNS: ns}
	k := NewKernel(in)
	host := Host{ProtectHost: true, IsolateSandboxes: true}
	n := len(sbs)
	ctx := context.Background()
	b.Cleanup(func() { in.Cleanup(context.Background()) })
	var err error
	err = netnstest.Do(ns, func() error { return k.Apply(ctx, sbs, ports, host) })
	if err != nil {
		b.Fatal(err)
	}
	without := slices.Delete(slices.Clone(sbs), n/2, n/2+1)
	changed := slices.Clone(sbs)
	changed[n/2].AllowCIDRs = prefixes("203.0.113.9/32", "203.0.113.10/32")
	var del, add, put time.Duration
	for b.Loop() {
		err = netnstest.Do(ns, func() error {
			t0 := time.Now()
			err = k.Apply(ctx, without, ports, host)
			t1 := time.Now()
			if err == nil {
				err = k.Apply(ctx, sbs, ports, host)
			}
			t2 := time.Now()
			if err == nil {
				err = k.Apply(ctx, changed, ports, host)
			}
			t3 := time.Now()
			if err == nil {
				err = k.Apply(ctx, sbs, ports, host)
			}
			del += t1.Sub(t0)
			add += t2.Sub(t1)
			put += t3.Sub(t2)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(del.Microseconds())/float64(b.N), "µs-del")
	b.ReportMetric(float64(add.Microseconds())/float64(b.N), "µs-add")
	b.ReportMetric(float64(put.Microseconds())/float64(b.N), "µs-put")
}
