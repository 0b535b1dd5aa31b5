package e2e

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/netnstest"
)

// portSandbox allows names on some ports only.
const portSandbox = `
[[sandbox]]
name      = "sb1"
interface = "veth-sb1"
sources   = ["10.231.0.2/32", "fd00:231::2/128"]
mode      = "custom"
allow_domains = ["allowed.test:443", "*.wild.test:79-80"]
`

// TestDomainPorts: an allow_domains entry with ports admits the name on
// those ports only, over TLS and plain HTTP, while DNS still answers the
// name; check judges the port.
func TestDomainPorts(t *testing.T) {
	e := newEnv(t, portSandbox)
	probes{
		e.tlsProbe(e.tp.Sandbox, "port-443"),
		{name: "http x.wild.test:80", send: func() { e.curl("--resolve", "x.wild.test:80:198.51.100.11", "http://x.wild.test/port-w80") },
			arrived: func() bool { return len(e.in.rec.matching("/port-w80")) > 0 }},
		e.digProbe("allowed.test", "198.51.100.10"),
	}.reach(t, "allowed ports")
	probes{
		{name: "http allowed.test:80", send: func() { e.curl("--resolve", "allowed.test:80:198.51.100.10", "http://allowed.test/port-80") },
			arrived: func() bool { return len(e.in.rec.matching("/port-80")) > 0 }},
		{name: "tls x.wild.test:443", send: func() { e.curl("--resolve", "x.wild.test:443:198.51.100.11", "https://x.wild.test/port-w443") },
			arrived: func() bool { return len(e.in.rec.matching("/port-w443")) > 0 }},
	}.none(t, "other ports")
	out, _ := e.curl("-i", "--resolve", "allowed.test:80:198.51.100.10", "http://allowed.test/port-80-again")
	if !strings.Contains(out, "403 Forbidden") || !strings.Contains(out, "X-Egressd-Deny: no-match") {
		t.Errorf("plain HTTP on a port the entry does not list:\n%s", out)
	}
	sock := filepath.Join(e.dir, "admin.sock")
	for target, want := range map[string]string{
		"allowed.test:443": "allow: allowed.test matches allow_domains allowed.test:443",
		"allowed.test:80":  "deny: allowed.test matches no rule",
		"a.wild.test:80":   "allow: a.wild.test matches allow_domains *.wild.test:79-80",
	} {
		out, _ := e.egressd("check", "-socket", sock, "-sandbox", "sb1", target)
		if !strings.HasPrefix(out, want) {
			t.Errorf("check %s: %q, want %q", target, out, want)
		}
	}
	if got, _ := e.egressd("policy", "get", "-socket", sock, "-sandbox", "sb1"); !strings.Contains(strings.Join(strings.Fields(got), ""), `"allow_domains":["allowed.test:443","*.wild.test:79-80"]`) {
		t.Errorf("policy get: %s", got)
	}
}

// cidrPortSandbox has CIDR entries scoped to ports and protocols.
const cidrPortSandbox = `
[[sandbox]]
name      = "sb1"
interface = "veth-sb1"
sources   = ["10.231.0.2/32", "fd00:231::2/128"]
mode      = "custom"
allow_cidrs = ["198.51.100.77/32:9001/udp", "[2001:db8:77::/64]:9001,9003/udp", "198.51.100.78/32:8999-9000/tcp",
               "[2001:db8:77::/64]:9000", "198.51.100.79/32", "198.51.100.80/32/icmp"]
deny_cidrs  = ["198.51.100.79/32:9001/udp", "198.51.100.79/32:9002/tcp"]
`

