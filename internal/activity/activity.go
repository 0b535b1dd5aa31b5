// Package activity keeps what each sandbox did, as its decision lines say
// (proxy flows, DNS queries, and what the kernel passed for a sandbox in
// report-only mode), and turns that into the smallest policy that allows
// it (Suggest): the record behind GET /v1/sandboxes/{name}/activity and
// `egressd suggest`.
//
// The daemon's Record is fed by a zap core teed with the log, so it sees
// exactly the lines the log gets; ReadLog builds the same Activity from a
// log file.
package activity

import (
	"maps"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/egressd/egressd/policy"
)

// Kind says what an Entry's Value is.
type Kind string

// The kinds of destination.
const (
	KindName Kind = "name" // a name: TLS SNI, HTTP Host or DNS question
	KindAddr Kind = "addr" // an address reached without a name
)

// Entry is one destination of one sandbox and what came of it.
type Entry struct {
	Kind  Kind   `json:"kind"`
	Value string `json:"value"`           // normalised name, or address
	Proto string `json:"proto,omitempty"` // of what the kernel passed: udp, icmp, …; "" for the proxy and the resolver
	// Flows counts proxy flows that passed, Queries DNS questions that
	// passed and were answered (NOERROR), FailedQueries those that
	// passed and got an error, Packets what the kernel passed.
	Flows         uint64 `json:"flows,omitempty"`
	Queries       uint64 `json:"queries,omitempty"`
	FailedQueries uint64 `json:"failed_queries,omitempty"`
	Packets       uint64 `json:"packets,omitempty"`
	// WouldDeny counts what of the above the policy would have denied
	// (report-only mode); Denied, the flows and queries refused.
	WouldDeny uint64 `json:"would_deny,omitempty"`
	Denied    uint64 `json:"denied,omitempty"`
	Reason    string `json:"reason,omitempty"` // of the last would-deny or denial
}

// Activity is what one sandbox did, entries sorted by kind and value.
type Activity struct {
	Sandbox string    `json:"sandbox"`
	Since   time.Time `json:"since"`
	Entries []Entry   `json:"entries"`
	// Dropped counts decisions that found the record full (maxEntries).
	Dropped uint64 `json:"dropped,omitempty"`
}

// Line is the part of a decision line the record reads.
type Line struct {
	Msg, Sandbox, Name, Dst, Proto, Verdict, Reason, Rcode string
	Packets                                                uint64
}

// Bounds of the daemon's record: a sandbox that reaches more distinct
// destinations is counted in Dropped.
const (
	maxEntries      = 4096    // per sandbox
	maxEntriesTotal = 1 << 18 // over all sandboxes
)

type key struct {
	kind         Kind
	value, proto string
}

type sandboxRecord struct {
	since   time.Time
	entries map[key]*Entry
	dropped uint64
}

// Record is the daemon's record since it started. It is safe for
// concurrent use.
type Record struct {
	mu        sync.Mutex
	sbs       map[string]*sandboxRecord
	total     int
	wouldDeny map[WouldDenyKey]uint64
	now       func() time.Time
}

// WouldDenyKey keys the would-deny counters: per sandbox, path ("proxy",
// "dns" or "kernel") and reason.
type WouldDenyKey struct{ Sandbox, Path, Reason string }

// NewRecord returns an empty record.
func NewRecord() *Record {
	return &Record{sbs: map[string]*sandboxRecord{}, wouldDeny: map[WouldDenyKey]uint64{}, now: time.Now}
}

// WouldDeny returns how many flows (proxy), queries (dns) and packets
// (kernel) each sandbox in report-only mode sent that its policy would
// deny, by reason.
func (r *Record) WouldDeny() map[WouldDenyKey]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.wouldDeny)
}

// pathOf names the part of the data path a decision line comes from.
func pathOf(msg string) string {
	switch {
	case strings.HasPrefix(msg, "dns "):
		return "dns"
	case strings.HasPrefix(msg, "kernel "):
		return "kernel"
	}
	return "proxy"
}

