package dnsfilter

import (
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// maxChain bounds the CNAME chain followed from the question name.
const maxChain = 16

// shaped is what shaping an answer for one sandbox produced.
type shaped struct {
	addrs   []netip.Addr    // answered to the question name, to bind
	ttls    []time.Duration // the TTL each of addrs was answered with
	changed bool            // records were removed or edited
}

// shape edits m, a private copy of an upstream answer to qname (an FQDN),
// into what the sandbox may see:
//
//   - answer records must belong to the chain of CNAMEs that starts at
//     the question name (owner names checked, case-insensitively);
//     records about other names, which an upstream could use to plant
//     addresses, are removed (DNAMEs above the question name stay);
//   - A and AAAA records the guard rejects are removed;
//   - SVCB and HTTPS records lose their ech parameter and rejected hints;
//   - the additional section is emptied and the authority section keeps
//     only SOA and NS records: an address there (glue, or one planted for
//     an allowed name) is bound to nothing, and a client must not cache
//     it either. Only the answer's chain reaches the client.
//
// The addresses of the chain's A, AAAA and hint records are returned to be
// bound to the question name.
func shape(m *dns.Msg, qname string, g guard) shaped {
	var s shaped
	chain := cnameChain(m.Answer, qname)
	out := m.Answer[:0]
	for _, rr := range m.Answer {
		owner := rr.Header().Name
		if !inChain(chain, owner) {
			if _, ok := rr.(*dns.DNAME); !ok || !dns.IsSubDomain(owner, qname) {
				s.changed = true
				continue
			}
		}
		if !s.keepRecord(rr, g, true) {
			s.changed = true
			continue
		}
		out = append(out, rr)
	}
	clear(m.Answer[len(out):])
	m.Answer = out
	m.Ns = s.authority(m.Ns)
	if len(m.Extra) > 0 {
		s.changed = true
		m.Extra = nil
	}
	return s
}

// authority keeps the SOA and NS records of an authority section, which
// negative caching and referrals use, and nothing else.
func (s *shaped) authority(rrs []dns.RR) []dns.RR {
	out := rrs[:0]
	for _, rr := range rrs {
		switch rr.(type) {
		case *dns.SOA, *dns.NS:
			out = append(out, rr)
		default:
			s.changed = true
		}
	}
	clear(rrs[len(out):])
	return out
}

// keepRecord judges one record, editing SVCB and HTTPS ones, and records
// the addresses to bind when bind is set.
func (s *shaped) keepRecord(rr dns.RR, g guard, bind bool) bool {
	var svcb *dns.SVCB
	switch v := rr.(type) {
	case *dns.A:
		return s.keepAddr(v.A, v.Hdr.Ttl, g, bind)
	case *dns.AAAA:
		return s.keepAddr(v.AAAA, v.Hdr.Ttl, g, bind)
	case *dns.SVCB:
		svcb = v
	case *dns.HTTPS:
		svcb = &v.SVCB
	default:
		return true
	}
	hints, changed := g.filterSVCB(svcb)
	s.changed = s.changed || changed
	if bind {
		for _, a := range hints {
			s.addrs = append(s.addrs, a)
			s.ttls = append(s.ttls, secs(svcb.Hdr.Ttl))
		}
	}
	return true
}

func (s *shaped) keepAddr(ip []byte, ttl uint32, g guard, bind bool) bool {
	a, ok := netip.AddrFromSlice(ip)
	if !ok || !g.keep(a) {
		return false
	}
	if bind {
		s.addrs = append(s.addrs, a.Unmap())
		s.ttls = append(s.ttls, secs(ttl))
	}
	return true
}

// cnameChain returns qname and the names its CNAME records lead to, in
// order, at most maxChain of them. Owner names are compared
// case-insensitively.
func cnameChain(answer []dns.RR, qname string) []string {
	chain := []string{qname}
	for len(chain) < maxChain {
		next := ""
		cur := chain[len(chain)-1]
		for _, rr := range answer {
			if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, cur) {
				next = c.Target
				break
			}
		}
		if next == "" || inChain(chain, next) {
			break
		}
		chain = append(chain, next)
	}
	return chain
}

func inChain(chain []string, name string) bool {
	for _, c := range chain {
		if strings.EqualFold(c, name) {
			return true
		}
	}
	return false
}

// bindUntil turns shaped addresses into bindings lasting max(TTL, floor).
func bindUntil(s shaped, now time.Time, floor time.Duration) []boundAddr {
	out := make([]boundAddr, len(s.addrs))
	for i, a := range s.addrs {
		out[i] = boundAddr{addr: a, expires: now.Add(max(s.ttls[i], floor))}
	}
	return out
}