// TestCIDRPorts: an allow_cidrs entry with ports or a protocol passes
// only those flows, UDP in the kernel and TCP in the proxy, IPv4 and
// IPv6; a scoped deny_cidrs entry wins over an allow for its ports only.
func TestCIDRPorts(t *testing.T) {
	e := newIdleEnv(t, cidrPortSandbox)
	e.tp.AddInternetAddr("198.51.100.79/32", "198.51.100.80/32")
	extra := listenRecorders(t, e.tp.Internet, []int{9002}, []int{9002})
	e.start()
	sb, rec := e.tp.Sandbox, e.in.rec
	probes{
		e.udpProbe(sb, "198.51.100.77:9001", rec, "cp-udp4-allowed"),
		e.udpProbe(sb, "[2001:db8:77::5]:9001", rec, "cp-udp6-allowed"),
		e.tcpProbe(sb, "198.51.100.78:9000", rec, "cp-tcp4-allowed"),
		e.tcpProbe(sb, "[2001:db8:77::5]:9000", rec, "cp-tcp6-allowed"),
		e.udpProbe(sb, "198.51.100.79:9002", extra, "cp-udp-79-9002"),
		e.tcpProbe(sb, "198.51.100.79:9000", rec, "cp-tcp-79-9000"),
		e.pingProbe(sb, "198.51.100.80", e.tp.Internet),
	}.reach(t, "allowed ports")
	probes{
		e.udpProbe(sb, "198.51.100.77:9002", extra, "cp-udp4-port"),
		e.udpProbe(sb, "[2001:db8:77::5]:9002", extra, "cp-udp6-port"),
		e.tcpProbe(sb, "198.51.100.77:9002", extra, "cp-tcp4-not-udp"),
		e.tcpProbe(sb, "198.51.100.78:9002", extra, "cp-tcp4-port"),
		e.udpProbe(sb, "198.51.100.78:9001", rec, "cp-udp-not-tcp"),
		e.tcpProbe(sb, "[2001:db8:77::5]:9002", extra, "cp-tcp6-port"),
		e.udpProbe(sb, "198.51.100.79:9001", rec, "cp-udp-79-denied"),
		e.tcpProbe(sb, "198.51.100.79:9002", extra, "cp-tcp-79-denied"),
		e.pingProbe(sb, "198.51.100.77", e.tp.Internet),
		e.udpProbe(sb, "198.51.100.80:9001", rec, "cp-udp-icmp-only"),
	}.none(t, "other ports and protocols")
	sock := filepath.Join(e.dir, "admin.sock")
	for target, want := range map[string]string{
		"198.51.100.77:9001/udp": "allow: 198.51.100.77 in allow_cidrs 198.51.100.77/32:9001/udp",
		"198.51.100.77:9002/udp": "deny: 198.51.100.77 matches no rule",
		"198.51.100.79:9002":     "deny: 198.51.100.79 in deny_cidrs 198.51.100.79/32:9002/tcp",
		"198.51.100.80/icmp":     "allow: 198.51.100.80 in allow_cidrs 198.51.100.80/32/icmp",
	} {
		out, _ := e.egressd("check", "-socket", sock, "-sandbox", "sb1", target)
		if !strings.HasPrefix(out, want) {
			t.Errorf("check %s: %q, want %q", target, out, want)
		}
	}
}

// TestShortTransportHeader: a UDP or ICMP packet too short for its
// transport header's port field would miss the port-scoped sets; it is
// dropped as malformed instead of passing an allow-all sandbox to a
// destination a scoped deny_cidrs entry covers (found by review).
func TestShortTransportHeader(t *testing.T) {
	e := newEnv(t, `
[[sandbox]]
name      = "sb1"
interface = "veth-sb1"
sources   = ["10.231.0.2/32", "fd00:231::2/128"]
mode      = "allow-all"
deny_cidrs = ["203.0.113.5/32:5000/udp", "203.0.113.5/32/icmp"]
`)
	src, dst := netnstest.SandboxAddr4, netip.MustParseAddr("203.0.113.5")
	count := nftCount(t, e.tp, e.tp.Internet, "short", "ip saddr 10.231.0.2 ip daddr 203.0.113.5 meta l4proto { udp, icmp }")
	for _, proto := range []byte{17, 1} {
		for n := 0; n < 4; n++ {
			sendRaw4(t, e.tp.Sandbox, append(ip4hdr(src, dst, proto, n), make([]byte, n)...))
		}
	}
	time.Sleep(200 * time.Millisecond)
	if got := count(); got != "packets 0" {
		t.Errorf("short UDP/ICMP packets to a scoped deny_cidrs destination arrived: %s", got)
	}
	// Control: a whole UDP datagram to another port passes.
	sendRaw4(t, e.tp.Sandbox, udp4(src, dst, 40000, 5001, []byte("short-control")))
	time.Sleep(200 * time.Millisecond)
	if got := count(); got != "packets 1" {
		t.Errorf("the control datagram: %s, want packets 1", got)
	}
}
