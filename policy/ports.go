package policy

import (
	"errors"
	"slices"
	"strconv"
	"strings"
)

// PortSet is the destination ports an entry applies to: sorted, merged,
// non-overlapping ranges. The nil set is every port.
type PortSet []PortRange

// PortRange is the ports Lo through Hi.
type PortRange struct{ Lo, Hi uint16 }

var (
	errPortRange = errors.New("port must be 1..65535")
	errPortList  = errors.New("want ports as 443, 22,443 or 8000-8100")
)

// ParsePorts reads a port list: "443", "22,443", "8000-8100", or a mix.
func ParsePorts(s string) (PortSet, error) {
	if s == "" {
		return nil, errPortList
	}
	var out PortSet
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := parsePort(lo)
		if err != nil {
			return nil, err
		}
		b := a
		if isRange {
			if b, err = parsePort(hi); err != nil {
				return nil, err
			}
			if b < a {
				return nil, errors.New("a port range must go up: " + part)
			}
		}
		out = append(out, PortRange{a, b})
	}
	return out.normal(), nil
}

func parsePort(s string) (uint16, error) {
	if s == "" || len(s) > 5 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, errPortList
	}
	n, _ := strconv.Atoi(s)
	if n < 1 || n > 65535 {
		return 0, errPortRange
	}
	return uint16(n), nil
}

// normal sorts and merges the ranges.
func (p PortSet) normal() PortSet {
	if p == nil {
		return nil
	}
	slices.SortFunc(p, func(a, b PortRange) int { return int(a.Lo) - int(b.Lo) })
	out := p[:1]
	for _, r := range p[1:] {
		last := &out[len(out)-1]
		if int(r.Lo) <= int(last.Hi)+1 {
			last.Hi = max(last.Hi, r.Hi)
			continue
		}
		out = append(out, r)
	}
	return out
}

// Contains reports whether port is in the set; port 0 (no port: a DNS
// question, a check without one) is in every set.
func (p PortSet) Contains(port uint16) bool {
	if p == nil || port == 0 {
		return true
	}
	for _, r := range p {
		if port >= r.Lo && port <= r.Hi {
			return true
		}
	}
	return false
}

// union is the ports of either set.
func (p PortSet) union(q PortSet) PortSet {
	if p == nil || q == nil {
		return nil
	}
	return append(slices.Clone(p), q...).normal()
}

// String writes the set as ParsePorts reads it; "" for every port.
func (p PortSet) String() string {
	parts := make([]string, len(p))
	for i, r := range p {
		parts[i] = strconv.Itoa(int(r.Lo))
		if r.Hi != r.Lo {
			parts[i] += "-" + strconv.Itoa(int(r.Hi))
		}
	}
	return strings.Join(parts, ",")
}
