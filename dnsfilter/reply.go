package dnsfilter

import (
	"github.com/miekg/dns"
)

// EDNS0 towards clients: a client that sent an OPT record gets one back
// with egressd's buffer size (upstreamUDPSize) and its DO bit echoed, plus
// an Extended DNS Error (RFC 8914) that says why egressd refused or edited
// the answer. Client options (cookies, client subnet, padding) are not
// passed upstream: the upstream query carries egressd's own OPT record, so
// nothing about the sandbox leaks through it. A client without EDNS0 gets
// no OPT record and at most 512 bytes over UDP.

// newReply starts the reply to req: same ID, opcode, question, RD and CD
// bits; recursion available.
func newReply(req *dns.Msg, rcode int) *dns.Msg {
	m := new(dns.Msg)
	m.Id = req.Id
	m.Response = true
	m.Opcode = req.Opcode
	m.RecursionDesired = req.RecursionDesired
	m.RecursionAvailable = true
	m.CheckingDisabled = req.CheckingDisabled
	m.Rcode = rcode
	if len(req.Question) == 1 {
		m.Question = []dns.Question{req.Question[0]}
	}
	return m
}

// errorReply is an answerless reply with rcode and, for an EDNS0 client, an
// Extended DNS Error when ede is not 0.
func errorReply(req *dns.Msg, rcode int, ede uint16, text string) *dns.Msg {
	m := newReply(req, rcode)
	addOPT(m, req, ede, text)
	return m
}

// forwardReply wraps an upstream answer, already shaped for the sandbox,
// as the reply to req. The AD bit is passed on only to a client that asked
// for it (DO or AD set, RFC 6840 section 5.8) and only when egressd left
// the answer untouched.
func forwardReply(req, resp *dns.Msg, changed bool) *dns.Msg {
	m := newReply(req, resp.Rcode)
	m.Answer, m.Ns, m.Extra = resp.Answer, resp.Ns, resp.Extra
	opt := req.IsEdns0()
	wantsAD := req.AuthenticatedData || (opt != nil && opt.Do())
	m.AuthenticatedData = resp.AuthenticatedData && wantsAD && !changed
	if changed {
		addOPT(m, req, dns.ExtendedErrorCodeFiltered, "egressd: records removed or edited by policy")
	} else {
		addOPT(m, req, 0, "")
	}
	return m
}

// addOPT appends egressd's OPT record to m when req has one.
func addOPT(m, req *dns.Msg, ede uint16, text string) {
	ropt := req.IsEdns0()
	if ropt == nil {
		return
	}
	o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
	o.SetUDPSize(upstreamUDPSize)
	if ropt.Do() {
		o.SetDo()
	}
	if ede != 0 {
		o.Option = append(o.Option, &dns.EDNS0_EDE{InfoCode: ede, ExtraText: text})
	}
	m.Extra = append(m.Extra, o)
}

// replySize is the largest UDP reply req's sender accepts: 512 bytes
// without EDNS0, else its buffer size within 512..upstreamUDPSize, so that
// a reply always fits an unfragmented packet.
func replySize(req *dns.Msg) int {
	opt := req.IsEdns0()
	if opt == nil {
		return dns.MinMsgSize
	}
	return min(max(int(opt.UDPSize()), dns.MinMsgSize), upstreamUDPSize)
}
