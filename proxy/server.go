package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/egressd/egressd/internal/budget"
	"github.com/egressd/egressd/internal/latency"
	"github.com/egressd/egressd/policy"
)

// Resolver returns the addresses a name resolves to. The proxy dials only
// such an address for a flow admitted by a domain rule.
type Resolver interface {
	LookupAddrs(ctx context.Context, name string) ([]netip.Addr, error)
}

// Bindings reports whether a sandbox learned address a for name through
// egressd's own resolver; the proxy then dials a as is.
type Bindings interface {
	Bound(sandbox, name string, a netip.Addr) bool
}

// The peek budget's defaults: real hellos and heads are 0.3–2 KB, so a
// sandbox may peek thousands of connections at once; one flooding stalled
// 64 KiB hellos holds at most 16 MiB, and 16 such sandboxes the whole.
const (
	DefaultMaxPeekBytesPerSandbox = 16 << 20
	DefaultMaxPeekBytes           = 256 << 20
)

// Options configures a Server.
type Options struct {
	Port               int           // TPROXY port, IPv4 and IPv6
	PeekTimeout        time.Duration // wait for a ClientHello or request head
	DialTimeout        time.Duration // upstream connect timeout
	ShutdownTimeout    time.Duration // how long live flows may drain on stop
	IdleTimeout        time.Duration // close admitted flows quiet for this long; 0: never
	MaxConnsPerSandbox int
	// MaxPeekBytesPerSandbox and MaxPeekBytes bound the memory of flows
	// still being peeked (see peekReader); 0 takes the defaults.
	MaxPeekBytesPerSandbox, MaxPeekBytes int64
	Resolver                             Resolver
	Bindings                             Bindings // optional
	// BlockPrivate is dns.block_private_answers: a flow admitted by
	// allow_domains never reaches an internal address (private, loopback,
	// link-local, CGNAT, ULA) unless allow_cidrs lists it.
	BlockPrivate bool
	Logger       *zap.Logger
}

// Server is the transparent proxy. Its sandbox set can be swapped while it
// runs; live flows are judged again on every swap.
type Server struct {
	opts      Options
	log       *zap.Logger
	flowLog   *zap.Logger // the per-flow lines: no caller (finding it was 1.3 % of the CPU per flow)
	sandboxes atomic.Pointer[policy.Set]
	flows     *registry
	stats     counters
	swapMu    sync.Mutex // serialises SetSandboxes
	lns       []*net.TCPListener
	listenCtx context.Context // of Listen: explicit listeners opened later live as long
	lnMu      sync.Mutex      // guards explicit
	explicit  map[string]*explicitListener
	peeks     *budget.Budget
	pumps     atomic.Pointer[[]*pump] // while Serve runs; none: a goroutine per direction
	nextPump  atomic.Uint32
	peekLat   latency.Histogram // accept to the name read (TLS SNI, first HTTP Host)
	dialLat   latency.Histogram // connecting upstream
}

// NewServer returns a server that judges flows with set.
func NewServer(opts Options, set *policy.Set) *Server {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.MaxPeekBytesPerSandbox <= 0 {
		opts.MaxPeekBytesPerSandbox = DefaultMaxPeekBytesPerSandbox
	}
	if opts.MaxPeekBytes <= 0 {
		opts.MaxPeekBytes = DefaultMaxPeekBytes
	}
	log := opts.Logger.Named("proxy")
	s := &Server{opts: opts, log: log, flowLog: log.WithOptions(zap.WithCaller(false)), flows: newRegistry(),
		peeks: budget.New(opts.MaxPeekBytesPerSandbox, opts.MaxPeekBytes), explicit: map[string]*explicitListener{}}
	s.sandboxes.Store(set)
	return s
}

// Listen opens the transparent listeners (none with Port 0) and the
// explicit proxy listeners of the sandboxes. Call it before Serve so that
// a bad port or missing privilege is reported before anything else
// starts. Explicit listeners accept at once; a sandbox set swapped in
// later opens and closes them as its sandboxes say.
func (s *Server) Listen(ctx context.Context) error {
	if s.opts.Port != 0 {
		lns, err := listenTransparent(ctx, s.opts.Port)
		if err != nil {
			return err
		}
		s.lns = lns
	}
	s.listenCtx = ctx
	if err := s.openListeners(ctx, s.sandboxes.Load()); err != nil {
		for _, ln := range s.lns {
			ln.Close()
		}
		s.closeListeners()
		return err
	}
	return nil
}

// Serve accepts flows until ctx is done, then stops accepting, lets live
// flows finish for up to ShutdownTimeout and closes the rest.
func (s *Server) Serve(ctx context.Context) error {
	if s.lns == nil && s.listenCtx == nil {
		return errors.New("proxy: Serve called before Listen")
	}
	s.startPumps()
	defer s.stopPumps()
	errc := make(chan error, len(s.lns))
	for _, ln := range s.lns {
		go s.acceptLoop(ctx, ln, errc)
	}
	if s.opts.IdleTimeout > 0 {
		go s.sweepIdle(ctx)
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	for _, ln := range s.lns {
		ln.Close()
	}
	s.closeListeners()
	s.drain()
	return err
}

// startPumps starts a pump per CPU the runtime uses. Should epoll fail,
// flows are relayed by a goroutine per direction instead.
func (s *Server) startPumps() {
	var pumps []*pump
	for range runtime.GOMAXPROCS(0) {
		p, err := newPump()
		if err != nil {
			s.log.Warn("relaying with two goroutines per flow", zap.Error(err))
			for _, p := range pumps {
				p.close()
			}
			return
		}
		pumps = append(pumps, p)
	}
	s.pumps.Store(&pumps)
}

// stopPumps closes the pumps once no flow is left in them.
func (s *Server) stopPumps() {
	if pumps := s.pumps.Swap(nil); pumps != nil {
		for _, p := range *pumps {
			p.close()
		}
	}
}

// pump picks the pump for a new flow, round robin; nil if there is none.
func (s *Server) pump() *pump {
	pumps := s.pumps.Load()
	if pumps == nil {
		return nil
	}
	return (*pumps)[s.nextPump.Add(1)%uint32(len(*pumps))]
}

func (s *Server) acceptLoop(ctx context.Context, ln *net.TCPListener, errc chan<- error) {
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// EMFILE and friends: back off instead of spinning.
			s.log.Warn("accept failed", zap.Error(err))
			time.Sleep(50 * time.Millisecond)
			continue
		}
		go s.handle(ctx, c)
	}
}

