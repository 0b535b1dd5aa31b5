package dnsfilter

import (
	"container/list"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Bounds on how long an upstream answer is reused. RFC 2308 section 5
// suggests capping negative answers at one to three hours; one hour is used
// for both kinds, so an upstream change is seen within the hour.
const (
	maxAnswerTTL   = time.Hour
	maxNegativeTTL = time.Hour
)

// cacheKey identifies an upstream answer: the normalised question name
// (lowercase, no trailing dot; "" is the root), its type and the two
// header bits that change what the upstream returns. The class is always
// IN: the resolver refuses every other class.
type cacheKey struct {
	name  string
	qtype uint16
	do    bool // DNSSEC OK: RRSIGs wanted
	cd    bool // checking disabled
}

// answerCache is the answer cache shared by every sandbox. It holds
// upstream answers as received (minus OPT) and knows nothing of policy:
// the resolver checks the asking sandbox's policy before it looks here and
// filters a copy of the answer for that sandbox after. Least recently used
// entries go first when it is full. It is safe for concurrent use.
type answerCache struct {
	max, maxBytes int // answers, and their wire bytes, at most

	mu        sync.Mutex
	bytes     int                        // wire bytes of the answers held
	entries   map[cacheKey]*list.Element // of *cached
	lru       list.List                  // front: most recently used
	evictions atomic.Uint64
}

type cached struct {
	key     cacheKey
	msg     *dns.Msg // never modified once stored
	size    int      // msg's wire length
	stored  time.Time
	expires time.Time
}

// cacheBytesPerAnswer is the wire bytes the cache allows per answer of
// its size, on average: real answers are 50–500 bytes, an answer over TCP
// can be 64 KiB, and a sandbox asking for those must not make the cache's
// memory dns.cache_size × 64 KiB.
const cacheBytesPerAnswer = 2 << 10

// newAnswerCache returns a cache of at most max answers holding at most
// max × cacheBytesPerAnswer wire bytes; 0 caches nothing.
func newAnswerCache(max int) *answerCache {
	return &answerCache{max: max, maxBytes: max * cacheBytesPerAnswer, entries: make(map[cacheKey]*list.Element)}
}

// get returns the answer for k, when it was stored and when it expires.
// The message is shared: copy it before changing it.
func (c *answerCache) get(k cacheKey, now time.Time) (*dns.Msg, time.Time, time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[k]
	if !ok {
		return nil, time.Time{}, time.Time{}, false
	}
	e := el.Value.(*cached)
	if !now.Before(e.expires) {
		c.lru.Remove(el)
		delete(c.entries, k)
		c.bytes -= e.size
		return nil, time.Time{}, time.Time{}, false
	}
	c.lru.MoveToFront(el)
	return e.msg, e.stored, e.expires, true
}

// put stores msg under k for ttl. A zero ttl stores nothing.
func (c *answerCache) put(k cacheKey, msg *dns.Msg, ttl time.Duration, now time.Time) {
	if c.max == 0 || ttl <= 0 {
		return
	}
	e := &cached{key: k, msg: msg, size: msg.Len(), stored: now, expires: now.Add(ttl)}
	if e.size > c.maxBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[k]; ok {
		c.bytes += e.size - el.Value.(*cached).size
		el.Value = e
		c.lru.MoveToFront(el)
	} else {
		c.entries[k] = c.lru.PushFront(e)
		c.bytes += e.size
	}
	for c.lru.Len() > c.max || c.bytes > c.maxBytes {
		old := c.lru.Back()
		o := old.Value.(*cached)
		c.lru.Remove(old)
		delete(c.entries, o.key)
		c.bytes -= o.size
		if now.Before(o.expires) {
			c.evictions.Add(1)
		}
	}
}

// removeNames drops every entry whose name drop reports true for.
func (c *answerCache) removeNames(drop func(name string) bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for k, el := range c.entries {
		if drop(k.name) {
			c.lru.Remove(el)
			delete(c.entries, k)
			c.bytes -= el.Value.(*cached).size
			n++
		}
	}
	return n
}

func (c *answerCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// cacheTTL is how long an upstream answer may be reused (RFC 2308):
// a positive answer for the smallest TTL of its answer and authority
// records; a negative one (NXDOMAIN, or NOERROR without an answer of the
// asked type) for the smaller of the SOA record's TTL and its MINIMUM
// field. A negative answer without SOA is not cached (RFC 2308 section 5),
// nor is a truncated one.
func cacheTTL(m *dns.Msg, qtype uint16) time.Duration {
	if m.Truncated || (m.Rcode != dns.RcodeSuccess && m.Rcode != dns.RcodeNameError) {
		return 0
	}
	if m.Rcode == dns.RcodeSuccess && hasType(m.Answer, qtype) {
		return minTTL(m.Answer, m.Ns, maxAnswerTTL)
	}
	soa := findSOA(m.Ns)
	if soa == nil {
		return 0
	}
	ttl := min(secs(soa.Hdr.Ttl), secs(soa.Minttl), maxNegativeTTL)
	return minTTL(m.Answer, nil, ttl) // a CNAME chain ending in NODATA
}

func hasType(rrs []dns.RR, qtype uint16) bool {
	for _, rr := range rrs {
		if t := rr.Header().Rrtype; t == qtype || (qtype == dns.TypeCNAME && t == dns.TypeDNAME) {
			return true
		}
	}
	return false
}

func findSOA(rrs []dns.RR) *dns.SOA {
	for _, rr := range rrs {
		if soa, ok := rr.(*dns.SOA); ok {
			return soa
		}
	}
	return nil
}

// minTTL is the smallest TTL in a and b, at most limit. OPT records carry
// no TTL and are skipped.
func minTTL(a, b []dns.RR, limit time.Duration) time.Duration {
	ttl := limit
	for _, rrs := range [2][]dns.RR{a, b} {
		for _, rr := range rrs {
			if rr.Header().Rrtype != dns.TypeOPT {
				ttl = min(ttl, secs(rr.Header().Ttl))
			}
		}
	}
	return ttl
}

func secs(s uint32) time.Duration { return time.Duration(s) * time.Second }

// ageTTLs lowers every record's TTL in m by age, which the caller has
// checked is below the cache entry's lifetime.
func ageTTLs(m *dns.Msg, age time.Duration) {
	d := uint32(age / time.Second)
	for _, rrs := range [3][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range rrs {
			h := rr.Header()
			if h.Rrtype == dns.TypeOPT {
				continue
			}
			h.Ttl = max(h.Ttl, d) - d
		}
	}
}
