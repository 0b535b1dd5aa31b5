package iptables

import (
	"maps"
	"slices"
	"strings"
)

// sharedSets are the elements of the sets no sandbox owns (claimed, ports,
// peers, guarded), each counted by what holds it: every sandbox on an
// interface claims it, every guarded name and every sandbox on it puts it
// in ports, every sandbox's sources are peers. An element is in the kernel
// while its count is above zero; guarded holds the guarded names no
// sandbox claims.
//
// Next changes only the counts of what changed and records what that
// added to the kernel's sets and took from them: one sandbox's change
// costs that sandbox, not a rebuild and diff of every shared set. The
// counts are a map shared by the rulesets derived from one another, never
// written once built, and a small map of the counts that differ from it
// (copied by each Next); when that grows past maxOverlay the two are
// merged into a new shared map, a cost spread over the changes since.
type sharedSets struct {
	counts  map[elementID]counted // read only
	overlay map[elementID]counted // counts that differ from counts; n == 0: none
	// base is the generation of the Ruleset whose shared sets these are
	// with gone taken out and added put in; 0 when they were built whole.
	// (Not the Ruleset itself: each would keep all before it alive.)
	base        uint64
	gone, added []element
}

// maxOverlay bounds the overlay: one sandbox's change touches a few
// elements (claimed, ports, guarded, one peer per source). A variable for
// the tests.
var maxOverlay = 128

type counted struct {
	e element
	n int
}

// contribution is a change to the counts: a sandbox's shared elements or a
// guarded name's ports element, held (+1) or let go (−1).
type contribution struct {
	els   []element
	delta int
}

// newSharedSets counts the contributions of r's sandboxes and guard.
func newSharedSets(r *Ruleset) sharedSets {
	s := sharedSets{counts: map[elementID]counted{}}
	for _, name := range r.names {
		s.count(r.sbs[name].shared, 1, nil)
	}
	for _, g := range r.guardNames {
		s.count([]element{portsOf(g)}, 1, nil)
	}
	for _, g := range r.guardNames {
		s.setGuarded(g, r.guardNames, nil)
	}
	return s
}

// nextSharedSets is r's shared sets, made from base's by applying the
// contributions cs and the change from base's guarded names to r's.
func nextSharedSets(base, r *Ruleset, cs []contribution) sharedSets {
	prev, newNames := base.shared, r.guardNames
	dropped, joined := sortedDiff(base.guardNames, newNames)
	if len(cs) == 0 && len(dropped) == 0 && len(joined) == 0 {
		return sharedSets{counts: prev.counts, overlay: prev.overlay, base: base.gen}
	}
	s := sharedSets{counts: prev.counts, overlay: maps.Clone(prev.overlay), base: base.gen}
	if len(prev.overlay) > maxOverlay {
		s.counts, s.overlay = prev.merged(), nil
	}
	if s.overlay == nil {
		s.overlay = map[elementID]counted{}
	}
	touched := map[elementID]bool{}
	ifaces := map[string]bool{} // whose claim may have changed
	for _, c := range cs {
		s.count(c.els, c.delta, touched)
		for _, e := range c.els {
			if e.set == "claimed" {
				ifaces[e.fields[0].iface] = true
			}
		}
	}
	for _, g := range dropped {
		s.count([]element{portsOf(g)}, -1, touched)
		ifaces[g] = true
	}
	for _, g := range joined {
		s.count([]element{portsOf(g)}, 1, touched)
		ifaces[g] = true
	}
	for g := range ifaces {
		s.setGuarded(g, newNames, touched)
	}
	for id := range touched {
		was, is := prev.get(id), s.get(id)
		switch {
		case was.n > 0 && is.n <= 0:
			s.gone = append(s.gone, was.e)
		case is.n > 0 && was.n <= 0:
			s.added = append(s.added, is.e)
		}
	}
	return s
}

// get returns the count of id.
func (s *sharedSets) get(id elementID) counted {
	if c, ok := s.overlay[id]; ok {
		return c
	}
	return s.counts[id]
}

