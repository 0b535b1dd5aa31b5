package dnsfilter

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/internal/latency"
)

// Cache bounds for Upstream.
const (
	minCacheTTL   = 5 * time.Second
	maxCacheTTL   = time.Hour
	negCacheTTL   = 5 * time.Second
	maxCacheNames = 65536
	// maxCachedAddrs bounds the addresses kept per name: a flow is pinned
	// to one of them, and an answer of thousands (a name under an allowed
	// wildcard, served by the sandbox's accomplice) would otherwise make
	// the cache's memory unbounded. With maxCacheNames names of at most
	// 253 bytes, the cache holds at most ~45 MiB.
	maxCachedAddrs = 16
)

// Upstream is egressd's one client of the configured upstream servers. The
// filtering resolver forwards allowed questions through Exchange; the proxy
// pins flows with LookupAddrs, which caches addresses for their TTL.
type Upstream struct {
	servers []netip.AddrPort
	timeout time.Duration
	udp     *dns.Client
	tcp     *dns.Client

	preferred atomic.Uint32 // index of the server that answered last

	// Latency of each query to one server (both transports, a failure
	// included), for /metrics.
	Latency latency.Histogram

	mu      sync.Mutex
	cache   map[string]cacheEntry
	lookups flight[string, cacheEntry] // concurrent misses for one name share a lookup
}

type cacheEntry struct {
	addrs   []netip.Addr
	err     error
	expires time.Time
}

// NewUpstream returns a client for servers; each query waits at most timeout
// per server.
func NewUpstream(servers []netip.AddrPort, timeout time.Duration) *Upstream {
	return &Upstream{
		servers: servers,
		timeout: timeout,
		udp:     &dns.Client{Net: "udp", Timeout: timeout, UDPSize: dns.DefaultMsgSize},
		tcp:     &dns.Client{Net: "tcp", Timeout: timeout},
		cache:   map[string]cacheEntry{},
	}
}

// budget is how long Exchange may take when every server times out, over
// UDP and then TCP.
func (u *Upstream) budget() time.Duration {
	return 2 * u.timeout * time.Duration(max(len(u.servers), 1)) // UDP, then TCP on truncation
}

// ErrNoAddress is returned for a name with no A or AAAA record.
var ErrNoAddress = errors.New("no A or AAAA record")

// LookupAddrs returns the IPv4 and IPv6 addresses of name (a normalised
// domain name without trailing dot).
func (u *Upstream) LookupAddrs(ctx context.Context, name string) ([]netip.Addr, error) {
	now := time.Now()
	u.mu.Lock()
	e, ok := u.cache[name]
	u.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.addrs, e.err
	}
	e, err, _ := u.lookups.do(name, func() (cacheEntry, error) {
		addrs, ttl, err := u.lookup(context.WithoutCancel(ctx), name)
		if err != nil && !errors.Is(err, ErrNoAddress) {
			return cacheEntry{}, err // transport failures are not cached
		}
		if err != nil {
			ttl = negCacheTTL
		}
		if len(addrs) > maxCachedAddrs {
			addrs = addrs[:maxCachedAddrs:maxCachedAddrs]
		}
		e := cacheEntry{addrs: addrs, err: err, expires: now.Add(ttl)}
		u.store(name, e)
		return e, nil
	})
	if err != nil {
		return nil, err
	}
	return e.addrs, e.err
}

func (u *Upstream) store(name string, e cacheEntry) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.cache) >= maxCacheNames {
		for k := range u.cache { // evict an arbitrary entry; map order is random
			delete(u.cache, k)
			break
		}
	}
	u.cache[name] = e
}

func (u *Upstream) lookup(ctx context.Context, name string) ([]netip.Addr, time.Duration, error) {
	type result struct {
		addrs []netip.Addr
		ttl   time.Duration
		err   error
	}
	res := make(chan result, 2)
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		go func(qt uint16) {
			a, ttl, err := u.query(ctx, name, qt)
			res <- result{a, ttl, err}
		}(qt)
	}
	var addrs []netip.Addr
	ttl, errs := maxCacheTTL, []error{}
	for range 2 {
		r := <-res
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		addrs = append(addrs, r.addrs...)
		ttl = min(ttl, r.ttl)
	}
	if len(addrs) > 0 {
		return addrs, max(ttl, minCacheTTL), nil
	}
	if len(errs) == 0 {
		return nil, 0, fmt.Errorf("dnsfilter: %s: %w", name, ErrNoAddress)
	}
	return nil, 0, errors.Join(errs...)
}

