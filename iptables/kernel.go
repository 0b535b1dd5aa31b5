package iptables

import (
	"context"
	"fmt"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// Kernel keeps egressd's rules in the kernel in step with a Ruleset.
//
// The first Apply, and any whose rules differ from the installed ones
// (ports, [host] flags, guard patterns), loads the whole script with
// `nft -f` (Installer.Apply). Every other Apply only changes elements: the
// difference between the installed ruleset's elements and the new one's,
// deleted and added in one netlink batch, which the kernel applies as one
// transaction. Adding, changing or removing a sandbox therefore touches
// only its own elements (and the shared ones it changes, such as its
// interface in claimed), whatever the number of sandboxes, and costs no
// process and no dump of the table.
//
// Kernel is safe for concurrent use; Applies are serialised.
type Kernel struct {
	in Installer

	mu   sync.Mutex
	cur  *Ruleset       // what is installed; nil: unknown, load in full
	conn *nftables.Conn // lasting netlink connection for deltas
}

// NewKernel returns a Kernel that installs through in.
func NewKernel(in Installer) *Kernel { return &Kernel{in: in} }

// Apply installs the rules for sbs, p and h. On error the installed ones
// are unchanged when the kernel refused the change; when that is
// uncertain (a load killed by ctx), the next Apply loads in full.
func (k *Kernel) Apply(ctx context.Context, sbs []Sandbox, p Ports, h Host) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	rs, err := k.cur.Next(sbs, p, h)
	if err != nil {
		return err
	}
	if k.cur == nil || !k.cur.sameRules(rs) {
		k.cur = nil
		if err := k.in.applyRuleset(ctx, rs); err != nil {
			return err
		}
		k.cur = rs
		return nil
	}
	if err := k.applyDelta(rs); err != nil {
		return err
	}
	k.cur = rs
	return nil
}

// Forget makes the next Apply load in full (after Cleanup, say).
func (k *Kernel) Forget() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.cur = nil
}

// applyDelta deletes the elements k.cur has and rs has not, and adds
// those rs has and k.cur has not, in one batch.
func (k *Kernel) applyDelta(rs *Ruleset) error {
	gone, added := diffRulesets(k.cur, rs)
	if len(gone) == 0 && len(added) == 0 {
		return nil
	}
	if k.conn == nil {
		conn, err := k.in.nftConn()
		if err != nil {
			return err
		}
		k.conn = conn
	}
	for set, els := range gone {
		if err := k.conn.SetDeleteElements(setRef(set), encode(set, els)); err != nil {
			return k.failed(err)
		}
	}
	for set, els := range added {
		if err := k.conn.SetAddElements(setRef(set), encode(set, els)); err != nil {
			return k.failed(err)
		}
	}
	if err := k.conn.Flush(); err != nil {
		return k.failed(err)
	}
	return nil
}

// failed drops the connection (and any messages queued on it), and what
// is installed is no longer trusted: the next Apply loads in full, which
// also repairs a table changed behind egressd's back.
func (k *Kernel) failed(err error) error {
	k.conn.CloseLasting()
	k.conn = nil
	k.cur = nil
	return fmt.Errorf("iptables: update elements: %w", err)
}

// diffRulesets groups by set the elements only in old (gone) and only in
// next (added). A sandbox whose elements next reused from old costs
// nothing.
func diffRulesets(old, next *Ruleset) (gone, added map[string][]element) {
	gone, added = map[string][]element{}, map[string][]element{}
	for name, n := range next.sbs {
		if o := old.sbs[name]; o != n {
			diffElements(elemsOf(o), n.elems, gone, added)
		}
	}
	for name, o := range old.sbs {
		if _, ok := next.sbs[name]; !ok {
			diffElements(o.elems, nil, gone, added)
		}
	}
	next.shared.diff(old, gone, added)
	return gone, added
}

func elemsOf(se *sandboxElems) []element {
	if se == nil {
		return nil
	}
	return se.elems
}

// diffElements adds to gone the elements only in old and to added those
// only in next, by set.
func diffElements(old, next []element, gone, added map[string][]element) {
	have := make(map[elementID]struct{}, len(old))
	for i := range old {
		have[old[i].id()] = struct{}{}
	}
	want := make(map[elementID]struct{}, len(next))
	for i := range next {
		id := next[i].id()
		want[id] = struct{}{}
		if _, ok := have[id]; !ok {
			added[next[i].set] = append(added[next[i].set], next[i])
		}
	}
	for i := range old {
		if _, ok := want[old[i].id()]; !ok {
			gone[old[i].set] = append(gone[old[i].set], old[i])
		}
	}
}

// setRef names an installed set for element updates.
func setRef(name string) *nftables.Set {
	d := setDefOf(name)
	family := nftables.TableFamilyINet
	if d.bridge {
		family = nftables.TableFamilyBridge
	}
	return &nftables.Set{
		Table:         &nftables.Table{Name: Table, Family: family},
		Name:          name,
		Interval:      d.interval,
		Concatenation: d.interval,
		IsMap:         d.isMap,
	}
}

// encode turns elements of set into netlink elements.
func encode(set string, els []element) []nftables.SetElement {
	d := setDefOf(set)
	out := make([]nftables.SetElement, len(els))
	for i, e := range els {
		key, end := e.key(d.interval)
		out[i] = nftables.SetElement{Key: key, KeyEnd: end}
		if e.verdict != "" {
			out[i].VerdictData = &expr.Verdict{Kind: expr.VerdictJump, Chain: e.verdict}
		}
	}
	return out
}
