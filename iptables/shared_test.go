package iptables

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestNextSharedEqualsNew makes random changes (sandboxes added, removed,
// moved to another interface or source, guard names added and dropped)
// and checks after each that what Next derived from the last ruleset (the
// names, the source owners, the shared sets' counts) is what a ruleset
// built from scratch has, and that the delta Next recorded turns the last
// ruleset's shared sets into them.
func TestNextSharedEqualsNew(t *testing.T) {
	for _, max := range []int{maxOverlay, 4} {
		t.Run(fmt.Sprintf("maxOverlay=%d", max), func(t *testing.T) {
			defer func(m int) { maxOverlay = m }(maxOverlay)
			maxOverlay = max
			checkNextShared(t)
		})
	}
}

func checkNextShared(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	host := Host{IsolateSandboxes: true}
	pool := func() Sandbox {
		i := rng.IntN(12)
		src := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, byte(rng.IntN(3)), byte(i)}), 32)
		if rng.IntN(4) == 0 {
			src = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i), 0}), 24)
		}
		return Sandbox{Name: fmt.Sprintf("s%d", i), Interface: fmt.Sprintf("veth%d", rng.IntN(5)), Mode: ModeCustom,
			Sources: []netip.Prefix{src}, AllowCIDRs: prefixes("198.51.100.7/32")}
	}
	var cur *Ruleset
	sbs := map[string]Sandbox{}
	for step := range 2000 {
		switch rng.IntN(4) {
		case 0, 1:
			sb := pool()
			sbs[sb.Name] = sb
		case 2:
			delete(sbs, fmt.Sprintf("s%d", rng.IntN(12)))
		case 3:
			g := fmt.Sprintf("veth%d", rng.IntN(7))
			if rng.IntN(2) == 0 {
				host.Guarded = append(host.Guarded, g)
			} else if len(host.Guarded) > 0 {
				host.Guarded = host.Guarded[1:]
			}
		}
		list := make([]Sandbox, 0, len(sbs))
		owner := map[netip.Prefix]bool{}
		for _, sb := range sbs {
			if !owner[sb.Sources[0]] { // no source in two sandboxes
				owner[sb.Sources[0]] = true
				list = append(list, sb)
			}
		}
		next, err := cur.Next(list, ports, host)
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		fresh, err := NewRuleset(list, ports, host)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(next.names, fresh.names) {
			t.Fatalf("step %d: names %v, from scratch %v", step, next.names, fresh.names)
		}
		if got, want := maps.Collect(next.owners.All()), maps.Collect(fresh.owners.All()); !maps.Equal(got, want) {
			t.Fatalf("step %d: owners %v, from scratch %v", step, got, want)
		}
		if got, want := countsOf(next), countsOf(fresh); !maps.Equal(got, want) {
			t.Fatalf("step %d: Next counts\n%v\nfrom scratch\n%v", step, got, want)
		}
		if cur != nil {
			have := present(cur)
			gone, added := map[string][]element{}, map[string][]element{}
			next.shared.diff(cur, gone, added)
			for _, els := range gone {
				for _, e := range els {
					delete(have, e.id())
				}
			}
			for _, els := range added {
				for _, e := range els {
					have[e.id()] = true
				}
			}
			if want := present(next); !maps.Equal(have, want) {
				t.Fatalf("step %d: the last sets with the delta\n%v\nwant\n%v", step, have, want)
			}
		}
		cur = next
	}
}

func countsOf(r *Ruleset) map[elementID]int {
	out := map[elementID]int{}
	r.shared.each(func(id elementID, c counted) { out[id] = c.n })
	return out
}

func present(r *Ruleset) map[elementID]bool {
	out := map[elementID]bool{}
	r.shared.each(func(id elementID, _ counted) { out[id] = true })
	return out
}

// TestNextKeepsNoPast: a Ruleset made by Next does not keep the one it
// was made from alive (a chain of every ruleset since the start would).
func TestNextKeepsNoPast(t *testing.T) {
	sbs := scaleSandboxes(10)
	first, err := NewRuleset(sbs, ports, Host{IsolateSandboxes: true})
	if err != nil {
		t.Fatal(err)
	}
	freed := make(chan bool, 1)
	runtime.SetFinalizer(first, func(*Ruleset) { freed <- true })
	next, err := first.Next(sbs[1:], ports, Host{IsolateSandboxes: true})
	if err != nil {
		t.Fatal(err)
	}
	first = nil
	for range 10 {
		runtime.GC()
		select {
		case <-freed:
			runtime.KeepAlive(next)
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Error("the ruleset Next started from is still reachable")
}

// TestNextRefusesSharedSource: one source prefix in two sandboxes is
// refused, built whole or changed into, and the installed ruleset stays
// usable.
func TestNextRefusesSharedSource(t *testing.T) {
	h := Host{IsolateSandboxes: true}
	a := Sandbox{Name: "a", Interface: "veth0", Mode: ModeCustom, Sources: prefixes("10.0.0.0/24")}
	b := Sandbox{Name: "b", Interface: "veth1", Mode: ModeCustom, Sources: prefixes("10.0.0.0/24")}
	if _, err := NewRuleset([]Sandbox{a, b}, ports, h); err == nil || !strings.Contains(err.Error(), `"a" and "b" both have source 10.0.0.0/24`) {
		t.Errorf("NewRuleset with a shared source: %v", err)
	}
	b.Sources = prefixes("10.0.1.0/24")
	r, err := NewRuleset([]Sandbox{a, b}, ports, h)
	if err != nil {
		t.Fatal(err)
	}
	b.Sources = prefixes("10.0.0.0/24")
	if _, err := r.Next([]Sandbox{a, b}, ports, h); err == nil {
		t.Error("Next to a shared source succeeded")
	}
	a.Sources = prefixes("10.0.2.0/24") // the prefix moves from a to b in one change
	if _, err := r.Next([]Sandbox{a, b}, ports, h); err != nil {
		t.Errorf("Next moving a source from one sandbox to another: %v", err)
	}
}
