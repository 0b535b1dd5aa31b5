package netnstest

import (
	"net/netip"
)

// internetRanges are the only ranges AddInternetAddr accepts: documentation
// ranges, so a test can never pretend to be a real host, and their NAT64
// forms (64:ff9b::198.51.100.0/120, …), which stand for a NAT64 gateway
// in front of them.
var internetRanges = []netip.Prefix{
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("2001:db8::/32"),
	netip.MustParsePrefix("64:ff9b::c633:6400/120"),
	netip.MustParsePrefix("64:ff9b::cb00:7100/120"),
}

// AddInternetAddr adds server addresses (such as "198.51.100.77/32" or
// "2001:db8::77/128") to the internet namespace's interface, reachable from
// the firewall. Prefixes outside the documentation ranges fail the test.
func (tp *Topology) AddInternetAddr(prefixes ...string) {
	tp.t.Helper()
	for _, s := range prefixes {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			tp.t.Fatalf("netnstest: AddInternetAddr: %v", err)
		}
		if !inInternetRanges(p) {
			tp.t.Fatalf("netnstest: AddInternetAddr %s: not inside %v", p, internetRanges)
		}
	}
	tp.AddAddr(tp.Internet, InternetIface, prefixes...)
}

func inInternetRanges(p netip.Prefix) bool {
	for _, r := range internetRanges {
		if r.Bits() <= p.Bits() && r.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

// AddAddr adds addresses to dev in namespace ns (IPv6 without DAD), for
// example a second sandbox address to send spoofed packets from. A second
// IPv6 address in the same prefix may become the default source address;
// to avoid that, add it with Run(ns, "ip", "addr", "add", p, "dev", dev,
// "nodad", "preferred_lft", "0").
func (tp *Topology) AddAddr(ns, dev string, prefixes ...string) {
	tp.t.Helper()
	for _, p := range prefixes {
		args := []string{"-n", ns, "addr", "add", p, "dev", dev}
		if pp, err := netip.ParsePrefix(p); err == nil && pp.Addr().Is6() {
			args = append(args, "nodad")
		}
		mustRun(tp.t, "ip", args...)
	}
}
