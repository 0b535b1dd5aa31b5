package proxy

import (
	"sync"
	"sync/atomic"

	"github.com/egressd/egressd/internal/latency"
	"github.com/egressd/egressd/policy"
)

// Stats are the proxy's counters since it started, for the metrics
// endpoint. A flow is counted once, when it ends, under the verdict it
// ended with.
type Stats struct {
	Allowed uint64 // flows admitted and forwarded
	Denied  uint64 // flows refused (reset or 403)
	Cut     uint64 // admitted flows closed because a policy change denies them
	Idle    uint64 // admitted flows closed by proxy.idle_timeout
	// DeniedBy counts denied flows by reason (policy.Reason's name), the
	// reason their log line carries.
	DeniedBy map[string]uint64
	// Peek is the time from accept to the name read; Dial, connecting
	// upstream.
	Peek, Dial *latency.Histogram
	BytesUp    uint64 // sandbox → upstream, of ended flows
	BytesDown  uint64 // upstream → sandbox, of ended flows
	// BySandbox counts ended flows by sandbox, verdict and reason.
	BySandbox map[SandboxVerdict]uint64
}

// SandboxVerdict is a key of Stats.BySandbox.
type SandboxVerdict struct {
	Sandbox, Verdict, Reason, Ingress string
}

type counters struct {
	allowed, denied, cut, idle, up, down atomic.Uint64
	deniedBy                             [256]atomic.Uint64 // by policy.Reason
	bySandbox                            sync.Map           // sandboxKey → *atomic.Uint64
}

// sandboxKey is a bySandbox key: cheap to build for every ended flow.
type sandboxKey struct {
	sandbox string
	verdict policy.Verdict
	reason  policy.Reason
	ingress Ingress
}

// count adds an ended flow to the counters.
func (c *counters) count(f *flow, d policy.Decision) {
	if d.Allowed() {
		c.allowed.Add(1)
	} else {
		c.denied.Add(1)
		c.deniedBy[d.Reason].Add(1)
	}
	k := sandboxKey{f.sandbox, d.Verdict, d.Reason, f.ingress}
	n, ok := c.bySandbox.Load(k)
	if !ok {
		n, _ = c.bySandbox.LoadOrStore(k, new(atomic.Uint64))
	}
	n.(*atomic.Uint64).Add(1)
	c.up.Add(uint64(f.up.Load()))
	c.down.Add(uint64(f.down.Load()))
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	return Stats{
		Allowed:   s.stats.allowed.Load(),
		Denied:    s.stats.denied.Load(),
		Cut:       s.stats.cut.Load(),
		Idle:      s.stats.idle.Load(),
		DeniedBy:  s.stats.deniedByReason(),
		Peek:      &s.peekLat,
		Dial:      &s.dialLat,
		BytesUp:   s.stats.up.Load(),
		BytesDown: s.stats.down.Load(),
		BySandbox: s.stats.bySandboxVerdict(),
	}
}

func (c *counters) bySandboxVerdict() map[SandboxVerdict]uint64 {
	out := map[SandboxVerdict]uint64{}
	c.bySandbox.Range(func(k, v any) bool {
		key := k.(sandboxKey)
		out[SandboxVerdict{key.sandbox, key.verdict.String(), key.reason.String(), string(key.ingress)}] = v.(*atomic.Uint64).Load()
		return true
	})
	return out
}

func (c *counters) deniedByReason() map[string]uint64 {
	out := map[string]uint64{}
	for r := range c.deniedBy {
		if n := c.deniedBy[r].Load(); n > 0 {
			out[policy.Reason(r).String()] = n
		}
	}
	return out
}