func (s *Server) drain() {
	s.flows.close()
	if s.flows.wait(s.opts.ShutdownTimeout) {
		return
	}
	live := s.flows.list()
	s.log.Warn("shutdown timeout: closing live flows", zap.Int("flows", len(live)))
	for _, f := range live {
		f.kill()
	}
	s.flows.wait(time.Second)
}

// SetSandboxes swaps in a new sandbox set and closes every live flow that
// the new set no longer allows. Flows it still allows are untouched.
func (s *Server) SetSandboxes(set *policy.Set) {
	s.swapMu.Lock()
	defer s.swapMu.Unlock()
	s.sandboxes.Store(set)
	if s.listenCtx != nil {
		s.openListeners(s.listenCtx, set) // a listener that fails is logged; its sandbox is not served there
	}
	for _, f := range s.flows.list() {
		if d, ok := s.rejudge(set, f); !ok {
			s.stats.cut.Add(1)
			f.cut(d) // its log line says so when it ends
		}
	}
}

// rejudge decides f again with set, with what it was admitted on: its
// sandbox, destination, name and the address it dials.
func (s *Server) rejudge(set *policy.Set, f *flow) (policy.Decision, bool) {
	sb, ok := sandboxIn(set, f)
	if !ok {
		return policy.Decision{Reason: policy.ReasonUnknownSource, Addr: f.src.Addr()}, false
	}
	f.mu.Lock()
	name, upstream, admitted := f.name, f.upstream, f.admitted
	f.mu.Unlock()
	dst := f.dst.Addr()
	if !dst.IsValid() { // an explicit proxy's flow to a name: judge where it went
		if dst = upstream.Addr(); !dst.IsValid() {
			return policy.Decision{}, true // still peeking: its name meets the current policy
		}
	}
	d := set.DecideAddrPort(sb, netip.AddrPortFrom(dst, f.dst.Port()), policy.ProtoTCP)
	if !d.NeedsName() {
		return d, d.Allowed()
	}
	if !admitted {
		return d, true // still peeking: its name meets the current policy
	}
	if name == "" { // admitted with no name: only report-only mode does that
		d = sb.Policy.Audited(policy.Decision{Reason: policy.ReasonNoName, Addr: dst})
		if g, bad := set.Guarded(sb, dst); bad && d.Allowed() {
			return g, false
		}
		return d, d.Allowed()
	}
	d = sb.Policy.DecideNamePort(name, f.dst.Port())
	if d.Allowed() && upstream.IsValid() && !set.NameMayReachPort(sb, upstream, policy.ProtoTCP, s.opts.BlockPrivate) {
		d = policy.Decision{Reason: policy.ReasonDenyCIDR, Name: name, Addr: upstream.Addr()}
		if r, denied := sb.Policy.DeniedAddrPort(upstream.Addr(), policy.ProtoTCP, upstream.Port()); denied {
			d.Prefix, d.Scope = r.Prefix, r.Scope()
		} else if g, guarded := set.Guarded(sb, upstream.Addr()); guarded {
			d = g
			d.Name = name
		} else {
			d.Reason = policy.ReasonNotResolved // internal address, now blocked
		}
		return d, false
	}
	return d, d.Allowed()
}

// Flows returns a snapshot of the live flows.
func (s *Server) Flows() []FlowInfo {
	now := time.Now()
	live := s.flows.list()
	out := make([]FlowInfo, len(live))
	for i, f := range live {
		out[i] = f.info(now)
	}
	return out
}

// Addrs returns the listeners' addresses.
func (s *Server) Addrs() []net.Addr {
	out := make([]net.Addr, len(s.lns))
	for i, ln := range s.lns {
		out[i] = ln.Addr()
	}
	return out
}

func (s *Server) String() string { return fmt.Sprintf("proxy on port %d", s.opts.Port) }

// sweepIdle closes admitted flows that carried no byte either way for
// IdleTimeout, checking every quarter of it (between 1 s and 30 s): a
// flow is closed at most two checks later than IdleTimeout after its last
// byte. Flows still peeking have their own PeekTimeout.
func (s *Server) sweepIdle(ctx context.Context) {
	every := min(max(s.opts.IdleTimeout/4, time.Second), 30*time.Second)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			for _, f := range s.flows.list() {
				s.sweep(f, now)
			}
		}
	}
}

func (s *Server) sweep(f *flow, now time.Time) {
	f.mu.Lock()
	admitted := f.admitted
	f.mu.Unlock()
	if !admitted {
		return
	}
	switch total := f.up.Load() + f.down.Load(); {
	case f.quietSince.IsZero() || total != f.sweptBytes:
		f.sweptBytes, f.quietSince = total, now
	case now.Sub(f.quietSince) >= s.opts.IdleTimeout:
		f.closeIdle()
	}
}
