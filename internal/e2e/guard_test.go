package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/netnstest"
)

// The tests of the [host] guard: whatever the config forgets or gets
// wrong, a sandbox interface passes nothing egressd did not allow, no
// sandbox reaches the host or another sandbox, and a dead egressd passes
// nothing at all. Each proves the leak did not happen with recording
// servers (and ICMP counters) at every destination, and proves first that
// the same probes do arrive where they should.

// Names that resolve to the firewall host itself.
func init() {
	zone["pub.allowed.test."] = []string{"198.51.100.1"}
	zone["pub6.allowed.test."] = []string{"2001:db8::1"}
	zone["gw6.allowed.test."] = []string{"fd00:231::1"}
	zone["mixed.allowed.test."] = []string{"198.51.100.10", "198.51.100.1", "2001:db8::10", "2001:db8::1"}
	zone["lo.allowed.test."] = []string{"127.0.0.1"}
	zone["lo6.allowed.test."] = []string{"::1"}
	zone["mapped.allowed.test."] = []string{"::ffff:198.51.100.1"}
	zone["hint.allowed.test."] = []string{"198.51.100.10"}
	httpsHints["hint.allowed.test."] = []string{"198.51.100.10", "198.51.100.1", "10.231.0.1", "2001:db8::10", "2001:db8::1"}
}

// sb2AllowAll is a second sandbox, on the namespace that
// tp.AddSandbox("veth-sb2", 1) wires.
const sb2AllowAll = `
[[sandbox]]
name      = "sb2"
interface = "veth-sb2"
sources   = ["10.231.1.2/32", "fd00:231:1::2/128"]
mode      = "allow-all"
`

// guardVeth is a [host] table guarding every veth-sb* interface.
const guardVeth = `
[host]
sandbox_interfaces = ["veth-sb*"]
`

// hostAddrs are the firewall host's own addresses.
var hostAddrs = []netip.Addr{
	netnstest.GatewayAddr4, netnstest.GatewayAddr6,
	netnstest.FirewallInternetAddr4, netnstest.FirewallInternetAddr6,
}

// hostServices starts the host's stand-in services in the firewall
// namespace: TCP on 8088 and ports, UDP on 8089, every address.
func (e *env) hostServices(t *testing.T, ports ...int) *recorder {
	t.Helper()
	return listenRecorders(t, e.tp.Firewall, append([]int{8088}, ports...), []int{8089})
}

// addrProbes reach for a host stand-in at addr from ns: TCP 8088, UDP 8089
// and ICMP (counted in the firewall namespace).
func (e *env) addrProbes(ns, addr string, host *recorder, marker string) probes {
	m := marker + "-" + addr
	return probes{
		e.tcpProbe(ns, net.JoinHostPort(addr, "8088"), host, m+"-tcp"),
		e.udpProbe(ns, net.JoinHostPort(addr, "8089"), host, m+"-udp"),
		e.pingProbe(ns, addr, e.tp.Firewall),
	}
}

// hostProbes are every way the test knows from the main sandbox to the
// host's stand-in services: each host address, the firewall's link-local
// address, broadcast and multicast, plain HTTP, and egressd's resolver on
// its own port rather than through interception.
func (e *env) hostProbes(t *testing.T, host *recorder, marker string) probes {
	t.Helper()
	sb := e.tp.Sandbox
	var ps probes
	for _, a := range hostAddrs {
		ps = append(ps, e.addrProbes(sb, a.String(), host, marker)...)
	}
	ps = append(ps, e.addrProbes(sb, e.linkLocal(t)+"%"+netnstest.SandboxIface, host, marker)...)
	for _, a := range []string{"10.231.0.255", "255.255.255.255", "224.0.0.1", "ff02::1%" + netnstest.SandboxIface} {
		ps = append(ps, e.udpProbe(sb, net.JoinHostPort(a, "8089"), host, marker+"-udp-"+a))
	}
	ps = append(ps, probe{
		name:    "http 198.51.100.1:8088",
		send:    func() { e.sandbox("curl", "-sS", "--max-time", "2", "http://198.51.100.1:8088/"+marker+"-http") },
		arrived: func() bool { return len(host.matching(marker+"-http")) > 0 },
	})
	var dig string
	ps = append(ps, probe{
		name: "dns to 10.231.0.1:15053, the resolver's own port",
		send: func() {
			dig, _ = e.sandbox("dig", "+time=1", "+tries=1", "-p", "15053", "@10.231.0.1", "allowed.test")
		},
		arrived: func() bool { return strings.Contains(dig, "status:") },
	})
	return ps
}

