package proxy

import (
	"context"
	"net/netip"
	"testing"

	"github.com/egressd/egressd/policy"
)

// boundEverything claims every address was answered to the sandbox.
type boundEverything struct{}

func (boundEverything) Bound(string, string, netip.Addr) bool { return true }

// TestPinRebinding: with BlockPrivate, a name allowed by allow_domains
// never leads to an internal address, whether the sandbox pointed the flow
// there itself (bound or not) or the name resolves there; allow_cidrs
// opens that address again, and deny_cidrs always wins.
func TestPinRebinding(t *testing.T) {
	resolver := staticResolver{
		"meta.test":  {netip.MustParseAddr("169.254.169.254")},
		"mixed.test": {netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("198.51.100.10")},
		"lan.test":   {netip.MustParseAddr("10.9.0.1")},
		"nat64.test": {netip.MustParseAddr("64:ff9b::c633:6482")}, // 198.51.100.130, in deny_cidrs
		"host.test":  {netip.MustParseAddr("198.51.100.1")},       // the host's own (protect_host)
		"host6.test": {netip.MustParseAddr("64:ff9b::c633:6401")}, // the same, through NAT64
		"peer.test":  {netip.MustParseAddr("203.0.113.50")},       // sandbox sb2 (isolate_sandboxes)
	}
	spec := policy.Spec{Mode: policy.ModeCustom, AllowDomains: []string{"*.test"},
		AllowCIDRs: []string{"10.9.0.0/16"}, DenyCIDRs: []string{"198.51.100.128/25"}}
	pol, err := policy.Compile(spec)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, dst string
		bindings  Bindings
		want      string // the address dialled; "" = refused
	}{
		{"meta.test", "198.51.100.10:443", nil, ""},
		{"meta.test", "169.254.169.254:80", boundEverything{}, ""},
		{"mixed.test", "10.0.0.5:443", nil, "198.51.100.10:443"},
		{"lan.test", "10.9.0.1:443", nil, "10.9.0.1:443"},
		{"nat64.test", "198.51.100.10:443", nil, ""},
		{"host.test", "198.51.100.10:443", nil, ""},
		{"host.test", "198.51.100.1:443", boundEverything{}, ""},
		{"host6.test", "198.51.100.10:443", nil, ""},
		{"peer.test", "203.0.113.50:443", boundEverything{}, ""},
		{"peer.test", "198.51.100.10:443", nil, ""},
	}
	set, err := policy.NewSet([]policy.Sandbox{
		{Name: "sb1", Interface: "veth-sb1", Sources: []netip.Prefix{netip.MustParsePrefix("10.231.0.2/32")}, Policy: pol},
		{Name: "sb2", Interface: "veth-sb2", Sources: []netip.Prefix{netip.MustParsePrefix("203.0.113.50/32")}, Policy: pol},
	}, policy.Guard{ProtectHost: true, IsolateSandboxes: true, IsLocal: func(a netip.Addr) bool {
		return a == netip.MustParseAddr("198.51.100.1")
	}})
	if err != nil {
		t.Fatal(err)
	}
	sb, _ := set.ByName("sb1")
	for _, tt := range tests {
		s := NewServer(Options{Resolver: resolver, Bindings: tt.bindings, BlockPrivate: true}, nil)
		f := &flow{sandbox: "sb1", dst: netip.MustParseAddrPort(tt.dst)}
		got, _, err := s.pin(context.Background(), f, set, sb, tt.name)
		if tt.want == "" {
			if err == nil {
				t.Errorf("%s to %s: dialled %s, want refused", tt.name, tt.dst, got)
			}
			continue
		}
		if err != nil || got.String() != tt.want {
			t.Errorf("%s to %s: %v, %v; want %s", tt.name, tt.dst, got, err, tt.want)
		}
	}
}
