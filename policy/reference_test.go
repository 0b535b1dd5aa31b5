package policy

import (
	"math/rand/v2"
	"net/netip"
	"regexp"
	"strings"
	"testing"
)

// refPolicy is a slow, obviously correct policy: slices and linear scans,
// a regexp for name syntax. The compiled Policy must agree with it.
type refPolicy struct {
	mode        Mode
	patterns    []string
	allow, deny []netip.Prefix
}

func refCompile(t *testing.T, s Spec) *refPolicy {
	r := &refPolicy{mode: s.Mode}
	for _, d := range s.AllowDomains {
		p, err := ParsePattern(d)
		if err != nil {
			t.Fatalf("ParsePattern(%q): %v", d, err)
		}
		r.patterns = append(r.patterns, p)
	}
	for _, c := range s.AllowCIDRs {
		r.allow = append(r.allow, mustParsePrefix(t, c))
	}
	for _, c := range s.DenyCIDRs {
		r.deny = append(r.deny, mustParsePrefix(t, c))
	}
	return r
}

func mustParsePrefix(t *testing.T, s string) netip.Prefix {
	p, err := ParsePrefix(s)
	if err != nil {
		t.Fatalf("ParsePrefix(%q): %v", s, err)
	}
	return p
}

// longest returns the longest prefix in list holding a.
func longest(list []netip.Prefix, a netip.Addr) (netip.Prefix, bool) {
	var best netip.Prefix
	for _, p := range list {
		if p.Contains(a) && (!best.IsValid() || p.Bits() > best.Bits()) {
			best = p
		}
	}
	return best, best.IsValid()
}

func (r *refPolicy) decideAddr(a netip.Addr) Decision {
	a = a.Unmap().WithZone("")
	if p, ok := longest(r.deny, a); ok {
		return Decision{Verdict: Deny, Reason: ReasonDenyCIDR, Addr: a, Prefix: p}
	}
	switch r.mode {
	case ModeAllowAll:
		return Decision{Verdict: Allow, Reason: ReasonAllowAll, Addr: a}
	case ModeDenyAll:
		return Decision{Verdict: Deny, Reason: ReasonDenyAll, Addr: a}
	}
	if p, ok := longest(r.allow, a); ok {
		return Decision{Verdict: Allow, Reason: ReasonAllowCIDR, Addr: a, Prefix: p}
	}
	return Decision{Verdict: Deny, Reason: ReasonNoMatch, Addr: a}
}

var (
	refNameRE    = regexp.MustCompile(`^([A-Za-z0-9_-]{1,63}\.)*[A-Za-z0-9_-]{1,63}\.?$`)
	refNumericRE = regexp.MustCompile(`(^|\.)([0-9]+|0[xX][0-9a-fA-F]*)$`)
)

func refNormalize(s string) (string, bool) {
	if !refNameRE.MatchString(s) {
		return "", false
	}
	s = strings.TrimSuffix(s, ".")
	if len(s) > 253 || refNumericRE.MatchString(s) {
		return "", false
	}
	return strings.ToLower(s), true
}

func (r *refPolicy) decideName(name string) Decision {
	if name == "" {
		return Decision{Verdict: Deny, Reason: ReasonNoName}
	}
	n, ok := refNormalize(name)
	if !ok {
		return Decision{Verdict: Deny, Reason: ReasonInvalidName, Name: name}
	}
	switch r.mode {
	case ModeAllowAll:
		return Decision{Verdict: Allow, Reason: ReasonAllowAll, Name: n}
	case ModeDenyAll:
		return Decision{Verdict: Deny, Reason: ReasonDenyAll, Name: n}
	}
	best := ""
	for _, p := range r.patterns {
		switch {
		case p == n:
			return Decision{Verdict: Allow, Reason: ReasonAllowDomain, Name: n, Pattern: p}
		case p == "*" && best == "":
			best = p
		case strings.HasPrefix(p, "*.") && strings.HasSuffix(n, p[1:]) && len(p) > len(best):
			best = p
		}
	}
	if best != "" {
		return Decision{Verdict: Allow, Reason: ReasonAllowDomain, Name: n, Pattern: best}
	}
	return Decision{Verdict: Deny, Reason: ReasonNoMatch, Name: n}
}

// gen makes random specs, names and addresses from small pools, so that
// rules and inputs collide often.
type gen struct{ r *rand.Rand }

var genLabels = []string{"a", "b", "c", "wild", "test", "xn--bcher-kva", "_s", "0x1f", "12", "A", "WiLd", "ab", "-"}

func (g gen) pick(list []string) string { return list[g.r.IntN(len(list))] }

func (g gen) name(maxLabels int) string {
	n := 1 + g.r.IntN(maxLabels)
	labels := make([]string, n)
	for i := range labels {
		labels[i] = g.pick(genLabels)
	}
	s := strings.Join(labels, ".")
	switch g.r.IntN(20) {
	case 0:
		s += "."
	case 1:
		s = strings.Replace(s, ".", "..", 1)
	case 2:
		s += " "
	case 3:
		s = strings.Repeat("a", 60+g.r.IntN(8)) + "." + s
	}
	return s
}