var linkLocalRE = regexp.MustCompile(`inet6 (fe80::[0-9a-f:]+)/`)

// linkLocal is the firewall's link-local address on the main sandbox's
// interface.
func (e *env) linkLocal(t *testing.T) string {
	t.Helper()
	out := e.tp.Run(e.tp.Firewall, "ip", "-6", "-o", "addr", "show", "dev", netnstest.FirewallSandboxIface, "scope", "link")
	m := linkLocalRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no link-local address on %s: %q", netnstest.FirewallSandboxIface, out)
	}
	return m[1]
}

// isHostAddr reports whether a is one of the host's addresses (IPv4-mapped
// included) or loopback.
func isHostAddr(a netip.Addr) bool {
	return slicesContainsAddr(hostAddrs, a.Unmap()) || a.Unmap().IsLoopback()
}

// sinceEvents returns rec's events after the first n, each cut to 100
// bytes (TLS records are long).
func sinceEvents(rec *recorder, n int) []string {
	var out []string
	for _, ev := range rec.all()[n:] {
		if len(ev) > 100 {
			ev = ev[:100] + "…"
		}
		out = append(out, ev)
	}
	return out
}

// TestGuardRemovedSandbox: with host.sandbox_interfaces unset, removing a
// sandbox from the config (SIGHUP) leaves its interface guarded: the old
// sandbox reaches nothing by any protocol, neither after the reload nor
// after a restart. sb2, still configured, proves egressd is alive and
// passing traffic at each step.
func TestGuardRemovedSandbox(t *testing.T) {
	e := newIdleEnv(t, defaultSandbox+sb2AllowAll)
	sb2 := e.tp.AddSandbox("veth-sb2", 1)
	host := e.hostServices(t)
	removed := func(m string) probes {
		ps := e.internetProbes(e.tp.Sandbox, m)
		ps = append(ps, e.addrProbes(e.tp.Sandbox, "10.231.0.1", host, m)...)
		return append(ps, e.addrProbes(e.tp.Sandbox, "fd00:231::1", host, m)...)
	}
	e.start()
	e.internetProbes(e.tp.Sandbox, "rm-before").reach(t, "sb1 while configured")

	e.reload(sb2AllowAll, `"msg":"reloaded"`)
	removed("rm-removed").none(t, "sb1 after its removal")
	e.internetProbes(sb2.NS, "rm-sb2").reach(t, "sb2 after the reload")

	e.kill9()
	e.start()
	removed("rm-restarted").none(t, "sb1 after a restart")
	e.internetProbes(sb2.NS, "rm-sb2-restarted").reach(t, "sb2 after the restart")
}

// TestGuardMistypedInterface: a sandbox whose interface has a typo
// ("veth-sbl") next to sandbox_interfaces = ["veth-sb*"] starts with a
// warning, and the real veth-sb1, which nobody claims, passes nothing: not
// to the internet, not to the host. Before egressd starts, the same
// probes pass.
func TestGuardMistypedInterface(t *testing.T) {
	typo := strings.Replace(defaultSandbox, `"veth-sb1"`, `"veth-sbl"`, 1)
	e := newIdleEnv(t, guardVeth+typo)
	host := e.hostServices(t)
	gw := func(m string) probes {
		return append(e.addrProbes(e.tp.Sandbox, "10.231.0.1", host, m), e.addrProbes(e.tp.Sandbox, "fd00:231::1", host, m)...)
	}
	append(e.internetProbes(e.tp.Sandbox, "typo-idle"), gw("typo-idle")...).reach(t, "veth-sb1 before egressd starts")

	e.start()
	logs := e.logs.String()
	if !strings.Contains(logs, "does not exist") || !strings.Contains(logs, "veth-sbl") {
		t.Errorf("no warning that veth-sbl does not exist:\n%s", logs)
	}
	append(e.internetProbes(e.tp.Sandbox, "typo"), gw("typo")...).none(t, "veth-sb1, claimed by no sandbox")
}

