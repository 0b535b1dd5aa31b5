package proxy

import (
	"crypto/tls"
	"io"
	"net"
	"runtime"
	"testing"
	"time"
)

// flowAllocBudget is what the proxy may allocate for one allowed TLS flow,
// from accept through peek, decision, pin and dial to the end of its relay
// (the log line aside: the rig logs nothing). Measured at 46; the budget
// leaves room for the runtime's own noise, not for a new allocation per
// flow on the hot path.
const flowAllocBudget = 50

// TestFlowAllocs keeps the accept → peek → decide → dial path's
// allocations within flowAllocBudget: the mallocs of flows through the
// proxy less those of the same client and upstream talking directly.
func TestFlowAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	r := newRig(t, customSpec())
	ln, err := net.Listen("tcp4", "127.0.0.2:"+r.port)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // the upstream: the hello in, PONG out, close
		buf := make([]byte, 4096)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Read(buf)
			c.Write([]byte("PONG"))
			c.Close()
		}
	}()
	hello := recordHello(t, &tls.Config{ServerName: "allowed.test"})
	once := func(addr string) {
		c, err := net.Dial("tcp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write(hello)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if b, err := io.ReadAll(c); err != nil || string(b) != "PONG" {
			t.Fatalf("via %s: got %q, %v", addr, b, err)
		}
	}
	const n = 200
	perFlow := func(addr string) float64 {
		once(addr) // warm-up: pools, maps, the pumps' first events
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range n {
			once(addr)
		}
		waitFor(t, func() bool { return len(r.srv.Flows()) == 0 })
		runtime.ReadMemStats(&after)
		return float64(after.Mallocs-before.Mallocs) / n
	}
	direct := perFlow(ln.Addr().String())
	proxied := perFlow(r.addr)
	got := proxied - direct
	t.Logf("allocations per flow: %.1f through the proxy, %.1f direct: %.1f the proxy's", proxied, direct, got)
	if got > flowAllocBudget {
		t.Errorf("the proxy allocates %.1f times per flow, budget %d", got, flowAllocBudget)
	}
}
