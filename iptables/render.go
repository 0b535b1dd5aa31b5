package iptables

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Render returns the nft script installing the rules for sbs: deterministic,
// human readable, and loadable with `nft -f`. Loading it replaces tables
// inet egressd and bridge egressd in one transaction.
func Render(sbs []Sandbox, p Ports, h Host) (string, error) {
	rs, err := NewRuleset(sbs, p, h)
	if err != nil {
		return "", err
	}
	return rs.Script(), nil
}

// header makes one transaction of the load: create each table if missing
// (so delete cannot fail), delete it, define it again. Readers never see a
// moment without rules.
const header = `# egressd ruleset, generated: do not edit. Load with nft -f FILE.
# The first four commands make the load replace tables inet ` + Table + ` and
# bridge ` + Table + ` in one transaction: there is no moment without rules.
` + removeTables + `
`

// removeTables deletes both tables in one transaction whether or not they
// exist (nft 1.0.6 has no "destroy").
const removeTables = "table inet " + Table + " {}\ndelete table inet " + Table + "\n" +
	"table bridge " + Table + " {}\ndelete table bridge " + Table + "\n"

// setDef is one named set or map of the ruleset.
type setDef struct {
	name     string
	bridge   bool   // in table bridge egressd, else inet
	decl     string // type and flags, as nft reads them
	comment  string
	interval bool // flags interval: elements have a key end
	isMap    bool // a verdict map
	needs    func(Host) bool
}

func always(Host) bool             { return true }
func protectHost(h Host) bool      { return h.ProtectHost }
func isolateSandboxes(h Host) bool { return h.IsolateSandboxes }

const pairs = "flags interval"

// setDefs are the sets, in the order the script declares them. A
// sandbox's single source addresses go to hash sets (sandbox4, peers4),
// and so do the (source, destination) pairs of one address each (the
// sets ending in x): deleting an element of an interval set (pipapo)
// costs time that grows with its size, ~5 ms at 1,000 elements, while a
// hash set's updates do not. peers4r and peers6r add the constant meta nfproto to their key: as
// a concatenation, an interval set is one kernel type (pipapo) whose
// elements are a key and a key end, like every other interval set here.
var setDefs = []setDef{
	{name: "claimed", decl: "type ifname", comment: "every sandbox interface", needs: always},
	{name: "guarded", decl: "type ifname", comment: "guarded interfaces that no sandbox claims", needs: always},
	{name: "sandbox4", decl: "type ifname . ipv4_addr : verdict", isMap: true,
		comment: "(interface, source address) → the sandbox's mode chain", needs: always},
	{name: "sandbox6", decl: "type ifname . ipv6_addr : verdict", isMap: true, needs: always},
	{name: "sandbox4r", decl: "type ifname . ipv4_addr : verdict; " + pairs, interval: true, isMap: true,
		comment: "… for source ranges", needs: always},
	{name: "sandbox6r", decl: "type ifname . ipv6_addr : verdict; " + pairs, interval: true, isMap: true, needs: always},
	{name: "deny4", decl: "type ipv4_addr . ipv4_addr; " + pairs, interval: true,
		comment: "(source, destination) pairs of every sandbox's deny_cidrs", needs: always},
	{name: "deny6", decl: "type ipv6_addr . ipv6_addr; " + pairs, interval: true, needs: always},
	{name: "deny4x", decl: "type ipv4_addr . ipv4_addr", comment: "… those of one source and one destination address", needs: always},
	{name: "deny6x", decl: "type ipv6_addr . ipv6_addr", needs: always},
	{name: "allow4", decl: "type ipv4_addr . ipv4_addr; " + pairs, interval: true,
		comment: "… of allow_cidrs (mode custom)", needs: always},
	{name: "allow6", decl: "type ipv6_addr . ipv6_addr; " + pairs, interval: true, needs: always},
	{name: "allow4x", decl: "type ipv4_addr . ipv4_addr", comment: "… those of one source and one destination address", needs: always},
	{name: "allow6x", decl: "type ipv6_addr . ipv6_addr", needs: always},
	{name: "allow4p", decl: "type ipv4_addr . ipv4_addr . inet_proto . inet_service; " + pairs, interval: true,
		comment: "… of allow_cidrs entries with ports or a protocol: (source, destination, protocol, port)", needs: always},
	{name: "allow6p", decl: "type ipv6_addr . ipv6_addr . inet_proto . inet_service; " + pairs, interval: true, needs: always},
	{name: "deny4p", decl: "type ipv4_addr . ipv4_addr . inet_proto . inet_service; " + pairs, interval: true,
		comment: "… and of deny_cidrs", needs: always},
	{name: "deny6p", decl: "type ipv6_addr . ipv6_addr . inet_proto . inet_service; " + pairs, interval: true, needs: always},
	{name: "exact4", decl: "type ipv4_addr . ipv4_addr; " + pairs, interval: true,
		comment: "… of allow_cidrs entries of one address (protect_host)", needs: protectHost},
	{name: "exact6", decl: "type ipv6_addr . ipv6_addr; " + pairs, interval: true, needs: protectHost},
	{name: "exact4x", decl: "type ipv4_addr . ipv4_addr", comment: "… those of one source address", needs: protectHost},
	{name: "exact6x", decl: "type ipv6_addr . ipv6_addr", needs: protectHost},
	{name: "named4", decl: "type ipv4_addr . ipv4_addr; " + pairs, interval: true,
		comment: "… of allow_cidrs entries inside another sandbox's sources (isolate_sandboxes)", needs: isolateSandboxes},
	{name: "named6", decl: "type ipv6_addr . ipv6_addr; " + pairs, interval: true, needs: isolateSandboxes},
	{name: "named4x", decl: "type ipv4_addr . ipv4_addr", comment: "… those of one source and one destination address", needs: isolateSandboxes},
	{name: "named6x", decl: "type ipv6_addr . ipv6_addr", needs: isolateSandboxes},
	{name: "peers4", decl: "type ipv4_addr", comment: "every sandbox's source addresses (isolate_sandboxes)", needs: isolateSandboxes},
	{name: "peers6", decl: "type ipv6_addr", needs: isolateSandboxes},
	{name: "peers4r", decl: "typeof ip daddr . meta nfproto; " + pairs, interval: true,
		comment: "… and source ranges", needs: isolateSandboxes},
	{name: "peers6r", decl: "typeof ip6 daddr . meta nfproto; " + pairs, interval: true, needs: isolateSandboxes},
	{name: "ports", bridge: true, decl: "type ifname", comment: "every sandbox and guarded interface", needs: always},
}

