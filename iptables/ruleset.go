package iptables

import (
	"fmt"
	"net/netip"
	"slices"
	"sync/atomic"

	"github.com/gaissmai/bart"

	"github.com/egressd/egressd/policy"
)

// Ruleset is a validated, normalised set of sandboxes, ports and host
// guard, ready to be rendered as an nft script or applied as a delta to an
// installed one. Build one with NewRuleset, or with Next from the one
// installed.
//
// Its rules are the same for any number of sandboxes: a packet finds its
// sandbox through one map lookup keyed by (interface, source), and its
// sandbox's lists through lookups in shared sets keyed by (source,
// destination). The sandboxes themselves are only elements.
type Ruleset struct {
	ports      Ports
	host       Host
	patterns   []string                 // the prefix* patterns of host.Guarded, sorted
	guardNames []string                 // the other names of host.Guarded, sorted
	names      []string                 // the sandboxes, sorted
	sbs        map[string]*sandboxElems // by name
	shared     sharedSets               // the elements no sandbox owns
	owners     *bart.Table[string]      // every source prefix → its sandbox
	gen        uint64                   // this Ruleset's number, unique in the process
}

// generations numbers Rulesets (sharedSets.base).
var generations atomic.Uint64

// sandboxElems are the elements one sandbox owns, and what they were made
// of: a Ruleset built with Next reuses them when nothing changed.
type sandboxElems struct {
	sb     Sandbox
	named  []netip.Prefix // allow_cidrs entries inside another sandbox's sources
	elems  []element      // in set order; owned sets only
	shared []element      // its contributions to claimed, ports and peers
}

// NewRuleset validates sbs, p and h.
func NewRuleset(sbs []Sandbox, p Ports, h Host) (*Ruleset, error) {
	return (*Ruleset)(nil).Next(sbs, p, h)
}

// Next is NewRuleset, reusing the elements of r (nil: none) for every
// sandbox whose inputs did not change: changing one sandbox among many
// costs little more than that sandbox.
func (r *Ruleset) Next(sbs []Sandbox, p Ports, h Host) (*Ruleset, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	next := &Ruleset{ports: p, host: h, sbs: make(map[string]*sandboxElems, len(sbs)), gen: generations.Add(1)}
	if r != nil && slices.Equal(r.host.Guarded, h.Guarded) {
		next.patterns, next.guardNames = r.patterns, r.guardNames // validated already
	} else {
		if err := h.validate(); err != nil {
			return nil, err
		}
		next.patterns, next.guardNames = guardPatterns(h.Guarded), guardNames(h.Guarded)
	}
	for i := range sbs {
		sb := &sbs[i]
		if old := r.sandbox(sb.Name); old == nil || !sameSandbox(&old.sb, sb) {
			if err := sb.validate(); err != nil {
				return nil, err
			}
		}
		if _, dup := next.sbs[sb.Name]; dup {
			return nil, fmt.Errorf("iptables: sandbox %q: duplicate name", sb.Name)
		}
		next.sbs[sb.Name] = nil
	}
	next.names = r.namesFor(next.sbs)
	owners, err := r.ownersFor(sbs, next.sbs)
	if err != nil {
		return nil, err
	}
	next.owners = owners
	reuse := r != nil && r.host.ProtectHost == h.ProtectHost && r.host.IsolateSandboxes == h.IsolateSandboxes
	var cs []contribution // the changes to the shared sets, when reusing r's
	for i := range sbs {
		sb := &sbs[i]
		named := next.named(sb)
		old := (*sandboxElems)(nil)
		if reuse {
			old = r.sbs[sb.Name]
		}
		if old != nil && sameSandbox(&old.sb, sb) && slices.Equal(old.named, named) {
			next.sbs[sb.Name] = old
			continue
		}
		se := next.build(sb, named)
		next.sbs[sb.Name] = se
		if old == nil || !slices.EqualFunc(old.shared, se.shared, func(a, b element) bool { return a.id() == b.id() }) {
			cs = append(cs, contribution{se.shared, 1})
			if old != nil {
				cs = append(cs, contribution{old.shared, -1})
			}
		}
	}
	if !reuse {
		next.shared = newSharedSets(next)
		return next, nil
	}
	for _, name := range r.names {
		if _, kept := next.sbs[name]; !kept {
			cs = append(cs, contribution{r.sbs[name].shared, -1})
		}
	}
	next.shared = nextSharedSets(r, next, cs)
	return next, nil
}

