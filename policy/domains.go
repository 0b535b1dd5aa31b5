package policy

import "strings"

// domainTable matches normalised names against allow_domains patterns with
// map lookups on label-aligned suffixes of the name: the cost depends on
// the name's length, never on the number of patterns, and nothing is
// allocated. A suffix always starts right after a dot, so "allowed.test"
// never matches "evilallowed.test" nor "allowed.test.evil.test".
type domainTable struct {
	// rules is keyed by a name ("api.example.com") for exact patterns and
	// by the part after "*." ("example.com") for wildcard patterns.
	rules map[string]domainRule
	// depths has bit n set when some wildcard's base has n labels, so a
	// lookup only tries the suffixes that could be there (n < 128).
	depths   [2]uint64
	any      bool // the pattern "*" is present
	anyPorts PortSet
	anyEntry string
}

// domainRule holds the patterns keyed by one name: the name itself (exact)
// and "*." + name (wild), each as its entry reads once normalised, ports
// included ("api.example.com:443"); "" when absent. Keeping the strings
// lets a match report its entry without building one.
type domainRule struct {
	exact, wild           string
	exactPorts, wildPorts PortSet // nil: every port
}

// entry is a pattern with its ports, as Spec lists it.
func entry(pattern string, ports PortSet) string {
	if ports == nil {
		return pattern
	}
	return pattern + ":" + ports.String()
}

func newDomainTable(capacity int) domainTable {
	return domainTable{rules: make(map[string]domainRule, capacity)}
}

// add inserts a normalised pattern for ports (nil: every port) and
// reports whether the pattern was new; a pattern seen before gets the
// union of both port sets.
func (t *domainTable) add(pattern string, ports PortSet) bool {
	if pattern == "*" {
		added := !t.any
		if added {
			t.anyPorts = ports
		} else {
			t.anyPorts = t.anyPorts.union(ports)
		}
		t.any, t.anyEntry = true, entry("*", t.anyPorts)
		return added
	}
	if base, ok := strings.CutPrefix(pattern, "*."); ok {
		r := t.rules[base]
		added := r.wild == ""
		if added {
			r.wildPorts = ports
		} else {
			r.wildPorts = r.wildPorts.union(ports)
		}
		r.wild = entry(pattern, r.wildPorts)
		t.rules[base] = r
		n := strings.Count(base, ".") + 1
		t.depths[n/64] |= 1 << (n % 64)
		return added
	}
	r := t.rules[pattern]
	added := r.exact == ""
	if added {
		r.exactPorts = ports
	} else {
		r.exactPorts = r.exactPorts.union(ports)
	}
	r.exact = entry(pattern, r.exactPorts)
	t.rules[pattern] = r
	return added
}

// entryOf is the entry of a pattern added before.
func (t *domainTable) entryOf(pattern string) string {
	if pattern == "*" {
		return t.anyEntry
	}
	if base, ok := strings.CutPrefix(pattern, "*."); ok {
		return t.rules[base].wild
	}
	return t.rules[pattern].exact
}

func (t *domainTable) hasDepth(n int) bool {
	return t.depths[n/64]&(1<<(n%64)) != 0
}

// match finds the entry that allows name, a normalised name of the given
// number of labels, on port (0: on some port). The most specific pattern
// whose ports hold port wins: the exact name, then the wildcard with the
// longest base, then "*".
func (t *domainTable) match(name string, labels int, port uint16) (string, bool) {
	if r, ok := t.rules[name]; ok && r.exact != "" && r.exactPorts.Contains(port) {
		return r.exact, true
	}
	// Proper suffixes, longest first: name[i+1:] after each dot at i.
	for i, n := 0, labels-1; n > 0; n-- {
		i += strings.IndexByte(name[i:], '.') + 1
		if !t.hasDepth(n) {
			continue
		}
		if r, ok := t.rules[name[i:]]; ok && r.wild != "" && r.wildPorts.Contains(port) {
			return r.wild, true
		}
	}
	if t.any && t.anyPorts.Contains(port) {
		return t.anyEntry, true
	}
	return "", false
}
