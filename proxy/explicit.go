package proxy

import (
	"bufio"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"

	"github.com/egressd/egressd/policy"
)

// The explicit proxy: a sandbox's listeners (policy.Sandbox.Listen) take
// SOCKS5 and HTTP proxy requests (CONNECT, absolute-form HTTP) on the same
// socket, told apart by the first byte. Whoever connects to a listener is
// its sandbox. A request names the destination; from there the flow is
// the transparent path's: the same decisions, pinning, peeking, relay,
// registry, cuts and log line, with the name the client asked for
// (flow.want) as the only name its TLS SNI or HTTP Host may carry.

// explicitListener is one open listener.
type explicitListener struct {
	sandbox string
	spec    policy.Listener
	ln      net.Listener
}

// openListeners opens the listeners of set's sandboxes that are not open
// and closes those no sandbox of set has. It returns the first error;
// the other listeners are opened all the same.
func (s *Server) openListeners(ctx context.Context, set *policy.Set) error {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	want := map[string]bool{}
	var first error
	for _, sb := range set.All() {
		for _, l := range sb.Listen {
			key := l.String()
			want[key] = true
			if el, ok := s.explicit[key]; ok && el.sandbox == sb.Name && el.spec == l {
				continue
			}
			if el, ok := s.explicit[key]; ok {
				el.ln.Close()
				delete(s.explicit, key)
			}
			ln, err := listen(ctx, l)
			if err != nil {
				s.log.Error("explicit proxy listener did not open; the sandbox is not served there",
					zap.String("sandbox", sb.Name), zap.String("listen", key), zap.Error(err))
				if first == nil {
					first = err
				}
				continue
			}
			el := &explicitListener{sandbox: sb.Name, spec: l, ln: ln}
			s.explicit[key] = el
			s.log.Info("explicit proxy listening", zap.String("sandbox", sb.Name), zap.String("listen", key))
			go s.acceptExplicit(ctx, el)
		}
	}
	for key, el := range s.explicit {
		if !want[key] {
			el.ln.Close()
			delete(s.explicit, key)
		}
	}
	return first
}

// closeListeners closes every explicit listener.
func (s *Server) closeListeners() {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	for key, el := range s.explicit {
		el.ln.Close()
		delete(s.explicit, key)
	}
}

// listen opens l: a TCP listener, or a unix socket with its mode and
// owner (a stale socket file of a previous run is replaced; any other
// file is not).
func listen(ctx context.Context, l policy.Listener) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: noKeepAlive}
	if l.Network != "unix" {
		return lc.Listen(ctx, "tcp", l.Address)
	}
	// Another user able to write the directory could swap the socket for
	// a symlink before the chmod below, or replace it later.
	if dir, err := os.Stat(filepath.Dir(l.Address)); err != nil {
		return nil, fmt.Errorf("proxy: listen %s: %w", l.Address, err)
	} else if dir.Mode().Perm()&0o022 != 0 && dir.Mode()&fs.ModeSticky == 0 {
		return nil, fmt.Errorf("proxy: listen %s: directory %s is writable by others", l.Address, filepath.Dir(l.Address))
	}
	if fi, err := os.Lstat(l.Address); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("proxy: listen %s: exists and is not a socket", l.Address)
		}
		if c, err := net.DialTimeout("unix", l.Address, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("proxy: listen %s: another process serves this socket", l.Address)
		}
		os.Remove(l.Address) // a stale socket of an earlier run
	}
	ln, err := lc.Listen(ctx, "unix", l.Address)
	if err != nil {
		return nil, err
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	if err := os.Chmod(l.Address, fs.FileMode(l.Mode)); err != nil {
		ln.Close()
		return nil, fmt.Errorf("proxy: listen %s: %w", l.Address, err)
	}
	if l.UID >= 0 || l.GID >= 0 {
		if err := os.Lchown(l.Address, l.UID, l.GID); err != nil {
			ln.Close()
			return nil, fmt.Errorf("proxy: listen %s: owner: %w", l.Address, err)
		}
	}
	return ln, nil
}

func (s *Server) acceptExplicit(ctx context.Context, el *explicitListener) {
	for {
		c, err := el.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("accept failed", zap.String("listen", el.spec.String()), zap.Error(err))
			time.Sleep(50 * time.Millisecond)
			continue
		}
		go s.handleExplicit(ctx, el, c.(conn))
	}
}