// TestGuardUnclaimedInterface: an interface matching sandbox_interfaces
// that no sandbox names passes nothing, whether it existed when egressd
// started (veth-sb9, which passed everything before) or appeared later
// (veth-sb8). sb1 next to it still passes what its policy allows.
func TestGuardUnclaimedInterface(t *testing.T) {
	e := newIdleEnv(t, guardVeth+defaultSandbox)
	host := e.hostServices(t)
	sb9 := e.tp.AddSandbox("veth-sb9", 9)
	unclaimed := func(sb *netnstest.ExtraSandbox, m string) probes {
		ps := e.internetProbes(sb.NS, m)
		ps = append(ps, e.addrProbes(sb.NS, sb.Gateway4.String(), host, m)...)
		return append(ps, e.addrProbes(sb.NS, sb.Gateway6.String(), host, m)...)
	}
	unclaimed(sb9, "sb9-idle").reach(t, "veth-sb9 before egressd starts")

	e.start()
	unclaimed(sb9, "sb9").none(t, "veth-sb9, present at start")
	sb8 := e.tp.AddSandbox("veth-sb8", 8)
	unclaimed(sb8, "sb8").none(t, "veth-sb8, added while egressd runs")
	e.internetProbes(e.tp.Sandbox, "sb1").reach(t, "sb1 next to them")
}

// TestGuardInterfaceOutsidePattern: a sandbox interface that
// sandbox_interfaces does not cover is refused by validate and run.
func TestGuardInterfaceOutsidePattern(t *testing.T) {
	e := newIdleEnv(t, "[host]\nsandbox_interfaces = [\"tap*\"]\n"+defaultSandbox)
	const want = "does not match host.sandbox_interfaces"
	if out, err := e.egressd("validate", "-config", e.config); err == nil || !containsMsg(out, want) {
		t.Errorf("validate: %v, want a refusal with %q:\n%s", err, want, out)
	}
	if out := e.runRefused(e.config); !containsMsg(out, want) {
		t.Errorf("run refused without %q:\n%s", want, out)
	}
	e.writeConfig(guardVeth + defaultSandbox)
	if out, err := e.egressd("validate", "-config", e.config); err != nil {
		t.Errorf("validate with veth-sb* covering veth-sb1: %v:\n%s", err, out)
	}
}

// bridge creates bridge name in the firewall namespace with ports.
func (e *env) bridge(name string, ports ...string) {
	e.t.Helper()
	e.tp.Run(e.tp.Firewall, "ip", "link", "add", name, "type", "bridge")
	for _, p := range ports {
		e.tp.Run(e.tp.Firewall, "ip", "link", "set", p, "master", name)
	}
	e.tp.Run(e.tp.Firewall, "ip", "link", "set", name, "up")
}

// TestGuardBridgePortRefusedAtStart: an interface that is a bridge port
// (its packets reach the rules as the bridge's) is refused at start.
func TestGuardBridgePortRefusedAtStart(t *testing.T) {
	e := newIdleEnv(t, defaultSandbox)
	e.bridge("br-eg", netnstest.FirewallSandboxIface)
	const want = `is a port of bridge "br-eg"`
	if out := e.runRefused(e.config); !containsMsg(out, want) {
		t.Errorf("run refused without %q:\n%s", want, out)
	}
}

// TestGuardBridgePortRefusedAtReload: a reload adding a sandbox on a
// bridge port is refused as a whole (it also loosens sb1 to allow-all);
// the running policy holds, proven with an allowed and a denied flow.
func TestGuardBridgePortRefusedAtReload(t *testing.T) {
	e := newEnv(t, defaultSandbox)
	e.tp.AddSandbox("veth-sb2", 1)
	e.bridge("br-eg", "veth-sb2")
	e.reload(allowAllSandbox+sb2AllowAll, `"msg":"reload refused`)
	refusal := ""
	for _, l := range strings.Split(e.logs.String(), "\n") {
		if strings.Contains(l, `"msg":"reload refused`) {
			refusal = l
		}
	}
	if !strings.Contains(refusal, "br-eg") {
		t.Errorf("refusal does not name the bridge: %s", refusal)
	}
	if out, err := e.curl("--max-time", "2", "--resolve", "allowed.test:443:198.51.100.10", "https://allowed.test/br-still"); err != nil || !strings.Contains(out, "hello allowed.test") {
		t.Errorf("allowed name refused after the refused reload: %v %q", err, out)
	}
	if out, err := e.curl("--max-time", "2", "--resolve", "evil.test:443:198.51.100.66", "https://evil.test/br-loosened"); err == nil {
		t.Errorf("denied name passed after the refused reload: %q", out)
	}
	probes{e.udpProbe(e.tp.Sandbox, "198.51.100.78:9001", e.in.rec, "br-loosened-udp")}.none(t, "UDP outside allow_cidrs")
	e.noEvents("br-loosened")
}