// sandbox returns the elements of r's sandbox name; nil when r is nil or
// has no such sandbox.
func (r *Ruleset) sandbox(name string) *sandboxElems {
	if r == nil {
		return nil
	}
	return r.sbs[name]
}

// namesFor returns the names of sbs, sorted: r's without those gone, with
// the new ones put in place (r's own slice when they are the same).
func (r *Ruleset) namesFor(sbs map[string]*sandboxElems) []string {
	var kept, added []string
	if r != nil {
		kept = make([]string, 0, len(sbs))
		for _, name := range r.names {
			if _, ok := sbs[name]; ok {
				kept = append(kept, name)
			}
		}
	}
	for name := range sbs {
		if r.sandbox(name) == nil {
			added = append(added, name)
		}
	}
	if r != nil && len(kept) == len(r.names) && len(added) == 0 {
		return r.names
	}
	if len(added) > len(kept) {
		names := append(kept, added...)
		slices.Sort(names)
		return names
	}
	for _, name := range added {
		i, _ := slices.BinarySearch(kept, name)
		kept = slices.Insert(kept, i, name)
	}
	return kept
}

// owned is a source prefix and its sandbox.
type owned struct {
	prefix netip.Prefix
	name   string
}

// ownersFor returns the table of sbs's sources (next their elements by
// name): r's, with the sources of sandboxes gone or changed taken out and
// those of new or changed ones put in, without touching r's (bart's
// persistent updates copy only the paths they change). A source prefix
// in two sandboxes is an error.
func (r *Ruleset) ownersFor(sbs []Sandbox, next map[string]*sandboxElems) (*bart.Table[string], error) {
	if r == nil {
		return newOwners(sbs)
	}
	var gone, came []owned
	for i := range sbs {
		sb := &sbs[i]
		old := r.sbs[sb.Name]
		if old != nil && slices.Equal(old.sb.Sources, sb.Sources) {
			continue
		}
		if old != nil {
			gone = appendOwned(gone, old.sb.Sources, sb.Name)
		}
		came = appendOwned(came, sb.Sources, sb.Name)
	}
	for _, name := range r.names {
		if _, ok := next[name]; !ok {
			gone = appendOwned(gone, r.sbs[name].sb.Sources, name)
		}
	}
	t := r.owners
	for _, o := range gone {
		if name, ok := t.Get(o.prefix); ok && name == o.name {
			t = t.DeletePersist(o.prefix)
		}
	}
	for _, o := range came {
		if other, taken := t.Get(o.prefix); taken && other != o.name {
			return nil, fmt.Errorf("iptables: sandboxes %q and %q both have source %s", other, o.name, o.prefix)
		}
		t = t.InsertPersist(o.prefix, o.name)
	}
	return t, nil
}

func appendOwned(out []owned, ps []netip.Prefix, name string) []owned {
	for _, p := range ps {
		out = append(out, owned{p.Masked(), name})
	}
	return out
}

func newOwners(sbs []Sandbox) (*bart.Table[string], error) {
	t := new(bart.Table[string])
	for i := range sbs {
		for _, p := range sbs[i].Sources {
			if other, taken := t.Get(p.Masked()); taken && other != sbs[i].Name {
				return nil, fmt.Errorf("iptables: sandboxes %q and %q both have source %s", other, sbs[i].Name, p.Masked())
			}
			t.Insert(p.Masked(), sbs[i].Name)
		}
	}
	return t, nil
}

func sameSandbox(a, b *Sandbox) bool {
	return a.Name == b.Name && a.Interface == b.Interface && a.Mode == b.Mode && a.Audit == b.Audit &&
		slices.Equal(a.Sources, b.Sources) && slices.Equal(a.AllowCIDRs, b.AllowCIDRs) &&
		slices.Equal(a.DenyCIDRs, b.DenyCIDRs) && slices.Equal(a.AllowPorts, b.AllowPorts) &&
		slices.Equal(a.DenyPorts, b.DenyPorts)
}

// sameRules reports whether r and o have the same rules and chains, so
// that one becomes the other by elements alone.
func (r *Ruleset) sameRules(o *Ruleset) bool {
	return r.ports == o.ports && r.host.ProtectHost == o.host.ProtectHost &&
		r.host.IsolateSandboxes == o.host.IsolateSandboxes && r.host.Reject == o.host.Reject &&
		slices.Equal(r.patterns, o.patterns)
}

