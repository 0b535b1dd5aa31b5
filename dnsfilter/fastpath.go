package dnsfilter

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/policy"
)

// The fast path answers the common query again without miekg/dns: one
// question, in the usual shape, for a name the same sandbox was answered
// before from a cached upstream answer. The first answer, built by the
// full path, is kept packed per (sandbox, name, type, header bits, reply
// size); a repeat gets a copy with its own ID, its own spelling of the
// name and TTLs aged exactly as the full path would age them, and its
// bindings refreshed (at most every refreshEvery). Entries belong to one sandbox set (SetSandboxes
// drops them all) and live no longer than the cached upstream answer they
// were built from. TestFastPathMatchesFullPath holds the two paths to the
// same bytes.

// fastQuery is a query in the shape the fast path answers.
type fastQuery struct {
	id    uint16
	bits  uint8 // fastRD | fastAD | fastCD | fastDO | fastEDNS
	qtype uint16
	qname []byte // the question name as sent, wire form
	name  []byte // normalised: lowercase, dotted, no trailing dot
	size  uint16 // UDP size the client accepts, if fastEDNS
}

const (
	fastRD uint8 = 1 << iota
	fastAD
	fastCD
	fastDO
	fastEDNS
)

// parseFastQuery reads b if it is a query in the usual shape: QUERY
// opcode, one IN question whose name has only letters, digits, '-' and
// '_', no answer or authority records, and at most an EDNS0 version 0 OPT
// record with no options but cookies and padding. The normalised name is
// written to scratch. Anything else takes the full path.
func parseFastQuery(b, scratch []byte) (fastQuery, bool) {
	var q fastQuery
	if len(b) < 12 || b[2]&0xfa != 0 || // QR, opcode, AA, TC
		binary.BigEndian.Uint32(b[4:8]) != 1<<16 || binary.BigEndian.Uint16(b[8:10]) != 0 {
		return q, false
	}
	ar := binary.BigEndian.Uint16(b[10:12])
	q.id = binary.BigEndian.Uint16(b)
	q.bits = b[2] & 1 // RD
	if b[3]&0x20 != 0 {
		q.bits |= fastAD
	}
	if b[3]&0x10 != 0 {
		q.bits |= fastCD
	}
	var i int
	var ok bool
	q.qname, q.name, i, ok = fastName(b, scratch)
	if !ok || i+4 > len(b) || binary.BigEndian.Uint16(b[i+2:]) != dns.ClassINET {
		return q, false
	}
	q.qtype = binary.BigEndian.Uint16(b[i:])
	if refusedType(q.qtype) {
		return q, false
	}
	i += 4
	if ar == 0 {
		return q, i == len(b)
	}
	// The OPT record: root name, type, size, extended rcode, version, flags, rdlength.
	if ar != 1 || i+11 > len(b) || b[i] != 0 || binary.BigEndian.Uint16(b[i+1:]) != dns.TypeOPT || b[i+6] != 0 {
		return q, false
	}
	q.bits |= fastEDNS
	q.size = binary.BigEndian.Uint16(b[i+3:])
	if b[i+7]&0x80 != 0 {
		q.bits |= fastDO
	}
	return q, i+11+int(binary.BigEndian.Uint16(b[i+9:])) == len(b) && plainOptions(b[i+11:])
}

// plainOptions reports whether the EDNS0 options are well formed and all
// cookies or padding: options that miekg/dns always parses (and egressd
// ignores), so the full path would have answered too.
func plainOptions(b []byte) bool {
	for len(b) > 0 {
		if len(b) < 4 {
			return false
		}
		code, n := binary.BigEndian.Uint16(b), int(binary.BigEndian.Uint16(b[2:]))
		if (code != dns.EDNS0COOKIE && code != dns.EDNS0PADDING) || 4+n > len(b) {
			return false
		}
		b = b[4+n:]
	}
	return true
}