// TestGuardBridgedAtRuntime: veth-sb1 enslaved to a bridge while egressd
// runs, the gateway addresses moved onto the bridge, so that the sandbox's
// packets reach the rules as the bridge's: the sandbox still reaches
// nothing.
func TestGuardBridgedAtRuntime(t *testing.T) {
	e := newEnv(t, defaultSandbox)
	e.internetProbes(e.tp.Sandbox, "brrt-before").reach(t, "sb1 before the bridge")
	fw, dev := e.tp.Firewall, netnstest.FirewallSandboxIface
	e.tp.Run(fw, "ip", "addr", "flush", "dev", dev)
	e.bridge("br-eg", dev)
	e.tp.AddAddr(fw, "br-eg", "10.231.0.1/24", "fd00:231::1/64")
	e.internetProbes(e.tp.Sandbox, "brrt").none(t, "sb1 through the bridge")
}

// customAllowingHost is a custom sb1 whose allow_cidrs cover the host's
// addresses on both sides.
const customAllowingHost = `
[[sandbox]]
name      = "sb1"
interface = "veth-sb1"
sources   = ["10.231.0.2/32", "fd00:231::2/128"]
mode      = "custom"
allow_domains = ["allowed.test"]
allow_cidrs   = ["10.231.0.0/24", "fd00:231::/64", "198.51.100.0/24", "2001:db8::/64"]
`

// TestGuardHostUnreachable: the sandbox reaches no service of the host
// (TCP, UDP, ICMP; each address, link-local, broadcast, multicast) in
// allow-all, nor in custom with allow_cidrs covering the host, while
// egressd's resolver still answers through interception and the internet
// is reachable. The stand-in services prove they record from the internet
// side, and with protect_host = false from the sandbox.
func TestGuardHostUnreachable(t *testing.T) {
	for _, tc := range []struct{ name, sandboxes string }{
		{"allow-all", allowAllSandbox},
		{"custom with allow_cidrs covering the host", customAllowingHost},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.sandboxes)
			host := e.hostServices(t)
			e.addrProbes(e.tp.Internet, "198.51.100.1", host, "from-internet").reach(t, "host stand-ins from the internet")
			seen := len(host.all())
			if out, err := e.dig("10.231.0.1", "allowed.test", "A", false); err != nil || !strings.Contains(out, "198.51.100.10") {
				t.Errorf("egressd's resolver did not answer at the gateway: %v\n%s", err, out)
			}
			probes{e.udpProbe(e.tp.Sandbox, "198.51.100.78:9001", e.in.rec, "host-out")}.reach(t, "the internet from the sandbox")

			e.hostProbes(t, host, "host").none(t, "the host from the sandbox")
			if got := sinceEvents(host, seen); len(got) > 0 {
				t.Errorf("leak: host stand-ins saw %q", got)
			}
		})
	}
	// An allow_cidrs entry of one address opens that address of the host
	// to the kernel's protocols, and only that one (a hash set when the
	// source is one address too: exact4x, exact6x).
	t.Run("custom naming host addresses exactly", func(t *testing.T) {
		e := newEnv(t, strings.Replace(customAllowingHost, `["10.231.0.0/24", "fd00:231::/64", "198.51.100.0/24", "2001:db8::/64"]`,
			`["10.231.0.1/32", "2001:db8::1/128"]`, 1))
		host := e.hostServices(t)
		probes{
			e.udpProbe(e.tp.Sandbox, "10.231.0.1:8089", host, "exact-udp4"),
			e.udpProbe(e.tp.Sandbox, "[2001:db8::1]:8089", host, "exact-udp6"),
		}.reach(t, "the host's addresses named exactly")
		probes{
			e.udpProbe(e.tp.Sandbox, "198.51.100.1:8089", host, "exact-other4"),
			e.udpProbe(e.tp.Sandbox, "[fd00:231::1]:8089", host, "exact-other6"),
		}.none(t, "the host's addresses not named")
	})
	t.Run("protect_host off", func(t *testing.T) {
		e := newEnv(t, "[host]\nprotect_host = false\n"+allowAllSandbox)
		host := e.hostServices(t)
		probes{
			e.udpProbe(e.tp.Sandbox, "10.231.0.1:8089", host, "off-udp4"),
			e.udpProbe(e.tp.Sandbox, "[2001:db8::1]:8089", host, "off-udp6"),
			e.pingProbe(e.tp.Sandbox, "198.51.100.1", e.tp.Firewall),
		}.reach(t, "the host with protect_host = false")
	})
}