// chainOf is the chain sb's packets jump to.
func chainOf(sb *Sandbox) string {
	if sb.Audit {
		return AuditChain
	}
	return modeChain(sb.Mode)
}

// modeChain is the chain of a sandbox in mode m.
func modeChain(m Mode) string {
	switch m {
	case ModeAllowAll:
		return "allow_all"
	case ModeDenyAll:
		return "deny_all"
	}
	return "custom"
}

// named are sb's allow_cidrs entries that lie inside another sandbox's
// sources: only those open isolate_sandboxes.
func (r *Ruleset) named(sb *Sandbox) []netip.Prefix {
	if !r.host.IsolateSandboxes || sb.Mode != ModeCustom {
		return nil
	}
	return filter(sb.AllowCIDRs, func(p netip.Prefix) bool {
		owner, ok := r.owners.LookupPrefix(p)
		return ok && owner != sb.Name
	})
}

// build makes sb's elements: its (interface, source) dispatch, and for
// each source its lists as (source, destination) pairs; and its parts of
// the shared sets.
func (r *Ruleset) build(sb *Sandbox, named []netip.Prefix) *sandboxElems {
	se := &sandboxElems{sb: *sb, named: named}
	src4, src6 := splitFamilies(sb.Sources)
	add := func(set string, fields ...field) {
		se.elems = append(se.elems, newElement(set, sb.Name, "", fields...))
	}
	// A pair of single addresses goes to the set's hash twin (set+"x"):
	// see setDefs.
	pairs := func(set string, srcs, dsts []netip.Prefix) {
		for _, src := range srcs {
			for _, d := range dsts {
				if src.IsSingleIP() && d.IsSingleIP() {
					add(set+"x", addrField(src.Addr()), addrField(d.Addr()))
				} else {
					add(set, prefixField(src), prefixField(d))
				}
			}
		}
	}
	for _, fam := range []struct {
		sfx  string
		srcs []netip.Prefix
	}{{"4", src4}, {"6", src6}} {
		for _, src := range fam.srcs {
			// One address: a hash map, whose updates cost the same at
			// any size; a range needs the interval map (see setDefs).
			set, f := "sandbox"+fam.sfx, addrField(src.Addr())
			if !src.IsSingleIP() {
				set, f = set+"r", prefixField(src)
			}
			se.elems = append(se.elems, newElement(set, sb.Name, chainOf(sb), ifaceField(sb.Interface), f))
		}
	}
	for _, set := range []struct {
		name  string
		list  []netip.Prefix
		modes []Mode
		needs func(Host) bool
	}{
		{"deny", withEmbedding(sb.DenyCIDRs), []Mode{ModeAllowAll, ModeCustom}, always},
		{"allow", sb.AllowCIDRs, []Mode{ModeCustom}, always},
		{"exact", filter(sb.AllowCIDRs, netip.Prefix.IsSingleIP), []Mode{ModeCustom}, protectHost},
		{"named", named, []Mode{ModeCustom}, isolateSandboxes},
	} {
		if !slices.Contains(set.modes, sb.Mode) || !set.needs(r.host) {
			continue
		}
		d4, d6 := splitFamilies(set.list)
		pairs(set.name+"4", src4, d4)
		pairs(set.name+"6", src6, d6)
	}
	for _, set := range []struct {
		name  string
		rules []PortRule
		modes []Mode
	}{
		{"deny", disjointPorts(withEmbeddingPorts(sb.DenyPorts)), []Mode{ModeAllowAll, ModeCustom}},
		{"allow", disjointPorts(sb.AllowPorts), []Mode{ModeCustom}},
	} {
		if !slices.Contains(set.modes, sb.Mode) {
			continue
		}
		for _, r := range set.rules {
			fam, srcs := "4", src4
			if r.Prefix.Addr().Is6() {
				fam, srcs = "6", src6
			}
			for _, src := range srcs {
				add(set.name+fam+"p", prefixField(src), prefixField(r.Prefix), l4Field(r.Proto), portField(r.Lo, r.Hi))
			}
		}
	}
	slices.SortStableFunc(se.elems, func(a, b element) int { return a.si - b.si })
	se.shared = append(se.shared, newElement("claimed", "", "", ifaceField(sb.Interface)),
		newElement("ports", "", "", ifaceField(sb.Interface)))
	if r.host.IsolateSandboxes {
		for _, fam := range []struct {
			sfx  string
			srcs []netip.Prefix
		}{{"4", src4}, {"6", src6}} {
			for _, p := range fam.srcs {
				if p.IsSingleIP() {
					se.shared = append(se.shared, newElement("peers"+fam.sfx, "", "", addrField(p.Addr())))
				} else {
					se.shared = append(se.shared, newElement("peers"+fam.sfx+"r", "", "", prefixField(p), protoField(fam.sfx == "6")))
				}
			}
		}
	}
	return se
}

