package proxy

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/policy"
)

// FuzzParseProxyRequest: the CONNECT and absolute-form parser never
// panics, and what it accepts names a host and a port.
func FuzzParseProxyRequest(f *testing.F) {
	for _, s := range []string{
		"CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n",
		"CONNECT [2001:db8::1]:443 HTTP/1.1\r\n\r\n",
		"CONNECT 198.51.100.7:22 HTTP/1.0\r\nProxy-Authorization: Basic YWdlbnQ6czNjcmV0\r\n\r\n",
		"GET http://allowed.test:8080/x HTTP/1.1\r\nHost: allowed.test:8080\r\nProxy-Connection: keep-alive\r\n\r\n",
		"GET https://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
		"CONNECT allowed.test HTTP/1.1\r\n\r\n",
		"CONNECT :0 HTTP/1.1\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, head []byte) {
		r, err := parseProxyRequest(head)
		if err != nil {
			return
		}
		if r.host == "" || r.port == 0 || strings.ContainsAny(r.host, " \r\n") {
			t.Fatalf("accepted %q as host %q port %d", head, r.host, r.port)
		}
	})
}

// FuzzExplicitDispatch: whatever a client of an explicit listener sends
// first (SOCKS5, SOCKS4, HTTP, garbage), egressd answers or closes, logs
// one decision, and never reaches an upstream it did not allow (the
// policy allows nothing here).
func FuzzExplicitDispatch(f *testing.F) {
	for _, s := range []string{
		"\x05\x01\x00\x05\x01\x00\x03\x0bexample.com\x01\xbb",
		"\x05\x01\x00\x05\x01\x00\x01\x7f\x00\x00\x02\x00\x50",
		"\x05\x02\x00\x02",
		"\x04\x01\x00\x50\x7f\x00\x00\x01\x00",
		"CONNECT evil.test:443 HTTP/1.1\r\n\r\n",
		"GET http://evil.test/ HTTP/1.1\r\nHost: evil.test\r\n\r\n",
		"\x16\x03\x01\x00\x05hello",
		"",
	} {
		f.Add([]byte(s))
	}
	r := newExplicitRig(f, policy.Spec{Mode: policy.ModeDenyAll}, policy.Listener{})
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := net.Dial("tcp4", r.proxy)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		c.Write(in)
		c.(*net.TCPConn).CloseWrite()
		buf := make([]byte, 512)
		for {
			if _, err := c.Read(buf); err != nil {
				break
			}
		}
		if r.saw("") {
			t.Fatalf("an upstream heard from %q: %q", in, r.seen)
		}
	})
}
