package policy

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func mustCompile(t testing.TB, s Spec) *Policy {
	t.Helper()
	p, err := Compile(s)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return p
}

// judge decides a flow the way the proxy does: address first, then the
// name when the address leaves it open.
func judge(p *Policy, dst netip.Addr, name string) Decision {
	d := p.DecideAddr(dst)
	if d.NeedsName() {
		return p.DecideName(name)
	}
	return d
}

var testSpec = Spec{
	Mode: ModeCustom,
	AllowDomains: []string{
		"allowed.test", "*.wild.test", "BÜCHER.test", "Upper.Test.", "*.deep.a.test", "a.test",
		"_srv.svc.test",
	},
	AllowCIDRs: []string{"198.51.100.0/25", "2001:db8:1::/48", "203.0.113.9", "2001:db8:2::7"},
	DenyCIDRs:  []string{"198.51.100.64/26", "2001:db8:1:66::/64", "::ffff:203.0.113.0/120"},
}

func TestDecideName(t *testing.T) {
	p := mustCompile(t, testSpec)
	tests := []struct {
		name, in string
		verdict  Verdict
		reason   Reason
		pattern  string
	}{
		{"exact", "allowed.test", Allow, ReasonAllowDomain, "allowed.test"},
		{"exact is not a wildcard", "x.allowed.test", Deny, ReasonNoMatch, ""},
		{"label aligned prefix", "evilallowed.test", Deny, ReasonNoMatch, ""},
		{"label aligned suffix", "allowed.test.evil.test", Deny, ReasonNoMatch, ""},
		{"wildcard one level", "a.wild.test", Allow, ReasonAllowDomain, "*.wild.test"},
		{"wildcard any depth", "a.b.c.wild.test", Allow, ReasonAllowDomain, "*.wild.test"},
		{"wildcard not the apex", "wild.test", Deny, ReasonNoMatch, ""},
		{"wildcard label aligned", "xwild.test", Deny, ReasonNoMatch, ""},
		{"wildcard not a prefix", "a.wild.test.evil", Deny, ReasonNoMatch, ""},
		{"exact beats wildcard parent", "a.test", Allow, ReasonAllowDomain, "a.test"},
		{"longest wildcard wins", "x.deep.a.test", Allow, ReasonAllowDomain, "*.deep.a.test"},
		{"deep apex not matched", "deep.a.test", Deny, ReasonNoMatch, ""},
		{"case folded name", "ALLOWED.Test", Allow, ReasonAllowDomain, "allowed.test"},
		{"case folded pattern", "upper.test", Allow, ReasonAllowDomain, "upper.test"},
		{"trailing dot", "allowed.test.", Allow, ReasonAllowDomain, "allowed.test"},
		{"wildcard trailing dot", "a.wild.test.", Allow, ReasonAllowDomain, "*.wild.test"},
		{"IDN as punycode", "xn--bcher-kva.test", Allow, ReasonAllowDomain, "xn--bcher-kva.test"},
		{"IDN raw on the wire", "bücher.test", Deny, ReasonInvalidName, ""},
		{"underscore", "_srv.svc.test", Allow, ReasonAllowDomain, "_srv.svc.test"},
		{"unknown", "evil.test", Deny, ReasonNoMatch, ""},
		{"empty", "", Deny, ReasonNoName, ""},
		{"IP literal", "198.51.100.10", Deny, ReasonInvalidName, ""},
		{"NUL", "allowed.test\x00.evil", Deny, ReasonInvalidName, ""},
		{"two trailing dots", "allowed.test..", Deny, ReasonInvalidName, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.DecideName(tt.in)
			if d.Verdict != tt.verdict || d.Reason != tt.reason || d.Pattern != tt.pattern {
				t.Fatalf("DecideName(%q) = %+v (%s); want %s %s %q", tt.in, d, d, tt.verdict, tt.reason, tt.pattern)
			}
			if d.Reason == ReasonAllowDomain || d.Reason == ReasonNoMatch {
				if want, _ := NormalizeName(tt.in); d.Name != want {
					t.Fatalf("DecideName(%q).Name = %q, want %q", tt.in, d.Name, want)
				}
			}
		})
	}
}

func TestDecideNameAny(t *testing.T) {
	p := mustCompile(t, Spec{Mode: ModeCustom, AllowDomains: []string{"*", "*.a.test"}})
	for _, tt := range []struct{ in, pattern string }{
		{"anything.test", "*"},
		{"localhost", "*"},
		{"a.test", "*"},
		{"b.a.test", "*.a.test"},
	} {
		t.Run(tt.in, func(t *testing.T) {
			if d := p.DecideName(tt.in); !d.Allowed() || d.Pattern != tt.pattern {
				t.Fatalf("DecideName(%q) = %s, want allowed by %q", tt.in, d, tt.pattern)
			}
		})
	}
	if d := p.DecideName("1.2.3.4"); d.Allowed() {
		t.Fatalf("\"*\" allowed an IP literal: %s", d)
	}
}

