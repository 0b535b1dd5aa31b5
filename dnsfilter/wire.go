package dnsfilter

import (
	"context"
	"net/netip"

	"github.com/miekg/dns"
	"go.uber.org/zap"
)

// answerWire is Query for packed messages, as the listeners use it: b is
// the query src sent, the result the packed reply or nil for no answer. A
// message that does not parse gets no answer. UDP replies are truncated
// (TC set) to what the client accepts (replySize); over TCP, to 64 KiB.
func (r *Resolver) answerWire(ctx context.Context, src netip.Addr, b []byte, tcp bool) []byte {
	out, _ := r.answerWireMode(ctx, src, b, tcp, false, nil)
	return out
}

// answerWireMode is answerWire that, with noWait, reports deferred
// instead of asking upstream (see queryEv), and packs the reply into buf
// when it is large enough. Repeated questions take the fast path.
func (r *Resolver) answerWireMode(ctx context.Context, src netip.Addr, b []byte, tcp, noWait bool, buf []byte) ([]byte, bool) {
	src = src.Unmap()
	if out, ok := r.fastAnswer(src, b, tcp, buf); ok {
		return out, false
	}
	req := new(dns.Msg)
	if err := req.Unpack(b); err != nil {
		r.stats.dropped.Add(1)
		return nil, false
	}
	ev := event{src: src, noWait: noWait}
	reply := r.queryEv(ctx, req, &ev)
	if reply == nil {
		return nil, ev.deferred
	}
	reply.Truncate(wireSize(req, tcp))
	out, err := reply.PackBuffer(buf)
	if err != nil {
		r.log.Warn("dns reply does not pack", zap.Stringer(keySrc, src), zap.Error(err))
		return nil, false
	}
	if ev.fwd != nil {
		r.keepFast(b, tcp, out, ev.fwd)
	}
	return out, false
}

// wireSize is the largest reply to req the transport carries.
func wireSize(req *dns.Msg, tcp bool) int {
	if tcp {
		return dns.MaxMsgSize
	}
	return replySize(req)
}

// fastSize is wireSize for a fast query.
func fastSize(q *fastQuery, tcp bool) int {
	switch {
	case tcp:
		return dns.MaxMsgSize
	case q.bits&fastEDNS == 0:
		return dns.MinMsgSize
	}
	return min(max(int(q.size), dns.MinMsgSize), upstreamUDPSize)
}

// fastAnswer answers b from the fast path when it can.
func (r *Resolver) fastAnswer(src netip.Addr, b []byte, tcp bool, buf []byte) ([]byte, bool) {
	if r.fast == nil {
		return nil, false
	}
	var scratch [256]byte
	q, ok := parseFastQuery(b, scratch[:])
	if !ok {
		return nil, false
	}
	set := r.sandboxes.Load()
	sb, ok := set.BySource(src)
	if !ok {
		return nil, false
	}
	now := r.now()
	e := r.fast.get(q.name, fastKey{sb: sb, qtype: q.qtype, bits: q.bits, size: fastSize(&q, tcp)}, set, now)
	if e == nil {
		return nil, false
	}
	out := e.render(buf, &q, now)
	if e.needsRefresh(now) {
		var bs [16]boundAddr
		r.binds.add(set, sb.Name, e.name, e.bindsAt(bs[:0], now, r.opts.MinBindingTTL), now)
	}
	r.stats.queries.Add(1)
	r.stats.forwarded.Add(1)
	r.stats.hits.Add(1)
	r.logFast(src, sb.Name, &q, e)
	return out, true
}

// keepFast stores the full path's reply out to b for the fast path.
func (r *Resolver) keepFast(b []byte, tcp bool, out []byte, fw *forwarded) {
	// Only replies that fit a UDP answer are kept: a sandbox controlling a
	// zone could otherwise fill the cache with 64 KiB TCP replies.
	if r.fast == nil || fw.expires.IsZero() || len(out) > upstreamUDPSize {
		return
	}
	var scratch [256]byte
	q, ok := parseFastQuery(b, scratch[:])
	if !ok || string(q.name) != fw.name {
		return
	}
	k := fastKey{sb: fw.sb, qtype: q.qtype, bits: q.bits, size: fastSize(&q, tcp)}
	if e, ok := newFastEntry(out, &q, k, fw.set, fw, r.now()); ok {
		r.fast.put(e)
	}
}
