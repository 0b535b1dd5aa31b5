package policy

import (
	"net/netip"
	"testing"
)

func TestIsInternal(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		{"10.1.2.3", true},
		{"172.16.0.1", true},
		{"172.32.0.1", false},
		{"192.168.1.1", true},
		{"127.0.0.1", true},
		{"0.0.0.0", true},
		{"169.254.169.254", true},
		{"100.64.0.1", true},
		{"100.128.0.1", false},
		{"198.51.100.10", false},
		{"::1", true},
		{"::", true},
		{"fd00::1", true},
		{"fc00::1", true},
		{"fe80::1", true},
		{"2001:db8::1", false},
		{"::ffff:10.0.0.1", true},
		{"::ffff:198.51.100.1", false},
		{"64:ff9b::a00:1", true},       // NAT64 of 10.0.0.1
		{"64:ff9b::c633:640a", false},  // NAT64 of 198.51.100.10
		{"64:ff9b:1::c633:640a", true}, // NAT64 local use: internal whatever it embeds
		{"2002:a9fe:a9fe::1", true},    // 6to4 of 169.254.169.254
		{"2002:c633:640a::1", false},   // 6to4 of 198.51.100.10
		// The rest of IANA's special-purpose registries.
		{"198.18.0.5", true},       // benchmarking
		{"198.19.255.255", true},   //
		{"198.20.0.1", false},      // just past it
		{"192.0.0.170", true},      // NAT64 discovery (IETF protocol assignments)
		{"192.0.2.1", false},       // documentation
		{"240.0.0.1", true},        // reserved
		{"255.255.255.255", true},  // limited broadcast
		{"223.255.255.255", false}, // last unicast before 240/4
		{"100::1", true},           // discard-only
		{"100:0:0:1::1", true},     // dummy prefix
		{"2001:2::1", true},        // benchmarking
		{"2001:3::1", false},       // AMT: globally reachable
		{"2001:10::1", true},       // ORCHID
		{"5f00::1", true},          // SRv6
		{"64:ff9b::c612:5", true},  // NAT64 of 198.18.0.5
	}
	for _, tt := range tests {
		if got := IsInternal(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("IsInternal(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}

func TestNameMayReach(t *testing.T) {
	p, err := Compile(Spec{Mode: ModeCustom, AllowDomains: []string{"a.test"},
		AllowCIDRs: []string{"10.9.0.0/16"}, DenyCIDRs: []string{"198.51.100.128/25", "10.9.9.0/24"}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		addr         string
		blockPrivate bool
		want         bool
	}{
		{"198.51.100.10", true, true},
		{"198.51.100.130", false, false},        // deny_cidrs
		{"::ffff:198.51.100.130", false, false}, // deny_cidrs, mapped
		{"64:ff9b::c633:6482", false, false},    // deny_cidrs through NAT64 (198.51.100.130)
		{"169.254.169.254", true, false},        // metadata
		{"169.254.169.254", false, true},        // guard off
		{"10.9.1.1", true, true},                // internal but in allow_cidrs
		{"10.9.9.9", true, false},               // allow_cidrs, but deny_cidrs wins
		{"fd00::1", true, false},
	}
	for _, tt := range tests {
		if got := p.NameMayReach(netip.MustParseAddr(tt.addr), tt.blockPrivate); got != tt.want {
			t.Errorf("NameMayReach(%s, %v) = %v, want %v", tt.addr, tt.blockPrivate, got, tt.want)
		}
	}
}

// TestDenyEmbeddedIPv4: deny_cidrs judges every IPv6 form that carries
// an IPv4 address as that address, in every mode and on the raw path.
func TestDenyEmbeddedIPv4(t *testing.T) {
	for _, mode := range []Mode{ModeAllowAll, ModeCustom} {
		p, err := Compile(Spec{Mode: mode, DenyCIDRs: []string{"198.51.100.128/25"}, AllowCIDRs: allowFor(mode, "::/0")})
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range []struct {
			addr   string
			denied bool
		}{
			{"64:ff9b::c633:6482", true},    // NAT64 of 198.51.100.130, the address
			{"64:ff9b:1::c633:6482", true},  // NAT64 local use
			{"::ffff:198.51.100.130", true}, // mapped
			{"::198.51.100.130", true},      // compatible
			{"2002:c633:6482::1", true},     // 6to4
			{"2001:0:c633:6482::1", true},   // Teredo server
			{"2001:0:1:1::39cc:9b7d", true}, // Teredo client: ^0x39cc9b7d = 198.51.100.130
			{"64:ff9b::c633:640a", false},   // NAT64 of 198.51.100.10
			{"2001:db8::c633:6482", false},  // not a form that embeds
			{"2001:0:c633:640a::c633:640a", false},
		} {
			d := p.DecideAddr(netip.MustParseAddr(tt.addr))
			if got := d.Reason == ReasonDenyCIDR; got != tt.denied {
				t.Errorf("%s: %s: %v, want denied %v", mode, tt.addr, d, tt.denied)
			}
		}
	}
}

func allowFor(m Mode, cidr string) []string {
	if m == ModeCustom {
		return []string{cidr}
	}
	return nil
}

func TestEmbeddingPrefixes(t *testing.T) {
	got := EmbeddingPrefixes(netip.MustParsePrefix("198.51.100.128/25"))
	want := []string{"::ffff:198.51.100.128/121", "::198.51.100.128/121", "64:ff9b::c633:6480/121", "2002:c633:6480::/41", "2001:0:c633:6480::/57"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != netip.MustParsePrefix(want[i]) {
			t.Errorf("[%d] = %s, want %s", i, got[i], want[i])
		}
	}
}