func TestDecideNameModes(t *testing.T) {
	tests := []struct {
		name   string
		mode   Mode
		in     string
		want   Verdict
		reason Reason
	}{
		{"allow-all allows", ModeAllowAll, "evil.test", Allow, ReasonAllowAll},
		{"allow-all refuses invalid", ModeAllowAll, "a b.test", Deny, ReasonInvalidName},
		{"allow-all refuses empty", ModeAllowAll, "", Deny, ReasonNoName},
		{"deny-all denies listed", ModeDenyAll, "allowed.test", Deny, ReasonDenyAll},
		{"deny-all invalid", ModeDenyAll, "a b.test", Deny, ReasonInvalidName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := testSpec
			s.Mode = tt.mode
			d := mustCompile(t, s).DecideName(tt.in)
			if d.Verdict != tt.want || d.Reason != tt.reason {
				t.Fatalf("DecideName(%q) = %s (%s), want %s %s", tt.in, d, d.Reason, tt.want, tt.reason)
			}
		})
	}
}

func TestDecideAddr(t *testing.T) {
	a := netip.MustParseAddr
	tests := []struct {
		name   string
		mode   Mode
		in     string
		want   Verdict
		reason Reason
		prefix string
	}{
		{"allow cidr", ModeCustom, "198.51.100.10", Allow, ReasonAllowCIDR, "198.51.100.0/25"},
		{"deny beats allow", ModeCustom, "198.51.100.66", Deny, ReasonDenyCIDR, "198.51.100.64/26"},
		{"bare v6 address rule", ModeCustom, "2001:db8:2::7", Allow, ReasonAllowCIDR, "2001:db8:2::7/128"},
		{"deny beats bare address rule", ModeCustom, "203.0.113.9", Deny, ReasonDenyCIDR, "203.0.113.0/24"},
		{"no match needs name", ModeCustom, "198.51.100.200", Deny, ReasonNoMatch, ""},
		{"mapped address unmapped", ModeCustom, "::ffff:198.51.100.10", Allow, ReasonAllowCIDR, "198.51.100.0/25"},
		{"mapped deny rule", ModeCustom, "203.0.113.1", Deny, ReasonDenyCIDR, "203.0.113.0/24"},
		{"mapped address, mapped rule", ModeCustom, "::ffff:203.0.113.1", Deny, ReasonDenyCIDR, "203.0.113.0/24"},
		{"v6 allow", ModeCustom, "2001:db8:1:1::1", Allow, ReasonAllowCIDR, "2001:db8:1::/48"},
		{"v6 deny beats allow", ModeCustom, "2001:db8:1:66::1", Deny, ReasonDenyCIDR, "2001:db8:1:66::/64"},
		{"v6 zone ignored", ModeCustom, "2001:db8:1:66::1%eth0", Deny, ReasonDenyCIDR, "2001:db8:1:66::/64"},
		{"v6 no match", ModeCustom, "2001:db8:2::1", Deny, ReasonNoMatch, ""},
		{"v4 rule does not match v6", ModeCustom, "::c633:640a", Deny, ReasonNoMatch, ""},
		{"allow-all", ModeAllowAll, "198.51.100.200", Allow, ReasonAllowAll, ""},
		{"deny beats allow-all", ModeAllowAll, "198.51.100.66", Deny, ReasonDenyCIDR, "198.51.100.64/26"},
		{"deny-all", ModeDenyAll, "198.51.100.10", Deny, ReasonDenyAll, ""},
		{"invalid address needs name", ModeCustom, "", Deny, ReasonNoMatch, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := testSpec
			s.Mode = tt.mode
			var in netip.Addr
			if tt.in != "" {
				in = a(tt.in)
			}
			d := mustCompile(t, s).DecideAddr(in)
			var want netip.Prefix
			if tt.prefix != "" {
				want = netip.MustParsePrefix(tt.prefix)
			}
			if d.Verdict != tt.want || d.Reason != tt.reason || d.Prefix != want {
				t.Fatalf("DecideAddr(%s) = %s (%s), want %s %s %s", tt.in, d, d.Reason, tt.want, tt.reason, want)
			}
			if d.Addr != in.Unmap().WithZone("") {
				t.Fatalf("Decision.Addr = %s, want %s unmapped", d.Addr, in)
			}
			if got := d.NeedsName(); got != (tt.reason == ReasonNoMatch) {
				t.Fatalf("NeedsName = %v", got)
			}
		})
	}
}

