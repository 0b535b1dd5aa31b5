package dnsfilter

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/policy"
)

// Query answers req, a query sent by src, and returns the reply; nil means
// that the query gets no answer at all (unknown source, deny-all, not a
// query). It writes one log line per query. req is not modified.
func (r *Resolver) Query(ctx context.Context, src netip.Addr, req *dns.Msg) *dns.Msg {
	ev := event{src: src.Unmap()}
	return r.queryEv(ctx, req, &ev)
}

// queryEv is Query that reports in ev. With ev.noWait it gives up
// (ev.deferred) instead of asking upstream: the UDP readers answer cached
// names themselves and hand the rest to a goroutine that may wait.
func (r *Resolver) queryEv(ctx context.Context, req *dns.Msg, ev *event) *dns.Msg {
	reply := r.query(ctx, req, ev)
	if ev.deferred {
		return nil
	}
	if ev.sandbox != "" {
		r.stats.queries.Add(1)
	}
	r.logEvent(ev, reply)
	return reply
}

// event is what one query's log line says.
type event struct {
	src     netip.Addr
	sandbox string
	qname   string
	qtype   uint16
	d       policy.Decision
	detail  string // why, when the policy did not decide
	cached  bool
	changed bool // the answer was edited for the sandbox
	err     error

	noWait   bool       // do not ask upstream: defer instead
	deferred bool       // gave up because of noWait
	fwd      *forwarded // set when the reply is an upstream answer
}

// forwarded describes an answer built from an upstream answer, for the
// fast path to keep.
type forwarded struct {
	set             *policy.Set
	sb              *policy.Sandbox
	name            string
	d               policy.Decision
	stored, expires time.Time // of the cached upstream answer; zero if not cached
	shaped          shaped
	rcode, answers  int
	edited          bool
}

func (r *Resolver) query(ctx context.Context, req *dns.Msg, ev *event) *dns.Msg {
	set := r.sandboxes.Load()
	sb, ok := set.BySource(ev.src)
	if !ok {
		ev.d = policy.Decision{Reason: policy.ReasonUnknownSource, Addr: ev.src}
		r.stats.dropped.Add(1)
		return nil
	}
	ev.sandbox = sb.Name
	if len(req.Question) > 0 {
		ev.qname, ev.qtype = req.Question[0].Name, req.Question[0].Qtype
	}
	if (sb.Policy.Mode() == policy.ModeDenyAll && !sb.Policy.Audit()) || req.Response {
		ev.d = policy.Decision{Reason: policy.ReasonDenyAll}
		if req.Response {
			ev.d, ev.detail = policy.Decision{}, "not a query"
		}
		r.stats.dropped.Add(1)
		return nil
	}
	if rep := r.checkRequest(req, ev); rep != nil {
		r.stats.refused.Add(1)
		return rep
	}
	q := req.Question[0]
	ev.d = decide(sb.Policy, q.Name)
	if !ev.d.Allowed() {
		r.stats.refused.Add(1)
		return errorReply(req, dns.RcodeRefused, dns.ExtendedErrorCodeProhibited, "egressd: "+ev.d.String())
	}
	return r.forward(ctx, req, set, sb, ev)
}

// checkRequest returns an error reply for a query egressd does not forward
// whatever the policy: other opcodes, not exactly one question, an unknown
// EDNS version, a class other than IN, or a type refusedType names.
func (r *Resolver) checkRequest(req *dns.Msg, ev *event) *dns.Msg {
	switch {
	case req.Opcode != dns.OpcodeQuery:
		ev.detail = "opcode " + dns.OpcodeToString[req.Opcode]
		return errorReply(req, dns.RcodeNotImplemented, 0, "")
	case len(req.Question) != 1:
		ev.detail = "not one question"
		return errorReply(req, dns.RcodeFormatError, 0, "")
	}
	if opt := req.IsEdns0(); opt != nil && opt.Version() != 0 {
		ev.detail = "edns version"
		return errorReply(req, dns.RcodeBadVers, 0, "")
	}
	q := req.Question[0]
	if refusedType(q.Qtype) || q.Qclass != dns.ClassINET {
		ev.detail = "query type " + dns.Type(q.Qtype).String() + " class " + dns.Class(q.Qclass).String()
		return errorReply(req, dns.RcodeRefused, dns.ExtendedErrorCodeNotSupported, "egressd: "+ev.detail+" refused")
	}
	return nil
}

