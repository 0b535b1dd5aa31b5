package main

import (
	"flag"
	"fmt"
	"net"
	"strings"

	"github.com/miekg/dns"
)

// dnsCmd is `loadgen dns -listen ADDR -name NAME -addr IP`: an
// authoritative-looking UDP server answering NAME A IP (TTL 300) and
// NOERROR/no data for every other question, so egressd's resolver caches it.
func dnsCmd(args []string) error {
	fs := flag.NewFlagSet("dns", flag.ContinueOnError)
	listen := fs.String("listen", "198.51.100.53:53", "UDP address")
	name := fs.String("name", "bench.test", "the one name answered")
	addr := fs.String("addr", "198.51.100.10", "its IPv4 address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ip := net.ParseIP(*addr).To4()
	if ip == nil {
		return fmt.Errorf("-addr %q: not an IPv4 address", *addr)
	}
	h := answerer{name: dns.Fqdn(strings.ToLower(*name)), ip: ip}
	srv := &dns.Server{Addr: *listen, Net: "udp", Handler: h}
	if err := srv.ListenAndServe(); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

type answerer struct {
	name string
	ip   net.IP
}

func (a answerer) ServeDNS(w dns.ResponseWriter, q *dns.Msg) {
	r := new(dns.Msg)
	r.SetReply(q)
	r.Authoritative = true
	for _, qq := range q.Question {
		if !strings.EqualFold(qq.Name, a.name) {
			r.Rcode = dns.RcodeNameError
			continue
		}
		if qq.Qtype == dns.TypeA {
			r.Answer = append(r.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: qq.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300},
				A:   a.ip,
			})
		}
	}
	w.WriteMsg(r)
}
