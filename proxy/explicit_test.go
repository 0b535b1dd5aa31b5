package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/crypto/bcrypt"
	xproxy "golang.org/x/net/proxy"

	"github.com/egressd/egressd/internal/testcert"
	"github.com/egressd/egressd/policy"
)

// The explicit proxy over loopback, with no privilege: a sandbox whose
// only way in is its listener on 127.0.0.1; names resolve (statically) to
// 127.0.0.2, where recording HTTPS and HTTP servers listen. evil.test
// resolves there too: a CDN serving both names, the domain-fronting case.

// explicitRig is a running explicit-proxy server and its upstreams.
type explicitRig struct {
	srv        *Server
	proxy      string // the sandbox's listener, 127.0.0.1:P
	tlsPort    string // HTTPS upstream on 127.0.0.2
	httpPort   string // HTTP upstream on 127.0.0.2
	rawAddr    string // a line echo server on 127.0.0.5 (allow_cidrs)
	caFile     string
	ca         *x509.CertPool
	logs       *observer.ObservedLogs
	mu         sync.Mutex
	seen       []string // what the upstreams received: "tls sni=N", "https host=H path", "http host=H path"
	listenSpec policy.Listener
}

func (r *explicitRig) record(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, fmt.Sprintf(format, args...))
}

// saw reports whether an upstream received something containing sub.
func (r *explicitRig) saw(sub string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.seen {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func freePort(t testing.TB, host string) string {
	t.Helper()
	ln, err := net.Listen("tcp4", host+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

func explicitSpec() policy.Spec {
	return policy.Spec{Mode: policy.ModeCustom, AllowDomains: []string{"allowed.test"}, AllowCIDRs: []string{"127.0.0.5/32"}}
}

// newExplicitRig starts the upstreams and a server whose sandbox "agent"
// listens on l (its Address filled in when empty).
func newExplicitRig(t testing.TB, spec policy.Spec, l policy.Listener) *explicitRig {
	t.Helper()
	r := &explicitRig{caFile: filepath.Join(t.TempDir(), "ca.pem")}
	cert, caPEM, err := testcert.New("egressd explicit test", []string{"allowed.test", "evil.test"})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(r.caFile, caPEM, 0o644)
	r.ca = x509.NewCertPool()
	r.ca.AppendCertsFromPEM(caPEM)
	r.tlsPort, r.httpPort = r.serveHTTP(t, &cert), r.serveHTTP(t, nil)
	r.rawAddr = r.serveEcho(t, "127.0.0.5")
	if l.Network == "" {
		l = policy.Listener{Network: "tcp", Address: "127.0.0.1:" + freePort(t, "127.0.0.1"), UID: -1, GID: -1}
	}
	r.listenSpec, r.proxy = l, l.Address
	core, logs := observer.New(zap.InfoLevel)
	r.logs = logs
	r.srv = NewServer(Options{
		PeekTimeout: time.Second, DialTimeout: time.Second, ShutdownTimeout: time.Second, MaxConnsPerSandbox: 64,
		Resolver: staticResolver{
			"allowed.test": {netip.MustParseAddr("127.0.0.2")},
			"evil.test":    {netip.MustParseAddr("127.0.0.2")},
		},
		Logger: zap.New(core),
	}, explicitSet(t, spec, l))
	ctx, cancel := context.WithCancel(context.Background())
	if err := r.srv.Listen(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

func explicitSet(t testing.TB, spec policy.Spec, l policy.Listener) *policy.Set {
	t.Helper()
	p, err := policy.Compile(spec)
	if err != nil {
		t.Fatal(err)
	}
	set, err := policy.NewSet([]policy.Sandbox{{Name: "agent", Listen: []policy.Listener{l}, Policy: p}}, policy.Guard{})
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// serveHTTP serves HTTPS (cert set) or HTTP on 127.0.0.2 and records
// every request; /stream answers a line and then holds the response open.
func (r *explicitRig) serveHTTP(t testing.TB, cert *tls.Certificate) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	scheme := "http"
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.record("%s host=%s %s", scheme, req.Host, req.URL.Path)
		if req.Header.Get("Proxy-Authorization") != "" {
			r.record("%s leaked Proxy-Authorization", scheme)
		}
		if req.URL.Path == "/big" {
			w.Write(bigBody())
			return
		}
		if req.URL.Path == "/stream" {
			fmt.Fprintln(w, "start")
			w.(http.Flusher).Flush()
			<-req.Context().Done()
			return
		}
		fmt.Fprintf(w, "hello %s", req.Host)
	})}
	if cert != nil {
		scheme = "https"
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*cert},
			GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
				r.record("tls sni=%s", h.ServerName)
				return nil, nil
			}}
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// serveConns listens on host:0 and hands every connection to handle,
// closing it after; it returns the listener's address.
func serveConns(t testing.TB, host string, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp4", host+":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// serveEcho answers every line with "ok " and the line, recording it.
func (r *explicitRig) serveEcho(t testing.TB, host string) string {
	t.Helper()
	return serveConns(t, host, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			r.record("raw %s", strings.TrimSpace(line))
			io.WriteString(c, "ok "+line)
		}
	})
}

func needCurl(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("curl not installed")
		}
		t.Skip("curl not installed")
	}
}