var hintRE = regexp.MustCompile(`ipv[46]hint=(\S+)`)

// digAddrs returns the addresses of dig's answer section: A and AAAA
// records and the hints of HTTPS records.
func digAddrs(out string) []netip.Addr {
	var addrs []netip.Addr
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if strings.HasPrefix(l, ";") || len(f) < 5 {
			continue
		}
		if a, err := netip.ParseAddr(f[4]); err == nil && len(f) == 5 && (f[3] == "A" || f[3] == "AAAA") {
			addrs = append(addrs, a)
		}
		for _, m := range hintRE.FindAllStringSubmatch(l, -1) {
			for _, s := range strings.Split(m[1], ",") {
				if a, err := netip.ParseAddr(s); err == nil {
					addrs = append(addrs, a)
				}
			}
		}
	}
	return addrs
}

// TestGuardHostAnswers: an allowed name that resolves to the host
// (public or gateway address, IPv4 or IPv6, IPv4-mapped, loopback, an
// HTTPS record's hint) is never answered to the
// sandbox, and the proxy never dials it, whatever address the sandbox
// sends the flow to. block_private_answers is off: protect_host alone
// holds. A listener on the host's 443 and 80 counts what gets through.
func TestGuardHostAnswers(t *testing.T) {
	const dnsOpen = "[dns]\nblock_private_answers = false\n"
	for _, tc := range []struct{ name, sandboxes string }{
		{"custom", dnsOpen + defaultSandbox},
		{"allow-all", dnsOpen + allowAllSandbox},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.sandboxes)
			host := e.hostServices(t, 443, 80)
			for _, q := range []struct{ name, qtype string }{{"mixed.allowed.test", "A"}, {"hint.allowed.test", "HTTPS"}} {
				out, err := e.dig("198.51.100.53", q.name, q.qtype, false)
				if got := digAddrs(out); err != nil || !slicesContainsAddr(got, netip.MustParseAddr("198.51.100.10")) {
					t.Errorf("%s %s lost its internet address: %v\n%s", q.name, q.qtype, err, out)
				}
			}
			for _, q := range []struct{ name, qtype string }{
				{"pub.allowed.test", "A"}, {"pub6.allowed.test", "AAAA"},
				{"host.allowed.test", "A"}, {"gw6.allowed.test", "AAAA"},
				{"mixed.allowed.test", "A"}, {"mixed.allowed.test", "AAAA"},
				{"lo.allowed.test", "A"}, {"lo6.allowed.test", "AAAA"}, {"mapped.allowed.test", "AAAA"},
				{"hint.allowed.test", "HTTPS"},
			} {
				for _, tcp := range []bool{false, true} {
					out, _ := e.dig("198.51.100.53", q.name, q.qtype, tcp)
					for _, a := range digAddrs(out) {
						if isHostAddr(a) {
							t.Errorf("leak: %s %s (tcp %v) answered with the host's %s", q.name, q.qtype, tcp, a)
						}
					}
				}
			}
			if out, err := e.curl("--max-time", "2", "--resolve", "allowed.test:443:198.51.100.10", "https://allowed.test/"); err != nil || !strings.Contains(out, "hello allowed.test") {
				t.Errorf("allowed name refused: %v %q", err, out)
			}
			for _, args := range [][]string{
				{"--resolve", "pub.allowed.test:443:198.51.100.10", "https://pub.allowed.test/"},
				{"--resolve", "pub6.allowed.test:443:[2001:db8::10]", "https://pub6.allowed.test/"},
				{"--resolve", "host.allowed.test:443:198.51.100.10", "https://host.allowed.test/"},
				{"--resolve", "gw6.allowed.test:443:[2001:db8::10]", "https://gw6.allowed.test/"},
				{"--resolve", "pub.allowed.test:443:198.51.100.1", "https://pub.allowed.test/"},
				{"--resolve", "pub6.allowed.test:443:[2001:db8::1]", "https://pub6.allowed.test/"},
				{"--resolve", "mixed.allowed.test:443:198.51.100.66", "https://mixed.allowed.test/"},
				{"--resolve", "lo.allowed.test:443:198.51.100.10", "https://lo.allowed.test/"},
				{"--resolve", "lo6.allowed.test:443:[2001:db8::10]", "https://lo6.allowed.test/"},
				{"--resolve", "mapped.allowed.test:443:[2001:db8::10]", "https://mapped.allowed.test/"},
				{"-H", "Host: pub.allowed.test", "http://198.51.100.10/"},
				{"-H", "Host: gw6.allowed.test", "http://[2001:db8::10]/"},
				{"http://pub.allowed.test/", "--resolve", "pub.allowed.test:80:198.51.100.1"},
			} {
				e.curl(append([]string{"--max-time", "2"}, args...)...)
			}
			time.Sleep(200 * time.Millisecond)
			if got := sinceEvents(host, 0); len(got) > 0 {
				t.Errorf("leak: the proxy dialled the host: %q", got)
			}
		})
	}
}

