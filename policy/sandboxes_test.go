package policy

import (
	"net/netip"
	"strings"
	"testing"
)

func pfxs(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func testSet(t *testing.T) *Set {
	t.Helper()
	p := mustCompile(t, Spec{Mode: ModeDenyAll})
	s, err := NewSet([]Sandbox{
		{Name: "sb1", Interface: "veth-sb1", Sources: pfxs("10.231.0.2/32", "fd00:231::2/128"), Policy: p},
		{Name: "sb2", Interface: "veth-sb2", Sources: pfxs("10.232.0.0/24", "::ffff:10.233.0.0/120"), Policy: p},
	}, Guard{})
	if err != nil {
		t.Fatalf("NewSet: %v", err)
	}
	return s
}

func TestSetLookups(t *testing.T) {
	s := testSet(t)
	tests := []struct {
		name, src, want string
	}{
		{"v4 host", "10.231.0.2", "sb1"},
		{"v6 host", "fd00:231::2", "sb1"},
		{"mapped source", "::ffff:10.231.0.2", "sb1"},
		{"v4 subnet", "10.232.0.77", "sb2"},
		{"mapped prefix stored as v4", "10.233.0.9", "sb2"},
		{"neighbour", "10.231.0.3", ""},
		{"other family", "fd00:231::3", ""},
		{"invalid", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a netip.Addr
			if tt.src != "" {
				a = netip.MustParseAddr(tt.src)
			}
			sb, ok := s.BySource(a)
			if ok != (tt.want != "") || (ok && sb.Name != tt.want) {
				t.Fatalf("BySource(%s) = %v, %v; want %q", tt.src, sb, ok, tt.want)
			}
		})
	}
	if sb, ok := s.ByName("sb2"); !ok || sb.Interface != "veth-sb2" {
		t.Fatalf("ByName(sb2) = %v, %v", sb, ok)
	}
	if _, ok := s.ByName("sb3"); ok {
		t.Fatal("ByName(sb3) found something")
	}
	all := s.All()
	if len(all) != 2 || all[0].Name != "sb1" || all[1].Name != "sb2" {
		t.Fatalf("All() = %v", all)
	}
	all[0] = nil
	if s.All()[0] == nil {
		t.Fatal("All() shares its slice")
	}
	if got := all[1].Sources[1]; got != netip.MustParsePrefix("10.233.0.0/24") {
		t.Fatalf("mapped source kept as %s", got)
	}
	var nilSet *Set
	if _, ok := nilSet.BySource(netip.MustParseAddr("10.231.0.2")); ok {
		t.Fatal("nil Set found a sandbox")
	}
}

func TestNewSetErrors(t *testing.T) {
	p := mustCompile(t, Spec{Mode: ModeDenyAll})
	tests := []struct {
		name string
		sbs  []Sandbox
		want string
	}{
		{"duplicate name", []Sandbox{
			{Name: "sb1", Sources: pfxs("10.0.0.1/32"), Policy: p},
			{Name: "sb1", Sources: pfxs("10.0.0.2/32"), Policy: p},
		}, `sandbox name "sb1" used twice`},
		{"same source", []Sandbox{
			{Name: "sb1", Sources: pfxs("10.0.0.1/32"), Policy: p},
			{Name: "sb2", Sources: pfxs("10.0.0.1/32"), Policy: p},
		}, `sandboxes "sb1" and "sb2" overlap: sources 10.0.0.1/32 and 10.0.0.1/32`},
		{"subnet of another", []Sandbox{
			{Name: "sb1", Sources: pfxs("10.0.0.0/24"), Policy: p},
			{Name: "sb2", Sources: pfxs("10.0.0.5/32"), Policy: p},
		}, `sandboxes "sb1" and "sb2" overlap: sources 10.0.0.0/24 and 10.0.0.5/32`},
		{"supernet of another", []Sandbox{
			{Name: "sb1", Sources: pfxs("fd00::5/128"), Policy: p},
			{Name: "sb2", Sources: pfxs("fd00::/64"), Policy: p},
		}, `sandboxes "sb1" and "sb2" overlap: sources fd00::5/128 and fd00::/64`},
		{"mapped overlap", []Sandbox{
			{Name: "sb1", Sources: pfxs("10.0.0.1/32"), Policy: p},
			{Name: "sb2", Sources: pfxs("::ffff:10.0.0.1/128"), Policy: p},
		}, `overlap`},
		{"no name", []Sandbox{{Sources: pfxs("10.0.0.1/32"), Policy: p}}, "sandbox #1: name is required"},
		{"no policy", []Sandbox{{Name: "sb1", Sources: pfxs("10.0.0.1/32")}}, `sandbox "sb1": no policy`},
		{"no sources", []Sandbox{{Name: "sb1", Policy: p}}, `sandbox "sb1": no sources`},
		{"host bits", []Sandbox{{Name: "sb1", Sources: pfxs("10.0.0.1/24"), Policy: p}},
			`sandbox "sb1": source 10.0.0.1/24: host bits set; did you mean 10.0.0.0/24?`},
		{"invalid source", []Sandbox{{Name: "sb1", Sources: []netip.Prefix{{}}, Policy: p}}, `sandbox "sb1": source invalid Prefix`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSet(tt.sbs, Guard{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewSet = %v, %v; want error containing %q", s, err, tt.want)
			}
		})
	}
}

func TestNewSetOverlapWithinSandbox(t *testing.T) {
	p := mustCompile(t, Spec{Mode: ModeDenyAll})
	s, err := NewSet([]Sandbox{{Name: "sb1", Sources: pfxs("10.0.0.0/24", "10.0.0.5/32"), Policy: p}}, Guard{})
	if err != nil {
		t.Fatalf("NewSet: %v", err)
	}
	if sb, ok := s.BySource(netip.MustParseAddr("10.0.0.5")); !ok || sb.Name != "sb1" {
		t.Fatalf("BySource = %v, %v", sb, ok)
	}
}