// Add records one decision line; lines that are not about a sandbox's
// destination are ignored.
func (r *Record) Add(l Line) {
	k, ok := keyOf(l)
	if !ok {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if l.Verdict == policy.WouldDeny.String() {
		n := uint64(1)
		if l.Msg == "kernel report-only" {
			n = l.Packets
		}
		r.wouldDeny[WouldDenyKey{l.Sandbox, pathOf(l.Msg), l.Reason}] += n
	}
	sr := r.sbs[l.Sandbox]
	if sr == nil {
		sr = &sandboxRecord{since: r.now(), entries: map[key]*Entry{}}
		r.sbs[l.Sandbox] = sr
	}
	e := sr.entries[k]
	if e == nil {
		if len(sr.entries) >= maxEntries || r.total >= maxEntriesTotal {
			sr.dropped++
			return
		}
		e = &Entry{Kind: k.kind, Value: k.value, Proto: k.proto}
		sr.entries[k] = e
		r.total++
	}
	count(e, l)
}

// Activity returns what sandbox did since the record began (or since it
// appeared), and whether anything is recorded.
func (r *Record) Activity(sandbox string) (Activity, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sr := r.sbs[sandbox]
	if sr == nil {
		return Activity{Sandbox: sandbox, Entries: []Entry{}}, false
	}
	a := Activity{Sandbox: sandbox, Since: sr.since, Dropped: sr.dropped, Entries: make([]Entry, 0, len(sr.entries))}
	for _, e := range sr.entries {
		a.Entries = append(a.Entries, *e)
	}
	sortEntries(a.Entries)
	return a, true
}

// SetSandboxes forgets the sandboxes set no longer has: one created later
// under the same name starts with an empty record.
func (r *Record) SetSandboxes(set *policy.Set) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, sr := range r.sbs {
		if _, ok := set.ByName(name); !ok {
			r.total -= len(sr.entries)
			delete(r.sbs, name)
		}
	}
	maps.DeleteFunc(r.wouldDeny, func(k WouldDenyKey, _ uint64) bool {
		_, ok := set.ByName(k.Sandbox)
		return !ok
	})
}

// keyOf finds the destination a line is about.
func keyOf(l Line) (key, bool) {
	if l.Sandbox == "" {
		return key{}, false
	}
	switch l.Msg {
	case "flow", "flow cut by policy change", "flow closed: idle":
		if k, ok := nameKey(l.Name); ok {
			return k, true
		}
		return addrKey(l.Dst, "") // no name, or an address for one (Host: 203.0.113.5)
	case "dns query", "dns query refused", "dns query dropped":
		return nameKey(l.Name)
	case "kernel report-only":
		return addrKey(l.Dst, l.Proto)
	}
	return key{}, false
}

func nameKey(name string) (key, bool) {
	n, err := policy.NormalizeName(strings.TrimSuffix(name, "."))
	if err != nil || n == "" {
		return key{}, false
	}
	return key{kind: KindName, value: n}, true
}

// addrKey reads an address or an address:port.
func addrKey(dst, proto string) (key, bool) {
	a, err := netip.ParseAddr(dst)
	if err != nil {
		host, _, serr := net.SplitHostPort(dst)
		if serr != nil {
			return key{}, false
		}
		if a, err = netip.ParseAddr(host); err != nil {
			return key{}, false
		}
	}
	return key{kind: KindAddr, value: a.Unmap().WithZone("").String(), proto: proto}, true
}

// count adds l to e.
func count(e *Entry, l Line) {
	passed := l.Verdict == policy.Allow.String() || l.Verdict == policy.WouldDeny.String()
	switch {
	case !passed:
		e.Denied++
		e.Reason = l.Reason
		return
	case l.Msg == "kernel report-only":
		e.Packets += l.Packets
		if l.Verdict == policy.WouldDeny.String() {
			e.WouldDeny += l.Packets
		}
	case strings.HasPrefix(l.Msg, "dns "):
		if l.Rcode == "NOERROR" {
			e.Queries++
		} else {
			e.FailedQueries++
		}
		if l.Verdict == policy.WouldDeny.String() {
			e.WouldDeny++
		}
	default:
		e.Flows++
		if l.Verdict == policy.WouldDeny.String() {
			e.WouldDeny++
		}
	}
	if l.Verdict == policy.WouldDeny.String() {
		e.Reason = l.Reason
	}
}

func sortEntries(es []Entry) {
	sort.Slice(es, func(i, j int) bool {
		a, b := es[i], es[j]
		if a.Kind != b.Kind {
			return a.Kind > b.Kind // names first
		}
		if a.Value != b.Value {
			return a.Value < b.Value
		}
		return a.Proto < b.Proto
	})
}