func setIndex(name string) int {
	for i, d := range setDefs {
		if d.name == name {
			return i
		}
	}
	return len(setDefs)
}

func setDefOf(name string) setDef { return setDefs[setIndex(name)] }

// Script returns the nft script for the ruleset.
func (r *Ruleset) Script() string {
	var b strings.Builder
	b.WriteString(header)
	fmt.Fprintf(&b, "table inet %s {\n", Table)
	writeAlive(&b)
	writeDropSets(&b)
	r.writeSets(&b, false)
	r.writePrerouting(&b)
	writeModeChains(&b, r.ports, r.host)
	writeNATChain(&b, r.ports)
	writeForwardChain(&b)
	b.WriteString("}\n")
	fmt.Fprintf(&b, "\ntable bridge %s {\n", Table)
	r.writeSets(&b, true)
	fmt.Fprintf(&b, "\t# the ports of bridges that are sandbox interfaces, kept by a running\n\t# egressd (Installer.SetBridgePorts)\n\tset %s {\n\t\ttype ifname\n\t}\n\n", BridgePortsSet)
	r.writeBridgeChain(&b)
	b.WriteString("}\n")
	return b.String()
}

// writeAlive writes the heartbeat set: a live egressd keeps its two
// elements from expiring (Heartbeat); every accept of non-TCP traffic
// requires them, so within AliveTimeout of egressd's death nothing passes.
func writeAlive(b *strings.Builder) {
	b.WriteString("\t# refreshed by a running egressd; when it stops, nothing but TCP and DNS\n")
	b.WriteString("\t# to its (then closed) sockets is accepted, and those find no listener\n")
	fmt.Fprintf(b, "\tset %s {\n\t\ttypeof meta nfproto\n\t\tflags timeout\n", AliveSet)
	fmt.Fprintf(b, "\t\telements = { ipv4 timeout %s, ipv6 timeout %s }\n\t}\n\n", nftDuration(AliveTimeout), nftDuration(AliveTimeout))
}

