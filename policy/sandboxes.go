package policy

import (
	"fmt"
	"net/netip"
	"sync"

	"github.com/gaissmai/bart"
)

// Sandbox is one sandbox: where its traffic comes from and what it may
// reach. Values a Set hands out must not be modified.
type Sandbox struct {
	Name      string
	Interface string         // host-side interface its traffic arrives on
	Sources   []netip.Prefix // its addresses; no two sandboxes share one
	// Listen are its explicit-proxy addresses (SOCKS5 and HTTP CONNECT):
	// whoever connects to one is this sandbox. A sandbox has an
	// interface and sources, listeners, or both.
	Listen []Listener
	Policy *Policy

	peers *cidrTable // allow_cidrs entries naming other sandboxes (Guard)
}

// Listener is one explicit-proxy address of a sandbox. It is data for the
// proxy, which opens it; no two sandboxes share one.
type Listener struct {
	Network string // "tcp" or "unix"
	Address string // ip:port, or the socket file's path
	// User and PassHash (bcrypt) are listen_auth: a client must present
	// them; "" for none.
	User, PassHash string
	// Mode, UID and GID are the unix socket file's mode and owner (-1:
	// the process's).
	Mode     uint32
	UID, GID int
}

// String is the listener as written in the config: "127.0.0.1:1080",
// "unix:/run/egressd/agent.sock".
func (l Listener) String() string {
	if l.Network == "unix" {
		return "unix:" + l.Address
	}
	return l.Address
}

// Set is an immutable set of sandboxes, found by source address or name.
// It is safe for concurrent use; a change builds a new Set.
type Set struct {
	list     []*Sandbox
	byName   map[string]*Sandbox
	bySource bart.Table[int] // index into list
	guard    Guard
	// union allows what some sandbox in mode custom allows by name, and
	// anyAllowAll says some sandbox is in mode allow-all (AnyAllows):
	// built on the first AnyAllows, which most changes never ask.
	unionOnce   sync.Once
	union       *Policy
	anyAllowAll bool
}

// NewSet checks and indexes sbs. Every sandbox needs a unique name, a
// policy and at least one source; sources are canonicalised like
// ParsePrefix does (IPv4-mapped to IPv4, host bits refused), and no
// address may belong to two sandboxes. The sandboxes are copied. g is the
// host-wide guard (see Set.Guarded).
func NewSet(sbs []Sandbox, g Guard) (*Set, error) {
	s := &Set{list: make([]*Sandbox, 0, len(sbs)), byName: make(map[string]*Sandbox, len(sbs)), guard: g}
	listeners := map[string]string{}
	for i := range sbs {
		sb, err := checkSandbox(i, sbs[i])
		if err != nil {
			return nil, err
		}
		if _, dup := s.byName[sb.Name]; dup {
			return nil, fmt.Errorf("policy: sandbox name %q used twice", sb.Name)
		}
		for _, l := range sb.Listen {
			if other, dup := listeners[l.String()]; dup {
				return nil, fmt.Errorf("policy: sandboxes %q and %q both listen on %s", other, sb.Name, l)
			}
			listeners[l.String()] = sb.Name
		}
		if err := s.addSources(sb); err != nil {
			return nil, err
		}
		s.byName[sb.Name] = sb
		s.list = append(s.list, sb)
	}
	s.notePeers()
	return s, nil
}

// checkSandbox validates sandbox number i and returns a normalised copy.
func checkSandbox(i int, sb Sandbox) (*Sandbox, error) {
	switch {
	case sb.Name == "":
		return nil, fmt.Errorf("policy: sandbox #%d: name is required", i+1)
	case sb.Policy == nil:
		return nil, fmt.Errorf("policy: sandbox %q: no policy", sb.Name)
	case len(sb.Sources) == 0 && (sb.Interface != "" || len(sb.Listen) == 0):
		return nil, fmt.Errorf("policy: sandbox %q: no sources", sb.Name)
	}
	srcs := make([]netip.Prefix, len(sb.Sources))
	for j, p := range sb.Sources {
		c, err := canonicalPrefix(p)
		if err != nil {
			return nil, fmt.Errorf("policy: sandbox %q: source %s: %w", sb.Name, p, err)
		}
		srcs[j] = c
	}
	sb.Sources = srcs
	sb.peers = nil
	return &sb, nil
}

// addSources indexes sb's sources, refusing any that overlaps a source of
// another sandbox. Overlaps within one sandbox are harmless.
func (s *Set) addSources(sb *Sandbox) error {
	idx := len(s.list)
	for _, p := range sb.Sources {
		if q, other, ok := s.overlap(p, idx); ok {
			return fmt.Errorf("policy: sandboxes %q and %q overlap: sources %s and %s",
				s.list[other].Name, sb.Name, q, p)
		}
		s.bySource.Insert(p, idx)
	}
	return nil
}

// overlap finds a source of a sandbox other than idx that shares addresses
// with p.
func (s *Set) overlap(p netip.Prefix, idx int) (netip.Prefix, int, bool) {
	for q, i := range s.bySource.Supernets(p) {
		if i != idx {
			return q, i, true
		}
	}
	for q, i := range s.bySource.Subnets(p) {
		if i != idx {
			return q, i, true
		}
	}
	return netip.Prefix{}, 0, false
}

// noteUnion builds the union of every custom sandbox's allow_domains.
func (s *Set) noteUnion() {
	s.union = &Policy{mode: ModeCustom, domains: newDomainTable(len(s.list))}
	for _, sb := range s.list {
		switch sb.Policy.mode {
		case ModeAllowAll:
			s.anyAllowAll = true
		case ModeCustom:
			for _, p := range sb.Policy.patterns {
				s.union.domains.add(p, nil) // the resolver's question: any port
			}
		}
	}
}

// AnyAllows reports whether some sandbox's policy allows the name (as
// DecideName would; "" and "." only in mode allow-all), in time that does
// not grow with the number of sandboxes.
func (s *Set) AnyAllows(name string) bool {
	s.unionOnce.Do(s.noteUnion)
	if name == "" || name == "." {
		return s.anyAllowAll
	}
	if s.anyAllowAll {
		return s.union.DecideName(name).Reason != ReasonInvalidName
	}
	return s.union.DecideName(name).Allowed()
}

// BySource returns the sandbox that a belongs to. IPv4-mapped IPv6
// addresses are looked up as IPv4. It allocates nothing.
func (s *Set) BySource(a netip.Addr) (*Sandbox, bool) {
	if s == nil {
		return nil, false
	}
	i, ok := s.bySource.Lookup(a.Unmap())
	if !ok {
		return nil, false
	}
	return s.list[i], true
}

// ByName returns the sandbox called name.
func (s *Set) ByName(name string) (*Sandbox, bool) {
	if s == nil {
		return nil, false
	}
	sb, ok := s.byName[name]
	return sb, ok
}

// All returns the sandboxes in config order, in a new slice.
func (s *Set) All() []*Sandbox {
	if s == nil {
		return nil
	}
	return append([]*Sandbox(nil), s.list...)
}
