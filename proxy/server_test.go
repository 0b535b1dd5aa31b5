package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/policy"
)

// These tests drive the proxy core over loopback without the kernel: the
// client connects straight to the proxy's listener, so the "original
// destination" is the listener's own address 127.0.0.1:P. Names resolve
// (through a static resolver) to 127.0.0.2, where the upstream servers
// listen on the same port P. The real-kernel path is in internal/e2e.

type staticResolver map[string][]netip.Addr

func (r staticResolver) LookupAddrs(_ context.Context, name string) ([]netip.Addr, error) {
	if a, ok := r[name]; ok {
		return a, nil
	}
	return nil, errors.New("no such name")
}

type rig struct {
	srv   *Server
	addr  string // proxy listener = "original destination"
	port  string
	stop  context.CancelFunc
	done  chan error
	certs *tls.Config // client config trusting the upstream
}

func newRig(t *testing.T, spec policy.Spec) *rig {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	srv := NewServer(Options{
		PeekTimeout: time.Second, DialTimeout: time.Second, ShutdownTimeout: time.Second,
		MaxConnsPerSandbox: 8,
		Resolver: staticResolver{
			"allowed.test":   {netip.MustParseAddr("127.0.0.2")},
			"nowhere.test":   {netip.MustParseAddr("127.0.0.3")},
			"denied-ip.test": {netip.MustParseAddr("127.0.0.4")},
		},
	}, sandboxSet(t, spec))
	srv.lns = []*net.TCPListener{ln.(*net.TCPListener)}
	ctx, cancel := context.WithCancel(context.Background())
	r := &rig{srv: srv, addr: ln.Addr().String(), port: port, stop: cancel, done: make(chan error, 1)}
	go func() { r.done <- srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-r.done })
	waitAcceptLoop(t)
	return r
}

// waitAcceptLoop waits until Serve's accept goroutine runs, so that goroutine
// counts taken after newRig include it.
func waitAcceptLoop(t *testing.T) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(time.Millisecond) {
		if n := runtime.Stack(buf, true); bytes.Contains(buf[:n], []byte("proxy.(*Server).acceptLoop")) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("accept loop not started")
		}
	}
}

func sandboxSet(t *testing.T, spec policy.Spec) *policy.Set {
	t.Helper()
	p, err := policy.Compile(spec)
	if err != nil {
		t.Fatal(err)
	}
	set, err := policy.NewSet([]policy.Sandbox{{
		Name: "sb1", Interface: "lo", Sources: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, Policy: p,
	}}, policy.Guard{})
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// upstream starts an HTTPS or HTTP server on 127.0.0.2:port.
func upstream(t *testing.T, port string, useTLS bool) *httptest.Server {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.2:"+port)
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			fmt.Fprintln(w, "start")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		}
		fmt.Fprintf(w, "hello %s", r.Host)
	}))
	s.Listener.Close()
	s.Listener = ln
	if useTLS {
		s.StartTLS()
	} else {
		s.Start()
	}
	t.Cleanup(s.Close)
	return s
}

func customSpec() policy.Spec {
	return policy.Spec{Mode: policy.ModeCustom, AllowDomains: []string{"allowed.test", "denied-ip.test"}, DenyCIDRs: []string{"127.0.0.4/32"}}
}

func TestTLSFlowAllowedAndDenied(t *testing.T) {
	r := newRig(t, customSpec())
	up := upstream(t, r.port, true)
	before := runtime.NumGoroutine()
	for _, tc := range []struct {
		sni  string
		want bool
	}{{"allowed.test", true}, {"evil.test", false}, {"denied-ip.test", false}, {"", false}} {
		t.Run("sni="+tc.sni, func(t *testing.T) {
			tr := &http.Transport{TLSClientConfig: up.Client().Transport.(*http.Transport).TLSClientConfig.Clone(),
				DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					return (&net.Dialer{}).DialContext(ctx, "tcp", r.addr)
				}}
			tr.TLSClientConfig.ServerName = tc.sni
			if tc.sni == "" {
				tr.TLSClientConfig.ServerName = "127.0.0.1" // an IP: Go sends no SNI
			}
			tr.TLSClientConfig.InsecureSkipVerify = true // the proxy is under test, not the certificate
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr, Timeout: 3 * time.Second}).Get("https://allowed.test/")
			if !tc.want {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("sni %q: request succeeded", tc.sni)
				}
				return
			}
			if err != nil {
				t.Fatalf("sni %q: %v", tc.sni, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != "hello allowed.test" {
				t.Fatalf("body %q", body)
			}
		})
	}
	waitGoroutines(t, before)
}

