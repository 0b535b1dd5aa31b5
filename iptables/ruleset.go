package iptables

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Ruleset is a validated, normalised set of sandboxes and ports, ready to be
// rendered as an nft script. Build one with NewRuleset.
type Ruleset struct {
	sandboxes []ruleSandbox // sorted by name
	ports     Ports
	host      Host
	// peers4, peers6 hold every sandbox's sources (IsolateSandboxes).
	peers4, peers6 []netip.Prefix
	// guardNames and guardPatterns are Host.Guarded split into exact names
	// that no sandbox claims and prefix* patterns.
	guardNames, guardPatterns []string
}

// ruleSandbox is a Sandbox with its nft identifier and per-family sets.
type ruleSandbox struct {
	Sandbox
	id                  string // "sb0": names are free text, identifiers are not
	src4, allow4, deny4 []netip.Prefix
	src6, allow6, deny6 []netip.Prefix
	// exact4, exact6: allow_cidrs entries of one address (ProtectHost).
	exact4, exact6 []netip.Prefix
	// named4, named6: allow_cidrs entries naming another sandbox's
	// sources (IsolateSandboxes).
	named4, named6 []netip.Prefix
}

// NewRuleset validates sbs, p and h. Sandboxes are sorted by name, so their
// identifiers (sb0, sb1, …) do not depend on the input order.
func NewRuleset(sbs []Sandbox, p Ports, h Host) (*Ruleset, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	if err := h.validate(); err != nil {
		return nil, err
	}
	sorted := slices.Clone(sbs)
	slices.SortFunc(sorted, func(a, b Sandbox) int { return strings.Compare(a.Name, b.Name) })
	rs := &Ruleset{ports: p, host: h, sandboxes: make([]ruleSandbox, 0, len(sorted))}
	ifaces := make(map[string]string, len(sorted))
	for i := range sorted {
		sb := &sorted[i]
		if err := sb.validate(); err != nil {
			return nil, err
		}
		if i > 0 && sorted[i-1].Name == sb.Name {
			return nil, fmt.Errorf("iptables: sandbox %q: duplicate name", sb.Name)
		}
		if other, dup := ifaces[sb.Interface]; dup {
			return nil, fmt.Errorf("iptables: sandbox %q: interface %q already used by sandbox %q",
				sb.Name, sb.Interface, other)
		}
		ifaces[sb.Interface] = sb.Name
		rs.sandboxes = append(rs.sandboxes, newRuleSandbox(*sb, fmt.Sprintf("sb%d", i)))
	}
	rs.noteGuard(ifaces)
	rs.notePeers()
	return rs, nil
}

// noteGuard splits Host.Guarded into patterns and the exact names that no
// sandbox claims (a claimed interface jumps to its chain first anyway).
func (rs *Ruleset) noteGuard(claimed map[string]string) {
	seen := map[string]bool{}
	for _, g := range rs.host.Guarded {
		if seen[g] {
			continue
		}
		seen[g] = true
		if strings.HasSuffix(g, "*") {
			rs.guardPatterns = append(rs.guardPatterns, g)
		} else if _, ok := claimed[g]; !ok {
			rs.guardNames = append(rs.guardNames, g)
		}
	}
	slices.Sort(rs.guardNames)
	slices.Sort(rs.guardPatterns)
}

// notePeers collects every sandbox's sources, and for each sandbox the
// allow_cidrs entries that lie inside another sandbox's sources.
func (rs *Ruleset) notePeers() {
	var all []netip.Prefix
	for i := range rs.sandboxes {
		all = append(all, rs.sandboxes[i].Sources...)
	}
	rs.peers4, rs.peers6 = splitFamilies(all)
	for i := range rs.sandboxes {
		sb := &rs.sandboxes[i]
		var exact, named []netip.Prefix
		for _, a := range sb.AllowCIDRs {
			a = a.Masked()
			if a.IsSingleIP() {
				exact = append(exact, a)
			}
			if rs.insideOther(i, a) {
				named = append(named, a)
			}
		}
		sb.exact4, sb.exact6 = splitFamilies(exact)
		sb.named4, sb.named6 = splitFamilies(named)
	}
}

// insideOther reports whether p lies inside a source of a sandbox other
// than number i.
func (rs *Ruleset) insideOther(i int, p netip.Prefix) bool {
	for j := range rs.sandboxes {
		if j == i {
			continue
		}
		for _, src := range rs.sandboxes[j].Sources {
			if src.Bits() <= p.Bits() && src.Contains(p.Addr()) {
				return true
			}
		}
	}
	return false
}

func newRuleSandbox(sb Sandbox, id string) ruleSandbox {
	r := ruleSandbox{Sandbox: sb, id: id}
	r.src4, r.src6 = splitFamilies(sb.Sources)
	r.allow4, r.allow6 = splitFamilies(sb.AllowCIDRs)
	r.deny4, r.deny6 = splitFamilies(sb.DenyCIDRs)
	return r
}

// splitFamilies masks the prefixes, splits them by family and drops any
// prefix inside another: elements of an nft interval set may not overlap.
// An IPv4-mapped IPv6 prefix stays IPv6: that is what it matches on the wire.
func splitFamilies(ps []netip.Prefix) (v4, v6 []netip.Prefix) {
	for _, p := range ps {
		p = p.Masked()
		if p.Addr().Is4() {
			v4 = append(v4, p)
		} else {
			v6 = append(v6, p)
		}
	}
	return minimalPrefixes(v4), minimalPrefixes(v6)
}

// minimalPrefixes sorts ps (one family, masked) and removes duplicates and
// prefixes contained in another. Sorted by address then length, a prefix is
// covered by an earlier one only if the last kept prefix covers it.
func minimalPrefixes(ps []netip.Prefix) []netip.Prefix {
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	out := ps[:0]
	for _, p := range ps {
		if n := len(out); n > 0 && out[n-1].Contains(p.Addr()) {
			continue
		}
		out = append(out, p)
	}
	return out
}
