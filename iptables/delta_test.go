package iptables

import (
	"context"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestKernelDeltaEqualsFullLoad changes sandboxes one at a time through a
// Kernel (element deltas over netlink) and checks after each step that the
// kernel holds exactly what a full load of the same ruleset gives.
func TestKernelDeltaEqualsFullLoad(t *testing.T) {
	ns, in := kernelNamespace(t)
	refNS, ref := kernelNamespace(t)
	host := Host{Guarded: []string{"veth-old", "tap*"}, ProtectHost: true, IsolateSandboxes: true}
	a := Sandbox{Name: "a", Interface: "veth-a", Mode: ModeCustom, Sources: prefixes("10.231.0.2/32", "fd00:231::2/128"),
		AllowCIDRs: prefixes("198.51.100.0/24", "10.231.1.2/32", "2001:db8::/48"), DenyCIDRs: prefixes("198.51.100.128/25")}
	b := Sandbox{Name: "b", Interface: "veth-b", Mode: ModeAllowAll, Sources: prefixes("10.231.1.2/32"),
		DenyCIDRs: prefixes("203.0.113.0/24")}
	c := Sandbox{Name: "c", Interface: "veth-c", Mode: ModeDenyAll, Sources: prefixes("10.231.2.0/24")}
	// d shares c's interface (a bridge of many sandboxes): removing d must
	// leave veth-c claimed and in ports, removing c too must guard it.
	d := Sandbox{Name: "d", Interface: "veth-c", Mode: ModeCustom, Sources: prefixes("10.231.3.2/32"),
		AllowCIDRs: prefixes("198.51.100.7/32")}
	aLocked := a
	aLocked.Mode, aLocked.AllowCIDRs = ModeCustom, prefixes("198.51.100.7/32")
	aPorts := aLocked
	aPorts.AllowPorts = []PortRule{{Prefix: netip.MustParsePrefix("203.0.113.0/24"), Proto: 17, Lo: 53, Hi: 53},
		{Prefix: netip.MustParsePrefix("203.0.113.8/29"), Proto: 17, Lo: 1, Hi: 100},
		{Prefix: netip.MustParsePrefix("2001:db8::/32"), Proto: 58, Lo: 0, Hi: 65535}}
	aPorts.DenyPorts = []PortRule{{Prefix: netip.MustParsePrefix("198.51.100.7/32"), Proto: 17, Lo: 8000, Hi: 8100}}
	steps := []struct {
		name string
		sbs  []Sandbox
		host Host
	}{
		{"start", []Sandbox{a}, host},
		{"add b", []Sandbox{a, b}, host},
		{"add c", []Sandbox{a, b, c}, host},
		{"lock a down", []Sandbox{aLocked, b, c}, host},
		{"ports for a", []Sandbox{aPorts, b, c}, host},
		{"no ports for a", []Sandbox{aLocked, b, c}, host},
		{"b to deny-all", []Sandbox{aLocked, func() Sandbox { x := b; x.Mode, x.DenyCIDRs = ModeDenyAll, nil; return x }(), c}, host},
		{"remove b", []Sandbox{aLocked, c}, host},
		{"add d on c's interface", []Sandbox{aLocked, c, d}, host},
		{"remove d, c keeps the interface", []Sandbox{aLocked, c}, host},
		{"add d back", []Sandbox{aLocked, c, d}, host},
		{"remove c and d: interface guarded", []Sandbox{aLocked}, Host{Guarded: []string{"veth-old", "veth-c", "tap*"}, ProtectHost: true, IsolateSandboxes: true}},
		{"c back", []Sandbox{aLocked, c}, Host{Guarded: []string{"veth-old", "veth-c", "tap*"}, ProtectHost: true, IsolateSandboxes: true}},
		{"guard another name", []Sandbox{aLocked, c}, Host{Guarded: []string{"veth-old", "veth-b", "tap*"}, ProtectHost: true, IsolateSandboxes: true}},
		{"new pattern: full load", []Sandbox{aLocked, c}, Host{Guarded: []string{"veth-b", "veth*"}, ProtectHost: true, IsolateSandboxes: true}},
		{"remove all", nil, Host{Guarded: []string{"veth-b", "veth*"}, ProtectHost: true, IsolateSandboxes: true}},
	}
	k := NewKernel(in)
	ctx := context.Background()
	for _, st := range steps {
		if err := k.Apply(ctx, st.sbs, ports, st.host); err != nil {
			t.Fatalf("%s: Apply: %v", st.name, err)
		}
		rs, err := NewRuleset(st.sbs, ports, st.host)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if err := ref.applyRuleset(ctx, rs); err != nil {
			t.Fatalf("%s: full load: %v", st.name, err)
		}
		if got, want := listing(t, ns), listing(t, refNS); got != want {
			t.Fatalf("%s: delta result differs from a full load:\n%s\n--- full load:\n%s", st.name, got, want)
		}
	}
}

var (
	volatile = regexp.MustCompile(`\n\s*elements = \{ ipv4 timeout[^}]*\}| expires \S+|counter packets \d+ bytes \d+`)
	elemList = regexp.MustCompile(`elements = \{([^}]*)\}`)
)

// listing is both tables of ns, without what changes by itself, with the
// elements of each set sorted (the kernel lists them in insertion order).
func listing(t *testing.T, ns string) string {
	t.Helper()
	s := volatile.ReplaceAllString(inNS(t, ns, "nft", "list", "table", "inet", Table)+
		inNS(t, ns, "nft", "list", "table", "bridge", Table), "")
	return elemList.ReplaceAllStringFunc(s, func(m string) string {
		inner := elemList.FindStringSubmatch(m)[1]
		var els []string
		for _, e := range strings.Split(inner, ",") {
			els = append(els, strings.TrimSpace(e))
		}
		slices.Sort(els)
		return "elements = { " + strings.Join(els, ", ") + " }"
	})
}