func TestHTTPKeepAliveSecondHostEndsConnection(t *testing.T) {
	r := newRig(t, customSpec())
	upstream(t, r.port, false)
	c, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "hello allowed.test" {
		t.Fatalf("first response %q", body)
	}
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if rest, _ := io.ReadAll(br); strings.Contains(string(rest), "hello") {
		t.Fatalf("second request answered: %q", rest)
	}
}

func TestDeniedHTTPGets403(t *testing.T) {
	r := newRig(t, customSpec())
	c, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 403 || !strings.Contains(string(body), "evil.test") {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
}

func TestConnLimit(t *testing.T) {
	r := newRig(t, customSpec())
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 8 { // silent connections fill the sandbox's quota
		c, err := net.Dial("tcp", r.addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	waitFor(t, func() bool { return len(r.srv.Flows()) == 8 })
	c, err := net.Dial("tcp", r.addr)
	if err != nil {
		return // reset before connect returned: refused
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err = c.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("9th connection not refused: %v", err)
	}
}

func TestPolicyChangeCutsLiveFlow(t *testing.T) {
	r := newRig(t, policy.Spec{Mode: policy.ModeAllowAll})
	upstream(t, r.port, false)
	// allow-all: the flow goes to the original destination (the proxy's
	// own address), so aim a name-based custom flow instead.
	r.srv.SetSandboxes(sandboxSet(t, customSpec()))
	c, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	fmt.Fprintf(c, "GET /stream HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
	if _, err := http.ReadResponse(br, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return len(r.srv.Flows()) == 1 && r.srv.Flows()[0].Name == "allowed.test" })
	// Unrelated change: the flow stays.
	r.srv.SetSandboxes(sandboxSet(t, policy.Spec{Mode: policy.ModeCustom, AllowDomains: []string{"allowed.test", "other.test"}}))
	if len(r.srv.Flows()) != 1 {
		t.Fatal("flow cut by a change that still allows it")
	}
	start := time.Now()
	r.srv.SetSandboxes(sandboxSet(t, policy.Spec{Mode: policy.ModeDenyAll}))
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err = io.ReadAll(br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("flow still open 2 s after lock-down")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("flow closed after %v, want < 1s", d)
	}
	// It ends once, under the verdict that cut it.
	waitFor(t, func() bool { return len(r.srv.Flows()) == 0 })
	if st := r.srv.Stats(); st.Cut != 1 || st.Denied != 1 || st.Allowed != 0 {
		t.Errorf("stats %+v, want one flow cut and counted denied", st)
	}
}

// TestAdmitAfterPolicyChange: a flow judged with one set while a policy
// change swaps in another (during its lookup or dial) meets the new one.
func TestAdmitAfterPolicyChange(t *testing.T) {
	old := sandboxSet(t, customSpec())
	s := NewServer(Options{}, old)
	f := &flow{sandbox: "sb1", src: netip.MustParseAddrPort("127.0.0.1:40000"), dst: netip.MustParseAddrPort("127.0.0.2:443")}
	d := policy.Decision{Verdict: policy.Allow, Reason: policy.ReasonAllowDomain, Name: "allowed.test"}
	if _, ok := s.admit(old, f, "allowed.test", d, f.dst); !ok {
		t.Fatal("refused under the set it was judged with")
	}
	s.sandboxes.Store(sandboxSet(t, policy.Spec{Mode: policy.ModeCustom, AllowDomains: []string{"other.test"}}))
	if got, ok := s.admit(old, f, "allowed.test", d, f.dst); ok {
		t.Fatalf("admitted after a change that denies it: %v", got)
	}
}

// TestRegistryClosed: once draining starts, no flow registers, so the
// drain waits for every flow there is.
func TestRegistryClosed(t *testing.T) {
	r := newRegistry()
	r.close()
	if err := r.add(&flow{sandbox: "sb1"}, 10); !errors.Is(err, errShuttingDown) {
		t.Fatalf("add after close: %v", err)
	}
	if !r.wait(time.Second) {
		t.Fatal("wait blocked with no flows")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 3s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitGoroutines fails if the goroutine count does not return to base:
// every flow's goroutines must end with the flow.
func waitGoroutines(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("goroutines: %d, want ≤ %d\n%s", runtime.NumGoroutine(), base, buf[:n])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
