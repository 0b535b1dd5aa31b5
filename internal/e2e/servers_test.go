package e2e

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/internal/netnstest"
	"github.com/egressd/egressd/internal/testcert"
)

// recorder keeps every event a server saw, e.g. "tls 198.51.100.10:443 sni=allowed.test".
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) add(format string, args ...any) {
	r.mu.Lock()
	r.events = append(r.events, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

// matching returns the events that contain every one of subs.
func (r *recorder) matching(subs ...string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
next:
	for _, e := range r.events {
		for _, s := range subs {
			if !strings.Contains(e, s) {
				continue next
			}
		}
		out = append(out, e)
	}
	return out
}

func (r *recorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...)
}

// internet is the set of servers in the internet namespace.
type internet struct {
	rec    *recorder
	caFile string
	ca     *x509.CertPool
}

// zone is the upstream DNS data the tests rely on.
var zone = map[string][]string{
	"allowed.test.":        {"198.51.100.10", "2001:db8::10"},
	"sub.allowed.test.":    {"198.51.100.10"},
	"a.b.wild.test.":       {"198.51.100.11"},
	"x.wild.test.":         {"198.51.100.11"},
	"wild.test.":           {"198.51.100.12"},
	"evil.test.":           {"198.51.100.66"},
	"inside-deny.test.":    {"198.51.100.130"},
	"v6only.allowed.test.": {"2001:db8::11"},
	// Rebinding: an allowed name that resolves to the firewall itself.
	"host.allowed.test.":  {"10.231.0.1"},
	"plant.allowed.test.": {"198.51.100.10"},
	// PostgreSQL servers (postgres_test.go).
	"db.test.":    {"198.51.100.20"},
	"nossl.test.": {"198.51.100.21"},
}

// planted are records the fake upstream adds to the authority and
// additional sections of an answer for the name: addresses for another
// (allowed) name that it could plant in a client.
var planted = map[string][]string{
	"plant.allowed.test.": {"allowed.test. 60 IN A 198.51.100.66"},
}

// serverNames are the names the test certificate covers.
var serverNames = []string{"allowed.test", "*.wild.test", "*.b.wild.test", "wild.test", "evil.test", "inside-deny.test", "*.allowed.test"}

// sockets are the internet namespace's listeners; they must be opened
// inside that namespace (netnstest.Do), then served from anywhere.
type sockets struct {
	tls, http, raw []net.Listener
	udp            []net.PacketConn
	dns            net.PacketConn
	dnsTCP         net.Listener
}

func openSockets() (*sockets, error) {
	s := &sockets{}
	for _, fam := range []struct{ tcp, udp, host string }{{"tcp4", "udp4", "0.0.0.0"}, {"tcp6", "udp6", "::"}} {
		for port, dst := range map[string]*[]net.Listener{"443": &s.tls, "80": &s.http, "9000": &s.raw} {
			ln, err := net.Listen(fam.tcp, net.JoinHostPort(fam.host, port))
			if err != nil {
				return nil, err
			}
			*dst = append(*dst, ln)
		}
		pc, err := net.ListenPacket(fam.udp, net.JoinHostPort(fam.host, "9001"))
		if err != nil {
			return nil, err
		}
		s.udp = append(s.udp, pc)
	}
	var err error
	if s.dns, err = net.ListenPacket("udp4", "198.51.100.53:53"); err != nil {
		return nil, err
	}
	s.dnsTCP, err = net.Listen("tcp4", "198.51.100.53:53")
	return s, err
}

// startInternet opens the recording servers inside ns.
func startInternet(t *testing.T, ns string) *internet {
	t.Helper()
	var socks *sockets
	if err := netnstest.Do(ns, func() (err error) { socks, err = openSockets(); return err }); err != nil {
		t.Fatalf("internet sockets: %v", err)
	}
	cert, caPEM, err := testcert.New("egressd e2e", serverNames)
	if err != nil {
		t.Fatal(err)
	}
	in := &internet{rec: &recorder{}, caFile: filepath.Join(t.TempDir(), "ca.pem")}
	if err := os.WriteFile(in.caFile, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	in.ca = x509.NewCertPool()
	in.ca.AppendCertsFromPEM(caPEM)
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	for _, ln := range socks.tls {
		in.serveTLS(t, ln, tlsCfg)
	}
	for _, ln := range socks.http {
		in.serveHTTP(t, ln)
	}
	for _, ln := range socks.raw {
		in.serveRaw(t, ln)
	}
	for _, pc := range socks.udp {
		in.serveUDP(t, pc)
	}
	in.serveDNS(t, socks.dns, socks.dnsTCP)
	return in
}

// serveTLS answers HTTPS and records SNI, local address and request line.
func (in *internet) serveTLS(t *testing.T, ln net.Listener, cfg *tls.Config) {
	srv := &http.Server{
		Handler:   in.handler("https"),
		TLSConfig: cfg.Clone(),
		ConnState: func(c net.Conn, st http.ConnState) {
			if st == http.StateNew {
				in.rec.add("tls-conn %s", c.LocalAddr())
			}
		},
		ErrorLog: nil,
	}
	srv.TLSConfig.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		in.rec.add("tls %s sni=%s", h.Conn.LocalAddr(), h.ServerName)
		return nil, nil
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
}

func (in *internet) serveHTTP(t *testing.T, ln net.Listener) {
	srv := &http.Server{Handler: in.handler("http")}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

func (in *internet) handler(scheme string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		local := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		body, _ := io.ReadAll(r.Body)
		in.rec.add("%s %s host=%s %s %s body=%q", scheme, local, r.Host, r.Method, r.URL.Path, body)
		if n := r.URL.Query().Get("size"); n != "" {
			var size int64
			fmt.Sscan(n, &size)
			io.CopyN(w, zeroReader{}, size)
			return
		}
		fmt.Fprintf(w, "hello %s from %s\n", r.Host, local)
	})
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// serveRaw records every byte received on a TCP connection and echoes "ok".
func (in *internet) serveRaw(t *testing.T, ln net.Listener) {
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				in.rec.add("tcp-conn %s", c.LocalAddr())
				c.SetDeadline(time.Now().Add(30 * time.Second))
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if line != "" {
						in.rec.add("tcp %s data=%q", c.LocalAddr(), line)
						io.WriteString(c, "ok "+line)
					}
					if err != nil {
						return
					}
				}
			}(c)
		}
	}()
}

