package iptables

import (
	"fmt"
	"net/netip"
	"strings"
)

// Render returns the nft script installing the rules for sbs: deterministic,
// human readable, and loadable with `nft -f`. Loading it replaces table inet
// egressd in one transaction.
func Render(sbs []Sandbox, p Ports) (string, error) {
	rs, err := NewRuleset(sbs, p)
	if err != nil {
		return "", err
	}
	return rs.Script(), nil
}

// header makes one transaction of the load: create the table if missing (so
// delete cannot fail), delete it, define it again. Readers never see a
// moment without rules.
const header = `# egressd ruleset, generated: do not edit. Load with nft -f FILE.
# The first two commands make the load replace table inet ` + Table + ` in one
# transaction: there is no moment without rules.
table inet ` + Table + ` {}
delete table inet ` + Table + `

`

// Script returns the nft script for the ruleset.
func (r *Ruleset) Script() string {
	var b strings.Builder
	b.WriteString(header)
	fmt.Fprintf(&b, "table inet %s {\n", Table)
	for i := range r.sandboxes {
		writeSets(&b, &r.sandboxes[i])
	}
	writePrerouting(&b, r.sandboxes)
	for i := range r.sandboxes {
		writeSandboxChain(&b, &r.sandboxes[i], r.ports)
	}
	b.WriteString("}\n")
	return b.String()
}

func writeSets(b *strings.Builder, sb *ruleSandbox) {
	fmt.Fprintf(b, "\t# sandbox %q: interface %s, mode %s\n", sb.Name, sb.Interface, sb.Mode)
	writeSet(b, sb.id+"_src4", "ipv4_addr", sb.src4)
	writeSet(b, sb.id+"_src6", "ipv6_addr", sb.src6)
	writeSet(b, sb.id+"_allow4", "ipv4_addr", sb.allow4)
	writeSet(b, sb.id+"_allow6", "ipv6_addr", sb.allow6)
	writeSet(b, sb.id+"_deny4", "ipv4_addr", sb.deny4)
	writeSet(b, sb.id+"_deny6", "ipv6_addr", sb.deny6)
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

// writePrerouting hands each sandbox interface's packets to its chain;
// packets from other interfaces are untouched.
//
// There is deliberately no forward chain: every packet from a sandbox
// interface gets a final verdict here (each sandbox chain ends in a drop or
// an accept), so a forward guard would only repeat that judgement, and one
// relying on conntrack state would let reloads miss open flows.
func writePrerouting(b *strings.Builder, sbs []ruleSandbox) {
	b.WriteString("\tchain prerouting {\n")
	b.WriteString("\t\ttype filter hook prerouting priority mangle; policy accept;\n")
	for i := range sbs {
		fmt.Fprintf(b, "\t\tiifname %q jump %s comment %q\n", sbs[i].Interface, sbs[i].id, "sandbox "+sbs[i].Name)
	}
	b.WriteString("\t}\n")
}
