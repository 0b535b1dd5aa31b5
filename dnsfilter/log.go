package dnsfilter

import (
	"net/netip"

	"github.com/miekg/dns"
	"go.uber.org/zap"

	"github.com/egressd/egressd/policy"
)

// Log field keys of the per-query line; sandbox, src, name, verdict,
// reason and rule match the proxy's per-flow line.
const (
	keySandbox = "sandbox"
	keySrc     = "src"
	keyName    = "name"
	keyQtype   = "qtype"
	keyVerdict = "verdict"
	keyReason  = "reason"
	keyRule    = "rule"
	keyDetail  = "detail"
	keyRcode   = "rcode"
	keyAnswers = "answers"
	keyCached  = "cached"
	keyEdited  = "edited"
)

// logEvent writes the one line of a query: Info when it was forwarded,
// Warn when it was refused or dropped (reply nil). Every query gets its
// line: decisions are never sampled.
func (r *Resolver) logEvent(ev *event, reply *dns.Msg) {
	level, msg := zap.InfoLevel, "dns query"
	switch {
	case reply == nil:
		level, msg = zap.WarnLevel, "dns query dropped"
	case !ev.d.Allowed():
		level, msg = zap.WarnLevel, "dns query refused"
	case ev.d.Verdict == policy.WouldDeny: // report-only mode
		level = zap.WarnLevel
	}
	ce := r.log.Check(level, msg)
	if ce == nil {
		return
	}
	ce.Write(eventFields(ev, reply)...)
}

// logFast writes the line of a query answered by the fast path.
func (r *Resolver) logFast(src netip.Addr, sandbox string, q *fastQuery, e *fastEntry) {
	level := zap.InfoLevel
	if e.d.Verdict == policy.WouldDeny {
		level = zap.WarnLevel
	}
	ce := r.log.Check(level, "dns query")
	if ce == nil {
		return
	}
	qname := wireName(append([]byte(nil), q.qname...))
	ev := event{src: src, sandbox: sandbox, qname: qname, qtype: q.qtype, d: e.d, cached: true, changed: e.edited}
	reply := &dns.Msg{MsgHdr: dns.MsgHdr{Rcode: e.rcode}, Answer: make([]dns.RR, e.answers)}
	ce.Write(eventFields(&ev, reply)...)
}

// wireName turns a question name as sent into text, as miekg/dns would.
func wireName(b []byte) string {
	name, _, err := dns.UnpackDomainName(b, 0)
	if err != nil {
		return ""
	}
	return name
}

func eventFields(ev *event, reply *dns.Msg) []zap.Field {
	fields := []zap.Field{
		zap.String(keySandbox, ev.sandbox),
		zap.Stringer(keySrc, ev.src),
		zap.String(keyName, ev.qname),
		zap.String(keyQtype, dns.Type(ev.qtype).String()),
		zap.Stringer(keyVerdict, ev.d.Verdict),
		zap.Stringer(keyReason, ev.d.Reason),
		zap.String(keyRule, ev.d.Rule()),
	}
	if ev.detail != "" {
		fields = append(fields, zap.String(keyDetail, ev.detail))
	}
	if reply != nil {
		fields = append(fields, zap.String(keyRcode, dns.RcodeToString[reply.Rcode]),
			zap.Int(keyAnswers, len(reply.Answer)), zap.Bool(keyCached, ev.cached), zap.Bool(keyEdited, ev.changed))
	}
	if ev.err != nil {
		fields = append(fields, zap.Error(ev.err))
	}
	return fields
}