func slicesContainsAddr(l []netip.Addr, a netip.Addr) bool {
	for _, x := range l {
		if x == a {
			return true
		}
	}
	return false
}

// TestGuardSandboxIsolation: two allow-all sandboxes reach neither each
// other (TCP, UDP, ICMP, both families) nor the host's address on the
// other's side, though they reach the internet and, before egressd
// starts, each other. allow_cidrs covering the other sandbox does not
// open it; naming its address exactly does, for that address only.
func TestGuardSandboxIsolation(t *testing.T) {
	e := newIdleEnv(t, allowAllSandbox+sb2AllowAll)
	sb2 := e.tp.AddSandbox("veth-sb2", 1)
	at1 := listenRecorders(t, e.tp.Sandbox, []int{9000}, []int{9001})
	at2 := listenRecorders(t, sb2.NS, []int{9000}, []int{9001})
	host := e.hostServices(t)
	to := func(from, ns string, addr netip.Addr, rec *recorder, m string) probes {
		m += "-" + addr.String()
		return probes{
			e.tcpProbe(from, net.JoinHostPort(addr.String(), "9000"), rec, m+"-tcp"),
			e.udpProbe(from, net.JoinHostPort(addr.String(), "9001"), rec, m+"-udp"),
			e.pingProbe(from, addr.String(), ns),
		}
	}
	cross := func(m string) probes {
		var ps probes
		for _, a := range []netip.Addr{sb2.Addr4, sb2.Addr6} {
			ps = append(ps, to(e.tp.Sandbox, sb2.NS, a, at2, m)...)
		}
		for _, a := range []netip.Addr{netnstest.SandboxAddr4, netnstest.SandboxAddr6} {
			ps = append(ps, to(sb2.NS, e.tp.Sandbox, a, at1, m)...)
		}
		return ps
	}
	cross("iso-idle").reach(t, "sandbox to sandbox without egressd")

	e.start()
	ps := cross("iso")
	for _, gw := range []netip.Addr{sb2.Gateway4, sb2.Gateway6} {
		ps = append(ps, e.addrProbes(e.tp.Sandbox, gw.String(), host, "iso-gw")...)
	}
	ps.none(t, "allow-all sandboxes to each other and to the other's gateway")
	probes{
		e.udpProbe(e.tp.Sandbox, "198.51.100.78:9001", e.in.rec, "iso-out1"),
		e.udpProbe(sb2.NS, "198.51.100.78:9001", e.in.rec, "iso-out2"),
	}.reach(t, "the internet from both")

	const sb1Custom = `
[[sandbox]]
name      = "sb1"
interface = "veth-sb1"
sources   = ["10.231.0.2/32", "fd00:231::2/128"]
mode      = "custom"
`
	e.reload(sb1Custom+`allow_cidrs = ["10.231.0.0/16", "fd00:231::/32"]`+sb2AllowAll, `"msg":"reloaded"`)
	var ps1 probes
	for _, a := range []netip.Addr{sb2.Addr4, sb2.Addr6} {
		ps1 = append(ps1, to(e.tp.Sandbox, sb2.NS, a, at2, "iso-broad")...)
	}
	ps1.none(t, "sb1 to sb2 with allow_cidrs covering it")

	e.reload(sb1Custom+`allow_cidrs = ["10.231.1.2/32"]`+sb2AllowAll, `"msg":"reloaded"`)
	to(e.tp.Sandbox, sb2.NS, sb2.Addr4, at2, "iso-exact").reach(t, "sb1 to sb2's address in its allow_cidrs")
	to(e.tp.Sandbox, sb2.NS, sb2.Addr6, at2, "iso-exact").none(t, "sb1 to sb2's other address")
}

