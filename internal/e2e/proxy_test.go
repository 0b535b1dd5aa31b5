package e2e

import (
	"bufio"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/netnstest"
)

func TestTLS(t *testing.T) {
	e := newEnv(t, defaultSandbox)
	allowed := []struct{ name, url, resolve, want string }{
		{"exact", "https://allowed.test/", "allowed.test:443:198.51.100.10", "hello allowed.test from 198.51.100.10:443"},
		{"wildcard", "https://x.wild.test/", "x.wild.test:443:198.51.100.11", "hello x.wild.test from 198.51.100.11:443"},
		{"wildcard depth", "https://a.b.wild.test/", "a.b.wild.test:443:198.51.100.11", "hello a.b.wild.test from 198.51.100.11:443"},
		{"ipv6", "https://allowed.test/", "allowed.test:443:[2001:db8::10]", "hello allowed.test from [2001:db8::10]:443"},
		// The sandbox points an allowed name at another address: egressd
		// dials the name's own address, never the one asked for.
		{"sni pointed elsewhere", "https://allowed.test/", "allowed.test:443:198.51.100.66", "hello allowed.test from 198.51.100.10:443"},
	}
	for _, tc := range allowed {
		t.Run("allow/"+tc.name, func(t *testing.T) {
			out, err := e.curl("--resolve", tc.resolve, tc.url)
			if err != nil || !strings.Contains(out, tc.want) {
				t.Fatalf("curl %s: %v: %q, want %q", tc.url, err, out, tc.want)
			}
		})
	}
	denied := []struct{ name, url, resolve, leak string }{
		{"apex not matched by wildcard", "https://wild.test/", "wild.test:443:198.51.100.12", "sni=wild.test"},
		{"denied name", "https://evil.test/", "evil.test:443:198.51.100.66", "sni=evil.test"},
		{"denied name ipv6", "https://evil.test/", "evil.test:443:[2001:db8::66]", "sni=evil.test"},
		{"label aligned", "https://evilallowed.test/", "evilallowed.test:443:198.51.100.66", "sni=evilallowed.test"},
		{"suffix is not a match", "https://allowed.test.evil.test/", "allowed.test.evil.test:443:198.51.100.66", "sni=allowed.test.evil.test"},
		{"resolves into deny_cidrs", "https://inside-deny.test/", "inside-deny.test:443:198.51.100.130", "198.51.100.130"},
	}
	for _, tc := range denied {
		t.Run("deny/"+tc.name, func(t *testing.T) {
			if out, err := e.curl("--resolve", tc.resolve, tc.url); err == nil {
				t.Fatalf("curl %s succeeded: %q", tc.url, out)
			}
			e.noEvents(tc.leak)
		})
	}
	t.Run("allow/openssl s_client", func(t *testing.T) {
		script := fmt.Sprintf(`printf 'GET / HTTP/1.0\r\nHost: allowed.test\r\n\r\n' | openssl s_client -quiet -connect 198.51.100.10:443 -servername allowed.test -CAfile %s -verify_return_error`, e.in.caFile)
		out, err := e.sandbox("sh", "-c", script)
		if err != nil || !strings.Contains(out, "hello allowed.test") {
			t.Fatalf("openssl: %v: %q", err, out)
		}
	})
	t.Run("deny/openssl no SNI", func(t *testing.T) {
		out, err := e.sandbox("sh", "-c", `printf 'GET / HTTP/1.0\r\n\r\n' | timeout 5 openssl s_client -quiet -noservername -connect 198.51.100.12:443`)
		if strings.Contains(out, "hello") {
			t.Fatalf("openssl without SNI got through: %v %q", err, out)
		}
		e.noEvents("tls-conn 198.51.100.12")
	})
	t.Run("allow/go client hello split in 3 segments", func(t *testing.T) {
		c := e.dialSandbox(t, "198.51.100.10:443")
		tc := tls.Client(&splitConn{Conn: c, parts: 3, pause: 300 * time.Millisecond},
			&tls.Config{ServerName: "sub.allowed.test", RootCAs: e.in.ca})
		defer tc.Close()
		fmt.Fprintf(tc, "GET / HTTP/1.0\r\nHost: sub.allowed.test\r\n\r\n")
		body, err := io.ReadAll(tc)
		if err != nil || !strings.Contains(string(body), "hello sub.allowed.test") {
			t.Fatalf("split hello: %v: %q", err, body)
		}
	})
	t.Run("deny/garbage", func(t *testing.T) {
		c := e.dialSandbox(t, "203.0.113.5:443")
		defer c.Close()
		junk := make([]byte, 3000)
		rand.Read(junk)
		junk[0] = 0x16 // looks like a TLS record at first sight
		c.Write(junk)
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		if n, err := c.Read(make([]byte, 10)); err == nil {
			t.Fatalf("garbage got %d bytes back", n)
		}
		e.noEvents("203.0.113.5")
	})
}

