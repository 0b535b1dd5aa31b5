package policy

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParsePorts(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"443", "443", ""},
		{"443,22", "22,443", ""},
		{"8000-8100,8050,8101", "8000-8101", ""},
		{"1-65535", "1-65535", ""},
		{"0", "", "port must be 1..65535"},
		{"99999", "", "port must be 1..65535"},
		{"80-70", "", "must go up"},
		{"", "", "want ports"},
		{"a", "", "want ports"},
		{"22,", "", "want ports"},
	} {
		got, err := ParsePorts(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParsePorts(%q) = %v, %v; want error %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("ParsePorts(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// A name with ports allows only those; a broader entry without ports
// still allows the rest; DNS (port 0) asks whether any port is allowed.
func TestDomainPorts(t *testing.T) {
	p := mustCompile(t, Spec{Mode: ModeCustom, AllowDomains: []string{
		"api.example.test:443", "git.example.test:22,443", "*.files.example.test:8000-8100",
		"open.example.test", "api.example.test:8443", "Mixed.Example.Test:80",
	}})
	for _, tc := range []struct {
		name string
		port uint16
		rule string // "" for a denial
	}{
		{"api.example.test", 443, "allow_domains api.example.test:443,8443"},
		{"api.example.test", 8443, "allow_domains api.example.test:443,8443"},
		{"api.example.test", 80, ""},
		{"api.example.test", 0, "allow_domains api.example.test:443,8443"},
		{"git.example.test", 22, "allow_domains git.example.test:22,443"},
		{"git.example.test", 23, ""},
		{"a.files.example.test", 8050, "allow_domains *.files.example.test:8000-8100"},
		{"a.files.example.test", 443, ""},
		{"open.example.test", 5432, "allow_domains open.example.test"},
		{"mixed.example.test", 80, "allow_domains mixed.example.test:80"},
	} {
		d := p.DecideNamePort(tc.name, tc.port)
		if got := d.Rule(); (tc.rule == "") == d.Allowed() || got != tc.rule {
			t.Errorf("DecideNamePort(%q, %d) = %v (rule %q), want rule %q", tc.name, tc.port, d, got, tc.rule)
		}
	}
	want := "api.example.test:443,8443 git.example.test:22,443 *.files.example.test:8000-8100 open.example.test mixed.example.test:80"
	if got := strings.Join(p.Spec().AllowDomains, " "); got != want {
		t.Errorf("Spec().AllowDomains = %q, want %q", got, want)
	}
	// The more specific entry's ports do not hide a broader entry's.
	q := mustCompile(t, Spec{Mode: ModeCustom, AllowDomains: []string{"api.example.test:443", "*.example.test"}})
	if d := q.DecideNamePort("api.example.test", 22); !d.Allowed() || d.Pattern != "*.example.test" {
		t.Errorf("port 22 with a wildcard for every port: %v", d)
	}
	// A pattern for every port absorbs one with ports.
	r := mustCompile(t, Spec{Mode: ModeCustom, AllowDomains: []string{"a.test:443", "a.test"}})
	if got := r.Spec().AllowDomains; len(got) != 1 || got[0] != "a.test" {
		t.Errorf("merged entries %q, want [a.test]", got)
	}
}

func TestDomainPortErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"db.example.com:99999", `allow_domains[0] "db.example.com:99999": port must be 1..65535`},
		{"db.example.com:0", "port must be 1..65535"},
		{"db.example.com:", "want ports"},
		{"198.51.100.7:443", "address"},
		{"[2001:db8::1]:443", "address"},
		{"db.example.com:22,x", "want ports"},
	} {
		_, err := Compile(Spec{Mode: ModeCustom, AllowDomains: []string{tc.in}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestParseCIDREntry(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"198.51.100.0/24", "198.51.100.0/24", ""},
		{"203.0.113.7/32:53/udp", "203.0.113.7/32:53/udp", ""},
		{"203.0.113.7:53/udp", "203.0.113.7/32:53/udp", ""},
		{"[2001:db8::/32]:443/tcp", "[2001:db8::/32]:443/tcp", ""},
		{"198.51.100.9/32:8100-8000", "", "must go up"},
		{"198.51.100.9/32:8000-8100", "198.51.100.9/32:8000-8100", ""},
		{"198.51.100.9/32:443,22", "198.51.100.9/32:22,443", ""},
		{"198.51.100.0/24/icmp", "198.51.100.0/24/icmp", ""},
		{"2001:db8::/32/udp", "2001:db8::/32/udp", ""},
		{"198.51.100.0/24:53/icmp", "", "icmp takes no port"},
		{"2001:db8::/32:443", "", "in brackets"},
		{"198.51.100.0/24:99999", "", "port must be 1..65535"},
		{"198.51.100.1/24:53", "", "host bits set"},
		{"[2001:db8::/32]443", "", "want PREFIX"},
	} {
		r, err := ParseCIDREntry(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseCIDREntry(%q) = %v, %v; want error %q", tc.in, r, err, tc.err)
			}
			continue
		}
		if err != nil || r.String() != tc.want {
			t.Errorf("ParseCIDREntry(%q) = %q, %v; want %q", tc.in, r, err, tc.want)
		}
	}
}

// A scoped entry allows (or denies) only the flows of its protocol and
// ports; an address judged without them meets only unscoped entries.
func TestScopedCIDRs(t *testing.T) {
	p := mustCompile(t, Spec{Mode: ModeCustom,
		AllowCIDRs: []string{"203.0.113.7/32:53/udp", "198.51.100.9/32:8000-8100", "[2001:db8::/32]:443/tcp",
			"198.51.100.0/24/icmp", "198.51.100.77/32"},
		DenyCIDRs: []string{"198.51.100.77/32:9001/udp"}})
	ap := func(s string, port uint16) netip.AddrPort { return netip.AddrPortFrom(netip.MustParseAddr(s), port) }
	for _, tc := range []struct {
		dst   netip.AddrPort
		proto Proto
		rule  string // "" for a denial
	}{
		{ap("203.0.113.7", 53), ProtoUDP, "allow_cidrs 203.0.113.7/32:53/udp"},
		{ap("203.0.113.7", 53), ProtoTCP, ""},
		{ap("203.0.113.7", 54), ProtoUDP, ""},
		{ap("203.0.113.7", 0), ProtoAny, ""},
		{ap("198.51.100.9", 8050), ProtoTCP, "allow_cidrs 198.51.100.9/32:8000-8100"},
		{ap("198.51.100.9", 8050), ProtoUDP, "allow_cidrs 198.51.100.9/32:8000-8100"},
		{ap("198.51.100.9", 0), ProtoICMP, "allow_cidrs 198.51.100.0/24/icmp"},
		{ap("203.0.113.7", 0), ProtoICMP, ""},
		{ap("2001:db8::1", 443), ProtoTCP, "allow_cidrs [2001:db8::/32]:443/tcp"},
		{ap("2001:db8::1", 443), ProtoUDP, ""},
		{ap("198.51.100.20", 0), ProtoICMP, "allow_cidrs 198.51.100.0/24/icmp"},
		{ap("198.51.100.20", 80), ProtoTCP, ""},
		{ap("198.51.100.77", 9001), ProtoUDP, "deny_cidrs 198.51.100.77/32:9001/udp"},
		{ap("198.51.100.77", 9001), ProtoTCP, "allow_cidrs 198.51.100.77/32"},
		{ap("198.51.100.77", 9002), ProtoUDP, "allow_cidrs 198.51.100.77/32"},
	} {
		d := p.DecideAddrPort(tc.dst, tc.proto)
		if got := d.Rule(); got != tc.rule || (tc.rule != "" && !strings.HasPrefix(tc.rule, "deny") && !d.Allowed()) ||
			(strings.HasPrefix(tc.rule, "deny") && d.Allowed()) {
			t.Errorf("DecideAddrPort(%v, %v) = %v (rule %q), want rule %q", tc.dst, tc.proto, d, got, tc.rule)
		}
	}
	want := "203.0.113.7/32:53/udp 198.51.100.9/32:8000-8100 [2001:db8::/32]:443/tcp 198.51.100.0/24/icmp 198.51.100.77/32"
	if got := strings.Join(p.Spec().AllowCIDRs, " "); got != want {
		t.Errorf("Spec().AllowCIDRs = %q, want %q", got, want)
	}
	// A port-scoped deny does not take the address from DNS answers or
	// from a name's other ports.
	if !p.NameMayReach(netip.MustParseAddr("198.51.100.77"), false) {
		t.Error("a port-scoped deny_cidrs entry blocks the address for every port")
	}
	if p.NameMayReachPort(ap("198.51.100.77", 9001), ProtoUDP, false) {
		t.Error("NameMayReachPort ignores a port-scoped deny")
	}
}

// Review findings: an unbracketed IPv6 address with a protocol is
// ambiguous; a target's protocol is case-insensitive and icmp takes no
// port.
func TestScopedAmbiguities(t *testing.T) {
	if _, err := ParseCIDREntry("2001:db8::1:53/udp"); err == nil || !strings.Contains(err.Error(), "prefix length or brackets") {
		t.Errorf("2001:db8::1:53/udp: %v", err)
	}
	for _, ok := range []string{"2001:db8::1/128/udp", "[2001:db8::1]:53/udp", "[2001:db8::1]/udp"} {
		if _, err := ParseCIDREntry(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	if tg, err := ParseTarget("198.51.100.7:53/UDP"); err != nil || tg.Proto != ProtoUDP || tg.Port != 53 {
		t.Errorf("ParseTarget 53/UDP: %+v %v", tg, err)
	}
	if _, err := ParseTarget("198.51.100.7:53/icmp"); err == nil {
		t.Error("ParseTarget took a port for icmp")
	}
}