func (in *internet) serveUDP(t *testing.T, pc net.PacketConn) {
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			in.rec.add("udp from=%s data=%q", from, buf[:n])
			pc.WriteTo(append([]byte("ok "), buf[:n]...), from)
		}
	}()
}

// httpsHints are the address hints of the HTTPS record of a name (which
// must be in zone too).
var httpsHints = map[string][]string{}

// httpsRecord is name's HTTPS record: the name itself, with hints.
func httpsRecord(name string, hints []string) *dns.HTTPS {
	v4, v6 := &dns.SVCBIPv4Hint{}, &dns.SVCBIPv6Hint{}
	for _, s := range hints {
		a := netip.MustParseAddr(s)
		if a.Is4() {
			v4.Hint = append(v4.Hint, a.AsSlice())
		} else {
			v6.Hint = append(v6.Hint, a.AsSlice())
		}
	}
	hdr := dns.RR_Header{Name: name, Rrtype: dns.TypeHTTPS, Class: dns.ClassINET, Ttl: 60}
	return &dns.HTTPS{SVCB: dns.SVCB{Hdr: hdr, Priority: 1, Target: ".", Value: []dns.SVCBKeyValue{v4, v6}}}
}

// serveDNS answers from zone over UDP (pc) and TCP (ln), recording each
// question.
func (in *internet) serveDNS(t *testing.T, pc net.PacketConn, ln net.Listener) {
	h := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		name := strings.ToLower(q.Question[0].Name)
		in.rec.add("dns q=%s type=%s", name, dns.TypeToString[q.Question[0].Qtype])
		if strings.HasSuffix(name, ".blackhole.test.") {
			return // a server that never answers
		}
		addrs, ok := zone[name]
		if !ok {
			m.Rcode = dns.RcodeNameError
		}
		for _, s := range addrs {
			a := netip.MustParseAddr(s)
			hdr := dns.RR_Header{Name: q.Question[0].Name, Class: dns.ClassINET, Ttl: 60}
			switch {
			case a.Is4() && q.Question[0].Qtype == dns.TypeA:
				hdr.Rrtype = dns.TypeA
				m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: a.AsSlice()})
			case a.Is6() && q.Question[0].Qtype == dns.TypeAAAA:
				hdr.Rrtype = dns.TypeAAAA
				m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: a.AsSlice()})
			}
		}
		for _, text := range planted[name] {
			rr, err := dns.NewRR(text)
			if err != nil {
				t.Errorf("planted %q: %v", text, err)
				continue
			}
			m.Ns, m.Extra = append(m.Ns, rr), append(m.Extra, dns.Copy(rr))
		}
		if hints, ok := httpsHints[name]; ok && q.Question[0].Qtype == dns.TypeHTTPS {
			m.Answer = append(m.Answer, httpsRecord(q.Question[0].Name, hints))
		}
		w.WriteMsg(m)
	})
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		go srv.ActivateAndServe()
		t.Cleanup(func() { srv.Shutdown() })
	}
}