// fastName reads the question name at offset 12: as sent, normalised
// into scratch, and the offset after it.
func fastName(b, scratch []byte) (qname, name []byte, end int, ok bool) {
	i, n := 12, 0
	for i < len(b) && b[i] != 0 {
		l := int(b[i])
		if l > 63 || i+1+l > len(b) || n+1+l > len(scratch) {
			return nil, nil, 0, false
		}
		if n > 0 {
			scratch[n] = '.'
			n++
		}
		for _, c := range b[i+1 : i+1+l] {
			switch {
			case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
			case 'A' <= c && c <= 'Z':
				c += 'a' - 'A'
			default:
				return nil, nil, 0, false
			}
			scratch[n] = c
			n++
		}
		i += 1 + l
	}
	if i >= len(b) || n == 0 {
		return nil, nil, 0, false // no terminator, or the root name
	}
	return b[12 : i+1], scratch[:n], i + 1, true
}

func refusedType(t uint16) bool {
	switch t {
	case dns.TypeANY, dns.TypeNULL, dns.TypeAXFR, dns.TypeIXFR, dns.TypeMAILA, dns.TypeMAILB:
		return true
	}
	return false
}

// fastKey is one variant of the answer for a name.
type fastKey struct {
	sb    *policy.Sandbox
	qtype uint16
	bits  uint8
	size  int // reply size limit
}

// fastEntry is a packed reply ready to be copied.
type fastEntry struct {
	key     fastKey
	set     *policy.Set
	wire    []byte // ID 0
	ttlOffs []int  // TTL fields to age
	ttls    []uint32
	stored  time.Time // when the upstream answer was cached
	expires time.Time
	name    string
	binds   []fastBind
	d       policy.Decision
	rcode   int
	answers int
	edited  bool

	refreshed atomic.Int64 // unix ns of the last bindings refresh
}

// refreshEvery is how often repeated answers refresh their bindings: a
// binding may end up to this much earlier than max(TTL, min_binding_ttl)
// after the last answer.
const refreshEvery = time.Second

// needsRefresh reports whether e's bindings are due for a refresh at now,
// and if so claims it.
func (e *fastEntry) needsRefresh(now time.Time) bool {
	last := e.refreshed.Load()
	return now.UnixNano()-last >= int64(refreshEvery) && e.refreshed.CompareAndSwap(last, now.UnixNano())
}

// fastBind is an address to bind again on each hit, with its TTL as
// received (0: already expired when the entry was built).
type fastBind struct {
	addr netip.Addr
	ttl  uint32
}

// fastCache holds the entries by normalised name. It is bounded crudely:
// when full it starts over.
type fastCache struct {
	max    int
	mu     sync.RWMutex
	byName map[string][]*fastEntry
	n      int
}

func newFastCache(max int) *fastCache {
	if max <= 0 {
		return nil
	}
	return &fastCache{max: max, byName: make(map[string][]*fastEntry)}
}

func (c *fastCache) get(name []byte, k fastKey, set *policy.Set, now time.Time) *fastEntry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, e := range c.byName[string(name)] {
		if e.key == k && e.set == set && now.Before(e.expires) {
			return e
		}
	}
	return nil
}

func (c *fastCache) put(e *fastEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n >= c.max {
		clear(c.byName)
		c.n = 0
	}
	list := c.byName[e.name]
	for i, old := range list {
		if old.key == e.key {
			list[i] = e
			return
		}
	}
	if len(list) >= maxFastVariants { // the oldest variant goes: lookups scan the list
		list = append(list[:0], list[1:]...)
		c.n--
	}
	c.byName[e.name] = append(list, e)
	c.n++
}

// maxFastVariants bounds the variants kept per name (sandboxes, types,
// header bits, EDNS sizes): a client cycling through EDNS sizes must not
// make every lookup of a name scan hundreds of entries.
const maxFastVariants = 16

func (c *fastCache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.byName)
	c.n = 0
}

// ageSecs is how many whole seconds old an answer stored at stored is at
// now, as ageTTLs counts them.
func ageSecs(stored, now time.Time) uint32 { return uint32(now.Sub(stored) / time.Second) }