// each calls f with every element in the kernel's shared sets.
func (s *sharedSets) each(f func(id elementID, c counted)) {
	for id, c := range s.counts {
		if _, changed := s.overlay[id]; !changed {
			f(id, c)
		}
	}
	for id, c := range s.overlay {
		if c.n > 0 {
			f(id, c)
		}
	}
}

// merged is the counts with the overlay applied, as a new map.
func (s *sharedSets) merged() map[elementID]counted {
	m := make(map[elementID]counted, len(s.counts))
	s.each(func(id elementID, c counted) { m[id] = c })
	return m
}

// count adds delta to the count of each of els, noting their ids in
// touched (nil: not noted).
// Built whole (touched nil), the sets have no overlay and count in place.
func (s *sharedSets) count(els []element, delta int, touched map[elementID]bool) {
	for _, e := range els {
		id := e.id()
		c := s.get(id)
		c.e, c.n = e, c.n+delta
		switch {
		case touched != nil:
			s.overlay[id] = c
			touched[id] = true
		case c.n <= 0:
			delete(s.counts, id)
		default:
			s.counts[id] = c
		}
	}
}

// setGuarded puts g in guarded when it is one of the guard's names and no
// sandbox claims it, and takes it out otherwise.
func (s *sharedSets) setGuarded(g string, names []string, touched map[elementID]bool) {
	e := newElement("guarded", "", "", ifaceField(g))
	c := newElement("claimed", "", "", ifaceField(g))
	claimed := s.get(c.id()).n > 0
	_, listed := slices.BinarySearch(names, g)
	want, have := listed && !claimed, s.get(e.id()).n > 0
	switch {
	case want && !have:
		s.count([]element{e}, 1, touched)
	case have && !want:
		s.count([]element{e}, -1, touched)
	}
}

// elements returns the shared elements of the set with index si, sorted
// by their text.
func (s *sharedSets) elements(si int) []element {
	var out []element
	s.each(func(id elementID, c counted) {
		if id.si == si {
			out = append(out, c.e)
		}
	})
	slices.SortFunc(out, func(a, b element) int { return strings.Compare(a.text, b.text) })
	return out
}

// diff adds to gone and added what turns old's shared sets into s.
func (s *sharedSets) diff(old *Ruleset, gone, added map[string][]element) {
	if s.base == old.gen {
		for _, e := range s.gone {
			gone[e.set] = append(gone[e.set], e)
		}
		for _, e := range s.added {
			added[e.set] = append(added[e.set], e)
		}
		return
	}
	old.shared.each(func(id elementID, c counted) {
		if s.get(id).n <= 0 {
			gone[c.e.set] = append(gone[c.e.set], c.e)
		}
	})
	s.each(func(id elementID, c counted) {
		if old.shared.get(id).n <= 0 {
			added[c.e.set] = append(added[c.e.set], c.e)
		}
	})
}

func portsOf(iface string) element { return newElement("ports", "", "", ifaceField(iface)) }

// guardNames are the interface names (not prefix* patterns) of guarded,
// sorted, each once.
func guardNames(guarded []string) []string {
	var out []string
	for _, g := range guarded {
		if !strings.HasSuffix(g, "*") {
			out = append(out, g)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// guardPatterns are the prefix* patterns of guarded, sorted, each once.
func guardPatterns(guarded []string) []string {
	var out []string
	for _, g := range guarded {
		if strings.HasSuffix(g, "*") {
			out = append(out, g)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// sortedDiff returns what is in the sorted list a and not in b, and what
// is in b and not in a.
func sortedDiff(a, b []string) (onlyA, onlyB []string) {
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && a[i] < b[j]):
			onlyA = append(onlyA, a[i])
			i++
		case i == len(a) || b[j] < a[i]:
			onlyB = append(onlyB, b[j])
			j++
		default:
			i, j = i+1, j+1
		}
	}
	return onlyA, onlyB
}
