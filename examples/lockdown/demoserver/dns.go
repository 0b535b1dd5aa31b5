package main

import (
	"strings"

	"github.com/miekg/dns"
)

// serveDNS answers A and AAAA from zone over UDP and TCP, NXDOMAIN for
// anything else, and prints every question.
func serveDNS(addr string, zone zoneFlag) error {
	h := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		if len(q.Question) != 1 {
			m.Rcode = dns.RcodeFormatError
			w.WriteMsg(m)
			return
		}
		question := q.Question[0]
		name := strings.ToLower(strings.TrimSuffix(question.Name, "."))
		say("dns  from %s query %s %s", w.RemoteAddr(), name, dns.TypeToString[question.Qtype])
		addrs, ok := zone[name]
		if !ok {
			m.Rcode = dns.RcodeNameError
		}
		for _, a := range addrs {
			hdr := dns.RR_Header{Name: question.Name, Class: dns.ClassINET, Ttl: 60}
			switch {
			case a.Is4() && question.Qtype == dns.TypeA:
				hdr.Rrtype = dns.TypeA
				m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: a.AsSlice()})
			case a.Is6() && question.Qtype == dns.TypeAAAA:
				hdr.Rrtype = dns.TypeAAAA
				m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: a.AsSlice()})
			}
		}
		w.WriteMsg(m)
	})
	errc := make(chan error, 2)
	for _, net := range []string{"udp", "tcp"} {
		srv := &dns.Server{Addr: addr, Net: net, Handler: h}
		go func() { errc <- srv.ListenAndServe() }()
	}
	return <-errc
}
