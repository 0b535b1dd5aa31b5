package policy

import (
	"strings"
	"testing"
)

// FuzzNormalizeName feeds hostile wire names. An accepted name is in normal
// form (normalising it again changes nothing), fits in 253 octets, is a
// valid exact pattern of itself and is allowed by it. A refused name is
// denied in every mode.
func FuzzNormalizeName(f *testing.F) {
	for _, s := range []string{"api.example.com", "A.Test.", "_dmarc.x.test", "xn--bcher-kva.test",
		"a..b", "1.2.3.4", "[::1]", "10.1", "0x7f000001", "a\x00b", `a\b`, "a b", "bücher.test", "."} {
		f.Add(s)
	}
	modes := []*Policy{
		mustCompile(f, Spec{Mode: ModeAllowAll}),
		mustCompile(f, Spec{Mode: ModeDenyAll}),
		mustCompile(f, Spec{Mode: ModeCustom, AllowDomains: []string{"*"}}),
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := NormalizeName(s)
		if err != nil {
			for _, p := range modes {
				if d := p.DecideName(s); d.Allowed() || (d.Reason != ReasonInvalidName && d.Reason != ReasonNoName) {
					t.Fatalf("NormalizeName(%q) failed (%v) but %s mode says %s", s, err, p.Mode(), d)
				}
			}
			return
		}
		if again, err := NormalizeName(n); err != nil || again != n {
			t.Fatalf("NormalizeName(%q) = %q; again: %q, %v", s, n, again, err)
		}
		if len(n) > maxNameLen || n != strings.ToLower(n) || strings.HasSuffix(n, ".") {
			t.Fatalf("NormalizeName(%q) = %q: not normal", s, n)
		}
		pat, err := ParsePattern(n)
		if err != nil || pat != n {
			t.Fatalf("ParsePattern(%q) = %q, %v; an accepted name must be its own pattern", n, pat, err)
		}
		p := mustCompile(t, Spec{Mode: ModeCustom, AllowDomains: []string{n}})
		if d := p.DecideName(s); !d.Allowed() || d.Pattern != n || d.Name != n {
			t.Fatalf("pattern %q: DecideName(%q) = %+v", n, s, d)
		}
		if d := p.DecideName("x." + n); d.Allowed() && len(n) <= maxNameLen-2 {
			t.Fatalf("exact pattern %q allowed a subdomain: %s", n, d)
		}
	})
}

// FuzzParsePattern feeds config patterns. An accepted pattern is in normal
// form (parsing it again changes nothing), fits in 253 octets and compiles;
// an exact pattern allows itself, a wildcard allows a child of its base but
// not the base.
func FuzzParsePattern(f *testing.F) {
	for _, s := range []string{"api.example.com", "*.example.com", "*", "a.*.b", "*example.com", "**.a",
		"BÜCHER.test", "a.test:443", "https://a.test/", "198.51.100.1", "[2001:db8::1]", "a..b", "*.",
		"ｅｘａｍｐｌｅ.test", "a\u200d.test", "１.２.３.４"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		pat, err := ParsePattern(s)
		if err != nil {
			return
		}
		if again, err := ParsePattern(pat); err != nil || again != pat {
			t.Fatalf("ParsePattern(%q) = %q; again: %q, %v", s, pat, again, err)
		}
		if len(pat) > maxNameLen {
			t.Fatalf("ParsePattern(%q) = %q: %d octets", s, pat, len(pat))
		}
		p, err := Compile(Spec{Mode: ModeCustom, AllowDomains: []string{s, pat}})
		if err != nil {
			t.Fatalf("Compile(%q): %v", s, err)
		}
		if got := p.Spec().AllowDomains; len(got) != 1 || got[0] != pat {
			t.Fatalf("Spec().AllowDomains = %q, want [%q]", got, pat)
		}
		base, wild := strings.CutPrefix(pat, "*.")
		switch {
		case pat == "*":
		case wild:
			if d := p.DecideName("x." + base); !d.Allowed() || d.Pattern != pat {
				t.Fatalf("pattern %q: DecideName(x.%s) = %s", pat, base, d)
			}
			if d := p.DecideName(base); d.Allowed() {
				t.Fatalf("pattern %q allowed its apex: %s", pat, d)
			}
		default:
			if d := p.DecideName(pat); !d.Allowed() || d.Pattern != pat {
				t.Fatalf("pattern %q: DecideName of itself = %s", pat, d)
			}
		}
	})
}
