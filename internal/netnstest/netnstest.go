// Package netnstest builds throwaway network namespaces for real-kernel
// tests: a sandbox, a firewall that routes it, and a fake internet, wired with
// veth pairs and nothing else (no link to the machine's real network).
//
//	Sandbox              Firewall                          Internet
//	eth0 ───────────── veth-sb1                veth-inet ─── eth0
//	10.231.0.2/24        10.231.0.1/24         198.51.100.1/24  198.51.100.2/24
//	fd00:231::2/64       fd00:231::1/64        203.0.113.1/24   203.0.113.2/24
//	                                           2001:db8::1/64   2001:db8::2/64
//
// The sandbox's default routes point at the firewall, the firewall forwards
// (IPv4 and IPv6) and its default routes point at the internet namespace,
// whose default routes point back. Tests add server addresses to the
// internet side with AddInternetAddr. IPv6 duplicate address detection is off
// so addresses work at once.
//
// The firewall has no filtering of its own: the test installs what it
// tests there (egressd's rules, a transparent listener, …). Go code runs in a
// namespace with Do (sockets opened inside stay in that namespace), commands
// with Run, Exec or Start:
//
//	tp := netnstest.New(t)
//	tp.AddInternetAddr("198.51.100.77/32")
//	var ln net.Listener
//	tp.Do(tp.Internet, func() (err error) { ln, err = net.Listen("tcp", ":80"); return err })
//	tp.Do(tp.Sandbox, func() error { c, err := net.Dial("tcp", "198.51.100.77:80"); … })
//
// Everything is removed with t.Cleanup, failed test or not: processes are
// killed by PID, then the namespaces deleted. Tests need root: without it
// they skip, unless CI=true, where they fail.
package netnstest

import (
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Interface names. Each lives in its own namespace, so topologies of
// parallel tests do not collide.
const (
	SandboxIface          = "eth0"      // in Sandbox
	FirewallSandboxIface  = "veth-sb1"  // in Firewall, towards Sandbox
	FirewallInternetIface = "veth-inet" // in Firewall, towards Internet
	InternetIface         = "eth0"      // in Internet
)

// Addresses of the topology.
var (
	SandboxAddr4          = netip.MustParseAddr("10.231.0.2")
	SandboxAddr6          = netip.MustParseAddr("fd00:231::2")
	GatewayAddr4          = netip.MustParseAddr("10.231.0.1") // firewall, sandbox side
	GatewayAddr6          = netip.MustParseAddr("fd00:231::1")
	FirewallInternetAddr4 = netip.MustParseAddr("198.51.100.1")
	FirewallInternetAddr6 = netip.MustParseAddr("2001:db8::1")
	InternetAddr4         = netip.MustParseAddr("198.51.100.2")
	InternetAddr6         = netip.MustParseAddr("2001:db8::2")
)

// Topology is a set of three namespaces; the fields are their names, to
// pass to Run, Start and Do or to `ip netns exec`.
type Topology struct {
	Sandbox, Firewall, Internet string

	t testing.TB
}

// RequireRoot skips t unless it runs as root with ip(8) installed; under
// CI=true it fails instead.
func RequireRoot(t testing.TB) {
	t.Helper()
	reason := ""
	if os.Geteuid() != 0 {
		reason = "needs root"
	} else if _, err := exec.LookPath("ip"); err != nil {
		reason = "needs ip(8): " + err.Error()
	}
	if reason == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("netnstest: %s (CI=true)", reason)
	}
	t.Skipf("netnstest: %s", reason)
}

// New builds the topology. It calls RequireRoot first.
func New(t testing.TB) *Topology {
	t.Helper()
	RequireRoot(t)
	prefix := "egt-" + randomSuffix(t)
	tp := &Topology{t: t, Sandbox: prefix + "-sb", Firewall: prefix + "-fw", Internet: prefix + "-in"}
	for _, ns := range []string{tp.Sandbox, tp.Firewall, tp.Internet} {
		addNamespace(t, ns)
	}
	tp.wire()
	return tp
}

