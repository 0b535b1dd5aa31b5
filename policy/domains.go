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
	depths [2]uint64
	any    bool // the pattern "*" is present
}

// domainRule holds the patterns keyed by one name: the name itself (exact)
// and "*." + name (wild); "" when absent. Keeping the pattern strings lets
// a match report its pattern without building a string.
type domainRule struct {
	exact, wild string
}

func newDomainTable(capacity int) domainTable {
	return domainTable{rules: make(map[string]domainRule, capacity)}
}

// add inserts a normalised pattern and reports whether it was new.
func (t *domainTable) add(pattern string) bool {
	if pattern == "*" {
		added := !t.any
		t.any = true
		return added
	}
	if base, ok := strings.CutPrefix(pattern, "*."); ok {
		r := t.rules[base]
		if r.wild != "" {
			return false
		}
		r.wild = pattern
		t.rules[base] = r
		n := strings.Count(base, ".") + 1
		t.depths[n/64] |= 1 << (n % 64)
		return true
	}
	r := t.rules[pattern]
	if r.exact != "" {
		return false
	}
	r.exact = pattern
	t.rules[pattern] = r
	return true
}

func (t *domainTable) hasDepth(n int) bool {
	return t.depths[n/64]&(1<<(n%64)) != 0
}

// match finds the pattern that allows name, a normalised name of the given
// number of labels. The most specific pattern wins: the exact name, then
// the wildcard with the longest base, then "*".
func (t *domainTable) match(name string, labels int) (string, bool) {
	if r, ok := t.rules[name]; ok && r.exact != "" {
		return r.exact, true
	}
	// Proper suffixes, longest first: name[i+1:] after each dot at i.
	for i, n := 0, labels-1; n > 0; n-- {
		i += strings.IndexByte(name[i:], '.') + 1
		if !t.hasDepth(n) {
			continue
		}
		if r, ok := t.rules[name[i:]]; ok && r.wild != "" {
			return r.wild, true
		}
	}
	if t.any {
		return "*", true
	}
	return "", false
}
