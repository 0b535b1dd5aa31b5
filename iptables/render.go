package iptables

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Render returns the nft script installing the rules for sbs: deterministic,
// human readable, and loadable with `nft -f`. Loading it replaces table inet
// egressd in one transaction.
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

// Script returns the nft script for the ruleset.
func (r *Ruleset) Script() string {
	var b strings.Builder
	b.WriteString(header)
	fmt.Fprintf(&b, "table inet %s {\n", Table)
	writeAlive(&b)
	r.writeHostSets(&b)
	for i := range r.sandboxes {
		r.writeSets(&b, &r.sandboxes[i])
	}
	r.writePrerouting(&b)
	for i := range r.sandboxes {
		writeSandboxChain(&b, &r.sandboxes[i], r.ports, r.host)
	}
	b.WriteString("}\n")
	r.writeBridgeTable(&b)
	return b.String()
}

// writeAlive writes the heartbeat set: a live egressd keeps its two
// elements from expiring (Heartbeat); every accept of non-TCP traffic
// requires them, so within AliveTimeout of egressd's death nothing passes.
func writeAlive(b *strings.Builder) {
	fmt.Fprintf(b, "\t# refreshed by a running egressd; when it stops, nothing but TCP and DNS\n")
	fmt.Fprintf(b, "\t# to its (then closed) sockets is accepted, and those find no listener\n")
	fmt.Fprintf(b, "\tset %s {\n\t\ttypeof meta nfproto\n\t\tflags timeout\n", AliveSet)
	fmt.Fprintf(b, "\t\telements = { ipv4 timeout %s, ipv6 timeout %s }\n\t}\n\n", nftDuration(AliveTimeout), nftDuration(AliveTimeout))
}

func (r *Ruleset) writeHostSets(b *strings.Builder) {
	if !r.host.IsolateSandboxes {
		return
	}
	b.WriteString("\t# every sandbox's sources (isolate_sandboxes)\n")
	writeSet(b, "peers4", "ipv4_addr", r.peers4)
	writeSet(b, "peers6", "ipv6_addr", r.peers6)
	b.WriteString("\n")
}

func (r *Ruleset) writeSets(b *strings.Builder, sb *ruleSandbox) {
	fmt.Fprintf(b, "\t# sandbox %q: interface %s, mode %s\n", sb.Name, sb.Interface, sb.Mode)
	writeSet(b, sb.id+"_src4", "ipv4_addr", sb.src4)
	writeSet(b, sb.id+"_src6", "ipv6_addr", sb.src6)
	writeSet(b, sb.id+"_allow4", "ipv4_addr", sb.allow4)
	writeSet(b, sb.id+"_allow6", "ipv6_addr", sb.allow6)
	writeSet(b, sb.id+"_deny4", "ipv4_addr", sb.deny4)
	writeSet(b, sb.id+"_deny6", "ipv6_addr", sb.deny6)
	if r.host.ProtectHost {
		writeSet(b, sb.id+"_exact4", "ipv4_addr", sb.exact4)
		writeSet(b, sb.id+"_exact6", "ipv6_addr", sb.exact6)
	}
	if r.host.IsolateSandboxes {
		writeSet(b, sb.id+"_named4", "ipv4_addr", sb.named4)
		writeSet(b, sb.id+"_named6", "ipv6_addr", sb.named6)
	}
	b.WriteString("\n")
}

// writeSet writes a named interval set; an empty set has no elements line
// (nft rejects "elements = { }").
func writeSet(b *strings.Builder, name, typ string, elems []netip.Prefix) {
	fmt.Fprintf(b, "\tset %s {\n\t\ttype %s\n\t\tflags interval\n", name, typ)
	if len(elems) > 0 {
		b.WriteString("\t\telements = {\n")
		for _, p := range elems {
			fmt.Fprintf(b, "\t\t\t%s,\n", p)
		}
		b.WriteString("\t\t}\n")
	}
	b.WriteString("\t}\n")
}

// writePrerouting hands each sandbox interface's packets to its chain,
// then drops whatever arrives on a guarded interface that no sandbox
// claims; packets from other interfaces are untouched.
//
// There is deliberately no forward chain: every packet from a sandbox
// interface gets a final verdict here (each sandbox chain ends in a drop or
// an accept), so a forward guard would only repeat that judgement, and one
// relying on conntrack state would let reloads miss open flows.
func (r *Ruleset) writePrerouting(b *strings.Builder) {
	b.WriteString("\tchain prerouting {\n")
	b.WriteString("\t\ttype filter hook prerouting priority mangle; policy accept;\n")
	for i := range r.sandboxes {
		sb := &r.sandboxes[i]
		fmt.Fprintf(b, "\t\tiifname %q jump %s comment %q\n", sb.Interface, sb.id, "sandbox "+sb.Name)
	}
	r.writeGuard(b, r.guardNames, "guarded interface: no sandbox claims it")
	b.WriteString("\t}\n")
}

// writeGuard drops packets arriving on names (exact) or on any interface
// matching the guard's patterns.
func (r *Ruleset) writeGuard(b *strings.Builder, names []string, comment string) {
	if len(names) > 0 {
		q := make([]string, len(names))
		for i, n := range names {
			q[i] = strconv.Quote(n)
		}
		fmt.Fprintf(b, "\t\tiifname { %s } counter drop comment %q\n", strings.Join(q, ", "), comment)
	}
	for _, p := range r.guardPatterns {
		fmt.Fprintf(b, "\t\tiifname %q counter drop comment %q\n", p, comment)
	}
}

// writeBridgeTable drops frames that enter a bridge through a sandbox or
// guarded interface. Once an interface is a bridge port its packets reach
// the IP layer on the bridge, where no rule of table inet egressd would
// match them: the frame is stopped before that.
func (r *Ruleset) writeBridgeTable(b *strings.Builder) {
	names := slices.Clone(r.guardNames)
	for i := range r.sandboxes {
		names = append(names, r.sandboxes[i].Interface)
	}
	slices.Sort(names)
	fmt.Fprintf(b, "\ntable bridge %s {\n", Table)
	b.WriteString("\tchain prerouting {\n")
	b.WriteString("\t\ttype filter hook prerouting priority -200; policy accept;\n")
	r.writeGuard(b, names, "sandbox interface is a bridge port")
	b.WriteString("\t}\n}\n")
}

// nftDuration writes d the way nft reads it ("1s", "250ms").
func nftDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.Itoa(int(d/time.Second)) + "s"
	}
	return strconv.Itoa(int(d/time.Millisecond)) + "ms"
}