func (g gen) pattern() string {
	for {
		var s string
		switch g.r.IntN(10) {
		case 0:
			s = "*"
		case 1, 2, 3, 4:
			s = "*." + g.name(3)
		default:
			s = g.name(4)
		}
		if _, err := ParsePattern(s); err == nil {
			return s
		}
	}
}

func (g gen) addr() netip.Addr {
	var a netip.Addr
	if g.r.IntN(2) == 0 {
		a = netip.AddrFrom4([4]byte{198, 51, 100 + byte(g.r.IntN(2)), byte(g.r.IntN(256))})
		if g.r.IntN(5) == 0 {
			a = netip.AddrFrom16(a.As16())
		}
		return a
	}
	b := netip.MustParseAddr("2001:db8::").As16()
	b[5], b[7], b[15] = byte(g.r.IntN(3)), byte(g.r.IntN(3)), byte(g.r.IntN(256))
	return netip.AddrFrom16(b)
}

func (g gen) prefix() string {
	a := g.addr().Unmap()
	bits := a.BitLen() - g.r.IntN(12)
	if a.Is6() {
		bits = []int{32, 40, 48, 56, 64, 120, 128}[g.r.IntN(7)]
	}
	p, _ := a.Prefix(bits)
	return p.String()
}

func (g gen) spec() Spec {
	s := Spec{Mode: []Mode{ModeCustom, ModeCustom, ModeAllowAll, ModeDenyAll}[g.r.IntN(4)]}
	for range g.r.IntN(12) {
		s.AllowDomains = append(s.AllowDomains, g.pattern())
	}
	for range g.r.IntN(6) {
		s.AllowCIDRs = append(s.AllowCIDRs, g.prefix())
	}
	for range g.r.IntN(4) {
		s.DenyCIDRs = append(s.DenyCIDRs, g.prefix())
	}
	return s
}

func TestAgainstReference(t *testing.T) {
	g := gen{rand.New(rand.NewPCG(1, 2))}
	seen := map[string]int{} // reasons and kinds of pattern that decided
	for i := range 500 {
		s := g.spec()
		p := mustCompile(t, s)
		ref := refCompile(t, s)
		for range 100 {
			name := g.name(5)
			if got, want := p.DecideName(name), ref.decideName(name); got != want {
				t.Fatalf("spec %d %+v\nDecideName(%q) = %+v\nreference     %+v", i, s, name, got, want)
			} else {
				seen[got.Reason.String()]++
				seen[patternKind(got.Pattern)]++
			}
			a := g.addr()
			if got, want := p.DecideAddr(a), ref.decideAddr(a); got != want {
				t.Fatalf("spec %d %+v\nDecideAddr(%s) = %+v\nreference     %+v", i, s, a, got, want)
			} else {
				seen[got.Reason.String()]++
			}
		}
	}
	t.Logf("decisions by kind: %v", seen)
	for _, k := range []string{"allow-all", "deny-all", "deny-cidr", "allow-cidr", "allow-domain", "no-match",
		"invalid-name", "pattern exact", "pattern wildcard", "pattern any"} {
		if seen[k] < 20 {
			t.Errorf("random input reached %q only %d times: %v", k, seen[k], seen)
		}
	}
}

func patternKind(p string) string {
	switch {
	case p == "":
		return "no pattern"
	case p == "*":
		return "pattern any"
	case strings.HasPrefix(p, "*."):
		return "pattern wildcard"
	}
	return "pattern exact"
}

func TestSetAgainstReference(t *testing.T) {
	g := gen{rand.New(rand.NewPCG(3, 4))}
	pol := mustCompile(t, Spec{Mode: ModeDenyAll})
	built := 0
	for i := range 300 {
		var sbs []Sandbox
		for j := range 1 + g.r.IntN(4) {
			sb := Sandbox{Name: string(rune('a' + j)), Policy: pol}
			for range 1 + g.r.IntN(3) {
				sb.Sources = append(sb.Sources, netip.MustParsePrefix(g.prefix()))
			}
			sbs = append(sbs, sb)
		}
		set, err := NewSet(sbs, Guard{})
		if overlap := refOverlap(sbs); (err != nil) != overlap {
			t.Fatalf("case %d: NewSet error %v, reference overlap %v", i, err, overlap)
		}
		if err != nil {
			continue
		}
		built++
		for range 50 {
			a := g.addr()
			got, ok := set.BySource(a)
			want := refBySource(sbs, a)
			if ok != (want != "") || (ok && got.Name != want) {
				t.Fatalf("case %d: BySource(%s) = %v, %v; reference %q", i, a, got, ok, want)
			}
		}
	}
	t.Logf("%d of 300 random sets built", built)
	if built < 30 {
		t.Fatalf("only %d of 300 random sets had no overlap: generator too dense", built)
	}
}

func refOverlap(sbs []Sandbox) bool {
	for i := range sbs {
		for j := range i {
			for _, p := range sbs[i].Sources {
				for _, q := range sbs[j].Sources {
					if p.Overlaps(q) {
						return true
					}
				}
			}
		}
	}
	return false
}

func refBySource(sbs []Sandbox, a netip.Addr) string {
	a = a.Unmap()
	for _, sb := range sbs {
		for _, p := range sb.Sources {
			if p.Contains(a) {
				return sb.Name
			}
		}
	}
	return ""
}
