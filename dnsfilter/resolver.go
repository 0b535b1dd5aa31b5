package dnsfilter

import (
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"

	"github.com/egressd/egressd/internal/budget"
	"github.com/egressd/egressd/internal/latency"
	"github.com/egressd/egressd/policy"
)

// Defaults for zero Options fields.
const (
	DefaultMinBindingTTL         = time.Hour
	DefaultMaxBindingsPerSandbox = 65536
)

// Options configures a Resolver.
type Options struct {
	Port     int       // proxy.dns_port: UDP and TCP, IPv4 and IPv6
	Upstream *Upstream // where allowed questions go; shared with the proxy

	MinBindingTTL         time.Duration // dns.min_binding_ttl; 0: DefaultMinBindingTTL
	BlockPrivateAnswers   bool          // dns.block_private_answers
	CacheSize             int           // dns.cache_size; 0: no cache
	MaxBindingsPerSandbox int           // dns.max_bindings_per_sandbox; 0: the default

	Logger *zap.Logger
}

// Resolver is the filtering resolver. Query is its socket-free core;
// Listen and Serve put it on the network. It is safe for concurrent use.
type Resolver struct {
	opts      Options
	log       *zap.Logger
	sandboxes atomic.Pointer[policy.Set]
	swapMu    sync.Mutex // serialises SetSandboxes
	cache     *answerCache
	fast      *fastCache // nil without a cache
	flight    flight[cacheKey, *dns.Msg]
	binds     *bindings
	stats     counters
	now       func() time.Time

	udp        []*net.UDPConn
	tcp        []*net.TCPListener
	raw4, raw6 *net.IPConn
	inflight   *budget.Budget // UDP queries waiting for upstream, per sandbox
}

// NewResolver returns a resolver that answers the sandboxes of set.
func NewResolver(opts Options, set *policy.Set) *Resolver {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.MinBindingTTL <= 0 {
		opts.MinBindingTTL = DefaultMinBindingTTL
	}
	if opts.MaxBindingsPerSandbox <= 0 {
		opts.MaxBindingsPerSandbox = DefaultMaxBindingsPerSandbox
	}
	r := &Resolver{
		opts:     opts,
		log:      opts.Logger.Named("dns"),
		cache:    newAnswerCache(opts.CacheSize),
		fast:     newFastCache(opts.CacheSize),
		now:      time.Now,
		inflight: budget.New(maxInflightPerSandbox, maxInflight),
	}
	r.binds = newBindings(opts.MaxBindingsPerSandbox, &r.sandboxes)
	r.sandboxes.Store(set)
	return r
}

// Bound reports whether the resolver answered address a for name (the
// normalised question name) to sandbox, in an answer whose binding has
// not expired: max(record TTL, MinBindingTTL) from the last time it was
// answered. The proxy then dials a flow's original destination as is.
func (r *Resolver) Bound(sandbox, name string, a netip.Addr) bool {
	return r.binds.bound(sandbox, name, a, r.now())
}

// SetSandboxes swaps in a new sandbox set. Bindings of sandboxes that are
// gone, of names a sandbox may no longer resolve and of addresses its guard
// now rejects are dropped, and so are cached answers for names no sandbox
// may resolve any more.
func (r *Resolver) SetSandboxes(set *policy.Set) {
	r.swapMu.Lock()
	defer r.swapMu.Unlock()
	old := r.sandboxes.Swap(set)
	if r.fast != nil {
		r.fast.reset()
	}
	dropped := r.binds.prune(func(name string) (func(bindKey) bool, bool) {
		sb, ok := set.ByName(name)
		if !ok {
			return nil, false
		}
		if unchanged(old, set, sb) {
			return nil, true
		}
		return func(k bindKey) bool {
			d := decide(sb.Policy, k.name)
			return d.Allowed() && newGuard(set, sb, d, r.opts.BlockPrivateAnswers).keep(k.addr)
		}, true
	})
	uncached := 0
	if lost(old, set) {
		uncached = r.cache.removeNames(func(name string) bool { return !set.AnyAllows(name) })
	}
	r.log.Info("sandboxes swapped", zap.Int("bindings_dropped", dropped), zap.Int("answers_uncached", uncached))
}

// Stats are the resolver's counters since it started.
type Stats struct {
	Queries          uint64 // queries from known sandboxes
	Forwarded        uint64 // answered from the cache or upstream
	Refused          uint64 // answered with an error without asking upstream
	Dropped          uint64 // not answered at all (unknown source, deny-all, malformed, overload)
	CacheHits        uint64
	UpstreamErrors   uint64 // answered SERVFAIL: no upstream answered
	CacheEvictions   uint64 // live answers pushed out of the full cache
	BindingEvictions uint64 // live bindings pushed out by max_bindings_per_sandbox
	CachedAnswers    int    // answers in the cache now
	// UpstreamLatency is the time of each query to an upstream server.
	UpstreamLatency *latency.Histogram
}

type counters struct {
	queries, forwarded, refused, dropped, hits, upstreamErrors atomic.Uint64
}

// Stats returns the counters, for the metrics endpoint.
func (r *Resolver) Stats() Stats {
	return Stats{
		Queries:          r.stats.queries.Load(),
		Forwarded:        r.stats.forwarded.Load(),
		Refused:          r.stats.refused.Load(),
		Dropped:          r.stats.dropped.Load(),
		CacheHits:        r.stats.hits.Load(),
		UpstreamErrors:   r.stats.upstreamErrors.Load(),
		CacheEvictions:   r.cache.evictions.Load(),
		BindingEvictions: r.binds.evicted.Load(),
		CachedAnswers:    r.cache.len(),
		UpstreamLatency:  r.upstreamLatency(),
	}
}

func (r *Resolver) upstreamLatency() *latency.Histogram {
	if r.opts.Upstream == nil {
		return nil
	}
	return &r.opts.Upstream.Latency
}

// unchanged reports whether sb was in old with the same policy, sources
// and guard: its bindings were judged already. (The proxy judges a bound
// address again when it dials it.)
// lost reports whether a sandbox of old is gone from set or has another
// policy there: only then may a name that some sandbox could resolve be
// one that none can (a change that only adds sandboxes keeps every cached
// answer).
func lost(old, set *policy.Set) bool {
	if old == nil {
		return true
	}
	for _, o := range old.All() {
		if sb, ok := set.ByName(o.Name); !ok || sb.Policy != o.Policy {
			return true
		}
	}
	return false
}

func unchanged(old, set *policy.Set, sb *policy.Sandbox) bool {
	if old == nil {
		return false
	}
	o, ok := old.ByName(sb.Name)
	return ok && o.Policy == sb.Policy && slices.Equal(o.Sources, sb.Sources) &&
		old.Guard().ProtectHost == set.Guard().ProtectHost && old.Guard().IsolateSandboxes == set.Guard().IsolateSandboxes
}
