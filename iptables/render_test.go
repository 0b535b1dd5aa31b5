package iptables

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.nft")

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

var ports = Ports{TProxy: 15001, DNS: 5353}

// goldenCases are rendered to testdata/golden/<name>.nft.
var goldenCases = []struct {
	name  string
	sbs   []Sandbox
	ports Ports
	host  Host
}{
	{"empty", nil, ports, Host{}},
	{"custom", []Sandbox{{
		Name: "agent-1.ci", Interface: "veth-sb1", Mode: ModeCustom,
		Sources:    prefixes("10.231.0.2/32", "fd00:231::2/128"),
		AllowCIDRs: prefixes("198.51.100.0/24", "198.51.100.77/32", "203.0.113.9/32", "2001:db8::/48"),
		DenyCIDRs:  prefixes("198.51.100.66/32", "169.254.0.0/16", "fe80::/10"),
	}}, ports, Host{}},
	{"allow_all_no_dns", []Sandbox{{
		Name: "builder", Interface: "veth-b", Mode: ModeAllowAll,
		Sources:   prefixes("10.1.0.0/24"),
		DenyCIDRs: prefixes("10.0.0.0/8", "192.168.0.0/16"),
	}}, Ports{TProxy: 15001}, Host{}},
	{"deny_all", []Sandbox{{
		Name: "jail", Interface: "veth-j", Mode: ModeDenyAll,
		Sources: prefixes("10.9.0.2/32", "fd00:9::2/128"),
	}}, ports, Host{}},
	{"two_sandboxes_sorted", []Sandbox{
		{Name: "zeta", Interface: "veth-z", Mode: ModeAllowAll, Sources: prefixes("10.2.0.2/32")},
		{Name: "alpha", Interface: "veth-a", Mode: ModeCustom, Sources: prefixes("10.3.0.2/32"),
			AllowCIDRs: prefixes("203.0.113.0/24")},
	}, ports, Host{}},
	{"host_guard", []Sandbox{
		{Name: "web", Interface: "veth-sb1", Mode: ModeAllowAll, Sources: prefixes("10.231.0.2/32", "fd00:231::2/128")},
		{Name: "db", Interface: "veth-sb2", Mode: ModeCustom, Sources: prefixes("10.231.1.2/32"),
			AllowCIDRs: prefixes("10.231.0.2/32", "10.0.0.0/8", "198.51.100.1/32")},
	}, ports, Host{
		Guarded:     []string{"veth-sb*", "tap*", "veth-old", "veth-sb1", "veth-old"},
		ProtectHost: true, IsolateSandboxes: true,
	}},
	{"reject", []Sandbox{
		{Name: "web", Interface: "veth-sb1", Mode: ModeCustom, Sources: prefixes("10.231.0.2/32"),
			AllowCIDRs: prefixes("198.51.100.0/24"), DenyCIDRs: prefixes("198.51.100.128/25")},
	}, ports, Host{ProtectHost: true, IsolateSandboxes: true, Reject: true}},
	{"ports", []Sandbox{
		{Name: "web", Interface: "veth-sb1", Mode: ModeCustom, Sources: prefixes("10.231.0.2/32", "fd00:231::2/128"),
			AllowCIDRs: prefixes("198.51.100.0/25"),
			AllowPorts: []PortRule{
				{Prefix: netip.MustParsePrefix("203.0.113.0/24"), Proto: 17, Lo: 1, Hi: 100},
				{Prefix: netip.MustParsePrefix("203.0.113.7/32"), Proto: 17, Lo: 50, Hi: 200}, // overlaps: split
				{Prefix: netip.MustParsePrefix("203.0.113.7/32"), Proto: 17, Lo: 60, Hi: 70},  // inside: dropped
				{Prefix: netip.MustParsePrefix("203.0.113.0/24"), Proto: 1, Lo: 0, Hi: 65535},
				{Prefix: netip.MustParsePrefix("2001:db8::/32"), Proto: 17, Lo: 443, Hi: 443},
			},
			DenyPorts: []PortRule{{Prefix: netip.MustParsePrefix("198.51.100.0/25"), Proto: 17, Lo: 53, Hi: 53}}},
	}, ports, Host{}},
	{"audit", []Sandbox{
		{Name: "learn", Interface: "veth-l", Mode: ModeCustom, Audit: true, Sources: prefixes("10.5.0.2/32", "fd00:5::2/128"),
			AllowCIDRs: prefixes("198.51.100.0/24"), DenyCIDRs: prefixes("198.51.100.128/25")},
		{Name: "learn-all", Interface: "veth-la", Mode: ModeDenyAll, Audit: true, Sources: prefixes("10.6.0.2/32")},
	}, ports, Host{ProtectHost: true}},
}