func TestHTTP(t *testing.T) {
	e := newEnv(t, defaultSandbox)
	t.Run("allow/host", func(t *testing.T) {
		out, err := e.curl("--resolve", "allowed.test:80:198.51.100.10", "http://allowed.test/a")
		if err != nil || !strings.Contains(out, "hello allowed.test from 198.51.100.10:80") {
			t.Fatalf("curl: %v: %q", err, out)
		}
	})
	t.Run("allow/host spoof reaches the name's address", func(t *testing.T) {
		out, err := e.curl("-H", "Host: allowed.test", "http://198.51.100.66/spoof")
		if err != nil || !strings.Contains(out, "from 198.51.100.10:80") {
			t.Fatalf("curl: %v: %q", err, out)
		}
		e.noEvents("198.51.100.66")
	})
	t.Run("deny/host gets 403", func(t *testing.T) {
		out, _ := e.curl("-i", "--resolve", "evil.test:80:198.51.100.66", "http://evil.test/x")
		if !strings.Contains(out, "403") || !strings.Contains(out, "egressd") {
			t.Fatalf("want a 403 from egressd, got %q", out)
		}
		e.noEvents("host=evil.test")
	})
	t.Run("deny/second host on keep-alive", func(t *testing.T) {
		c := e.dialSandbox(t, "198.51.100.10:80")
		defer c.Close()
		br := bufio.NewReader(c)
		fmt.Fprintf(c, "GET /first HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
		if !readResponse(t, br, "hello allowed.test") {
			t.Fatal("first request failed")
		}
		fmt.Fprintf(c, "GET /second HTTP/1.1\r\nHost: evil.test\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		rest, _ := io.ReadAll(br)
		if strings.Contains(string(rest), "hello") {
			t.Fatalf("second request answered: %q", rest)
		}
		e.waitEvent("host=allowed.test", "/first")
		e.noEvents("/second")
	})
	t.Run("deny/absolute-form target differs from host", func(t *testing.T) {
		c := e.dialSandbox(t, "198.51.100.10:80")
		defer c.Close()
		fmt.Fprintf(c, "GET http://evil.test/abs HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		out, _ := io.ReadAll(c)
		if strings.Contains(string(out), "hello") {
			t.Fatalf("answered: %q", out)
		}
		e.noEvents("/abs")
	})
}

func TestRawCIDRs(t *testing.T) {
	e := newEnv(t, defaultSandbox)
	t.Run("allow/tcp to allow_cidrs", func(t *testing.T) {
		out, err := e.sandbox("sh", "-c", "echo raw77 | nc -w 3 -q 1 198.51.100.77 9000")
		if err != nil || !strings.Contains(out, "ok raw77") {
			t.Fatalf("nc: %v: %q", err, out)
		}
	})
	t.Run("allow/tcp6 to allow_cidrs", func(t *testing.T) {
		out, err := e.sandbox("sh", "-c", "echo raw6 | nc -w 3 -q 1 2001:db8:77::5 9000")
		if err != nil || !strings.Contains(out, "ok raw6") {
			t.Fatalf("nc: %v: %q", err, out)
		}
	})
	t.Run("allow/udp to allow_cidrs", func(t *testing.T) {
		e.sandbox("sh", "-c", "echo udp77 | nc -u -w 1 198.51.100.77 9001")
		e.waitEvent("udp", "udp77")
	})
	t.Run("allow/icmp to allow_cidrs", func(t *testing.T) {
		if out, err := e.sandbox("ping", "-c", "1", "-W", "2", "198.51.100.77"); err != nil {
			t.Fatalf("ping: %v: %s", err, out)
		}
	})
	t.Run("deny/tcp elsewhere", func(t *testing.T) {
		if out, err := e.sandbox("sh", "-c", "echo raw78 | nc -w 2 -q 1 198.51.100.78 9000"); err == nil && strings.Contains(out, "ok") {
			t.Fatalf("nc got through: %q", out)
		}
		e.noEvents("raw78")
		e.noEvents("tcp-conn 198.51.100.78")
	})
	t.Run("deny/udp elsewhere", func(t *testing.T) {
		e.sandbox("sh", "-c", "echo udp78 | nc -u -w 1 198.51.100.78 9001")
		e.sandbox("sh", "-c", "echo udp130 | nc -u -w 1 198.51.100.130 9001")
		time.Sleep(300 * time.Millisecond)
		e.noEvents("udp78")
		e.noEvents("udp130")
	})
	t.Run("deny/icmp elsewhere", func(t *testing.T) {
		if out, err := e.sandbox("ping", "-c", "1", "-W", "1", "198.51.100.78"); err == nil {
			t.Fatalf("ping got through: %s", out)
		}
	})
	t.Run("deny/deny_cidrs win", func(t *testing.T) {
		if out, err := e.sandbox("sh", "-c", "echo raw130 | nc -w 2 -q 1 198.51.100.130 9000"); err == nil && strings.Contains(out, "ok") {
			t.Fatalf("nc got through: %q", out)
		}
		e.noEvents("raw130")
	})
}

func TestUnknownSource(t *testing.T) {
	e := newEnv(t, defaultSandbox)
	e.tp.AddAddr(e.tp.Sandbox, netnstest.SandboxIface, "10.231.0.99/24")
	if out, err := e.curl("--interface", "10.231.0.99", "--resolve", "allowed.test:443:198.51.100.10", "https://allowed.test/"); err == nil {
		t.Fatalf("spoofed source got through: %q", out)
	}
	e.sandbox("sh", "-c", "echo spoof | nc -u -s 10.231.0.99 -w 1 198.51.100.77 9001")
	time.Sleep(300 * time.Millisecond)
	e.noEvents("10.231.0.99")
	e.noEvents("spoof")
}

func TestSilentConnections(t *testing.T) {
	e := newEnv(t, defaultSandbox)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	err := netnstest.Do(e.tp.Sandbox, func() error {
		for range 2000 {
			c, err := net.DialTimeout("tcp", "198.51.100.10:443", 3*time.Second)
			if err != nil {
				return err
			}
			conns = append(conns, c)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("open silent connections: %v (after %d)", err, len(conns))
	}
	out, err := e.curl("--resolve", "allowed.test:443:198.51.100.10", "https://allowed.test/")
	if err != nil || !strings.Contains(out, "hello allowed.test") {
		t.Fatalf("request next to 2,000 silent connections: %v: %q", err, out)
	}
}

func TestFailClosedAfterKill(t *testing.T) {
	e := newEnv(t, defaultSandbox)
	if out, err := e.curl("--resolve", "allowed.test:443:198.51.100.10", "https://allowed.test/before"); err != nil {
		t.Fatalf("before kill: %v %q", err, out)
	}
	e.kill9()
	if out, err := e.curl("--max-time", "2", "--resolve", "allowed.test:443:198.51.100.10", "https://allowed.test/after"); err == nil {
		t.Fatalf("TCP passed with egressd dead: %q", out)
	}
	e.sandbox("sh", "-c", "echo dead78 | nc -u -w 1 198.51.100.78 9001")
	e.sandbox("sh", "-c", "echo dead77 | nc -w 2 -q 1 198.51.100.77 9000")
	time.Sleep(300 * time.Millisecond)
	e.noEvents("/after")
	e.noEvents("dead78")
	e.noEvents("dead77")
}

func TestDenyAll(t *testing.T) {
	e := newEnv(t, denyAllSandbox)
	if out, err := e.curl("--max-time", "2", "--resolve", "allowed.test:443:198.51.100.10", "https://allowed.test/da"); err == nil {
		t.Fatalf("deny-all passed TCP: %q", out)
	}
	e.sandbox("dig", "+time=1", "+tries=1", "@198.51.100.53", "allowed.test")
	e.sandbox("sh", "-c", "echo da77 | nc -u -w 1 198.51.100.77 9001")
	e.sandbox("ping", "-c", "1", "-W", "1", "198.51.100.77")
	time.Sleep(300 * time.Millisecond)
	e.noEvents("/da")
	e.noEvents("dns q=")
	e.noEvents("da77")
}

func TestAllowAll(t *testing.T) {
	e := newEnv(t, allowAllSandbox+`deny_cidrs = ["198.51.100.128/25"]`)
	if out, err := e.curl("--resolve", "evil.test:443:198.51.100.66", "https://evil.test/aa"); err != nil || !strings.Contains(out, "hello evil.test") {
		t.Fatalf("allow-all: %v %q", err, out)
	}
	e.sandbox("sh", "-c", "echo aa78 | nc -u -w 1 198.51.100.78 9001")
	e.waitEvent("aa78")
	if out, err := e.sandbox("sh", "-c", "echo aa130 | nc -w 2 -q 1 198.51.100.130 9000"); err == nil && strings.Contains(out, "ok") {
		t.Fatalf("deny_cidrs passed in allow-all: %q", out)
	}
	e.noEvents("aa130")
}

// dialSandbox opens a TCP connection from the sandbox namespace.
func (e *env) dialSandbox(t *testing.T, addr string) net.Conn {
	t.Helper()
	var c net.Conn
	err := netnstest.Do(e.tp.Sandbox, func() (err error) {
		c, err = net.DialTimeout("tcp", addr, 3*time.Second)
		return err
	})
	if err != nil {
		t.Fatalf("dial %s from sandbox: %v", addr, err)
	}
	return c
}

func readResponse(t *testing.T, br *bufio.Reader, want string) bool {
	t.Helper()
	var body strings.Builder
	length := -1
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return false
		}
		if strings.HasPrefix(strings.ToLower(line), "content-length:") {
			fmt.Sscan(strings.TrimSpace(line[len("content-length:"):]), &length)
		}
		if line == "\r\n" {
			break
		}
	}
	if length < 0 {
		return false
	}
	buf := make([]byte, length)
	if _, err := io.ReadFull(br, buf); err != nil {
		return false
	}
	body.Write(buf)
	return strings.Contains(body.String(), want)
}

// splitConn writes its first Write (the ClientHello) in parts with pauses,
// each part its own TCP segment.
type splitConn struct {
	net.Conn
	parts int
	pause time.Duration
	done  bool
}

func (s *splitConn) Write(p []byte) (int, error) {
	if s.done || len(p) < s.parts {
		return s.Conn.Write(p)
	}
	s.done = true
	step := len(p) / s.parts
	for i := 0; i < s.parts; i++ {
		end := (i + 1) * step
		if i == s.parts-1 {
			end = len(p)
		}
		if _, err := s.Conn.Write(p[i*step : end]); err != nil {
			return 0, err
		}
		time.Sleep(s.pause)
	}
	return len(p), nil
}

// TestRebindingToHost: an allowed name that resolves to the host's own
// address (dns.block_private_answers, on by default) is neither answered
// to the sandbox nor dialled by egressd when the sandbox sends that SNI
// to an internet address. A listener on the host address records any
// connection that gets through.
func TestRebindingToHost(t *testing.T) {
	e := newEnv(t, defaultSandbox)
	var ln net.Listener
	err := netnstest.Do(e.tp.Firewall, func() (err error) {
		ln, err = net.Listen("tcp4", netnstest.GatewayAddr4.String()+":443")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var reached atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			reached.Add(1)
			c.Close()
		}
	}()
	if out, _ := e.dig("198.51.100.53", "host.allowed.test", "A", false); strings.Contains(out, "10.231.0.1") {
		t.Errorf("the host's address was answered to the sandbox:\n%s", out)
	}
	if out, err := e.curl("--resolve", "host.allowed.test:443:198.51.100.10", "https://host.allowed.test/"); err == nil {
		t.Fatalf("curl succeeded: %q", out)
	}
	time.Sleep(200 * time.Millisecond)
	if n := reached.Load(); n != 0 {
		t.Fatalf("egressd dialled the host's own address %d times", n)
	}
	e.noEvents("sni=host.allowed.test")
}

// TestIdleTimeout: with proxy.idle_timeout = "2s", a proxied connection
// that goes quiet is reset for the sandbox and logged, and one that keeps
// talking lives on.
func TestIdleTimeout(t *testing.T) {
	e := newIdleEnv(t, defaultSandbox)
	e.proxy = `idle_timeout = "2s"`
	e.writeConfig(defaultSandbox)
	e.start()
	quiet := e.dialSandbox(t, "198.51.100.77:9000")
	defer quiet.Close()
	busy := e.dialSandbox(t, "198.51.100.77:9000")
	defer busy.Close()
	start := time.Now()
	fmt.Fprintf(quiet, "quiet\n")
	closed := make(chan time.Duration, 1)
	go func() {
		buf := make([]byte, 64)
		quiet.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			if _, err := quiet.Read(buf); err != nil {
				closed <- time.Since(start)
				return
			}
		}
	}()
	br := bufio.NewReader(busy)
	for i := 0; time.Since(start) < 5*time.Second; i++ {
		if _, err := fmt.Fprintf(busy, "busy-%d\n", i); err != nil {
			t.Fatalf("busy connection closed after %v: %v", time.Since(start), err)
		}
		busy.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatalf("busy connection lost its echo after %v: %v", time.Since(start), err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	select {
	case d := <-closed:
		if d < 2*time.Second {
			t.Errorf("quiet connection closed after %v, before idle_timeout", d)
		}
		t.Logf("quiet connection closed after %v (idle_timeout 2s)", d)
	default:
		t.Fatalf("quiet connection still open after %v with idle_timeout 2s", time.Since(start))
	}
	if !strings.Contains(e.logs.String(), `"msg":"flow closed: idle"`) {
		t.Errorf("no log line for the idle flow")
	}
}
