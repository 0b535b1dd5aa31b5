package policy

import (
	"net/netip"
	"testing"
)

// In report-only mode every policy denial becomes WouldDeny with the
// reason and rule of enforce mode, and nothing else changes.
func TestAuditReportsWhatEnforceDenies(t *testing.T) {
	spec := Spec{Mode: ModeCustom, AllowDomains: []string{"*.ok.test"}, AllowCIDRs: []string{"198.51.100.0/25"},
		DenyCIDRs: []string{"198.51.100.64/26"}}
	enforce := mustCompile(t, spec)
	spec.Audit = true
	audit := mustCompile(t, spec)
	if !audit.Audit() || enforce.Audit() || !audit.Spec().Audit {
		t.Fatal("Audit() does not follow Spec.Audit")
	}
	for _, name := range []string{"a.ok.test", "evil.test", "", "bad..name"} {
		e, a := enforce.DecideName(name), audit.DecideName(name)
		if e.Reason != a.Reason || e.Rule() != a.Rule() || e.Name != a.Name {
			t.Errorf("DecideName(%q): audit %v, enforce %v: want the same reason and rule", name, a, e)
		}
		want := e.Verdict
		if want == Deny {
			want = WouldDeny
		}
		if a.Verdict != want || !a.Allowed() {
			t.Errorf("DecideName(%q) in audit = %v, want %v", name, a, want)
		}
	}
	for _, s := range []string{"198.51.100.66", "198.51.100.1", "203.0.113.1"} {
		addr := netip.MustParseAddr(s)
		e, a := enforce.DecideAddr(addr), audit.DecideAddr(addr)
		if e.NeedsName() != a.NeedsName() || e.Reason != a.Reason || e.Rule() != a.Rule() {
			t.Errorf("DecideAddr(%s): audit %v, enforce %v", s, a, e)
		}
		if e.Verdict == Deny && !e.NeedsName() && a.Verdict != WouldDeny {
			t.Errorf("DecideAddr(%s) in audit = %v, want would-deny", s, a)
		}
	}
	if d := audit.DecideAddr(netip.MustParseAddr("198.51.100.66")); d.String() != "would-deny: 198.51.100.66 in deny_cidrs 198.51.100.64/26" {
		t.Errorf("String() = %q", d)
	}
}

// Report-only deny-all reads every flow's name, so that the report can
// name it; the name is then would-deny by mode deny-all.
func TestAuditDenyAllAsksForNames(t *testing.T) {
	p := mustCompile(t, Spec{Mode: ModeDenyAll, Audit: true})
	if d := p.DecideAddr(netip.MustParseAddr("203.0.113.1")); !d.NeedsName() {
		t.Errorf("DecideAddr = %v, want a decision that asks for the name", d)
	}
	if d := p.DecideName("x.test"); d.Verdict != WouldDeny || d.Reason != ReasonDenyAll || d.Rule() != "mode deny-all" {
		t.Errorf("DecideName = %v, want would-deny by mode deny-all", d)
	}
}

// Denials that are not the policy's stand in report-only mode.
func TestAuditKeepsOtherDenials(t *testing.T) {
	p := mustCompile(t, Spec{Mode: ModeCustom, Audit: true})
	for _, r := range []Reason{ReasonProtectHost, ReasonIsolated, ReasonUnknownSource, ReasonMalformed,
		ReasonUnsafeHTTP, ReasonConnLimit, ReasonPeekLimit, ReasonNotResolved, ReasonDialFailed, ReasonHostChanged} {
		if d := p.Audited(Decision{Reason: r}); d.Allowed() {
			t.Errorf("Audited(%v) = %v, want it denied", r, d)
		}
	}
	if !mustCompile(t, Spec{Mode: ModeCustom, Audit: true, DenyCIDRs: []string{"10.0.0.0/8"}}).
		NameMayReach(netip.MustParseAddr("10.1.1.1"), false) {
		t.Error("NameMayReach refuses a deny_cidrs address in audit: the flow would not be reported")
	}
	if mustCompile(t, Spec{Mode: ModeCustom, Audit: true}).NameMayReach(netip.MustParseAddr("10.1.1.1"), true) {
		t.Error("NameMayReach lets an internal address through block_private in audit")
	}
}