func TestRenderGolden(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Render(tc.sbs, tc.ports, tc.host)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			path := filepath.Join("testdata", "golden", tc.name+".nft")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("Render differs from %s (go test -update rewrites it):\n%s", path, got)
			}
		})
	}
}

func TestRenderDoesNotDependOnInputOrder(t *testing.T) {
	a := []Sandbox{
		{Name: "b", Interface: "ib", Mode: ModeAllowAll, Sources: prefixes("10.0.0.2/32", "10.0.0.1/32")},
		{Name: "a", Interface: "ia", Mode: ModeCustom, AllowCIDRs: prefixes("203.0.113.0/25", "198.51.100.0/24")},
	}
	b := []Sandbox{a[1], a[0]}
	b[1].Sources = prefixes("10.0.0.1/32", "10.0.0.2/32")
	b[0].AllowCIDRs = prefixes("198.51.100.0/24", "203.0.113.0/25")
	ra, errA := Render(a, ports, Host{})
	rb, errB := Render(b, ports, Host{})
	if errA != nil || errB != nil {
		t.Fatalf("Render: %v, %v", errA, errB)
	}
	if ra != rb {
		t.Errorf("same sandboxes in another order render differently:\n%s\n---\n%s", ra, rb)
	}
}

func TestRenderFailsClosed(t *testing.T) {
	sb := Sandbox{Name: "x", Interface: "veth-x", Mode: ModeCustom, Sources: prefixes("10.0.0.2/32")}
	got, err := Render([]Sandbox{sb}, ports, Host{})
	if err != nil {
		t.Fatal(err)
	}
	pre := got[strings.Index(got, "chain prerouting {"):]
	// no (interface, source) pair for IPv6: every IPv6 packet is "spoofed"
	if !strings.Contains(got, "map sandbox6 {\n\t\ttype ifname . ipv6_addr : verdict\n\t}") || !strings.Contains(got, "map sandbox6r {\n\t\ttype ifname . ipv6_addr : verdict\n\t\tflags interval\n\t}") {
		t.Errorf("sandbox6 is not empty:\n%s", got)
	}
	if !strings.Contains(pre, `iifname @claimed counter drop comment "spoofed source"`) {
		t.Errorf("prerouting lacks the spoofed-source drop:\n%s", pre)
	}
	for _, mode := range []string{"allow_all", "custom"} {
		chain := got[strings.Index(got, "chain "+mode+" {"):]
		for _, want := range []string{
			// TPROXY falls through when nothing listens
			"meta l4proto tcp counter reject with tcp reset comment \"proxy not listening, or TCP of no connection of its\"",
			"meta l4proto { tcp, udp } th dport 53 counter drop comment \"DNS: no resolver\"",
			"meta nfproto != @alive counter drop comment \"egressd not running\"",
		} {
			if !strings.Contains(chain[:strings.Index(chain, "\n\t}")], want) {
				t.Errorf("chain %s lacks %q:\n%s", mode, want, chain)
			}
		}
	}
	custom := got[strings.Index(got, "chain custom {"):]
	if last := lastRule(custom); last != `counter drop comment "mode custom: not allowed"` {
		t.Errorf("custom chain ends with %q, want a drop", last)
	}
}

// lastRule returns the last non-brace line of the first chain in s.
func lastRule(s string) string {
	end := strings.Index(s, "\n\t}")
	lines := strings.Split(s[:end], "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
