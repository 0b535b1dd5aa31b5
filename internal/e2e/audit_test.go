package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/internal/netnstest"
)

// TestEveryDecisionLogged: a burst of allowed and denied flows and of
// refused DNS queries, far past zap's default sampling (100 a second per
// message), gets one line per decision from the real binary.
func TestEveryDecisionLogged(t *testing.T) {
	e := newEnv(t, defaultSandbox)
	const n = 300
	var wg sync.WaitGroup
	// Each in a Do of its own: a goroutine started inside Do runs on
	// another thread, outside the sandbox's namespace.
	burst := func(f func(i int)) {
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				netnstest.Do(e.tp.Sandbox, func() error { f(i); return nil })
			}()
		}
	}
	burst(func(int) { // allowed raw: allow_cidrs
		if c, err := net.DialTimeout("tcp", "198.51.100.77:9000", 3*time.Second); err == nil {
			c.Close()
		}
	})
	burst(func(int) { // denied: deny_cidrs
		if c, err := net.DialTimeout("tcp", "198.51.100.130:9000", 3*time.Second); err == nil {
			c.Close()
		}
	})
	burst(func(i int) { // refused: not in allow_domains
		m := new(dns.Msg).SetQuestion(dns.Fqdn("q"+strings.Repeat("x", i%7)+".evil.test"), dns.TypeA)
		(&dns.Client{Timeout: 2 * time.Second}).Exchange(m, "198.51.100.53:53")
	})
	wg.Wait()
	count := func(subs ...string) int {
		k := 0
		for _, l := range strings.Split(e.logs.String(), "\n") {
			all := true
			for _, s := range subs {
				all = all && strings.Contains(l, s)
			}
			if all {
				k++
			}
		}
		return k
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		allowed := count(`"msg":"flow"`, `"dst":"198.51.100.77:9000"`, `"verdict":"allow"`)
		denied := count(`"msg":"flow"`, `"dst":"198.51.100.130:9000"`, `"verdict":"deny"`)
		refused := count(`"msg":"dns query refused"`, `.evil.test.`)
		if allowed == n && denied == n && refused == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("lines: %d of %d allowed flows, %d of %d denied flows, %d of %d refused queries",
				allowed, n, denied, n, refused, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDenialReasons: each way a flow is refused carries its own reason,
// in its log line, in egressd_proxy_denials_total and in the sandbox's
// egressd_sandbox_flows_total.
func TestDenialReasons(t *testing.T) {
	e := newIdleEnv(t, defaultSandbox)
	e.proxy = "max_conns_per_sandbox = 3"
	e.writeConfig(defaultSandbox)
	e.start()
	raw := func(payload string) {
		netnstest.Do(e.tp.Sandbox, func() error {
			c, err := net.DialTimeout("tcp", "198.51.100.10:80", 2*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(3 * time.Second))
			c.Write([]byte(payload))
			buf := make([]byte, 4096)
			for {
				if _, err := c.Read(buf); err != nil {
					return nil
				}
			}
		})
	}
	raw("CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n")
	raw("GET / HTTP/1.1\r\nHost: allowed.test\r\nHost: evil.test\r\n\r\n")
	raw("GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\nGET / HTTP/1.1\r\nHost: sub.allowed.test\r\n\r\n")
	raw("\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00") // a ClientHello that is not one
	// An allowed name whose server does not listen on the port.
	e.curl("--resolve", "allowed.test:8443:198.51.100.10", "https://allowed.test:8443/")
	// Three silent connections hold the sandbox's limit; a fourth is refused.
	var held []net.Conn
	for range 3 {
		held = append(held, e.dialSandbox(t, "198.51.100.10:443"))
	}
	raw("GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
	for _, c := range held {
		c.Close()
	}
	want := []string{"unsafe-http", "malformed", "host-changed", "dial-failed", "conn-limit"}
	deadline := time.Now().Add(5 * time.Second)
	for {
		missing := []string{}
		metrics, _ := e.tp.Exec(e.tp.Firewall, "curl", "-sS", "--max-time", "2", "http://127.0.0.1:9464/metrics")
		for _, r := range want {
			if !strings.Contains(e.logs.String(), `"reason":"`+r+`"`) ||
				!strings.Contains(string(metrics), `egressd_proxy_denials_total{reason="`+r+`"}`) ||
				!strings.Contains(string(metrics), `egressd_sandbox_flows_total{ingress="tproxy",reason="`+r+`",sandbox="sb1",verdict="deny"}`) {
				missing = append(missing, r)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("reasons missing from the log or /metrics: %q", missing)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if strings.Contains(e.logs.String(), `"reason":"no-match","rule":""`) &&
		strings.Contains(e.logs.String(), "max_conns_per_sandbox reached") {
		t.Errorf("a connection-limit refusal still logged as no-match")
	}
}

// TestKernelDenialsVisible: what the kernel denies (UDP elsewhere, UDP to
// deny_cidrs) is counted per sandbox and reason in /metrics and gets a
// log line, one per minute and kind at most.
func TestKernelDenialsVisible(t *testing.T) {
	e := newEnv(t, defaultSandbox)
	for i := range 20 {
		e.udpProbe(e.tp.Sandbox, "203.0.113.5:9001", e.in.rec, fmt.Sprintf("kd-%d", i)).send()
		e.udpProbe(e.tp.Sandbox, "198.51.100.130:9001", e.in.rec, fmt.Sprintf("kd-deny-%d", i)).send()
	}
	want := []string{
		`egressd_kernel_denials_total{reason="mode custom: not allowed",sandbox="sb1"} 20`,
		`egressd_kernel_denials_total{reason="deny_cidrs",sandbox="sb1"} 20`,
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		metrics, _ := e.tp.Exec(e.tp.Firewall, "curl", "-sS", "--max-time", "2", "http://127.0.0.1:9464/metrics")
		logged := strings.Count(e.logs.String(), `"msg":"kernel denied"`)
		ok := logged == 2
		for _, w := range want {
			ok = ok && strings.Contains(string(metrics), w)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kernel denials: %d log lines (want 2), metrics:\n%s", logged, grepLines(string(metrics), "egressd_kernel"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	e.noEvents("kd-")
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestEventStream: GET /v1/events streams proxy, DNS and kernel denials as
// they happen, and `egressd events` prints them one readable line each.
func TestEventStream(t *testing.T) {
	e := newEnv(t, defaultSandbox)
	sock := filepath.Join(e.dir, "admin.sock")
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	res, err := client.Get("http://egressd/v1/events?sandbox=sb1")
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/events: %v %v", res, err)
	}
	defer res.Body.Close()
	var mu sync.Mutex
	var got []string
	go func() {
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			mu.Lock()
			got = append(got, sc.Text())
			mu.Unlock()
		}
	}()
	cli := e.tp.Command(e.tp.Firewall, bin, "events", "-socket", sock, "-sandbox", "sb1")
	cliOut := &syncBuffer{}
	cli.Stdout = cliOut
	if err := cli.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cli.Process.Kill(); cli.Wait() }()
	time.Sleep(300 * time.Millisecond) // both readers subscribed
	e.curl("--resolve", "evil.test:443:198.51.100.10", "https://evil.test/ev")
	e.sandbox("dig", "+tries=1", "+time=2", "@198.51.100.53", "ev.evil.test")
	e.udpProbe(e.tp.Sandbox, "203.0.113.5:9001", e.in.rec, "ev-udp").send()
	want := []string{`"msg":"flow"`, `"msg":"dns query refused"`, `"msg":"kernel denied"`}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		all := strings.Join(got, "\n")
		mu.Unlock()
		missing := []string{}
		for _, w := range want {
			if !strings.Contains(all, w) {
				missing = append(missing, w)
			}
		}
		if len(missing) == 0 && strings.Contains(cliOut.String(), "sb1 deny no-match evil.test") &&
			strings.Contains(cliOut.String(), "dns ev.evil.test.") && strings.Contains(cliOut.String(), "kernel") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events missing %q; stream:\n%s\negressd events printed:\n%s", missing, all, cliOut.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(strings.Join(got, "\n"), `"sandbox":"sb1"`) {
		t.Errorf("events lack the sandbox field")
	}
}