// query asks the upstream servers for name/qt (Exchange) and returns the
// addresses of the answer.
func (u *Upstream) query(ctx context.Context, name string, qt uint16) ([]netip.Addr, time.Duration, error) {
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qt)
	r, err := u.Exchange(ctx, q)
	if err != nil {
		return nil, 0, err
	}
	return addrsOf(r, qt)
}

// upstreamUDPSize is the EDNS0 buffer size egressd advertises upstream and
// to clients: the DNS Flag Day 2020 value, which fits an IPv6 minimum MTU
// packet and so is never fragmented.
const upstreamUDPSize = 1232

// Exchange sends q, a query with exactly one question, to the upstream
// servers and returns the first answer that matches the question with
// rcode NOERROR or NXDOMAIN. It starts with the server that answered last
// and fails over to the next on a timeout, a transport error, a mismatched
// answer or another rcode (SERVFAIL, REFUSED, ...). Each attempt carries a
// fresh random ID from a new socket (random source port); a truncated UDP
// answer is asked again over TCP. Exchange sets RD and, unless q already
// has one, an EDNS0 OPT record; q is modified.
func (u *Upstream) Exchange(ctx context.Context, q *dns.Msg) (*dns.Msg, error) {
	if len(q.Question) != 1 {
		return nil, errors.New("dnsfilter: upstream query needs exactly one question")
	}
	q.RecursionDesired = true
	if q.IsEdns0() == nil {
		q.SetEdns0(upstreamUDPSize, false)
	}
	n := len(u.servers)
	if n == 0 {
		return nil, errors.New("dnsfilter: no upstream_dns configured")
	}
	first := int(u.preferred.Load()) % n
	var errs []error
	for i := range n {
		idx := (first + i) % n
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		q.Id = dns.Id()
		r, err := u.exchange(ctx, q, u.servers[idx])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		u.preferred.Store(uint32(idx))
		return r, nil
	}
	return nil, errors.Join(errs...)
}

// exchange sends q to srv over UDP, and over TCP when the answer is
// truncated, and checks that the answer matches the question.
func (u *Upstream) exchange(ctx context.Context, q *dns.Msg, srv netip.AddrPort) (*dns.Msg, error) {
	start := time.Now()
	defer func() { u.Latency.Observe(time.Since(start)) }()
	r, _, err := u.udp.ExchangeContext(ctx, q, srv.String())
	if err == nil && r.Truncated {
		r, _, err = u.tcp.ExchangeContext(ctx, q, srv.String())
	}
	if err != nil {
		return nil, fmt.Errorf("dnsfilter: upstream %s: %w", srv, err)
	}
	if !r.Response || r.Opcode != dns.OpcodeQuery {
		return nil, fmt.Errorf("dnsfilter: upstream %s: not an answer to a query", srv)
	}
	if len(r.Question) != 1 || !strings.EqualFold(r.Question[0].Name, q.Question[0].Name) ||
		r.Question[0].Qtype != q.Question[0].Qtype || r.Question[0].Qclass != q.Question[0].Qclass {
		return nil, fmt.Errorf("dnsfilter: upstream %s: answer does not match question %s", srv, q.Question[0].Name)
	}
	if r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
		return nil, fmt.Errorf("dnsfilter: upstream %s: %s", srv, dns.RcodeToString[r.Rcode])
	}
	return r, nil
}

// addrsOf collects the addresses of type qt in r's answer section, following
// CNAME chains from the question name, and the smallest TTL on the way.
func addrsOf(r *dns.Msg, qt uint16) ([]netip.Addr, time.Duration, error) {
	name := r.Question[0].Name
	ttl := maxCacheTTL
	var out []netip.Addr
	for range 16 { // bounded CNAME chain
		next := ""
		for _, rr := range r.Answer {
			h := rr.Header()
			if !strings.EqualFold(h.Name, name) {
				continue
			}
			switch v := rr.(type) {
			case *dns.CNAME:
				next = v.Target
			case *dns.A:
				if qt == dns.TypeA {
					out = appendAddr(out, v.A)
				}
			case *dns.AAAA:
				if qt == dns.TypeAAAA {
					out = appendAddr(out, v.AAAA)
				}
			default:
				continue
			}
			ttl = min(ttl, time.Duration(h.Ttl)*time.Second)
		}
		if len(out) > 0 || next == "" {
			break
		}
		name = next
	}
	if len(out) == 0 {
		return nil, 0, ErrNoAddress
	}
	return out, ttl, nil
}

func appendAddr(out []netip.Addr, ip []byte) []netip.Addr {
	if a, ok := netip.AddrFromSlice(ip); ok {
		out = append(out, a.Unmap())
	}
	return out
}
