package iptables

import (
	"fmt"
	"slices"
	"strings"
)

// writeModeChains writes the three chains a sandbox's packets jump to,
// shared by every sandbox in that mode. Order matters: see the package
// comment. Every path ends in a verdict.
func writeModeChains(b *strings.Builder, p Ports, h Host) {
	b.WriteString("\n\tchain deny_all {\n")
	w := chainWriter{b: b, deny: denyVerdict(h)}
	w.replies()
	w.denied("meta l4proto tcp", "reject with tcp reset", "mode deny-all")
	w.denied("", w.deny, "mode deny-all")
	b.WriteString("\t}\n")
	for _, m := range []Mode{ModeAllowAll, ModeCustom} {
		fmt.Fprintf(b, "\n\tchain %s {\n", modeChain(m))
		w := chainWriter{b: b, deny: denyVerdict(h)}
		w.replies()
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
	writeAuditChain(b, p, h)
}

// writeAuditChain writes the chain of the sandboxes in report-only mode
// (Sandbox.Audit), whatever their mode. TCP and DNS go to egressd, which
// reports what the policy would deny (DNS in mode deny-all too); the host
// guard stands; everything else passes, recorded with its destination and
// protocol in kaudit4 or kaudit6 (KernelAudit), for egressd to judge
// against the policy and report.
func writeAuditChain(b *strings.Builder, p Ports, h Host) {
	fmt.Fprintf(b, "\n\tchain %s {\n", AuditChain)
	w := chainWriter{b: b, deny: denyVerdict(h)}
	w.replies()
	w.dns(p.DNS)
	w.tcp(p.TProxy)
	w.alive()
	if h.ProtectHost {
		w.protectHost()
	}
	if h.IsolateSandboxes {
		w.isolate()
	}
	w.section("report-only: the rest passes, recorded for egressd to judge")
	// An ICMP error answers a packet the sandbox was sent (a stray reply
	// to a closed port): it says nothing of what the sandbox reaches.
	w.rule("icmp type { destination-unreachable, time-exceeded, parameter-problem } counter accept",
		"report-only: ICMP error, not recorded")
	w.rule("icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem } counter accept",
		"report-only: ICMP error, not recorded")
	w.rule("update @kaudit4 { ip saddr . ip daddr . meta l4proto } accept", "report-only: recorded")
	w.rule("update @kaudit6 { ip6 saddr . ip6 daddr . meta l4proto } accept", "report-only: recorded")
	w.rule("counter accept", "report-only: not recorded, kaudit4 or kaudit6 full")
	b.WriteString("\t}\n")
}

type chainWriter struct {
	b    *strings.Builder
	deny string // the verdict of a policy denial: drop, or reject (Host.Reject)
}

// denyVerdict is how the mode chains refuse what the policy denies.
func denyVerdict(h Host) string {
	if h.Reject {
		return "reject with icmpx admin-prohibited"
	}
	return "drop"
}

// onBridge matches packets that arrive on a Linux bridge. They are sent to
// egressd by NAT (REDIRECT), not TPROXY: with bridge netfilter on, the
// prerouting hooks run while the bridge handles the frame, and the socket
// TPROXY assigns there is dropped when the packet reaches the IP layer
// (skb_orphan in ip_rcv_core), whose own prerouting hooks br_netfilter
// then skips (ip_sabotage_in). NAT survives that path: br_netfilter
// routes a packet whose destination changed and delivers it locally.
const onBridge = `meta iifkind "bridge"`

// replies lets through, untouched, the packets a sandbox sends on
// connections opened into it (a published port, the host's or a peer's
// connection): conntrack's reply direction in state established, which
// only a connection someone else opened can have. Not related packets:
// conntrack relates an ICMP error to any connection whose packet it
// quotes, and a sandbox can quote anyone's, carrying any payload after the
// quote. They pass while egressd runs, like all but TCP and DNS.
func (w chainWriter) replies() {
	w.section("replies on connections opened into the sandbox: untouched while egressd runs")
	w.rule("ct direction reply ct state established meta nfproto @"+AliveSet+" accept", "reply on a connection into the sandbox")
	w.rule("ct direction reply ct state established counter drop", "egressd not running")
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
// or no resolver listening (TPROXY falls through, REDIRECT finds no
// socket), DNS is dropped or refused.
func (w chainWriter) dns(port int) {
	w.section("DNS, to any destination: to the resolver")
	if port != 0 {
		w.rule(fmt.Sprintf("%s meta l4proto { tcp, udp } th dport 53 meta mark set 0x%x accept", onBridge, NATMark),
			"DNS to resolver (on a bridge: by NAT)")
		w.tproxy("meta l4proto { tcp, udp } th dport 53", port, "DNS to resolver")
	}
	w.denied("meta l4proto { tcp, udp } th dport 53", w.deny, "DNS: no resolver")
}

// denyCIDRs drops non-TCP to deny_cidrs; TCP goes on to the proxy, which
// logs the denial and resets the connection.
func (w chainWriter) denyCIDRs() {
	// A packet whose transport header is too short for th dport would
	// miss the port-scoped sets below: conntrack calls it invalid.
	w.denied("meta l4proto != tcp ct state invalid", w.deny, "malformed")
	w.section("deny_cidrs: TCP goes on to the proxy, which logs and resets")
	w.denied("ip saddr . ip daddr @deny4 meta l4proto != tcp", w.deny, "deny_cidrs")
	w.denied("ip6 saddr . ip6 daddr @deny6 meta l4proto != tcp", w.deny, "deny_cidrs")
	w.denied("ip saddr . ip daddr @deny4x meta l4proto != tcp", w.deny, "deny_cidrs")
	w.denied("ip6 saddr . ip6 daddr @deny6x meta l4proto != tcp", w.deny, "deny_cidrs")
	w.denied("ip saddr . ip daddr . meta l4proto . th dport @deny4p meta l4proto != tcp", w.deny, "deny_cidrs")
	w.denied("ip6 saddr . ip6 daddr . meta l4proto . th dport @deny6p meta l4proto != tcp", w.deny, "deny_cidrs")
}

// tcp diverts every new TCP connection to the proxy, whatever its
// destination, and passes the later packets of the connections the proxy
// holds. Nothing else: a segment that opens no connection and belongs to
// none of egressd's is answered with a reset, not diverted. The reset
// carries the sequence number the sandbox expects (the segment's ACK), so
// a connection the proxy cut ends at once for the sandbox too, even when
// the proxy's own reset was out of window and drew a challenge ACK (RFC
// 5961). TPROXY falls through when nothing listens, REDIRECT reaches no
// socket: egressd fails closed, and fast, when it is down.
func (w chainWriter) tcp(port int) {
	w.section("TCP: a new connection goes to the proxy; else only the proxy's connections")
	const syn = "tcp flags & (syn | ack) == syn"
	w.rule(fmt.Sprintf("%s %s meta mark set 0x%x accept", onBridge, syn, NATMark), "new TCP to proxy (on a bridge: by NAT)")
	w.rule(fmt.Sprintf("%s meta l4proto tcp ct status dnat meta mark set 0x%x accept", onBridge, NATMark),
		"TCP of a connection redirected to the proxy")
	w.tproxy(syn, port, "new TCP to proxy")
	w.rule(fmt.Sprintf("meta l4proto tcp socket transparent 1 meta mark set 0x%x accept", Mark),
		"TCP of a connection the proxy holds")
	w.rule("meta l4proto tcp counter reject with tcp reset", "proxy not listening, or TCP of no connection of its")
}

// tproxy writes the IPv4 and IPv6 TPROXY rules for packets matching match.
func (w chainWriter) tproxy(match string, port int, comment string) {
	for _, fam := range []struct{ nfproto, tproxy string }{{"ipv4", "ip"}, {"ipv6", "ip6"}} {
		w.rule(fmt.Sprintf("meta nfproto %s %s tproxy %s to :%d meta mark set 0x%x accept",
			fam.nfproto, match, fam.tproxy, port, Mark), comment)
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
	w.denied(local+" ip saddr . ip daddr != @exact4 ip saddr . ip daddr != @exact4x", w.deny, "protect_host")
	w.denied(local+" ip6 saddr . ip6 daddr != @exact6 ip6 saddr . ip6 daddr != @exact6x", w.deny, "protect_host")
}

// isolate drops non-TCP to other sandboxes unless allow_cidrs names them.
func (w chainWriter) isolate() {
	w.section("isolate_sandboxes: not to other sandboxes")
	const named4 = " ip saddr . ip daddr != @named4 ip saddr . ip daddr != @named4x"
	const named6 = " ip6 saddr . ip6 daddr != @named6 ip6 saddr . ip6 daddr != @named6x"
	w.denied("ip daddr @peers4"+named4, w.deny, "isolate_sandboxes")
	w.denied("ip6 daddr @peers6"+named6, w.deny, "isolate_sandboxes")
	w.denied("ip daddr . meta nfproto @peers4r"+named4, w.deny, "isolate_sandboxes")
	w.denied("ip6 daddr . meta nfproto @peers6r"+named6, w.deny, "isolate_sandboxes")
}

// others judges every other protocol (UDP, ICMP, …) by mode.
func (w chainWriter) others(m Mode) {
	w.section("other protocols")
	if m == ModeAllowAll {
		w.rule("accept", "mode allow-all")
		return
	}
	w.rule("ip saddr . ip daddr @allow4x accept", "allow_cidrs")
	w.rule("ip6 saddr . ip6 daddr @allow6x accept", "allow_cidrs")
	w.rule("ip saddr . ip daddr @allow4 accept", "allow_cidrs")
	w.rule("ip6 saddr . ip6 daddr @allow6 accept", "allow_cidrs")
	w.rule("ip saddr . ip daddr . meta l4proto . th dport @allow4p accept", "allow_cidrs with ports or a protocol")
	w.rule("ip6 saddr . ip6 daddr . meta l4proto . th dport @allow6p accept", "allow_cidrs with ports or a protocol")
	w.denied("", w.deny, "mode custom: not allowed")
}

// writeNATChain redirects what the mode chains marked NATMark (packets on
// a bridge) to the resolver and the proxy. It runs after them (mangle is
// -150) and before Docker's and everyone's dstnat (-100), so a marked
// connection is egressd's before any other DNAT can claim it.
func writeNATChain(b *strings.Builder, p Ports) {
	b.WriteString("\n\tchain nat_divert {\n")
	b.WriteString("\t\ttype nat hook prerouting priority -140; policy accept;\n")
	w := chainWriter{b: b}
	mark := fmt.Sprintf("meta mark 0x%x", NATMark)
	if p.DNS != 0 {
		w.rule(fmt.Sprintf("%s meta l4proto { tcp, udp } th dport 53 redirect to :%d", mark, p.DNS), "DNS to resolver")
	}
	w.rule(fmt.Sprintf("%s meta l4proto tcp redirect to :%d", mark, p.TProxy), "TCP to proxy")
	b.WriteString("\t}\n")
}

// writeForwardChain is a safety net, not a judgement: a packet marked for
// egressd is delivered locally by policy routing (Mark) or NAT (NATMark);
// one that is about to be forwarded instead (the routing rule deleted,
// conntrack disabled for it) is dropped rather than sent on.
func writeForwardChain(b *strings.Builder) {
	b.WriteString("\n\tchain forward {\n")
	b.WriteString("\t\ttype filter hook forward priority filter; policy accept;\n")
	chainWriter{b: b}.rule(fmt.Sprintf("meta mark { 0x%x, 0x%x } counter drop", Mark, NATMark),
		"marked for egressd, yet forwarded: policy routing or NAT missing")
	b.WriteString("\t}\n")
}

// KernelReasons are the denials of the mode chains that the kernel counts
// per sandbox source, in sets kdrops4 and kdrops6 keyed by (source, id),
// the id being the index here plus one (the rule's comment is the name).
var KernelReasons = []string{"mode deny-all", "DNS: no resolver", "deny_cidrs", "protect_host", "isolate_sandboxes",
	"mode custom: not allowed", "malformed"}

// denied writes a denial with verdict for packets matching match (all, if
// ""), preceded by rules that count the packet under its source and reason
// in kdrops4 or kdrops6, one per family the match allows. The counting
// rules carry no verdict: a full set makes them fail, never the denial.
func (w chainWriter) denied(match, verdict, comment string) {
	id := slices.Index(KernelReasons, comment) + 1
	v6 := strings.HasPrefix(match, "ip6 ") || strings.Contains(match, " ip6 ")
	v4 := strings.HasPrefix(match, "ip ") || strings.Contains(match, " ip ")
	for _, f := range []struct{ nfproto, saddr, set string }{{"ipv4", "ip saddr", "kdrops4"}, {"ipv6", "ip6 saddr", "kdrops6"}} {
		if (f.nfproto == "ipv4" && v6) || (f.nfproto == "ipv6" && v4) {
			continue
		}
		fmt.Fprintf(w.b, "\t\t%s meta mark set %d update @%s { %s . meta mark }\n",
			strings.TrimSpace("meta nfproto "+f.nfproto+" "+match), id, f.set, f.saddr)
	}
	w.rule(strings.TrimSpace(match+" counter "+verdict), comment)
}

// writeDropSets declares kdrops4 and kdrops6: an element, with its own
// counter, per (sandbox source, KernelReasons id) that was denied; and
// kaudit4 and kaudit6: one per (source, destination, protocol) that a
// sandbox in report-only mode sent (UDP, ICMP and the rest).
func writeDropSets(b *strings.Builder) {
	b.WriteString("\t# what report-only sandboxes sent, other than TCP and DNS\n")
	for _, f := range []struct{ name, fam string }{{"kaudit4", "ip"}, {"kaudit6", "ip6"}} {
		fmt.Fprintf(b, "\tset %s {\n\t\ttypeof %s saddr . %s daddr . meta l4proto\n\t\tsize 65536\n\t\tflags dynamic,timeout\n\t\ttimeout 1h\n\t\tcounter\n\t}\n",
			f.name, f.fam, f.fam)
	}
	b.WriteString("\t# what the mode chains denied, by source and reason (KernelReasons)\n")
	for _, f := range []struct{ name, saddr string }{{"kdrops4", "ip saddr"}, {"kdrops6", "ip6 saddr"}} {
		fmt.Fprintf(b, "\tset %s {\n\t\ttypeof %s . meta mark\n\t\tsize 65536\n\t\tflags dynamic,timeout\n\t\ttimeout 1h\n\t\tcounter\n\t}\n",
			f.name, f.saddr)
	}
	b.WriteString("\n")
}