// render copies e into buf for query q at now and returns the reply.
func (e *fastEntry) render(buf []byte, q *fastQuery, now time.Time) []byte {
	out := append(buf[:0], e.wire...)
	binary.BigEndian.PutUint16(out, q.id)
	copy(out[12:], q.qname)
	age := ageSecs(e.stored, now)
	for i, off := range e.ttlOffs {
		binary.BigEndian.PutUint32(out[off:], max(e.ttls[i], age)-age)
	}
	return out
}

// bindsAt returns e's bindings for a hit at now, as the full path would
// compute them, in scratch.
func (e *fastEntry) bindsAt(scratch []boundAddr, now time.Time, floor time.Duration) []boundAddr {
	age := ageSecs(e.stored, now)
	out := scratch[:0]
	for _, b := range e.binds {
		ttl := secs(max(b.ttl, age) - age)
		out = append(out, boundAddr{addr: b.addr, expires: now.Add(max(ttl, floor))})
	}
	return out
}

// ttlFields finds the TTL field of every record but OPT in a packed
// message.
func ttlFields(m []byte) (offs []int, ttls []uint32, ok bool) {
	if len(m) < 12 {
		return nil, nil, false
	}
	qd := int(binary.BigEndian.Uint16(m[4:]))
	rrs := int(binary.BigEndian.Uint16(m[6:])) + int(binary.BigEndian.Uint16(m[8:])) + int(binary.BigEndian.Uint16(m[10:]))
	i := 12
	for range qd {
		if i, ok = skipName(m, i); !ok || i+4 > len(m) {
			return nil, nil, false
		}
		i += 4
	}
	for range rrs {
		if i, ok = skipName(m, i); !ok || i+10 > len(m) {
			return nil, nil, false
		}
		if binary.BigEndian.Uint16(m[i:]) != dns.TypeOPT {
			offs = append(offs, i+4)
			ttls = append(ttls, binary.BigEndian.Uint32(m[i+4:]))
		}
		i += 10 + int(binary.BigEndian.Uint16(m[i+8:]))
		if i > len(m) {
			return nil, nil, false
		}
	}
	return offs, ttls, i == len(m)
}

// skipName returns the offset after the (possibly compressed) name at i.
func skipName(m []byte, i int) (int, bool) {
	for i < len(m) {
		switch n := int(m[i]); {
		case n == 0:
			return i + 1, true
		case n&0xc0 == 0xc0:
			return i + 2, i+2 <= len(m)
		case n&0xc0 != 0:
			return 0, false
		default:
			i += 1 + n
		}
	}
	return 0, false
}

// newFastEntry keeps out, the full path's packed reply to q, when the
// answer came from a cached upstream answer (fw).
func newFastEntry(out []byte, q *fastQuery, k fastKey, set *policy.Set, fw *forwarded, now time.Time) (*fastEntry, bool) {
	offs, ttls, ok := ttlFields(out)
	if !ok || !now.Before(fw.expires) {
		return nil, false
	}
	age := ageSecs(fw.stored, now)
	for i, t := range ttls {
		if t > 0 {
			ttls[i] = t + age // as received from upstream
		}
	}
	e := &fastEntry{
		key: k, set: set, wire: append([]byte(nil), out...), ttlOffs: offs, ttls: ttls,
		stored: fw.stored, expires: fw.expires, name: fw.name, d: fw.d,
		rcode: fw.rcode, answers: fw.answers, edited: fw.edited,
	}
	e.refreshed.Store(now.UnixNano()) // the full path bound them just now
	binary.BigEndian.PutUint16(e.wire, 0)
	for i, a := range fw.shaped.addrs {
		t := uint32(fw.shaped.ttls[i] / time.Second)
		if t > 0 {
			t += age
		}
		e.binds = append(e.binds, fastBind{addr: a, ttl: t})
	}
	return e, true
}
