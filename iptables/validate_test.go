package iptables

import (
	"net/netip"
	"strings"
	"testing"
)

func TestNewRulesetRejects(t *testing.T) {
	ok := Sandbox{Name: "sb1", Interface: "veth-sb1", Mode: ModeCustom, Sources: prefixes("10.0.0.2/32")}
	with := func(f func(*Sandbox)) []Sandbox {
		sb := ok
		f(&sb)
		return []Sandbox{sb}
	}
	cases := []struct {
		name  string
		sbs   []Sandbox
		ports Ports
		want  string
	}{
		{"no tproxy port", []Sandbox{ok}, Ports{}, "tproxy port 0"},
		{"tproxy port too big", []Sandbox{ok}, Ports{TProxy: 65536}, "tproxy port 65536"},
		{"negative dns port", []Sandbox{ok}, Ports{TProxy: 1, DNS: -1}, "dns port -1"},
		{"empty name", with(func(s *Sandbox) { s.Name = "" }), ports, "name: empty"},
		{"quote in name", with(func(s *Sandbox) { s.Name = `a"b` }), ports, "not allowed"},
		{"newline in name", with(func(s *Sandbox) { s.Name = "a\nb" }), ports, "not allowed"},
		{"backslash in name", with(func(s *Sandbox) { s.Name = `a\b` }), ports, "not allowed"},
		{"long name", with(func(s *Sandbox) { s.Name = strings.Repeat("n", 101) }), ports, "longer than"},
		{"empty interface", with(func(s *Sandbox) { s.Interface = "" }), ports, "want 1-15 bytes"},
		{"long interface", with(func(s *Sandbox) { s.Interface = "0123456789abcdef" }), ports, "want 1-15 bytes"},
		{"wildcard interface", with(func(s *Sandbox) { s.Interface = "veth*" }), ports, "'*' not allowed"},
		{"space in interface", with(func(s *Sandbox) { s.Interface = "a b" }), ports, "not allowed"},
		{"slash in interface", with(func(s *Sandbox) { s.Interface = "a/b" }), ports, "not allowed"},
		{"dot interface", with(func(s *Sandbox) { s.Interface = "." }), ports, "reserved"},
		{"unknown mode", with(func(s *Sandbox) { s.Mode = "open" }), ports, `unknown mode "open"`},
		{"zero prefix", with(func(s *Sandbox) { s.DenyCIDRs = []netip.Prefix{{}} }), ports, "deny_cidrs[0]: invalid prefix"},
		{"duplicate name", []Sandbox{ok, func() Sandbox { s := ok; s.Interface = "other"; return s }()}, ports,
			"duplicate name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewRuleset(tc.sbs, tc.ports, Host{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewRuleset error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestSplitFamilies(t *testing.T) {
	cases := []struct {
		name         string
		in           []string
		want4, want6 string
	}{
		{"empty", nil, "", ""},
		{"masks host bits", []string{"10.1.2.3/8"}, "10.0.0.0/8", ""},
		{"drops duplicates", []string{"10.0.0.0/8", "10.0.0.0/8"}, "10.0.0.0/8", ""},
		{"drops nested", []string{"10.1.0.0/16", "10.0.0.0/8", "10.200.3.4/32"}, "10.0.0.0/8", ""},
		{"keeps adjacent", []string{"10.0.1.0/24", "10.0.0.0/24"}, "10.0.0.0/24 10.0.1.0/24", ""},
		{"keeps disjoint after nested", []string{"10.0.0.0/16", "10.0.5.0/24", "10.1.0.0/16"},
			"10.0.0.0/16 10.1.0.0/16", ""},
		{"splits families", []string{"2001:db8::/32", "0.0.0.0/0", "::/0"}, "0.0.0.0/0", "::/0"},
		{"mapped stays v6", []string{"::ffff:10.0.0.0/104"}, "", "::ffff:10.0.0.0/104"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v4, v6 := splitFamilies(prefixes(tc.in...))
			if got := join(v4); got != tc.want4 {
				t.Errorf("v4 = %q, want %q", got, tc.want4)
			}
			if got := join(v6); got != tc.want6 {
				t.Errorf("v6 = %q, want %q", got, tc.want6)
			}
		})
	}
}

func join(ps []netip.Prefix) string {
	ss := make([]string, len(ps))
	for i, p := range ps {
		ss[i] = p.String()
	}
	return strings.Join(ss, " ")
}

// Two sandboxes on one bridge: one claimed interface, each source its own
// dispatch element.
func TestSharedInterface(t *testing.T) {
	a := Sandbox{Name: "a", Interface: "br-sb", Mode: ModeAllowAll, Sources: []netip.Prefix{netip.MustParsePrefix("172.18.0.2/32")}}
	b := Sandbox{Name: "b", Interface: "br-sb", Mode: ModeDenyAll, Sources: []netip.Prefix{netip.MustParsePrefix("172.18.0.3/32")}}
	script, err := Render([]Sandbox{a, b}, Ports{TProxy: 15001, DNS: 5353}, Host{})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"br-sb" . 172.18.0.2 : jump allow_all`, `"br-sb" . 172.18.0.3 : jump deny_all`} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %q", want)
		}
	}
	if n := strings.Count(script, "\t\t\t\"br-sb\",\n"); n != 2 { // claimed and ports
		t.Errorf("br-sb listed %d times in claimed and ports, want once each", n)
	}
}