// NewNamespace creates one namespace with lo up and IPv6 DAD off, removed at
// cleanup, and returns its name.
func NewNamespace(t testing.TB) string {
	t.Helper()
	RequireRoot(t)
	ns := "egt-" + randomSuffix(t)
	addNamespace(t, ns)
	return ns
}

func addNamespace(t testing.TB, ns string) {
	t.Helper()
	mustRun(t, "ip", "netns", "add", ns)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("netnstest: delete namespace %s: %v: %s", ns, err, out)
		}
	})
	mustRun(t, "ip", "netns", "exec", ns, "sysctl", "-q", "-w",
		"net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	mustRun(t, "ip", "-n", ns, "link", "set", "lo", "up")
}

func randomSuffix(t testing.TB) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("netnstest: random suffix: %v", err)
	}
	return hex.EncodeToString(b[:])
}

// wire creates the veth pairs directly in their namespaces (never in the
// caller's), then addresses, routes and forwarding.
func (tp *Topology) wire() {
	t := tp.t
	t.Helper()
	mustRun(t, "ip", "-n", tp.Firewall, "link", "add", FirewallSandboxIface, "type", "veth",
		"peer", "name", SandboxIface, "netns", tp.Sandbox)
	mustRun(t, "ip", "-n", tp.Firewall, "link", "add", FirewallInternetIface, "type", "veth",
		"peer", "name", InternetIface, "netns", tp.Internet)
	tp.AddAddr(tp.Sandbox, SandboxIface, "10.231.0.2/24", "fd00:231::2/64")
	tp.AddAddr(tp.Firewall, FirewallSandboxIface, "10.231.0.1/24", "fd00:231::1/64")
	tp.AddAddr(tp.Firewall, FirewallInternetIface, "198.51.100.1/24", "203.0.113.1/24", "2001:db8::1/64")
	tp.AddAddr(tp.Internet, InternetIface, "198.51.100.2/24", "203.0.113.2/24", "2001:db8::2/64")
	links := []link{
		{tp.Sandbox, SandboxIface}, {tp.Firewall, FirewallSandboxIface},
		{tp.Firewall, FirewallInternetIface}, {tp.Internet, InternetIface},
	}
	for _, l := range links {
		mustRun(t, "ip", "-n", l.ns, "link", "set", l.dev, "up")
	}
	for _, r := range []struct{ ns, gw4, gw6 string }{
		{tp.Sandbox, "10.231.0.1", "fd00:231::1"},
		{tp.Firewall, "198.51.100.2", "2001:db8::2"},
		{tp.Internet, "198.51.100.1", "2001:db8::1"},
	} {
		mustRun(t, "ip", "-n", r.ns, "-4", "route", "add", "default", "via", r.gw4)
		mustRun(t, "ip", "-n", r.ns, "-6", "route", "add", "default", "via", r.gw6)
	}
	tp.Run(tp.Firewall, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	waitUp(t, links)
}

type link struct{ ns, dev string }

// linkUpTimeout bounds waitUp; the kernel usually needs up to one second.
const linkUpTimeout = 10 * time.Second

// waitUp waits until every link's operational state is UP. The kernel's
// link watcher, which also swaps the interface's noop qdisc for a real one,
// runs at most once a second: until it has, packets (the first IPv6
// neighbour solicitation, typically) are silently dropped.
func waitUp(t testing.TB, links []link) {
	t.Helper()
	deadline := time.Now().Add(linkUpTimeout)
	for _, l := range links {
		for {
			out, err := output(exec.Command("ip", "-n", l.ns, "-o", "link", "show", "dev", l.dev))
			if err != nil {
				t.Fatalf("netnstest: %v", err)
			}
			if strings.Contains(string(out), " state UP ") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("netnstest: %s in %s not up after %v: %s", l.dev, l.ns, linkUpTimeout, out)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
