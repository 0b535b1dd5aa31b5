// Package budget shares a bounded resource (bytes of peeked flows, DNS
// queries waiting upstream, TCP connections) among sandboxes: one sandbox
// holds at most its share, all together at most the total, so one that
// floods runs into its own limit and leaves the rest to the others.
package budget

import "sync"

// Budget is safe for concurrent use.
type Budget struct {
	per, total int64

	mu   sync.Mutex
	n    int64
	held map[string]int64
}

// New returns a budget of per for each sandbox and total for all.
func New(per, total int64) *Budget {
	return &Budget{per: per, total: total, held: map[string]int64{}}
}

// Take claims n units for sandbox, or reports false, claiming nothing,
// when its share or the total would be exceeded.
func (b *Budget) Take(sandbox string, n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.n+n > b.total || b.held[sandbox]+n > b.per {
		return false
	}
	b.n += n
	b.held[sandbox] += n
	return true
}

// Give returns n units Take claimed for sandbox.
func (b *Budget) Give(sandbox string, n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n -= n
	if b.held[sandbox] -= n; b.held[sandbox] <= 0 {
		delete(b.held, sandbox)
	}
}

// Held is what is claimed in all.
func (b *Budget) Held() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}