// elements returns the elements of the set with index si, as the script
// lists them: shared ones sorted, each sandbox's in sandbox order.
func (r *Ruleset) elements(si int) []element {
	if els := r.shared.elements(si); len(els) > 0 {
		return els
	}
	var out []element
	for _, name := range r.names {
		for _, e := range r.sbs[name].elems {
			if e.si == si {
				out = append(out, e)
			}
		}
	}
	return out
}

// withEmbedding adds to ps, for each IPv4 prefix, the IPv6 prefixes whose
// addresses embed it (NAT64, 6to4, Teredo server, mapped, compatible:
// policy.EmbeddingPrefixes), so that deny_cidrs stops UDP and ICMP to
// those forms in the kernel as the proxy does for TCP.
func withEmbedding(ps []netip.Prefix) []netip.Prefix {
	out := slices.Clone(ps)
	for _, p := range ps {
		out = append(out, policy.EmbeddingPrefixes(p)...)
	}
	return out
}

// withEmbeddingPorts adds, for each rule, the IPv6 forms of its prefix
// (NAT64, 6to4, …: policy.EmbeddingPrefixes), as withEmbedding does.
func withEmbeddingPorts(rs []PortRule) []PortRule {
	out := slices.Clone(rs)
	for _, r := range rs {
		for _, p := range policy.EmbeddingPrefixes(r.Prefix) {
			proto := r.Proto
			if proto == 1 {
				proto = 58 // ICMP travels as ICMPv6 there
			}
			out = append(out, PortRule{Prefix: p, Proto: proto, Lo: r.Lo, Hi: r.Hi})
		}
	}
	return out
}

// disjointPorts returns rules that cover what rs cover and never overlap:
// an nft interval set refuses an element that overlaps another ("File
// exists"). Wider prefixes come first; a rule loses the ports that an
// earlier rule for the same protocol, whose prefix holds its own, covers
// already, and is split around them.
func disjointPorts(rs []PortRule) []PortRule {
	sorted := slices.Clone(rs)
	for i := range sorted {
		sorted[i].Prefix = sorted[i].Prefix.Masked()
	}
	slices.SortStableFunc(sorted, func(a, b PortRule) int { return a.Prefix.Bits() - b.Prefix.Bits() })
	var out []PortRule
	for _, r := range sorted {
		ranges := [][2]uint16{{r.Lo, r.Hi}}
		for _, o := range out {
			if o.Proto == r.Proto && o.Prefix.Addr().Is6() == r.Prefix.Addr().Is6() &&
				o.Prefix.Bits() <= r.Prefix.Bits() && o.Prefix.Contains(r.Prefix.Addr()) {
				ranges = subtract(ranges, o.Lo, o.Hi)
			}
		}
		for _, x := range ranges {
			out = append(out, PortRule{Prefix: r.Prefix, Proto: r.Proto, Lo: x[0], Hi: x[1]})
		}
	}
	return out
}

// subtract removes lo-hi from each range.
func subtract(ranges [][2]uint16, lo, hi uint16) [][2]uint16 {
	var out [][2]uint16
	for _, x := range ranges {
		if hi < x[0] || lo > x[1] { // apart
			out = append(out, x)
			continue
		}
		if lo > x[0] {
			out = append(out, [2]uint16{x[0], lo - 1})
		}
		if hi < x[1] {
			out = append(out, [2]uint16{hi + 1, x[1]})
		}
	}
	return out
}

func filter(ps []netip.Prefix, keep func(netip.Prefix) bool) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		if keep(p.Masked()) {
			out = append(out, p)
		}
	}
	return out
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
