package policy

import (
	"net/netip"
	"testing"
)

// The data path calls these for every flow: they must not allocate.
func TestNoAllocs(t *testing.T) {
	p := mustCompile(t, testSpec)
	all := mustCompile(t, Spec{Mode: ModeAllowAll, DenyCIDRs: testSpec.DenyCIDRs})
	set := func() *Set {
		s, err := NewSet([]Sandbox{{Name: "sb1", Sources: pfxs("10.231.0.0/24", "fd00:231::/64"), Policy: p}}, Guard{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}()
	// Parsed outside the measured calls.
	var (
		ip0  = netip.MustParseAddr("198.51.100.10")
		ip1  = netip.MustParseAddr("198.51.100.66")
		ip2  = netip.MustParseAddr("198.51.100.200")
		ip3  = netip.MustParseAddr("::ffff:198.51.100.10")
		ip4  = netip.MustParseAddr("2001:db8:1:66::1")
		ip5  = netip.MustParseAddr("2001:db8:9::1")
		ip6  = netip.MustParseAddr("192.0.2.1")
		ip7  = netip.MustParseAddr("10.231.0.7")
		ip8  = netip.MustParseAddr("fd00:231::7")
		ip9  = netip.MustParseAddr("::ffff:10.231.0.7")
		ip10 = netip.MustParseAddr("10.232.0.7")
	)
	var sink Decision
	var okSink bool
	tests := []struct {
		name string
		fn   func()
	}{
		{"DecideAddr v4 allow", func() { sink = p.DecideAddr(ip0) }},
		{"DecideAddr v4 deny", func() { sink = p.DecideAddr(ip1) }},
		{"DecideAddr v4 miss", func() { sink = p.DecideAddr(ip2) }},
		{"DecideAddr mapped", func() { sink = p.DecideAddr(ip3) }},
		{"DecideAddr v6 hit", func() { sink = p.DecideAddr(ip4) }},
		{"DecideAddr v6 miss", func() { sink = p.DecideAddr(ip5) }},
		{"DecideAddr allow-all", func() { sink = all.DecideAddr(ip6) }},
		{"DecideName exact", func() { sink = p.DecideName("allowed.test") }},
		{"DecideName exact trailing dot", func() { sink = p.DecideName("allowed.test.") }},
		{"DecideName wildcard", func() { sink = p.DecideName("a.b.c.wild.test") }},
		{"DecideName miss", func() { sink = p.DecideName("x.y.evil.test") }},
		{"DecideName invalid", func() { sink = p.DecideName("a b.test") }},
		{"DecideName IP literal", func() { sink = p.DecideName("198.51.100.1") }},
		{"DecideName IPv6 literal", func() { sink = p.DecideName("[2001:db8::1]") }},
		{"DecideName empty", func() { sink = p.DecideName("") }},
		{"DecideName allow-all", func() { sink = all.DecideName("evil.test") }},
		{"DeniedAddr", func() { _, okSink = p.DeniedAddr(ip1) }},
		{"BySource v4", func() { _, okSink = set.BySource(ip7) }},
		{"BySource v6", func() { _, okSink = set.BySource(ip8) }},
		{"BySource mapped", func() { _, okSink = set.BySource(ip9) }},
		{"BySource miss", func() { _, okSink = set.BySource(ip10) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(200, tt.fn); n != 0 {
				t.Fatalf("%v allocs per call, want 0", n)
			}
		})
	}
	_, _ = sink, okSink
}

// A name holding capitals costs its lowercase copy, nothing more.
func TestMixedCaseNameAllocs(t *testing.T) {
	p := mustCompile(t, testSpec)
	if n := testing.AllocsPerRun(200, func() { p.DecideName("A.Wild.Test") }); n > 1 {
		t.Fatalf("%v allocs per call, want at most 1", n)
	}
}
