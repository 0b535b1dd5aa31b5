package dnsfilter

import (
	"container/list"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/egressd/egressd/policy"
)

// bindings records, per sandbox, which addresses the resolver answered for
// which names, so that the proxy can dial a flow's original destination
// when the sandbox learned it from egressd. Each (name, address) pair lives
// until its own expiry: a name whose answers rotate quickly, or that has
// hundreds of addresses, keeps every address it recently answered. Memory
// is bounded per sandbox; beyond max pairs the least recently answered or
// used pair is evicted, and counted.
type bindings struct {
	max     int
	live    *atomic.Pointer[policy.Set] // the set in force; nil: no check
	mu      sync.RWMutex
	sbs     map[string]*sandboxBindings
	evicted atomic.Uint64 // live pairs pushed out by the bound
}

type bindKey struct {
	name string     // normalised: lowercase, no trailing dot
	addr netip.Addr // unmapped
}

type binding struct {
	key     bindKey
	expires time.Time
}

type sandboxBindings struct {
	mu      sync.Mutex
	entries map[bindKey]*list.Element // of *binding
	lru     list.List                 // front: most recently answered or used
}

// newBindings keeps at most max pairs per sandbox. live, if not nil, is
// the set in force: add refuses pairs judged with another one.
func newBindings(max int, live *atomic.Pointer[policy.Set]) *bindings {
	return &bindings{max: max, live: live, sbs: make(map[string]*sandboxBindings)}
}

// sandbox returns sandbox's bindings, creating them when create is set.
func (b *bindings) sandbox(name string, create bool) *sandboxBindings {
	b.mu.RLock()
	sb := b.sbs[name]
	b.mu.RUnlock()
	if sb != nil || !create {
		return sb
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if sb = b.sbs[name]; sb == nil {
		sb = &sandboxBindings{entries: make(map[bindKey]*list.Element)}
		b.sbs[name] = sb
	}
	return sb
}

// add binds each of addrs to name for sandbox until expires. A pair bound
// already keeps the later of its two expiries. The pairs were judged with
// set; if a policy change replaced it meanwhile (an upstream query can
// take seconds), nothing is added. The check is made under the sandbox's
// lock, which prune takes after the new set is stored: a pair either
// lands before the prune, which then judges it, or is not added.
func (b *bindings) add(set *policy.Set, sandbox, name string, addrs []boundAddr, now time.Time) {
	if len(addrs) == 0 {
		return
	}
	sb := b.sandbox(sandbox, true)
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if b.live != nil && b.live.Load() != set {
		return
	}
	for _, a := range addrs {
		k := bindKey{name: name, addr: a.addr.Unmap()}
		if el, ok := sb.entries[k]; ok {
			e := el.Value.(*binding)
			if a.expires.After(e.expires) {
				e.expires = a.expires
			}
			sb.lru.MoveToFront(el)
			continue
		}
		b.makeRoom(sb, now)
		sb.entries[k] = sb.lru.PushFront(&binding{key: k, expires: a.expires})
	}
}

// makeRoom evicts from the back until sb has room for one more pair.
// Expired pairs go silently; live ones are counted.
func (b *bindings) makeRoom(sb *sandboxBindings, now time.Time) {
	for sb.lru.Len() >= b.max {
		el := sb.lru.Back()
		e := el.Value.(*binding)
		sb.lru.Remove(el)
		delete(sb.entries, e.key)
		if now.Before(e.expires) {
			b.evicted.Add(1)
		}
	}
}

// bound reports whether a is bound to name for sandbox at now.
func (b *bindings) bound(sandbox, name string, a netip.Addr, now time.Time) bool {
	sb := b.sandbox(sandbox, false)
	if sb == nil {
		return false
	}
	k := bindKey{name: name, addr: a.Unmap()}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	el, ok := sb.entries[k]
	if !ok {
		return false
	}
	if !now.Before(el.Value.(*binding).expires) {
		sb.lru.Remove(el)
		delete(sb.entries, k)
		return false
	}
	sb.lru.MoveToFront(el)
	return true
}

// prune drops every sandbox keep rejects outright and, for the others,
// every pair keep rejects. It returns how many pairs it dropped.
// A nil pairOK with ok keeps all of that sandbox's bindings.
func (b *bindings) prune(keep func(sandbox string) (pairOK func(bindKey) bool, ok bool)) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for name, sb := range b.sbs {
		pairOK, ok := keep(name)
		if ok && pairOK == nil { // nothing to judge again
			continue
		}
		sb.mu.Lock()
		if !ok {
			n += sb.lru.Len()
			delete(b.sbs, name)
			sb.mu.Unlock()
			continue
		}
		for k, el := range sb.entries {
			if !pairOK(k) {
				sb.lru.Remove(el)
				delete(sb.entries, k)
				n++
			}
		}
		sb.mu.Unlock()
	}
	return n
}

// boundAddr is an address to bind and until when.
type boundAddr struct {
	addr    netip.Addr
	expires time.Time
}
