package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/gaissmai/bart"
)

var (
	errPrefixEmpty = errors.New("empty prefix")
	errPrefixZone  = errors.New("an IPv6 zone (%...) has no place in a prefix")
	errPrefixAddr  = errors.New("not an IP address or CIDR prefix; names go in allow_domains")
	errPrefixBits  = errors.New("invalid prefix length")
	errMappedShort = errors.New("an IPv4-mapped IPv6 prefix must be /96 or longer")
	errHostBits    = errors.New("host bits set")
)

// ParsePrefix reads an allow_cidrs or deny_cidrs entry: an IPv4 or IPv6
// prefix, or a bare address meaning /32 or /128. IPv4-mapped IPv6 forms
// ("::ffff:10.0.0.0/104", "::ffff:1.2.3.4") become the IPv4 prefix they
// denote, since lookups unmap addresses first. A prefix with host bits set
// ("10.0.0.1/8") is refused rather than masked, so that a typo in a deny
// list cannot silently change what it covers; the error suggests the
// masked form. Zones are refused. The error is the bare reason.
func ParsePrefix(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, errPrefixEmpty
	}
	if strings.IndexByte(s, '%') >= 0 {
		return netip.Prefix{}, errPrefixZone
	}
	as, bs, hasBits := strings.Cut(s, "/")
	a, err := netip.ParseAddr(as)
	if err != nil {
		return netip.Prefix{}, errPrefixAddr
	}
	bits := a.BitLen()
	if hasBits {
		if bits, err = parseBits(bs, a.BitLen()); err != nil {
			return netip.Prefix{}, err
		}
	}
	return canonicalPrefix(netip.PrefixFrom(a, bits))
}

// parseBits reads a prefix length: decimal, no sign, no leading zero.
func parseBits(s string, max int) (int, error) {
	if s == "" || len(s) > 3 || (len(s) > 1 && s[0] == '0') {
		return 0, bitsError(max)
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, bitsError(max)
		}
		n = n*10 + int(s[i]-'0')
	}
	if n > max {
		return 0, bitsError(max)
	}
	return n, nil
}

func bitsError(max int) error {
	family := "IPv4"
	if max == 128 {
		family = "IPv6"
	}
	return fmt.Errorf("%w (%s allows /0 to /%d)", errPrefixBits, family, max)
}

// canonicalPrefix unmaps IPv4-mapped prefixes and refuses zones and host
// bits. Sandbox sources go through it too.
func canonicalPrefix(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() {
		return netip.Prefix{}, errPrefixAddr
	}
	a := p.Addr()
	if a.Zone() != "" {
		return netip.Prefix{}, errPrefixZone
	}
	if a.Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, errMappedShort
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("%w; did you mean %s?", errHostBits, m)
	}
	return p, nil
}

// cidrTable is a longest-prefix-match table of CIDR entries. Entries
// without a scope are in t, whose value is the prefix itself, so a
// Decision can name the rule that decided; entries with ports or a
// protocol are in scoped, by prefix.
type cidrTable struct {
	t       bart.Table[netip.Prefix]
	list    []netip.Prefix // unscoped entries, in config order, without duplicates
	scoped  bart.Table[[]CIDRRule]
	entries []CIDRRule // every entry, in config order, without duplicates
}

// add inserts a canonical prefix and reports whether it was new.
func (c *cidrTable) add(p netip.Prefix) bool {
	return c.addRule(CIDRRule{Prefix: p})
}

// addRule inserts an entry and reports whether it was new.
func (c *cidrTable) addRule(r CIDRRule) bool {
	if !r.Scoped() {
		if _, dup := c.t.Get(r.Prefix); dup {
			return false
		}
		c.t.Insert(r.Prefix, r.Prefix)
		c.list = append(c.list, r.Prefix)
		c.entries = append(c.entries, r)
		return true
	}
	rules, _ := c.scoped.Get(r.Prefix)
	for _, o := range rules {
		if o.scope == r.scope {
			return false
		}
	}
	c.scoped.Insert(r.Prefix, append(rules, r))
	c.entries = append(c.entries, r)
	return true
}

// lookup returns the longest unscoped prefix holding a, an unmapped
// address.
func (c *cidrTable) lookup(a netip.Addr) (netip.Prefix, bool) {
	return c.t.Lookup(a)
}

// lookupFlow returns the entry that holds a flow of proto to a and port:
// the longest unscoped prefix, else a scoped entry whose ports and
// protocol take the flow.
func (c *cidrTable) lookupFlow(a netip.Addr, proto Proto, port uint16) (CIDRRule, bool) {
	if p, ok := c.t.Lookup(a); ok {
		return CIDRRule{Prefix: p}, true
	}
	if c.scoped.Size() == 0 || proto == ProtoAny {
		return CIDRRule{}, false
	}
	for _, rules := range c.scoped.Supernets(netip.PrefixFrom(a, a.BitLen())) {
		for _, r := range rules {
			if r.matches(proto, port) {
				return r, true
			}
		}
	}
	return CIDRRule{}, false
}

func (c *cidrTable) contains(a netip.Addr) bool {
	_, ok := c.t.Lookup(a)
	return ok
}

// strings returns the entries in config order, as text.
func (c *cidrTable) strings() []string {
	out := make([]string, len(c.entries))
	for i, r := range c.entries {
		out[i] = r.String()
	}
	return out
}

// scopedRules returns the scoped entries, in config order.
func (c *cidrTable) scopedRules() []CIDRRule {
	var out []CIDRRule
	for _, r := range c.entries {
		if r.Scoped() {
			out = append(out, r)
		}
	}
	return out
}
