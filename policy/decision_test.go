package policy

import (
	"net/netip"
	"strings"
	"testing"
)

func TestDecisionText(t *testing.T) {
	a := netip.MustParseAddr
	pf := netip.MustParsePrefix
	tests := []struct {
		name       string
		d          Decision
		str, rule  string
		allowed    bool
		needsName  bool
		reasonText string
	}{
		{"deny cidr", Decision{Reason: ReasonDenyCIDR, Addr: a("198.51.100.66"), Prefix: pf("198.51.100.64/26")},
			"deny: 198.51.100.66 in deny_cidrs 198.51.100.64/26", "deny_cidrs 198.51.100.64/26", false, false, "deny-cidr"},
		{"allow cidr", Decision{Verdict: Allow, Reason: ReasonAllowCIDR, Addr: a("198.51.100.77"), Prefix: pf("198.51.100.77/32")},
			"allow: 198.51.100.77 in allow_cidrs 198.51.100.77/32", "allow_cidrs 198.51.100.77/32", true, false, "allow-cidr"},
		{"allow domain", Decision{Verdict: Allow, Reason: ReasonAllowDomain, Name: "a.wild.test", Pattern: "*.wild.test"},
			"allow: a.wild.test matches allow_domains *.wild.test", "allow_domains *.wild.test", true, false, "allow-domain"},
		{"no match by name", Decision{Reason: ReasonNoMatch, Name: "evil.test"},
			"deny: evil.test matches no rule (mode custom)", "", false, false, "no-match"},
		{"no match by address", Decision{Reason: ReasonNoMatch, Addr: a("198.51.100.9")},
			"deny: 198.51.100.9 matches no rule (mode custom)", "", false, true, "no-match"},
		{"allow-all", Decision{Verdict: Allow, Reason: ReasonAllowAll, Addr: a("198.51.100.9")},
			"allow: mode allow-all", "mode allow-all", true, false, "allow-all"},
		{"deny-all", Decision{Reason: ReasonDenyAll, Name: "a.test"},
			"deny: mode deny-all", "mode deny-all", false, false, "deny-all"},
		{"unknown source", Decision{Reason: ReasonUnknownSource, Addr: a("10.1.2.3")},
			"deny: 10.1.2.3 unknown source", "", false, false, "unknown-source"},
		{"invalid name", Decision{Reason: ReasonInvalidName, Name: "a\x00b"},
			`deny: invalid name "a\x00b"`, "", false, false, "invalid-name"},
		{"no name", Decision{Reason: ReasonNoName, Addr: a("198.51.100.9")},
			"deny: flow to 198.51.100.9 carries no name", "", false, false, "no-name"},
		{"not resolved", Decision{Reason: ReasonNotResolved, Name: "a.test", Addr: a("198.51.100.9")},
			"deny: a.test has no usable address (flow to 198.51.100.9)", "", false, false, "not-resolved"},
		{"zero", Decision{}, "deny: unset -", "", false, false, "unset"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.d.String(); got != tt.str {
				t.Errorf("String() = %q, want %q", got, tt.str)
			}
			if got := tt.d.Rule(); got != tt.rule {
				t.Errorf("Rule() = %q, want %q", got, tt.rule)
			}
			if got := tt.d.Allowed(); got != tt.allowed {
				t.Errorf("Allowed() = %v", got)
			}
			if got := tt.d.NeedsName(); got != tt.needsName {
				t.Errorf("NeedsName() = %v", got)
			}
			if got := tt.d.Reason.String(); got != tt.reasonText {
				t.Errorf("Reason = %q, want %q", got, tt.reasonText)
			}
		})
	}
}

func TestDecisionStringBoundsInvalidName(t *testing.T) {
	d := Decision{Reason: ReasonInvalidName, Name: strings.Repeat("\x01", 70000)}
	if s := d.String(); len(s) > 2000 || !strings.Contains(s, "more bytes") {
		t.Fatalf("String() of a huge invalid name: %d bytes", len(s))
	}
}

func TestEnumStrings(t *testing.T) {
	if Deny.String() != "deny" || Allow.String() != "allow" || Verdict(7).String() != "verdict(7)" {
		t.Fatal("Verdict.String")
	}
	if Reason(200).String() != "reason(200)" {
		t.Fatal("Reason.String out of range")
	}
	seen := map[string]bool{}
	for r := Reason(0); r < numReasons; r++ {
		s := r.String()
		if s == "" || seen[s] {
			t.Fatalf("reason %d: name %q empty or repeated", r, s)
		}
		seen[s] = true
	}
}
