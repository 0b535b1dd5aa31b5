package iptables

import (
	"fmt"
	"strings"
)

// writeModeChains writes the three chains a sandbox's packets jump to,
// shared by every sandbox in that mode. Order matters: see the package
// comment. Every path ends in a verdict.
func writeModeChains(b *strings.Builder, p Ports, h Host) {
	b.WriteString("\n\tchain deny_all {\n")
	chainWriter{b: b}.rule("counter drop", "mode deny-all")
	b.WriteString("\t}\n")
	for _, m := range []Mode{ModeAllowAll, ModeCustom} {
		fmt.Fprintf(b, "\n\tchain %s {\n", modeChain(m))
		w := chainWriter{b: b, mark: fmt.Sprintf("0x%x", Mark)}
		w.dns(p.DNS)
		w.denyCIDRs()
		w.tcp(p.TProxy)
		w.alive()
		if h.ProtectHost {
			w.protectHost()
		}
		if h.IsolateSandboxes {
			w.isolate()
		}
		w.others(m)
		b.WriteString("\t}\n")
	}
}

type chainWriter struct {
	b    *strings.Builder
	mark string
}

// rule writes one rule with a comment; comments name the reason of a verdict
// in `nft list` output.
func (w chainWriter) rule(body, comment string) {
	fmt.Fprintf(w.b, "\t\t%s comment %q\n", body, comment)
}

func (w chainWriter) section(text string) {
	fmt.Fprintf(w.b, "\t\t# %s\n", text)
}

// neighbourDiscovery lets IPv6 neighbour discovery with this host through,
// before the sandbox lookup (it uses link-local and unspecified sources).
// Hop limit 255 and a local or multicast destination keep it on the link:
// it cannot be used to send ICMPv6 past the host.
func (w chainWriter) neighbourDiscovery() {
	w.rule("icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit } "+
		"ip6 hoplimit 255 iifname @claimed fib daddr type { local, multicast } accept", "neighbour discovery")
}

// dns sends DNS for any destination to the resolver. With no resolver port,
// or no resolver listening (TPROXY falls through), DNS is dropped.
func (w chainWriter) dns(port int) {
	w.section("DNS, to any destination: to the resolver")
	if port != 0 {
		w.tproxy("meta l4proto { tcp, udp } th dport 53", port, "DNS to resolver")
	}
	w.rule("meta l4proto { tcp, udp } th dport 53 counter drop", "DNS: no resolver")
}

// denyCIDRs drops non-TCP to deny_cidrs; TCP goes on to the proxy, which
// logs the denial and resets the connection.
func (w chainWriter) denyCIDRs() {
	w.section("deny_cidrs: TCP goes on to the proxy, which logs and resets")
	w.rule("ip saddr . ip daddr @deny4 meta l4proto != tcp counter drop", "deny_cidrs")
	w.rule("ip6 saddr . ip6 daddr @deny6 meta l4proto != tcp counter drop", "deny_cidrs")
}

// tcp diverts all TCP to the proxy. TPROXY falls through when nothing
// listens: the drop after it keeps egressd fail-closed when it is down.
func (w chainWriter) tcp(port int) {
	w.section("TCP, to any destination: to the proxy")
	w.tproxy("meta l4proto tcp", port, "TCP to proxy")
	// TPROXY falls through for a packet of a non-transparent local socket:
	// the answer of a sandbox to a connection egressd opened to it.
	w.rule(fmt.Sprintf("meta l4proto tcp socket mark 0x%x accept", DialMark), "answer to egressd's own connection")
	w.rule("meta l4proto tcp counter drop", "proxy not listening")
}

// tproxy writes the IPv4 and IPv6 TPROXY rules for packets matching match.
func (w chainWriter) tproxy(match string, port int, comment string) {
	for _, fam := range []struct{ nfproto, tproxy string }{{"ipv4", "ip"}, {"ipv6", "ip6"}} {
		w.rule(fmt.Sprintf("meta nfproto %s %s tproxy %s to :%d meta mark set %s accept",
			fam.nfproto, match, fam.tproxy, port, w.mark), comment)
	}
}

// alive drops every remaining packet once the heartbeat set has expired:
// egressd is not running, so nothing passes.
func (w chainWriter) alive() {
	w.section("egressd must be running for anything below to pass")
	w.rule("meta nfproto != @"+AliveSet+" counter drop", "egressd not running")
}

// protectHost drops non-TCP to the host's own addresses, as the kernel
// knows them at this packet (fib), unless allow_cidrs names the address.
func (w chainWriter) protectHost() {
	w.section("protect_host: not to this host's own addresses")
	const local = "fib daddr type { local, broadcast, anycast, multicast }"
	w.rule(local+" ip saddr . ip daddr != @exact4 counter drop", "protect_host")
	w.rule(local+" ip6 saddr . ip6 daddr != @exact6 counter drop", "protect_host")
}

// isolate drops non-TCP to other sandboxes unless allow_cidrs names them.
func (w chainWriter) isolate() {
	w.section("isolate_sandboxes: not to other sandboxes")
	w.rule("ip daddr @peers4 ip saddr . ip daddr != @named4 counter drop", "isolate_sandboxes")
	w.rule("ip6 daddr @peers6 ip6 saddr . ip6 daddr != @named6 counter drop", "isolate_sandboxes")
	w.rule("ip daddr . meta nfproto @peers4r ip saddr . ip daddr != @named4 counter drop", "isolate_sandboxes")
	w.rule("ip6 daddr . meta nfproto @peers6r ip6 saddr . ip6 daddr != @named6 counter drop", "isolate_sandboxes")
}

// others judges every other protocol (UDP, ICMP, …) by mode.
func (w chainWriter) others(m Mode) {
	w.section("other protocols")
	if m == ModeAllowAll {
		w.rule("accept", "mode allow-all")
		return
	}
	w.rule("ip saddr . ip daddr @allow4 accept", "allow_cidrs")
	w.rule("ip6 saddr . ip6 daddr @allow6 accept", "allow_cidrs")
	w.rule("counter drop", "mode custom: not allowed")
}