// TestGuardFailClosedEveryProtocol: 1.2 s after kill -9 nothing passes,
// TCP, UDP, ICMP and DNS, IPv4 and IPv6, not even to allow_cidrs or in
// allow-all, nor after a clean stop (SIGTERM, without -cleanup-on-exit);
// the same probes pass before and after a restart.
func TestGuardFailClosedEveryProtocol(t *testing.T) {
	sigterm := func(e *env) {
		e.proc.Process.Signal(syscall.SIGTERM)
		e.proc.Wait()
	}
	for _, tc := range []struct {
		name, sandboxes string
		stop            func(*env)
	}{
		{"custom, kill -9", defaultSandbox, (*env).kill9},
		{"allow-all, kill -9", allowAllSandbox, (*env).kill9},
		{"allow-all, SIGTERM", allowAllSandbox, sigterm},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.sandboxes)
			all := func(m string) probes {
				ps := e.internetProbes(e.tp.Sandbox, m)
				if tc.sandboxes == allowAllSandbox {
					ps = append(ps,
						e.udpProbe(e.tp.Sandbox, "198.51.100.78:9001", e.in.rec, m+"-udp78"),
						e.udpProbe(e.tp.Sandbox, "[2001:db8::66]:9001", e.in.rec, m+"-udp66"),
						e.pingProbe(e.tp.Sandbox, "198.51.100.78", e.tp.Internet),
						e.pingProbe(e.tp.Sandbox, "2001:db8::66", e.tp.Internet))
				}
				return ps
			}
			all("fc-before").reach(t, "before the stop")
			tc.stop(e)
			time.Sleep(1200 * time.Millisecond)
			all("fc-dead").none(t, "1.2 s after the stop")
			e.start()
			all("fc-restarted").reach(t, "after the restart")
		})
	}
}

// TestGuardOneEgressdPerHost: a second `egressd run` in the same namespace,
// with its own ports, socket and state and a looser policy, exits naming
// the first one's pid and changes nothing; rules, validate and check
// still work beside the running one.
func TestGuardOneEgressdPerHost(t *testing.T) {
	e := newEnv(t, defaultSandbox)
	a := e.api()
	dir := t.TempDir()
	second := filepath.Join(dir, "second.toml")
	cfg := fmt.Sprintf(`
[proxy]
tproxy_port  = 16001
dns_port     = 16053
upstream_dns = ["198.51.100.53:53"]

[admin]
socket = %q

[state]
dir = %q
%s`, filepath.Join(dir, "admin.sock"), filepath.Join(dir, "state"), allowAllSandbox)
	if err := os.WriteFile(second, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("another egressd (pid %d) is running", e.proc.Process.Pid)
	if out := e.runRefused(second); !containsMsg(out, want) {
		t.Errorf("second egressd refused without %q:\n%s", want, out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"rules", "-config", second}, "table inet egressd"},
		{[]string{"validate", "-config", second}, ""},
		{[]string{"check", "-config", second, "-sandbox", "sb1", "evil.test"}, "allow"},
	} {
		if out, err := e.egressd(tc.args...); err != nil || !strings.Contains(out, tc.want) {
			t.Errorf("egressd %s beside a running one: %v, want %q:\n%s", strings.Join(tc.args, " "), err, tc.want, out)
		}
	}
	// cleanup would open the firewall under the running daemon: refused.
	if out, err := e.egressd("cleanup", "-config", second); err == nil || !containsMsg(out, want) {
		t.Errorf("cleanup beside a running egressd: %v, want a refusal naming it:\n%s", err, out)
	}
	// The first one's policy stands.
	if got := a.sandboxes(); len(got) != 1 || got[0].Mode != "custom" || got[0].Source != "config" {
		t.Errorf("first egressd's sandboxes: %+v", got)
	}
	if out, err := e.curl("--max-time", "2", "--resolve", "allowed.test:443:198.51.100.10", "https://allowed.test/one-still"); err != nil || !strings.Contains(out, "hello allowed.test") {
		t.Errorf("allowed name refused: %v %q", err, out)
	}
	if out, err := e.curl("--max-time", "2", "--resolve", "evil.test:443:198.51.100.66", "https://evil.test/one-loosened"); err == nil {
		t.Errorf("denied name passed: %q", out)
	}
	probes{e.udpProbe(e.tp.Sandbox, "198.51.100.78:9001", e.in.rec, "one-loosened-udp")}.none(t, "UDP outside allow_cidrs")
	e.noEvents("one-loosened")
}

