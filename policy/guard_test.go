package policy

import (
	"net/netip"
	"testing"
)

// guardSet is two sandboxes on one host whose own addresses are
// 198.51.100.1 and 2001:db8::1.
func guardSet(t *testing.T, g Guard) *Set {
	t.Helper()
	g.IsLocal = func(a netip.Addr) bool {
		return a == netip.MustParseAddr("198.51.100.1") || a == netip.MustParseAddr("2001:db8::1")
	}
	web := mustCompile(t, Spec{Mode: ModeAllowAll})
	db := mustCompile(t, Spec{Mode: ModeCustom, AllowCIDRs: []string{
		"10.231.0.2/32",   // names web's source
		"10.0.0.0/8",      // contains web's other source, but does not name it
		"198.51.100.1/32", // names a host address exactly
	}})
	s, err := NewSet([]Sandbox{
		{Name: "web", Sources: pfxs("10.231.0.2/32", "10.232.0.0/24", "fd00:231::2/128"), Policy: web},
		{Name: "db", Sources: pfxs("10.231.1.2/32"), Policy: db},
	}, g)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestGuard(t *testing.T) {
	s := guardSet(t, Guard{ProtectHost: true, IsolateSandboxes: true})
	web, _ := s.ByName("web")
	db, _ := s.ByName("db")
	tests := []struct {
		sb   *Sandbox
		addr string
		want Reason // 0: the guard lets it through
	}{
		{web, "198.51.100.1", ReasonProtectHost},
		{web, "2001:db8::1", ReasonProtectHost},
		{web, "::ffff:198.51.100.1", ReasonProtectHost},
		{web, "64:ff9b::c633:6401", ReasonProtectHost}, // NAT64 of 198.51.100.1
		{web, "10.231.1.2", ReasonIsolated},
		{web, "198.51.100.10", 0},
		{web, "10.231.0.2", 0},  // its own address
		{db, "198.51.100.1", 0}, // allow_cidrs names it
		{db, "10.231.0.2", 0},   // allow_cidrs names it
		{db, "10.232.0.5", ReasonIsolated},
		{db, "fd00:231::2", ReasonIsolated},
		{db, "2001:db8::1", ReasonProtectHost},
	}
	for _, tt := range tests {
		d, bad := s.Guarded(tt.sb, netip.MustParseAddr(tt.addr))
		if got := d.Reason; bad != (tt.want != 0) || got != tt.want {
			t.Errorf("%s to %s: guarded %v (%v), want %v", tt.sb.Name, tt.addr, bad, got, tt.want)
		}
	}
}

func TestGuardOff(t *testing.T) {
	s := guardSet(t, Guard{})
	web, _ := s.ByName("web")
	for _, a := range []string{"198.51.100.1", "10.231.1.2"} {
		if d, bad := s.Guarded(web, netip.MustParseAddr(a)); bad {
			t.Errorf("guard off, %s: %v", a, d)
		}
	}
}

func TestSetDecideAddr(t *testing.T) {
	s := guardSet(t, Guard{ProtectHost: true, IsolateSandboxes: true})
	web, _ := s.ByName("web")
	if d := s.DecideAddr(web, netip.MustParseAddr("198.51.100.1")); d.Allowed() || d.String() != "deny: 198.51.100.1 is an address of this host (host.protect_host)" {
		t.Errorf("allow-all to the host: %v", d)
	}
	if d := s.DecideAddr(web, netip.MustParseAddr("10.231.1.2")); d.Allowed() || d.Rule() != "host.isolate_sandboxes" {
		t.Errorf("allow-all to another sandbox: %v", d)
	}
	if d := s.DecideAddr(web, netip.MustParseAddr("198.51.100.10")); !d.Allowed() {
		t.Errorf("allow-all to the internet: %v", d)
	}
	if s.NameMayReach(web, netip.MustParseAddr("198.51.100.1"), false) {
		t.Error("a name may lead to the host")
	}
	// A copy with another IsLocal keeps the sandboxes and the rest of the guard.
	c := s.WithIsLocal(func(netip.Addr) bool { return false })
	cweb, _ := c.ByName("web")
	if d := c.DecideAddr(cweb, netip.MustParseAddr("198.51.100.1")); !d.Allowed() {
		t.Errorf("copy: %v", d)
	}
	if d := c.DecideAddr(cweb, netip.MustParseAddr("10.231.1.2")); d.Allowed() {
		t.Errorf("copy lost isolate_sandboxes: %v", d)
	}
}
