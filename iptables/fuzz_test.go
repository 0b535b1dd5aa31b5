package iptables

import (
	"net/netip"
	"strings"
	"testing"
)

// FuzzRender checks that no sandbox name, interface or prefix can change the
// script's structure: nft strings have no escapes, so a name could only break
// out of its quotes with a '"' or end its line with a newline. Whatever
// NewRuleset accepts has as many of both as a harmless name.
func FuzzRender(f *testing.F) {
	f.Add("sb1", "veth-sb1", "10.0.0.0/8")
	f.Add("a\"b", "eth0", "::/0")
	f.Add("x } drop", "v\n", "2001:db8::/32")
	f.Add("x", "veth*", "1.2.3.4/33")
	f.Fuzz(func(t *testing.T, name, iface, prefix string) {
		p, err := netip.ParsePrefix(prefix)
		if err != nil {
			return
		}
		sb := Sandbox{Name: name, Interface: iface, Mode: ModeCustom,
			Sources: []netip.Prefix{p}, AllowCIDRs: []netip.Prefix{p}, DenyCIDRs: []netip.Prefix{p}}
		got, err := Render([]Sandbox{sb}, ports, Host{})
		if err != nil {
			return
		}
		sb.Name, sb.Interface = "n", "i"
		ref, err := Render([]Sandbox{sb}, ports, Host{})
		if err != nil {
			t.Fatalf("reference render: %v", err)
		}
		for _, c := range []string{"\n", `"`} {
			if g, r := strings.Count(got, c), strings.Count(ref, c); g != r {
				t.Fatalf("name %q iface %q: %d %q in script, want %d:\n%s", name, iface, g, c, r, got)
			}
		}
	})
}