// TestGuardRulesRestoredAfterFlush: something else flushes the whole
// ruleset (a firewall service restarted); egressd notices through its
// heartbeat and reinstalls its rules within about a second.
func TestGuardRulesRestoredAfterFlush(t *testing.T) {
	e := newEnv(t, defaultSandbox)
	e.tp.Run(e.tp.Firewall, "nft", "flush", "ruleset")
	deadline := time.Now().Add(3 * time.Second)
	for !strings.Contains(e.tp.Run(e.tp.Firewall, "nft", "list", "tables"), "table inet egressd") {
		if time.Now().After(deadline) {
			t.Fatalf("rules not reinstalled 3 s after a flush:\n%s", e.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // the heartbeat's first refresh of the new table
	e.sandbox("sh", "-c", "echo flushed78 | nc -u -w 1 198.51.100.78 9001")
	if out, err := e.curl("--max-time", "2", "--resolve", "evil.test:443:198.51.100.66", "https://evil.test/flushed"); err == nil {
		t.Fatalf("denied name passed after the repair: %q", out)
	}
	if out, err := e.curl("--resolve", "allowed.test:443:198.51.100.10", "https://allowed.test/repaired"); err != nil {
		t.Fatalf("allowed name refused after the repair: %v %q", err, out)
	}
	time.Sleep(300 * time.Millisecond)
	e.noEvents("flushed")
}

// TestDenyCIDRsNAT64: deny_cidrs stops the NAT64 form of a denied IPv4
// address (64:ff9b::c633:6482 = 198.51.100.130) over TCP and UDP in
// allow-all, where the raw path and the kernel sets judge it, and check
// says so; the NAT64 form of an address outside deny_cidrs passes.
func TestDenyCIDRsNAT64(t *testing.T) {
	e := newIdleEnv(t, `
[[sandbox]]
name      = "sb1"
interface = "veth-sb1"
sources   = ["10.231.0.2/32", "fd00:231::2/128"]
mode      = "allow-all"
deny_cidrs = ["198.51.100.128/25"]
`)
	e.tp.AddInternetAddr("64:ff9b::c633:6482/128", "64:ff9b::c633:640a/128")
	e.start()
	rec := e.in.rec
	sb := e.tp.Sandbox
	probes{
		e.tcpProbe(sb, "[64:ff9b::c633:640a]:9000", rec, "nat64-ok-tcp"),
		e.udpProbe(sb, "[64:ff9b::c633:640a]:9001", rec, "nat64-ok-udp"),
	}.reach(t, "NAT64 form of an address outside deny_cidrs")
	probes{
		e.tcpProbe(sb, "[64:ff9b::c633:6482]:9000", rec, "nat64-deny-tcp"),
		e.udpProbe(sb, "[64:ff9b::c633:6482]:9001", rec, "nat64-deny-udp"),
		e.tcpProbe(sb, "[::ffff:198.51.100.130]:9000", rec, "mapped-deny-tcp"),
	}.none(t, "NAT64 form of a deny_cidrs address")
	out, err := e.egressd("check", "-config", e.config, "-sandbox", "sb1", "64:ff9b::c633:6482")
	if err == nil || !strings.Contains(out, "deny") || !strings.Contains(out, "198.51.100.128/25") {
		t.Errorf("check 64:ff9b::c633:6482: %v: %s", err, out)
	}
}
