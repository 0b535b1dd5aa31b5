package dnsfilter

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/policy"
)

// fakeUpstream is an in-process recursive resolver on 127.0.0.1 (UDP and
// TCP, same port) that answers from a zone of records and records every
// question it is asked.
type fakeUpstream struct {
	addr netip.AddrPort

	mu        sync.Mutex
	questions []string // "name type", lowercase name
	queries   []*dns.Msg
	zone      []dns.RR
	rcode     int  // when not 0, every answer has this rcode
	truncUDP  bool // answer UDP queries with TC set and no records
	wrongName bool // answer a question other than the one asked
}

// testZone is the default upstream data.
var testZone = []string{
	"allowed.test. 60 IN A 198.51.100.10",
	"allowed.test. 60 IN AAAA 2001:db8::10",
	"www.allowed.test. 300 IN CNAME edge.cdn.test.",
	"edge.cdn.test. 30 IN A 198.51.100.20",
	"edge.cdn.test. 30 IN A 198.51.100.21",
	"evil.test. 60 IN A 198.51.100.66",
	"inside-deny.allowed.test. 60 IN A 198.51.100.130",
	"inside-deny.allowed.test. 60 IN A 198.51.100.11",
	"private.allowed.test. 60 IN A 10.1.2.3",
	"private.allowed.test. 60 IN A 198.51.100.12",
	"meta.allowed.test. 60 IN A 169.254.169.254",
	"ula.allowed.test. 60 IN AAAA fd00::1",
	"nat64.allowed.test. 60 IN AAAA 64:ff9b::a01:203",
	"cgnat.allowed.test. 60 IN A 100.64.0.1",
	"allowcidr.allowed.test. 60 IN A 10.9.0.1",
	"txt.allowed.test. 60 IN TXT \"hello\"",
	"svc.allowed.test. 60 IN HTTPS 1 . alpn=h2 ech=ZWNoY29uZmln ipv4hint=198.51.100.10,10.0.0.1",
	"svc2.allowed.test. 60 IN HTTPS 1 . mandatory=ech,alpn alpn=h2 ech=ZWNoY29uZmln",
}

const testSOA = "test. 3600 IN SOA ns.test. admin.test. 1 7200 900 1209600 30"

func mustRR(t testing.TB, s string) dns.RR {
	t.Helper()
	rr, err := dns.NewRR(s)
	if err != nil {
		t.Fatalf("dns.NewRR(%q): %v", s, err)
	}
	return rr
}

func startUpstream(t testing.TB, records ...string) *fakeUpstream {
	t.Helper()
	if records == nil {
		records = testZone
	}
	u := &fakeUpstream{}
	for _, s := range records {
		u.zone = append(u.zone, mustRR(t, s))
	}
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	ln, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		pc.Close()
		t.Skipf("tcp port %d taken: %v", port, err)
	}
	u.addr = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	udp := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(u.serveUDP)}
	tcp := &dns.Server{Listener: ln, Handler: dns.HandlerFunc(u.serveTCP)}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	t.Cleanup(func() { udp.Shutdown(); tcp.Shutdown() })
	return u
}

func (u *fakeUpstream) serveUDP(w dns.ResponseWriter, q *dns.Msg) { u.serve(w, q, true) }
func (u *fakeUpstream) serveTCP(w dns.ResponseWriter, q *dns.Msg) { u.serve(w, q, false) }

func (u *fakeUpstream) serve(w dns.ResponseWriter, q *dns.Msg, udp bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	qq := q.Question[0]
	u.questions = append(u.questions, strings.ToLower(qq.Name)+" "+dns.TypeToString[qq.Qtype])
	u.queries = append(u.queries, q.Copy())
	m := new(dns.Msg)
	m.SetReply(q)
	m.RecursionAvailable = true
	switch {
	case u.rcode != 0:
		m.Rcode = u.rcode
	case u.truncUDP && udp:
		m.Truncated = true
	default:
		u.answer(m, qq)
	}
	if u.wrongName {
		m.Question[0].Name = "other.test."
	}
	if udp {
		size := dns.MinMsgSize
		if opt := q.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		m.Truncate(size)
	}
	w.WriteMsg(m)
}

