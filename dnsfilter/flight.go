package dnsfilter

import "sync"

// flight coalesces concurrent upstream queries for the same key: a burst
// of identical cache misses (a sandbox's retries, many sandboxes starting
// at once, many flows to one unbound name) costs one upstream query.
type flight[K comparable, V any] struct {
	mu    sync.Mutex
	calls map[K]*call[V]
}

type call[V any] struct {
	done chan struct{}
	v    V // shared by every waiter: never modified
	err  error
}

// do runs fetch for k unless a call for k is already running, in which case
// it waits for that call's result. shared reports the latter.
func (f *flight[K, V]) do(k K, fetch func() (V, error)) (v V, err error, shared bool) {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = make(map[K]*call[V])
	}
	if c, ok := f.calls[k]; ok {
		f.mu.Unlock()
		<-c.done
		return c.v, c.err, true
	}
	c := &call[V]{done: make(chan struct{})}
	f.calls[k] = c
	f.mu.Unlock()

	defer func() {
		f.mu.Lock()
		delete(f.calls, k)
		f.mu.Unlock()
		close(c.done)
	}()
	c.v, c.err = fetch()
	return c.v, c.err, false
}
