package e2e

import (
	"net"
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
