package iptables

import (
	"fmt"
	"strings"
)

// writeSandboxChain writes one sandbox's chain. Order matters: see the
// package comment. Every path ends in a verdict.
func writeSandboxChain(b *strings.Builder, sb *ruleSandbox, p Ports, h Host) {
	fmt.Fprintf(b, "\n\tchain %s {\n", sb.id)
	fmt.Fprintf(b, "\t\tcomment %q\n", "sandbox "+sb.Name)
	w := chainWriter{b: b, sb: sb, mark: fmt.Sprintf("0x%x", Mark)}
	w.linkLocal()
	w.antiSpoofing()
	if sb.Mode == ModeDenyAll {
		w.rule("counter drop", "mode deny-all")
		b.WriteString("\t}\n")
		return
	}
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
	w.others()
	b.WriteString("\t}\n")
}

type chainWriter struct {
	b    *strings.Builder
	sb   *ruleSandbox
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

// linkLocal lets IPv6 neighbour discovery with this host through, before
// anti-spoofing (it uses link-local and unspecified sources). Hop limit 255
// and a local or multicast destination keep it on the link: it cannot be
// used to send ICMPv6 past the host.
func (w chainWriter) linkLocal() {
	w.section("IPv6 neighbour discovery with this host")
	w.rule("icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit } "+
		"ip6 hoplimit 255 fib daddr type { local, multicast } accept", "neighbour discovery")
}

// antiSpoofing drops packets whose source is not the sandbox's. An empty
// set matches nothing, so "saddr != @empty" drops the whole family.
func (w chainWriter) antiSpoofing() {
	w.section("anti-spoofing: only IP, only from the sandbox's sources")
	w.rule("meta nfproto != { ipv4, ipv6 } counter drop", "not IP")
	w.rule(fmt.Sprintf("ip saddr != @%s_src4 counter drop", w.sb.id), "spoofed source")
	w.rule(fmt.Sprintf("ip6 saddr != @%s_src6 counter drop", w.sb.id), "spoofed source")
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
	w.rule(fmt.Sprintf("ip daddr @%s_deny4 meta l4proto != tcp counter drop", w.sb.id), "deny_cidrs")
	w.rule(fmt.Sprintf("ip6 daddr @%s_deny6 meta l4proto != tcp counter drop", w.sb.id), "deny_cidrs")
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
	w.rule(fmt.Sprintf("%s ip daddr != @%s_exact4 counter drop", local, w.sb.id), "protect_host")
	w.rule(fmt.Sprintf("%s ip6 daddr != @%s_exact6 counter drop", local, w.sb.id), "protect_host")
}

// isolate drops non-TCP to other sandboxes unless allow_cidrs names them.
func (w chainWriter) isolate() {
	w.section("isolate_sandboxes: not to other sandboxes")
	w.rule(fmt.Sprintf("ip daddr @peers4 ip daddr != @%s_named4 counter drop", w.sb.id), "isolate_sandboxes")
	w.rule(fmt.Sprintf("ip6 daddr @peers6 ip6 daddr != @%s_named6 counter drop", w.sb.id), "isolate_sandboxes")
}

// others judges every other protocol (UDP, ICMP, …) by mode.
func (w chainWriter) others() {
	w.section("other protocols")
	if w.sb.Mode == ModeAllowAll {
		w.rule("accept", "mode allow-all")
		return
	}
	w.rule(fmt.Sprintf("ip daddr @%s_allow4 accept", w.sb.id), "allow_cidrs")
	w.rule(fmt.Sprintf("ip6 daddr @%s_allow6 accept", w.sb.id), "allow_cidrs")
	w.rule("counter drop", "mode custom: not allowed")
}