// decide judges a question name. The root name is not a host name, so
// DecideName would call it missing: allow-all forwards it, custom has no
// pattern that can match it.
func decide(pol *policy.Policy, name string) policy.Decision {
	if name != "." && name != "" {
		return pol.DecideName(name)
	}
	switch pol.Mode() {
	case policy.ModeAllowAll:
		return policy.Decision{Verdict: policy.Allow, Reason: policy.ReasonAllowAll}
	case policy.ModeDenyAll:
		return pol.Audited(policy.Decision{Reason: policy.ReasonDenyAll, Name: "."})
	}
	return pol.Audited(policy.Decision{Reason: policy.ReasonNoMatch, Name: "."})
}

// forward answers an allowed question from the cache or upstream, shaped
// for the sandbox, and binds the answered addresses to the name.
func (r *Resolver) forward(ctx context.Context, req *dns.Msg, set *policy.Set, sb *policy.Sandbox, ev *event) *dns.Msg {
	do := false
	if opt := req.IsEdns0(); opt != nil {
		do = opt.Do()
	}
	k := cacheKey{name: ev.d.Name, qtype: req.Question[0].Qtype, do: do, cd: req.CheckingDisabled}
	resp, ce, err := r.resolve(ctx, k, ev.noWait)
	if err == errWouldWait {
		ev.deferred = true
		return nil
	}
	ev.cached, ev.err = ce.hit, err
	if err != nil {
		r.stats.upstreamErrors.Add(1)
		return errorReply(req, dns.RcodeServerFailure, dns.ExtendedErrorCodeNoReachableAuthority, "egressd: no upstream answered")
	}
	r.stats.forwarded.Add(1)
	now := r.now()
	s := shape(resp, dns.Fqdn(k.name), newGuard(set, sb, ev.d, r.opts.BlockPrivateAnswers))
	r.binds.add(set, sb.Name, k.name, bindUntil(s, now, r.opts.MinBindingTTL), now)
	ev.changed = s.changed
	reply := forwardReply(req, resp, s.changed)
	ev.fwd = &forwarded{set: set, sb: sb, name: k.name, d: ev.d, stored: ce.stored, expires: ce.expires,
		shaped: s, rcode: reply.Rcode, answers: len(reply.Answer), edited: s.changed}
	return reply
}

// errWouldWait is resolve's answer to noWait on a cache miss.
var errWouldWait = errors.New("dnsfilter: answer not cached")

// errNoAnswer stands for a coalesced upstream call that ended without an
// answer or an error (it panicked).
var errNoAnswer = errors.New("dnsfilter: upstream call ended without an answer")

// cacheInfo says where an answer came from.
type cacheInfo struct {
	hit             bool      // served from the cache
	stored, expires time.Time // the cache entry's; zero when not cached
}

// resolve returns a private copy of the answer for k, from the cache (TTLs
// aged) or from upstream. With noWait, a miss is errWouldWait.
func (r *Resolver) resolve(ctx context.Context, k cacheKey, noWait bool) (*dns.Msg, cacheInfo, error) {
	now := r.now()
	if m, stored, expires, ok := r.cache.get(k, now); ok {
		r.stats.hits.Add(1)
		c := m.Copy()
		ageTTLs(c, now.Sub(stored))
		return c, cacheInfo{hit: true, stored: stored, expires: expires}, nil
	}
	if noWait {
		return nil, cacheInfo{}, errWouldWait
	}
	m, err, _ := r.flight.do(k, func() (*dns.Msg, error) { return r.fetch(ctx, k) })
	if err == nil && m == nil {
		err = errNoAnswer
	}
	if err != nil {
		return nil, cacheInfo{}, err
	}
	var ci cacheInfo
	if cm, stored, expires, ok := r.cache.get(k, r.now()); ok && cm == m {
		ci.stored, ci.expires = stored, expires
	}
	return m.Copy(), ci, nil
}

// fetch asks upstream for k and caches the answer. The query outlives a
// client that gives up: other clients may be waiting for the same answer.
func (r *Resolver) fetch(ctx context.Context, k cacheKey) (*dns.Msg, error) {
	if r.opts.Upstream == nil {
		return nil, errors.New("dnsfilter: no upstream")
	}
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(k.name), k.qtype)
	q.CheckingDisabled = k.cd
	q.SetEdns0(upstreamUDPSize, k.do)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.Upstream.budget())
	defer cancel()
	m, err := r.opts.Upstream.Exchange(ctx, q)
	if err != nil {
		return nil, err
	}
	m.Extra = dropOPT(m.Extra)
	r.cache.put(k, m, cacheTTL(m, k.qtype), r.now())
	return m, nil
}

func dropOPT(rrs []dns.RR) []dns.RR {
	out := rrs[:0]
	for _, rr := range rrs {
		if rr.Header().Rrtype != dns.TypeOPT {
			out = append(out, rr)
		}
	}
	return out
}
