package netnstest

import (
	"fmt"
	"net/netip"
	"os/exec"
)

// ExtraSandbox is one more sandbox namespace wired to the firewall by
// AddSandbox.
type ExtraSandbox struct {
	NS            string // the namespace, with SandboxIface inside
	FirewallIface string // the veth end in the firewall namespace

	Addr4, Addr6       netip.Addr // the sandbox's addresses, on its SandboxIface
	Gateway4, Gateway6 netip.Addr // the firewall's, on FirewallIface
}

// AddSandbox adds a sandbox namespace on subnet n (1-255; 0 is the
// topology's own sandbox): a veth pair from fwIface in the firewall to
// SandboxIface in the new namespace, the sandbox at 10.231.n.2/24 and
// fd00:231:n::2/64 (n in hex), the firewall at .1 and ::1, the sandbox's
// default routes pointing at the firewall. Removed at cleanup with the
// namespace (the firewall's end goes with it).
func (tp *Topology) AddSandbox(fwIface string, n int) *ExtraSandbox {
	t := tp.t
	t.Helper()
	if n < 1 || n > 255 {
		t.Fatalf("netnstest: AddSandbox %s: subnet %d not in 1-255", fwIface, n)
	}
	sb := &ExtraSandbox{
		NS:            NewNamespace(t),
		FirewallIface: fwIface,
		Addr4:         netip.MustParseAddr(fmt.Sprintf("10.231.%d.2", n)),
		Addr6:         netip.MustParseAddr(fmt.Sprintf("fd00:231:%x::2", n)),
		Gateway4:      netip.MustParseAddr(fmt.Sprintf("10.231.%d.1", n)),
		Gateway6:      netip.MustParseAddr(fmt.Sprintf("fd00:231:%x::1", n)),
	}
	mustRun(t, "ip", "-n", tp.Firewall, "link", "add", fwIface, "type", "veth",
		"peer", "name", SandboxIface, "netns", sb.NS)
	tp.AddAddr(sb.NS, SandboxIface, sb.Addr4.String()+"/24", sb.Addr6.String()+"/64")
	tp.AddAddr(tp.Firewall, fwIface, sb.Gateway4.String()+"/24", sb.Gateway6.String()+"/64")
	links := []link{{sb.NS, SandboxIface}, {tp.Firewall, fwIface}}
	for _, l := range links {
		mustRun(t, "ip", "-n", l.ns, "link", "set", l.dev, "up")
	}
	mustRun(t, "ip", "-n", sb.NS, "-4", "route", "add", "default", "via", sb.Gateway4.String())
	mustRun(t, "ip", "-n", sb.NS, "-6", "route", "add", "default", "via", sb.Gateway6.String())
	waitUp(t, links)
	return sb
}

// AddBridge adds a Linux bridge called bridge to the firewall, on subnet
// n (1-255) like AddSandbox (the firewall at 10.231.n.1/24 and
// fd00:231:n::1/64 on the bridge), and count sandbox namespaces behind it,
// each wired by a veth whose firewall end is a port of the bridge: sandbox
// i at 10.231.n.(i+2) and fd00:231:n::(i+2), as a container on a Docker
// bridge network is. FirewallIface of each is the bridge.
func (tp *Topology) AddBridge(bridge string, n, count int) []*ExtraSandbox {
	t := tp.t
	t.Helper()
	if n < 1 || n > 255 || count < 1 || count > 250 {
		t.Fatalf("netnstest: AddBridge %s: subnet %d or count %d out of range", bridge, n, count)
	}
	gw4 := netip.MustParseAddr(fmt.Sprintf("10.231.%d.1", n))
	gw6 := netip.MustParseAddr(fmt.Sprintf("fd00:231:%x::1", n))
	mustRun(t, "ip", "-n", tp.Firewall, "link", "add", bridge, "type", "bridge")
	t.Cleanup(func() { exec.Command("ip", "-n", tp.Firewall, "link", "del", bridge).Run() })
	tp.AddAddr(tp.Firewall, bridge, gw4.String()+"/24", gw6.String()+"/64")
	mustRun(t, "ip", "-n", tp.Firewall, "link", "set", bridge, "up")
	links := []link{{tp.Firewall, bridge}}
	var sbs []*ExtraSandbox
	for i := range count {
		sb := &ExtraSandbox{
			NS:            NewNamespace(t),
			FirewallIface: bridge,
			Addr4:         netip.MustParseAddr(fmt.Sprintf("10.231.%d.%d", n, i+2)),
			Addr6:         netip.MustParseAddr(fmt.Sprintf("fd00:231:%x::%x", n, i+2)),
			Gateway4:      gw4,
			Gateway6:      gw6,
		}
		port := fmt.Sprintf("%.11sp%d", bridge, i)
		mustRun(t, "ip", "-n", tp.Firewall, "link", "add", port, "type", "veth", "peer", "name", SandboxIface, "netns", sb.NS)
		mustRun(t, "ip", "-n", tp.Firewall, "link", "set", port, "master", bridge, "up")
		tp.AddAddr(sb.NS, SandboxIface, sb.Addr4.String()+"/24", sb.Addr6.String()+"/64")
		mustRun(t, "ip", "-n", sb.NS, "link", "set", SandboxIface, "up")
		mustRun(t, "ip", "-n", sb.NS, "-4", "route", "add", "default", "via", gw4.String())
		mustRun(t, "ip", "-n", sb.NS, "-6", "route", "add", "default", "via", gw6.String())
		links = append(links, link{sb.NS, SandboxIface}, link{tp.Firewall, port})
		sbs = append(sbs, sb)
	}
	waitUp(t, links)
	return sbs
}