// handleExplicit serves one connection to a listener of el.sandbox.
func (s *Server) handleExplicit(ctx context.Context, el *explicitListener, c conn) {
	f := &flow{sandbox: el.sandbox, src: addrPort(c.RemoteAddr()), start: time.Now(), client: c,
		ingress: IngressConnect, done: make(chan struct{})}
	if err := s.flows.add(f, s.opts.MaxConnsPerSandbox); err != nil {
		s.refuse(f, policy.Decision{Reason: policy.ReasonConnLimit}, err)
		return
	}
	c.SetReadDeadline(time.Now().Add(s.opts.PeekTimeout))
	// The request phase's bytes are charged to the peek budget, like a
	// ClientHello: a client without credentials cannot make egressd hold
	// more than the sandbox's share.
	peek := &peekReader{r: c, b: s.peeks, sandbox: f.sandbox}
	defer peek.release()
	br := bufio.NewReaderSize(peek, 4096)
	first, err := br.Peek(1)
	if err != nil {
		d := policy.Decision{Reason: policy.ReasonNoName}
		if errors.Is(err, errPeekBudget) {
			d.Reason = policy.ReasonPeekLimit
		}
		s.refuse(f, d, err)
		return
	}
	switch first[0] {
	case socksVersion:
		f.ingress = IngressSOCKS5
		s.serveSOCKS(ctx, el, f, br, peek.release)
	case 0x04: // SOCKS4: no domain names, no authentication
		s.refuse(f, policy.Decision{Reason: policy.ReasonUnsupported, Name: "SOCKS4"}, nil)
	default:
		s.serveHTTPProxy(ctx, el, f, br)
	}
}

// takeBuffered moves what br holds past the proxy request into f.pre: the
// client's first bytes for the destination.
func takeBuffered(f *flow, brs ...*bufio.Reader) {
	for _, br := range brs {
		if n := br.Buffered(); n > 0 {
			b, _ := br.Peek(n)
			f.pre = append(f.pre, b...)
		}
	}
}

// judgeRequest decides a proxy request for host (a name or an address
// literal) and port, and readies f for the path it takes. For a name it
// checks that the name resolves, so the client hears of a name that does
// not before it sends anything. deny is false when f may go on.
func (s *Server) judgeRequest(ctx context.Context, f *flow, host string, port uint16) (d policy.Decision, next func(), deny bool) {
	set, sb, ok := s.sandboxOf(f)
	if !ok {
		return policy.Decision{Reason: policy.ReasonUnknownSource}, nil, true
	}
	if port == 0 { // no service listens there; and 0 means "some port" to the policy
		return policy.Decision{Reason: policy.ReasonMalformed, Name: host}, nil, true
	}
	// The request phase's read deadline ends here; peeking sets its own.
	if a, err := netip.ParseAddr(host); err == nil {
		f.dst = netip.AddrPortFrom(a.Unmap().WithZone(""), port)
		d := set.DecideAddrPort(sb, f.dst, policy.ProtoTCP)
		return d, func() { f.client.SetReadDeadline(time.Time{}); s.route(ctx, set, f, d) }, !d.Allowed() && !d.NeedsName()
	}
	d = sb.Policy.DecideNamePort(host, port)
	if !d.Allowed() {
		return d, nil, true
	}
	f.want, f.dst = d.Name, netip.AddrPortFrom(netip.Addr{}, port)
	if !s.reachable(ctx, set, sb, d.Name, port) {
		return policy.Decision{Reason: policy.ReasonNotResolved, Name: d.Name}, nil, true
	}
	return d, func() { f.client.SetReadDeadline(time.Time{}); s.inspect(ctx, f) }, false
}

// reachable reports whether name resolves to an address the flow may be
// dialled at (pin's rule), so that the client hears of one that does not
// before it is told to go on.
func (s *Server) reachable(ctx context.Context, set *policy.Set, sb *policy.Sandbox, name string, port uint16) bool {
	if s.opts.Resolver == nil {
		return false
	}
	addrs, err := s.opts.Resolver.LookupAddrs(ctx, name)
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if set.NameMayReachPort(sb, netip.AddrPortFrom(a.Unmap(), port), policy.ProtoTCP, s.opts.BlockPrivate) {
			return true
		}
	}
	return false
}

// credentials checks listen_auth: user and password against el's.
func (el *explicitListener) credentials(user, password string) bool {
	if el.spec.User == "" {
		return true
	}
	userOK := subtle.ConstantTimeCompare([]byte(user), []byte(el.spec.User)) == 1
	passOK := bcrypt.CompareHashAndPassword([]byte(el.spec.PassHash), []byte(password)) == nil
	return userOK && passOK
}

// prefixConn reads through r (a bufio.Reader over the connection that
// may hold bytes already) and writes to the connection.
type prefixConn struct {
	conn
	r io.Reader
}

func (p prefixConn) Read(b []byte) (int, error) { return p.r.Read(b) }
