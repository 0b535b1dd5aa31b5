package dnsfilter

import (
	"sync"

	"github.com/miekg/dns"
)

// flight coalesces concurrent upstream queries for the same question: a
// burst of identical cache misses (a sandbox's retries, or many sandboxes
// starting at once) costs one upstream query.
type flight struct {
	mu    sync.Mutex
	calls map[cacheKey]*call
}

type call struct {
	done chan struct{}
	msg  *dns.Msg // shared by every waiter: never modified
	err  error
}

// do runs fetch for k unless a call for k is already running, in which case
// it waits for that call's result. shared reports the latter.
func (f *flight) do(k cacheKey, fetch func() (*dns.Msg, error)) (msg *dns.Msg, err error, shared bool) {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = make(map[cacheKey]*call)
	}
	if c, ok := f.calls[k]; ok {
		f.mu.Unlock()
		<-c.done
		return c.msg, c.err, true
	}
	c := &call{done: make(chan struct{})}
	f.calls[k] = c
	f.mu.Unlock()

	defer func() {
		f.mu.Lock()
		delete(f.calls, k)
		f.mu.Unlock()
		close(c.done)
	}()
	c.msg, c.err = fetch()
	return c.msg, c.err, false
}