// answer fills m like a recursive resolver would: the CNAME chain from the
// question name, the records of the asked type at its end, or NXDOMAIN
// with the SOA when the name is not in the zone.
func (u *fakeUpstream) answer(m *dns.Msg, q dns.Question) {
	name, exists := q.Name, false
	for range 8 {
		next := ""
		for _, rr := range u.zone {
			h := rr.Header()
			if !strings.EqualFold(h.Name, name) {
				continue
			}
			exists = true
			if h.Rrtype == q.Qtype {
				m.Answer = append(m.Answer, dns.Copy(rr))
			} else if c, ok := rr.(*dns.CNAME); ok {
				m.Answer = append(m.Answer, dns.Copy(rr))
				next = c.Target
			}
		}
		if next == "" {
			break
		}
		name = next
	}
	if !exists {
		m.Rcode = dns.RcodeNameError
	}
	if len(m.Answer) == 0 {
		soa, _ := dns.NewRR(testSOA)
		m.Ns = append(m.Ns, soa)
	}
}

// asked returns the questions the upstream saw.
func (u *fakeUpstream) asked() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.questions...)
}

func (u *fakeUpstream) set(fn func(u *fakeUpstream)) {
	u.mu.Lock()
	defer u.mu.Unlock()
	fn(u)
}

// Sandbox sources used by the tests.
var (
	srcCustom   = netip.MustParseAddr("10.231.0.2")
	srcAllowAll = netip.MustParseAddr("10.232.0.2")
	srcDenyAll  = netip.MustParseAddr("10.233.0.2")
	srcCustom6  = netip.MustParseAddr("fd00:231::2")
	srcUnknown  = netip.MustParseAddr("10.99.0.2")
)

var customSpec = policy.Spec{
	Mode:         policy.ModeCustom,
	AllowDomains: []string{"allowed.test", "*.allowed.test"},
	AllowCIDRs:   []string{"10.9.0.0/16"},
	DenyCIDRs:    []string{"198.51.100.128/25"},
}

func testSet(t testing.TB, custom policy.Spec) *policy.Set {
	t.Helper()
	mk := func(name, src string, spec policy.Spec) policy.Sandbox {
		p, err := policy.Compile(spec)
		if err != nil {
			t.Fatal(err)
		}
		var srcs []netip.Prefix
		for _, s := range strings.Fields(src) {
			srcs = append(srcs, netip.MustParsePrefix(s))
		}
		return policy.Sandbox{Name: name, Interface: "veth-" + name, Sources: srcs, Policy: p}
	}
	set, err := policy.NewSet([]policy.Sandbox{
		mk("custom", "10.231.0.2/32 fd00:231::2/128 127.0.0.0/8 ::1/128", custom),
		mk("open", "10.232.0.2/32", policy.Spec{Mode: policy.ModeAllowAll, DenyCIDRs: []string{"198.51.100.128/25"}}),
		mk("closed", "10.233.0.2/32", policy.Spec{Mode: policy.ModeDenyAll}),
	}, policy.Guard{})
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// fakeClock is a settable time source for the resolver.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// newTestResolver returns a resolver over the test set, forwarding to up,
// with a fake clock.
func newTestResolver(t testing.TB, up *fakeUpstream, opts Options) (*Resolver, *fakeClock) {
	t.Helper()
	if up != nil {
		opts.Upstream = NewUpstream([]netip.AddrPort{up.addr}, 2*time.Second)
	}
	if opts.CacheSize == 0 {
		opts.CacheSize = 1000
	}
	r := NewResolver(opts, testSet(t, customSpec))
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	r.now = clock.now
	return r, clock
}

// ask sends one question to r from src, with EDNS0 when edns is set.
func ask(r *Resolver, src netip.Addr, name string, qtype uint16, edns bool) *dns.Msg {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	if edns {
		q.SetEdns0(1232, false)
	}
	return r.Query(context.Background(), src, q)
}

// ede returns the Extended DNS Error code of m, or -1.
func ede(m *dns.Msg) int {
	if opt := m.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if e, ok := o.(*dns.EDNS0_EDE); ok {
				return int(e.InfoCode)
			}
		}
	}
	return -1
}

// answerAddrs lists the A and AAAA addresses of m's answer section.
func answerAddrs(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch v := rr.(type) {
		case *dns.A:
			out = append(out, v.A.String())
		case *dns.AAAA:
			out = append(out, v.AAAA.String())
		}
	}
	return out
}
