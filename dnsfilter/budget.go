package dnsfilter

import "sync"

// budget shares a bounded resource (queries waiting for upstream, TCP
// connections) among sandboxes: one sandbox holds at most per of it, all
// together at most total. A sandbox that floods runs into its own limit
// and leaves the rest to the others.
type budget struct {
	per, total int

	mu   sync.Mutex
	n    int
	held map[string]int
}

func newBudget(per, total int) *budget {
	return &budget{per: per, total: total, held: map[string]int{}}
}

// take claims one unit for sandbox, or reports false when its share or
// the total is used up.
func (b *budget) take(sandbox string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.n >= b.total || b.held[sandbox] >= b.per {
		return false
	}
	b.n++
	b.held[sandbox]++
	return true
}

// give returns a unit take claimed.
func (b *budget) give(sandbox string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n--
	if b.held[sandbox]--; b.held[sandbox] <= 0 {
		delete(b.held, sandbox)
	}
}