func TestDenyCIDRsWinOverEverything(t *testing.T) {
	deny := []string{"198.51.100.64/26", "2001:db8::/64"}
	tests := []struct {
		name string
		spec Spec
		dst  string
		host string
	}{
		{"over allow_domains", Spec{Mode: ModeCustom, AllowDomains: []string{"allowed.test"}}, "198.51.100.66", "allowed.test"},
		{"over \"*\"", Spec{Mode: ModeCustom, AllowDomains: []string{"*"}}, "198.51.100.66", "allowed.test"},
		{"over allow_cidrs", Spec{Mode: ModeCustom, AllowCIDRs: []string{"198.51.100.66"}}, "198.51.100.66", ""},
		{"over allow-all", Spec{Mode: ModeAllowAll}, "198.51.100.66", "allowed.test"},
		{"mapped destination", Spec{Mode: ModeAllowAll}, "::ffff:198.51.100.66", ""},
		{"v6 over allow_domains", Spec{Mode: ModeCustom, AllowDomains: []string{"*.test"}}, "2001:db8::1", "a.test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.spec.DenyCIDRs = deny
			p := mustCompile(t, tt.spec)
			dst := netip.MustParseAddr(tt.dst)
			if d := judge(p, dst, tt.host); d.Allowed() || d.Reason != ReasonDenyCIDR {
				t.Fatalf("judge(%s, %q) = %s, want deny-cidr", tt.dst, tt.host, d)
			}
			if _, denied := p.DeniedAddr(dst); !denied {
				t.Fatalf("DeniedAddr(%s) = false", tt.dst)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		want string
	}{
		{"no mode", Spec{}, `mode "": required; want one of allow-all, deny-all, custom`},
		{"unknown mode", Spec{Mode: "Custom"}, `mode "Custom": not a mode; want one of allow-all, deny-all, custom`},
		{"bad pattern", Spec{Mode: ModeCustom, AllowDomains: []string{"a.test", "b.test", "a.*.b"}},
			`allow_domains[2] "a.*.b": a wildcard may only be the whole leftmost label`},
		{"bad allow cidr", Spec{Mode: ModeCustom, AllowCIDRs: []string{"10.0.0.0/33"}},
			`allow_cidrs[0] "10.0.0.0/33": invalid prefix length (IPv4 allows /0 to /32)`},
		{"bad deny cidr", Spec{Mode: ModeAllowAll, DenyCIDRs: []string{"10.0.0.0/8", "10.0.0.1/8"}},
			`deny_cidrs[1] "10.0.0.1/8": host bits set; did you mean 10.0.0.0/8?`},
		{"unused list still checked", Spec{Mode: ModeDenyAll, AllowDomains: []string{"https://a.test/"}},
			`allow_domains[0] "https://a.test/": a URL`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Compile(tt.spec)
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Compile = %v, %v; want a *FieldError", p, err)
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("Compile error %q, want %q", err, tt.want)
			}
			if errors.Unwrap(err) == nil {
				t.Fatal("FieldError does not unwrap")
			}
		})
	}
}

func TestParseMode(t *testing.T) {
	for _, m := range []Mode{ModeAllowAll, ModeDenyAll, ModeCustom} {
		if got, err := ParseMode(string(m)); err != nil || got != m {
			t.Fatalf("ParseMode(%q) = %q, %v", m, got, err)
		}
	}
	for _, s := range []string{"", "ALLOW-ALL", "allow_all", " custom"} {
		if got, err := ParseMode(s); err == nil {
			t.Fatalf("ParseMode(%q) = %q, want an error", s, got)
		}
	}
}

func TestSpecNormalised(t *testing.T) {
	p := mustCompile(t, Spec{
		Mode:         ModeCustom,
		AllowDomains: []string{"A.test.", "a.test", "*.B.test", "*.b.test", "bücher.test", "*"},
		AllowCIDRs:   []string{"198.51.100.7", "198.51.100.7/32", "::ffff:10.0.0.0/104"},
		DenyCIDRs:    []string{"2001:DB8::/32"},
	})
	want := Spec{
		Mode:         ModeCustom,
		AllowDomains: []string{"a.test", "*.b.test", "xn--bcher-kva.test", "*"},
		AllowCIDRs:   []string{"198.51.100.7/32", "10.0.0.0/8"},
		DenyCIDRs:    []string{"2001:db8::/32"},
	}
	if got := p.Spec(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Spec() = %#v\nwant %#v", got, want)
	}
	if p.Mode() != ModeCustom {
		t.Fatalf("Mode() = %q", p.Mode())
	}
	p.Spec().AllowDomains[0] = "mutated.test"
	if p.Spec().AllowDomains[0] != "a.test" {
		t.Fatal("Spec() shares its slices")
	}
	again := mustCompile(t, p.Spec())
	if !reflect.DeepEqual(again.Spec(), want) {
		t.Fatalf("recompiled Spec() = %#v", again.Spec())
	}
}
