package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/netnstest"
)

// TestDenialsAreFast: each kind of denial reaches the client from inside
// the sandbox at once, with the reason where the protocol can carry it:
// a TLS alert, a 403 with X-Egressd-Deny, a reset, ICMP administratively
// prohibited, DNS REFUSED. Command-line clients are timed with their own
// start-up (bounded at 1 s, logged); Go's clients in-process (< 100 ms).
func TestDenialsAreFast(t *testing.T) {
	e := newEnv(t, defaultSandbox)
	type cli struct {
		name string
		args []string
		want string // in the output
	}
	for _, c := range []cli{
		{"curl TLS", []string{"sh", "-c", "curl -sS --max-time 5 --cacert " + e.in.caFile +
			" --resolve evil.test:443:198.51.100.10 https://evil.test/ 2>&1"}, "alert access denied"},
		{"openssl s_client", []string{"sh", "-c", "openssl s_client -connect 198.51.100.10:443 -servername evil.test </dev/null 2>&1"},
			"alert access denied"},
		{"curl HTTP", []string{"curl", "-sS", "-i", "--max-time", "5", "--resolve", "evil.test:80:198.51.100.10", "http://evil.test/"},
			"X-Egressd-Deny: no-match"},
		{"nc TCP to deny_cidrs", []string{"sh", "-c", "echo x | nc -w 5 198.51.100.130 9000 2>&1; echo rc=$?"}, "rc="},
		{"nc TCP, a Postgres plain-text startup (no name)", []string{"sh", "-c", "printf '\\000\\000\\000\\010\\000\\003\\000\\000' | nc -w 5 198.51.100.10 5432; echo rc=$?"}, "rc="},
		{"ping", []string{"ping", "-c", "1", "-W", "5", "203.0.113.5"}, "Packet filtered"},
		{"dig", []string{"dig", "+tries=1", "+time=5", "@198.51.100.53", "evil.test"}, "status: REFUSED"},
	} {
		start := time.Now()
		out, _ := e.sandbox(c.args...)
		took := time.Since(start)
		t.Logf("%-22s %6.1f ms  %s", c.name, float64(took.Microseconds())/1000, firstLine(out, c.want))
		if !strings.Contains(out, c.want) {
			t.Errorf("%s: output lacks %q:\n%s", c.name, c.want, out)
		}
		if took > time.Second {
			t.Errorf("%s: the denial took %v", c.name, took)
		}
	}
	goClients := map[string]func() error{
		"Go net/http TLS": func() error {
			pool := x509.NewCertPool()
			pem, _ := os.ReadFile(e.in.caFile)
			pool.AppendCertsFromPEM(pem)
			// Dialled here, in the sandbox's namespace: the transport's
			// own dial would run on another thread, outside it.
			conn, err := net.DialTimeout("tcp", "198.51.100.10:443", 2*time.Second)
			if err != nil {
				return err
			}
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool},
				DialContext: func(context.Context, string, string) (net.Conn, error) {
					if c := conn; c != nil {
						conn = nil
						return c, nil
					}
					return nil, errors.New("one connection only")
				}}
			_, err = (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://evil.test/")
			return err
		},
		"Go UDP": func() error {
			c, err := net.Dial("udp", "203.0.113.5:9001")
			if err != nil {
				return err
			}
			defer c.Close()
			c.Write([]byte("x"))
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = c.Read(make([]byte, 1))
			return err
		},
	}
	wants := map[string]string{"Go net/http TLS": "access denied", "Go UDP": "no route to host"}
	for name, f := range goClients {
		var err error
		var took time.Duration
		netnstest.Do(e.tp.Sandbox, func() error {
			start := time.Now()
			err = f()
			took = time.Since(start)
			return nil
		})
		t.Logf("%-22s %6.1f ms  %v", name, float64(took.Microseconds())/1000, err)
		if err == nil || !strings.Contains(err.Error(), wants[name]) {
			t.Errorf("%s: error %v, want one with %q", name, err, wants[name])
		}
		if took > 100*time.Millisecond {
			t.Errorf("%s: the denial took %v, want < 100 ms", name, took)
		}
	}
}

// firstLine returns the first line of out holding sub, or out's first.
func firstLine(out, sub string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, l := range lines {
		if strings.Contains(l, sub) {
			return strings.TrimSpace(l)
		}
	}
	return strings.TrimSpace(lines[0])
}
