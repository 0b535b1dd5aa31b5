package proxy

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/egressd/egressd/policy"
)

// flow is one intercepted TCP connection, from accept to close.
type flow struct {
	sandbox  string
	src, dst netip.AddrPort // dst is the destination the sandbox asked for
	start    time.Time
	client   conn
	ingress  Ingress       // how the flow reached egressd
	want     string        // explicit proxy: the name the client asked for (SOCKS5 domain, CONNECT host); "" if none
	pre      []byte        // explicit proxy: client bytes read past the proxy request, to be peeked first
	done     chan struct{} // explicit proxy: closed when the flow ends
	postgres bool          // opened with a Postgres SSLRequest: the upstream gets one too
	up, down atomic.Int64  // bytes sandbox→upstream and upstream→sandbox

	mu       sync.Mutex
	name     string          // SNI or Host the flow was admitted on, if any
	decision policy.Decision // what admitted (or refused) the flow
	upstream netip.AddrPort  // the address actually dialled
	remote   *net.TCPConn
	pumped   *pumped          // its relay, while a pump moves its bytes
	admitted bool             // decided; name and decision are final
	killed   bool             // closed by kill; no remote may be set
	cutBy    *policy.Decision // the policy change that cut the flow, if any
	idle     bool             // closed by the idle sweep

	// The idle sweep's own, touched by no one else: the bytes the flow had
	// carried at the last sweep, and since when that count has not moved.
	sweptBytes int64
	quietSince time.Time
}

// Ingress is how a flow reached egressd: its label in logs and metrics.
type Ingress string

// The ingresses.
const (
	IngressTProxy  Ingress = "tproxy"  // diverted by the kernel rules
	IngressSOCKS5  Ingress = "socks5"  // an explicit proxy listener, SOCKS5
	IngressConnect Ingress = "connect" // an explicit proxy listener, HTTP CONNECT or absolute-form HTTP
)

// resetClose closes c, with a TCP reset when it is TCP: bytes still in
// its buffers are dropped.
func resetClose(c conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// FlowInfo is a snapshot of a live flow.
type FlowInfo struct {
	Sandbox   string
	Src, Dst  netip.AddrPort
	Upstream  netip.AddrPort
	Name      string
	Rule      string
	BytesUp   int64
	BytesDown int64
	Age       time.Duration
}

func (f *flow) setRemote(c *net.TCPConn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.killed {
		return false
	}
	f.remote = c
	return true
}

// admit records what admitted f and the address it will dial, before the
// dial: a policy change from here on judges the flow with both.
func (f *flow) admit(name string, d policy.Decision, upstream netip.AddrPort) {
	f.mu.Lock()
	f.name, f.decision, f.upstream, f.admitted = name, d, upstream, true
	f.mu.Unlock()
}

// setPumped records that pf relays f, unless f was killed already.
func (f *flow) setPumped(pf *pumped) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.killed {
		return false
	}
	f.pumped = pf
	return true
}

// kill resets both sides (SO_LINGER 0: what sits in the send buffers is
// dropped, not delivered); a blocked copy, peek or dial returns at once,
// and the directions a pump relays end.
func (f *flow) kill() {
	f.mu.Lock()
	f.killed = true
	remote, pf := f.remote, f.pumped
	f.mu.Unlock()
	resetClose(f.client)
	if remote != nil {
		remote.SetLinger(0)
		remote.Close()
	}
	if pf != nil {
		pf.endAll()
	}
}

// cut kills f because a policy change denies it with d; the flow's one
// log line then carries d.
func (f *flow) cut(d policy.Decision) {
	f.mu.Lock()
	f.cutBy = &d
	f.mu.Unlock()
	f.kill()
}

// closeIdle kills f because it carried nothing for proxy.idle_timeout.
func (f *flow) closeIdle() {
	f.mu.Lock()
	f.idle = true
	f.mu.Unlock()
	f.kill()
}

// ending returns the decision f ends with, d or the policy change's that
// cut it, and why it was closed early, if it was.
func (f *flow) ending(d policy.Decision) (policy.Decision, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.cutBy != nil:
		return *f.cutBy, errCut
	case f.idle:
		return d, errIdle
	}
	return d, nil
}

func (f *flow) info(now time.Time) FlowInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return FlowInfo{
		Sandbox: f.sandbox, Src: f.src, Dst: f.dst, Upstream: f.upstream,
		Name: f.name, Rule: f.decision.Rule(),
		BytesUp: f.up.Load(), BytesDown: f.down.Load(), Age: now.Sub(f.start),
	}
}

// registry holds the live flows and enforces the per-sandbox limit.
type registry struct {
	mu         sync.Mutex
	flows      map[*flow]struct{}
	perSandbox map[string]int
	closed     bool // draining: no new flows
	wg         sync.WaitGroup
}

func newRegistry() *registry {
	return &registry{flows: map[*flow]struct{}{}, perSandbox: map[string]int{}}
}

// add registers f unless its sandbox already holds limit flows or the
// registry is draining.
func (r *registry) add(f *flow, limit int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errShuttingDown
	}
	if r.perSandbox[f.sandbox] >= limit {
		return errConnLimit
	}
	r.perSandbox[f.sandbox]++
	r.flows[f] = struct{}{}
	r.wg.Add(1)
	return nil
}

// close stops add: flows accepted from now on are refused, so that wait
// sees every flow there will be.
func (r *registry) close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
}

// remove unregisters f; a flow never added (refused before) is ignored.
func (r *registry) remove(f *flow) {
	r.mu.Lock()
	if _, ok := r.flows[f]; !ok {
		r.mu.Unlock()
		return
	}
	delete(r.flows, f)
	if r.perSandbox[f.sandbox]--; r.perSandbox[f.sandbox] == 0 {
		delete(r.perSandbox, f.sandbox)
	}
	r.mu.Unlock()
	r.wg.Done()
}

func (r *registry) list() []*flow {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*flow, 0, len(r.flows))
	for f := range r.flows {
		out = append(out, f)
	}
	return out
}

// wait blocks until every flow ended or timeout passed; it reports whether
// all ended.
func (r *registry) wait(timeout time.Duration) bool {
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}