// writeSets writes the sets of one table with their elements, each
// sandbox's under a comment naming it. An empty set has no elements line
// (nft rejects "elements = { }").
func (r *Ruleset) writeSets(b *strings.Builder, bridge bool) {
	for _, d := range setDefs {
		if d.bridge != bridge || !d.needs(r.host) {
			continue
		}
		if d.comment != "" {
			fmt.Fprintf(b, "\t# %s\n", d.comment)
		}
		kind := "set"
		if d.isMap {
			kind = "map"
		}
		fmt.Fprintf(b, "\t%s %s {\n", kind, d.name)
		for _, part := range strings.Split(d.decl, "; ") {
			fmt.Fprintf(b, "\t\t%s\n", part)
		}
		writeElements(b, r.elements(setIndex(d.name)))
		b.WriteString("\t}\n")
	}
	b.WriteString("\n")
}

// writeElements writes a set's elements, each sandbox's under a comment
// naming it.
func writeElements(b *strings.Builder, els []element) {
	if len(els) == 0 {
		return
	}
	b.WriteString("\t\telements = {\n")
	owner := ""
	for _, e := range els {
		if e.owner != owner && e.owner != "" {
			fmt.Fprintf(b, "\t\t\t# sandbox %q\n", e.owner)
		}
		owner = e.owner
		fmt.Fprintf(b, "\t\t\t%s,\n", e.text)
	}
	b.WriteString("\t\t}\n")
}

// writePrerouting finds each packet's sandbox by (interface, source) in
// one map lookup and jumps to its mode's chain. A packet on a sandbox
// interface whose source no sandbox there owns is spoofed; a packet on a
// guarded interface that no sandbox claims goes nowhere. Packets from
// other interfaces are untouched.
//
// Every packet from a sandbox interface gets its final verdict here (each
// mode chain ends in a drop or an accept); the forward chain only catches
// packets marked for egressd that would leave instead. Conntrack state is
// used for two things only: replies on connections opened into the
// sandbox, and the later packets of connections NAT sent to the proxy;
// everything a sandbox starts is judged per packet, so a reload takes
// effect on flows already open.
func (r *Ruleset) writePrerouting(b *strings.Builder) {
	b.WriteString("\tchain prerouting {\n")
	b.WriteString("\t\ttype filter hook prerouting priority mangle; policy accept;\n")
	w := chainWriter{b: b}
	w.neighbourDiscovery()
	w.rule("iifname . ip saddr vmap @sandbox4", "sandbox by interface and source")
	w.rule("iifname . ip6 saddr vmap @sandbox6", "sandbox by interface and source")
	w.rule("iifname . ip saddr vmap @sandbox4r", "sandbox by interface and source range")
	w.rule("iifname . ip6 saddr vmap @sandbox6r", "sandbox by interface and source range")
	w.rule("iifname @claimed counter drop", "spoofed source")
	r.writeGuard(w, "@guarded", "guarded interface: no sandbox claims it")
	b.WriteString("\t}\n")
}

// writeGuard drops packets arriving on the interfaces of set or matching
// one of the guard's patterns.
func (r *Ruleset) writeGuard(w chainWriter, set, comment string) {
	w.rule("iifname "+set+" counter drop", comment)
	for _, p := range r.patterns {
		w.rule(fmt.Sprintf("iifname %q counter drop", p), comment)
	}
}

// writeBridgeChain drops frames that enter a bridge through a sandbox or
// guarded interface. Once an interface is a bridge port its packets reach
// the IP layer on the bridge, where no rule of table inet egressd would
// match them: the frame is stopped before that.
func (r *Ruleset) writeBridgeChain(b *strings.Builder) {
	b.WriteString("\tchain prerouting {\n")
	b.WriteString("\t\ttype filter hook prerouting priority -200; policy accept;\n")
	r.writeGuard(chainWriter{b: b}, "@ports", "sandbox interface is a bridge port")
	// br_netfilter hands the IP hooks only untagged IPv4, IPv6 and ARP
	// frames: a VLAN-tagged one (a priority tag, VLAN 0, that the
	// receiver reads as plain IP) or any other ethertype would cross the
	// bridge unjudged.
	chainWriter{b: b}.rule("iifname @"+BridgePortsSet+" ether type != { ip, ip6, arp } counter drop",
		"port of a sandbox bridge: neither IP nor ARP (a VLAN tag, say)")
	b.WriteString("\t}\n")
}

// nftDuration writes d the way nft reads it ("1s", "250ms").
func nftDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.Itoa(int(d/time.Second)) + "s"
	}
	return strconv.Itoa(int(d/time.Millisecond)) + "ms"
}