// curl runs curl with the rig's CA and a short timeout.
func (r *explicitRig) curl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	needCurl(t)
	base := []string{"-sS", "--max-time", "5", "--cacert", r.caFile}
	out, err := exec.Command("curl", append(base, args...)...).CombinedOutput()
	return string(out), err
}

// reasons are the reasons of the rig's flow log lines so far.
func (r *explicitRig) reasons() string {
	var out []string
	for _, e := range r.logs.All() {
		if e.Message == "flow" || e.Message == "flow cut by policy change" {
			m := e.ContextMap()
			out = append(out, fmt.Sprintf("%s %s %s %s", m["ingress"], m["name"], m["verdict"], m["reason"]))
		}
	}
	return strings.Join(out, "\n")
}

func (r *explicitRig) waitReason(t *testing.T, sub string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !strings.Contains(r.reasons(), sub) {
		if time.Now().After(deadline) {
			t.Fatalf("no flow line with %q; lines:\n%s", sub, r.reasons())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSOCKS5Curl(t *testing.T) {
	r := newExplicitRig(t, explicitSpec(), policy.Listener{})
	out, err := r.curl(t, "--socks5-hostname", r.proxy, "https://allowed.test:"+r.tlsPort+"/socks-ok")
	if err != nil || !strings.Contains(out, "hello allowed.test") {
		t.Fatalf("allowed name through SOCKS5: %v\n%s", err, out)
	}
	out, err = r.curl(t, "--socks5-hostname", r.proxy, "https://evil.test:"+r.tlsPort+"/socks-evil")
	if err == nil || !strings.Contains(out, "(2)") {
		t.Errorf("denied name through SOCKS5: want reply 2 (not allowed by ruleset), got %v\n%s", err, out)
	}
	if r.saw("/socks-evil") || r.saw("sni=evil.test") {
		t.Error("leak: the upstream heard from the denied request")
	}
	r.waitReason(t, "socks5 allowed.test allow allow-domain")
	r.waitReason(t, "socks5 evil.test deny no-match")
}

// socksDial connects through the rig's SOCKS5 listener to addr (a name
// is sent as a name, not resolved here).
func (r *explicitRig) socksDial(t *testing.T, addr string, auth *xproxy.Auth) (net.Conn, error) {
	t.Helper()
	d, err := xproxy.SOCKS5("tcp", r.proxy, auth, &net.Dialer{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return d.Dial("tcp", addr)
}

// tlsGet does a GET of path over c with TLS to sni, trusting the rig's CA.
func (r *explicitRig) tlsGet(c net.Conn, sni, path string) (string, error) {
	c.SetDeadline(time.Now().Add(3 * time.Second))
	tc := tls.Client(c, &tls.Config{ServerName: sni, RootCAs: r.ca})
	if err := tc.Handshake(); err != nil {
		return "", err
	}
	fmt.Fprintf(tc, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, sni)
	b, err := io.ReadAll(tc)
	return string(b), err
}

// A SOCKS5 request for an allowed name whose ClientHello names another
// host (served at the same address) is refused with a TLS alert.
func TestSOCKS5SpoofedSNI(t *testing.T) {
	r := newExplicitRig(t, explicitSpec(), policy.Listener{})
	c, err := r.socksDial(t, "allowed.test:"+r.tlsPort, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := r.tlsGet(c, "evil.test", "/fronted"); err == nil || !strings.Contains(err.Error(), "access denied") {
		t.Errorf("SNI evil.test through a SOCKS5 request for allowed.test: %v, want access denied", err)
	}
	if r.saw("sni=evil.test") || r.saw("/fronted") {
		t.Error("leak: the fronted request reached the upstream")
	}
	r.waitReason(t, "socks5 evil.test deny name-mismatch")
}

// An IP literal is judged as a raw destination: allow_cidrs pass raw; any
// other address needs a name that resolves to it.
func TestSOCKS5IPLiteral(t *testing.T) {
	r := newExplicitRig(t, explicitSpec(), policy.Listener{})
	c, err := r.socksDial(t, r.rawAddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintf(c, "raw-cidr\n")
	br := bufio.NewReader(c)
	if line, err := br.ReadString('\n'); err != nil || line != "ok raw-cidr\n" {
		t.Errorf("allow_cidrs address through SOCKS5: %q %v", line, err)
	}
	time.Sleep(1500 * time.Millisecond) // past the request phase's 1 s deadline: a relayed flow stays
	c.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintf(c, "raw-later\n")
	if line, err := br.ReadString('\n'); err != nil || line != "ok raw-later\n" {
		t.Errorf("a raw flow quiet for longer than the peek timeout was cut: %q %v", line, err)
	}
	c.Close()
	c, err = r.socksDial(t, "127.0.0.2:"+r.tlsPort, nil)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := r.tlsGet(c, "allowed.test", "/ip-named"); err != nil || !strings.Contains(out, "hello allowed.test") {
		t.Errorf("address of allowed.test with SNI allowed.test: %v\n%s", err, out)
	}
	c.Close()
	c, err = r.socksDial(t, "127.0.0.2:"+r.tlsPort, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.tlsGet(c, "evil.test", "/ip-evil"); err == nil {
		t.Error("address with a denied SNI passed")
	}
	c.Close()
	if r.saw("/ip-evil") || r.saw("sni=evil.test") {
		t.Error("leak: the upstream heard from the denied flow")
	}
}

func TestCONNECTCurl(t *testing.T) {
	r := newExplicitRig(t, explicitSpec(), policy.Listener{})
	out, err := r.curl(t, "-x", "http://"+r.proxy, "https://allowed.test:"+r.tlsPort+"/connect-ok")
	if err != nil || !strings.Contains(out, "hello allowed.test") {
		t.Fatalf("allowed name through CONNECT: %v\n%s", err, out)
	}
	out, err = r.curl(t, "-x", "http://"+r.proxy, "https://evil.test:"+r.tlsPort+"/connect-evil")
	if err == nil || !strings.Contains(out, "403") {
		t.Errorf("denied name through CONNECT: want 403, got %v\n%s", err, out)
	}
	out, _ = r.curl(t, "-v", "-x", "http://"+r.proxy, "https://evil.test:"+r.tlsPort+"/connect-evil")
	if !strings.Contains(out, "X-Egressd-Deny: no-match") {
		t.Errorf("the 403 does not carry the reason:\n%s", out)
	}
	if r.saw("/connect-evil") || r.saw("sni=evil.test") {
		t.Error("leak: the upstream heard from the denied request")
	}
	r.waitReason(t, "connect allowed.test allow allow-domain")
}

// A CONNECT for an allowed name whose ClientHello names another host is
// refused with a TLS alert (Go's net/http through the proxy).
func TestCONNECTSNIMismatch(t *testing.T) {
	r := newExplicitRig(t, explicitSpec(), policy.Listener{})
	proxyURL, _ := url.Parse("http://" + r.proxy)
	tr := &http.Transport{Proxy: http.ProxyURL(proxyURL),
		DialTLSContext:  nil,
		TLSClientConfig: &tls.Config{RootCAs: r.ca, ServerName: "evil.test"}}
	defer tr.CloseIdleConnections()
	_, err := (&http.Client{Transport: tr, Timeout: 3 * time.Second}).Get("https://allowed.test:" + r.tlsPort + "/mismatch")
	if err == nil || !strings.Contains(err.Error(), "access denied") {
		t.Errorf("SNI evil.test in a CONNECT tunnel to allowed.test: %v, want access denied", err)
	}
	if r.saw("sni=evil.test") || r.saw("/mismatch") {
		t.Error("leak: the fronted request reached the upstream")
	}
	r.waitReason(t, "connect evil.test deny name-mismatch")
}

// Go's net/http with ProxyFromEnvironment, HTTPS (CONNECT) and plain HTTP
// (absolute form).
func TestGoProxyFromEnvironment(t *testing.T) {
	r := newExplicitRig(t, explicitSpec(), policy.Listener{})
	t.Setenv("HTTPS_PROXY", "http://"+r.proxy)
	t.Setenv("HTTP_PROXY", "http://"+r.proxy)
	t.Setenv("NO_PROXY", "")
	tr := &http.Transport{Proxy: http.ProxyFromEnvironment, TLSClientConfig: &tls.Config{RootCAs: r.ca}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 3 * time.Second}
	for _, u := range []string{"https://allowed.test:" + r.tlsPort + "/env-tls", "http://allowed.test:" + r.httpPort + "/env-http"} {
		res, err := client.Get(u)
		if err != nil {
			t.Errorf("GET %s: %v", u, err)
			continue
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(string(body), "hello allowed.test") {
			t.Errorf("GET %s: %d %s", u, res.StatusCode, body)
		}
	}
	res, err := client.Get("http://evil.test:" + r.httpPort + "/env-evil")
	if err != nil || res.StatusCode != http.StatusForbidden || res.Header.Get("X-Egressd-Deny") != "no-match" {
		t.Errorf("plain HTTP to a denied name: %v %v", res, err)
	}
	if r.saw("/env-evil") {
		t.Error("leak: the denied request reached the upstream")
	}
}

// Absolute-form requests are gated one by one: a keep-alive request for
// another host on the same connection never reaches the upstream.
func TestAbsoluteFormHostSwitch(t *testing.T) {
	r := newExplicitRig(t, explicitSpec(), policy.Listener{})
	c, err := net.Dial("tcp4", r.proxy)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	hostA, hostB := "allowed.test:"+r.httpPort, "evil.test:"+r.httpPort
	fmt.Fprintf(c, "GET http://%s/first HTTP/1.1\r\nHost: %s\r\nProxy-Connection: keep-alive\r\n\r\n", hostA, hostA)
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("first request: %v %v", res, err)
	}
	io.Copy(io.Discard, res.Body)
	fmt.Fprintf(c, "GET http://%s/second HTTP/1.1\r\nHost: %s\r\n\r\n", hostB, hostB)
	if res, err := http.ReadResponse(br, nil); err == nil && res.StatusCode == 200 {
		t.Errorf("a keep-alive request for another host was answered: %v", res.Status)
	}
	time.Sleep(100 * time.Millisecond)
	if !r.saw("http host="+hostA+" /first") || r.saw("/second") {
		t.Errorf("upstream saw %q; want /first only", r.seen)
	}
}

// A policy change that denies a live CONNECT tunnel cuts it within 1 s.
func TestExplicitLockdownCutsTunnel(t *testing.T) {
	r := newExplicitRig(t, explicitSpec(), policy.Listener{})
	c, err := net.Dial("tcp4", r.proxy)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	target := "allowed.test:" + r.tlsPort
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", res, err)
	}
	tc := tls.Client(&bufferedConn{Conn: c, r: br}, &tls.Config{ServerName: "allowed.test", RootCAs: r.ca})
	fmt.Fprintf(tc, "GET /stream HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
	tr := bufio.NewReader(tc)
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := http.ReadResponse(tr, nil); err != nil {
		t.Fatalf("stream: %v", err)
	}
	tr.ReadString('\n') // "start"
	start := time.Now()
	r.srv.SetSandboxes(explicitSet(t, policy.Spec{Mode: policy.ModeDenyAll}, r.listenSpec))
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err = tr.ReadString('\n')
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the tunnel was not cut by the lock-down")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("tunnel cut after %v, want within 1 s", d)
	}
	r.waitReason(t, "connect allowed.test deny deny-all")
}

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// listen_auth: SOCKS5 username/password and HTTP Basic, checked against a
// bcrypt hash; the credentials never reach the upstream.
func TestListenAuth(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	l := policy.Listener{Network: "tcp", Address: "127.0.0.1:" + freePort(t, "127.0.0.1"), User: "agent",
		PassHash: string(hash), UID: -1, GID: -1}
	r := newExplicitRig(t, explicitSpec(), l)
	u := "https://allowed.test:" + r.tlsPort + "/auth"
	if out, err := r.curl(t, "--socks5-hostname", "agent:s3cret@"+r.proxy, u); err != nil {
		t.Errorf("SOCKS5 with the right password: %v\n%s", err, out)
	}
	if out, err := r.curl(t, "--socks5-hostname", "agent:wrong@"+r.proxy, u+"-wrong"); err == nil {
		t.Errorf("SOCKS5 with a wrong password passed:\n%s", out)
	}
	if out, err := r.curl(t, "--socks5-hostname", r.proxy, u+"-none"); err == nil {
		t.Errorf("SOCKS5 without credentials passed:\n%s", out)
	}
	if out, _ := r.curl(t, "-v", "-x", "http://"+r.proxy, u+"-none"); !strings.Contains(out, "407") {
		t.Errorf("CONNECT without credentials: want 407:\n%s", out)
	}
	if out, err := r.curl(t, "-x", "http://agent:s3cret@"+r.proxy, u); err != nil {
		t.Errorf("CONNECT with the right password: %v\n%s", err, out)
	}
	if out, err := r.curl(t, "-x", "http://agent:s3cret@"+r.proxy, "http://allowed.test:"+r.httpPort+"/auth-plain"); err != nil ||
		!strings.Contains(out, "hello") {
		t.Errorf("plain HTTP with the right password: %v\n%s", err, out)
	}
	if r.saw("-wrong") || r.saw("-none") || r.saw("leaked Proxy-Authorization") {
		t.Errorf("upstream saw %q", r.seen)
	}
	r.waitReason(t, "deny auth")
}

// A unix socket listener gets its mode, and serves CONNECT.
func TestUnixListener(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.sock")
	r := newExplicitRig(t, explicitSpec(), policy.Listener{Network: "unix", Address: path, Mode: 0o660, UID: -1, GID: -1})
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o660 || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("socket file: %v %v", fi, err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	target := "allowed.test:" + r.tlsPort
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("CONNECT over the unix socket: %v %v", res, err)
	}
	if out, err := r.tlsGet(&bufferedConn{Conn: c, r: br}, "allowed.test", "/unix"); err != nil || !strings.Contains(out, "hello") {
		t.Errorf("GET through the unix socket: %v\n%s", err, out)
	}
}

// bigBody is 8 MiB of pseudo-random bytes: past the relay's switch to
// splice(2) in both directions' worth of buffering.
var bigBody = sync.OnceValue(func() []byte {
	b := make([]byte, 8<<20)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
})

// Bulk bytes arrive intact through SOCKS5 and CONNECT, both directions.
func TestExplicitBulkIntact(t *testing.T) {
	r := newExplicitRig(t, explicitSpec(), policy.Listener{})
	want := sha256.Sum256(bigBody())
	proxyURL, _ := url.Parse("http://" + r.proxy)
	socksURL, _ := url.Parse("socks5h://" + r.proxy)
	for _, pu := range []*url.URL{proxyURL, socksURL} {
		tr := &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{RootCAs: r.ca}}
		res, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://allowed.test:" + r.tlsPort + "/big")
		if err != nil {
			t.Fatalf("%s: %v", pu.Scheme, err)
		}
		h := sha256.New()
		io.Copy(h, res.Body)
		res.Body.Close()
		tr.CloseIdleConnections()
		if !bytes.Equal(h.Sum(nil), want[:]) {
			t.Errorf("%s: the body arrived changed", pu.Scheme)
		}
	}
}

// BIND and UDP ASSOCIATE are refused with "command not supported".
func TestSOCKS5CommandsRefused(t *testing.T) {
	r := newExplicitRig(t, explicitSpec(), policy.Listener{})
	for _, cmd := range []byte{2, 3} {
		c, err := net.Dial("tcp4", r.proxy)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(2 * time.Second))
		c.Write([]byte{5, 1, 0})
		reply := make([]byte, 2)
		io.ReadFull(c, reply)
		c.Write([]byte{5, cmd, 0, 1, 127, 0, 0, 5, 0, 80})
		rep := make([]byte, 10)
		if _, err := io.ReadFull(c, rep); err != nil || rep[1] != 7 {
			t.Errorf("command %d: reply %v %v, want code 7", cmd, rep, err)
		}
		c.Close()
	}
	r.waitReason(t, "deny unsupported")
}

// connectTunnel opens a CONNECT tunnel to target through the rig.
func (r *explicitRig) connectTunnel(t *testing.T, target string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp4", r.proxy)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	if res, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect}); err != nil || res.StatusCode != 200 {
		t.Fatalf("CONNECT %s: %v %v", target, res, err)
	}
	return c, br
}

// Bytes that come late, or an HTTP request the gate does not take, are
// never relayed unchecked to the requested name's address, where another
// name may be served (found by review: both reached evil.test).
func TestExplicitNoUncheckedFronting(t *testing.T) {
	r := newExplicitRig(t, explicitSpec(), policy.Listener{})
	// A ClientHello for evil.test after the peek timeout (1 s here).
	c, br := r.connectTunnel(t, "allowed.test:"+r.tlsPort)
	time.Sleep(1200 * time.Millisecond)
	if _, err := r.tlsGet(&bufferedConn{Conn: c, r: br}, "evil.test", "/late-hello"); err == nil {
		t.Error("a late ClientHello for evil.test got through")
	}
	// A partial TLS record, a pause, then the rest.
	c, br = r.connectTunnel(t, "allowed.test:"+r.tlsPort)
	c.Write([]byte{0x16})
	time.Sleep(1200 * time.Millisecond)
	if _, err := r.tlsGet(&bufferedConn{Conn: c, r: br}, "evil.test", "/partial-hello"); err == nil {
		t.Error("a ClientHello split around the peek timeout got through")
	}
	// HTTP/1.2, which the gate does not parse but a lenient server does.
	for _, req := range []string{"GET /v12 HTTP/1.2\r\nHost: evil.test\r\n\r\n", "GET  /spaces HTTP/1.1\r\nHost: evil.test\r\n\r\n"} {
		c, br = r.connectTunnel(t, "allowed.test:"+r.httpPort)
		io.WriteString(c, req)
		if res, err := http.ReadResponse(br, nil); err == nil && res.StatusCode == 200 {
			t.Errorf("%q through a tunnel to allowed.test was answered", req)
		}
	}
	time.Sleep(100 * time.Millisecond)
	for _, leak := range []string{"sni=evil.test", "host=evil.test", "/late-hello", "/partial-hello", "/v12", "/spaces"} {
		if r.saw(leak) {
			t.Errorf("leak: the upstream saw %q", leak)
		}
	}
	// A protocol that is plainly neither is still relayed to the name.
	c, br = r.connectTunnel(t, r.rawAddr)
	fmt.Fprintf(c, "SSH-2.0-test\n")
	if line, err := br.ReadString('\n'); err != nil || line != "ok SSH-2.0-test\n" {
		t.Errorf("SSH-like line through an allowed address: %q %v", line, err)
	}
}

// servePostgres is a fake Postgres server on 127.0.0.2: it answers an
// SSLRequest with answer and then, after 'S', speaks TLS and echoes one
// line; it records what it received.
func (r *explicitRig) servePostgres(t *testing.T, answer byte) string {
	t.Helper()
	cert, _, err := testcert.New("pg", []string{"allowed.test", "evil.test"})
	if err != nil {
		t.Fatal(err)
	}
	// A certificate of its own: the client skips verification and the
	// test judges by what the server recorded.
	addr := serveConns(t, "127.0.0.2", func(c net.Conn) {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		req := make([]byte, 8)
		if _, err := io.ReadFull(c, req); err != nil {
			return
		}
		r.record("pg opening %x", req)
		c.Write([]byte{answer})
		if answer != 'S' {
			return
		}
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		line, err := bufio.NewReader(tc).ReadString('\n')
		if err == nil {
			r.record("pg tls sni=%s line=%s", tc.ConnectionState().ServerName, strings.TrimSpace(line))
			io.WriteString(tc, "pong\n")
		}
	})
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// pgClient opens a tunnel to allowed.test:port, sends the openings and
// then, if the last answer was 'S', does TLS with sni and a ping.
func (r *explicitRig) pgClient(t *testing.T, port, sni string, openings ...[]byte) (answers string, err error) {
	t.Helper()
	c, br := r.connectTunnel(t, "allowed.test:"+port)
	for _, o := range openings {
		c.Write(o)
		b, err := br.ReadByte()
		if err != nil {
			return answers, err
		}
		answers += string(b)
	}
	if !strings.HasSuffix(answers, "S") {
		return answers, nil
	}
	tc := tls.Client(&bufferedConn{Conn: c, r: br}, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
	io.WriteString(tc, "ping\n")
	line, err := bufio.NewReader(tc).ReadString('\n')
	if err == nil && line != "pong\n" {
		err = fmt.Errorf("answer %q", line)
	}
	return answers, err
}

// Postgres STARTTLS through the explicit proxy: egressd answers the
// client's SSLRequest, judges the SNI against the requested name, and
// sends its own SSLRequest upstream.
func TestPostgresThroughCONNECT(t *testing.T) {
	r := newExplicitRig(t, explicitSpec(), policy.Listener{})
	port := r.servePostgres(t, 'S')
	if a, err := r.pgClient(t, port, "allowed.test", pgSSLRequest); err != nil || a != "S" {
		t.Errorf("SSLRequest and TLS to allowed.test: %q %v", a, err)
	}
	if a, err := r.pgClient(t, port, "allowed.test", pgGSSENCRequest, pgSSLRequest); err != nil || a != "NS" {
		t.Errorf("GSSENCRequest then SSLRequest: answers %q %v, want NS", a, err)
	}
	if _, err := r.pgClient(t, port, "evil.test", pgSSLRequest); err == nil || !strings.Contains(err.Error(), "access denied") {
		t.Errorf("SNI evil.test after the SSLRequest: %v, want access denied", err)
	}
	if !r.saw("pg tls sni=allowed.test line=ping") || r.saw("sni=evil.test") {
		t.Errorf("server saw %q", r.seen)
	}
	noTLS := r.servePostgres(t, 'N')
	if _, err := r.pgClient(t, noTLS, "allowed.test", pgSSLRequest); err == nil || !strings.Contains(err.Error(), "handshake failure") {
		t.Errorf("a server that answers N: %v, want a handshake failure alert", err)
	}
	r.waitReason(t, "connect allowed.test deny dial-failed")
}
