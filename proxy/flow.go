package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/egressd/egressd/policy"
)

// handle takes one accepted connection from decision to close.
func (s *Server) handle(ctx context.Context, c *net.TCPConn) {
	f := &flow{
		src:     addrPort(c.RemoteAddr()),
		dst:     originalDst(c, s.opts.Port),
		start:   time.Now(),
		client:  c,
		ingress: IngressTProxy,
	}
	set := s.sandboxes.Load()
	sb, ok := set.BySource(f.src.Addr())
	if !ok {
		s.refuse(f, policy.Decision{Reason: policy.ReasonUnknownSource, Addr: f.src.Addr()}, nil)
		return
	}
	f.sandbox = sb.Name
	if err := s.flows.add(f, s.opts.MaxConnsPerSandbox); err != nil {
		s.refuse(f, policy.Decision{Reason: policy.ReasonConnLimit, Addr: f.dst.Addr()}, err)
		return
	}
	s.route(ctx, set, f, set.DecideAddrPort(sb, f.dst, policy.ProtoTCP))
}

// route takes f on by d, the decision on its destination address: to the
// name its first bytes carry, straight upstream, or refused.
func (s *Server) route(ctx context.Context, set *policy.Set, f *flow, d policy.Decision) {
	switch {
	case d.NeedsName():
		s.inspect(ctx, f)
	case d.Allowed():
		if d, ok := s.admit(set, f, "", d, f.dst); !ok {
			s.refuse(f, d, errCut)
			return
		}
		s.forward(ctx, f, f.dst, f.pre)
	default:
		s.refuse(f, d, nil)
	}
}

var (
	errConnLimit    = errors.New("max_conns_per_sandbox reached")
	errShuttingDown = errors.New("egressd is shutting down")
	errHostChanged  = errors.New("host differs from the connection's first request")
	errCut          = errors.New("cut by a policy change")
	errIdle         = errors.New("no byte either way for proxy.idle_timeout")
)

// admit records f's admission, decided with set. If a policy change
// swapped in another set meanwhile (a lookup or dial can take seconds), f
// is judged again with it: SetSandboxes stores its set before it judges
// the live flows again, so either it sees f admitted or admit sees its set.
func (s *Server) admit(set *policy.Set, f *flow, name string, d policy.Decision, upstream netip.AddrPort) (policy.Decision, bool) {
	f.admit(name, d, upstream)
	if cur := s.sandboxes.Load(); cur != set {
		return s.rejudge(cur, f)
	}
	return d, true
}

// sandboxOf returns f's sandbox in the current set, so a name read after a
// policy change meets the new policy.
func (s *Server) sandboxOf(f *flow) (*policy.Set, *policy.Sandbox, bool) {
	set := s.sandboxes.Load()
	sb, ok := sandboxIn(set, f)
	if !ok {
		return nil, nil, false
	}
	return set, sb, true
}

// sandboxIn finds f's sandbox in set: by source address for a flow the
// kernel diverted, by name for one an explicit listener took (the
// listener is the sandbox's).
func sandboxIn(set *policy.Set, f *flow) (*policy.Sandbox, bool) {
	if f.ingress != IngressTProxy {
		return set.ByName(f.sandbox)
	}
	sb, ok := set.BySource(f.src.Addr())
	return sb, ok && sb.Name == f.sandbox
}

// inspect peeks at the first bytes: a TLS ClientHello or an HTTP request.
func (s *Server) inspect(ctx context.Context, f *flow) {
	f.client.SetReadDeadline(time.Now().Add(s.opts.PeekTimeout))
	var in io.Reader = f.client
	if len(f.pre) > 0 {
		in = io.MultiReader(bytes.NewReader(f.pre), f.client)
	}
	peek := &peekReader{r: in, b: s.peeks, sandbox: f.sandbox}
	defer peek.release()
	raw, sni, err := readClientHello(peek)
	if errors.Is(err, errNotTLS) && isPostgresOpening(raw[0]) {
		var ok bool
		if raw, sni, ok = s.inspectPostgres(ctx, f, raw, peek); !ok {
			return
		}
		err = nil
	}
	if errors.Is(err, errNotTLS) {
		s.inspectHTTP(ctx, f, raw, peek)
		return
	}
	if err != nil {
		d := policy.Decision{Reason: policy.ReasonNoName, Addr: f.dst.Addr()} // nothing came in time
		switch {
		case errors.Is(err, errMalformedHello) || errors.Is(err, errHelloTooLarge):
			d.Reason = policy.ReasonMalformed
		case errors.Is(err, errPeekBudget):
			d.Reason = policy.ReasonPeekLimit
		default:
			f.client.SetReadDeadline(time.Time{})
			if s.forwardNameless(ctx, f, raw, false) { // nothing, or part of a record: not known to carry no name
				return
			}
		}
		s.refuse(f, d, err)
		return
	}
	f.client.SetReadDeadline(time.Time{})
	s.peekLat.Observe(time.Since(f.start))
	d, target, err := s.admitName(ctx, f, sni)
	if !d.Allowed() {
		s.refuseTLS(f, d, err)
		return
	}
	s.forward(ctx, f, target, raw)
}

// TLS alerts egressd answers a ClientHello with (RFC 8446 §6.2): clients
// print them ("tlsv1 alert access denied", Go's "remote error: tls: access
// denied") instead of a reset.
const (
	alertAccessDenied     = 49 // the policy refuses the name
	alertHandshakeFailure = 40 // the upstream cannot be reached over TLS
)

// refuseTLS answers a denied ClientHello with the access_denied alert.
func (s *Server) refuseTLS(f *flow, d policy.Decision, err error) {
	s.refuseWithAlert(f, d, alertAccessDenied, err)
}

// refuseWithAlert answers a ClientHello with a fatal alert in a plaintext
// record, then closes the connection in order so that the client reads it.
func (s *Server) refuseWithAlert(f *flow, d policy.Decision, alert byte, err error) {
	f.client.SetWriteDeadline(time.Now().Add(time.Second))
	f.client.Write([]byte{0x15, 0x03, 0x03, 0x00, 0x02, 0x02, alert})
	f.client.CloseWrite()
	f.client.Close()
	s.endFlow(f, d, err)
}

// admitName judges name with the sandbox's current policy and picks the
// address to dial: never one the name does not resolve to.
func (s *Server) admitName(ctx context.Context, f *flow, name string) (policy.Decision, netip.AddrPort, error) {
	set, sb, ok := s.sandboxOf(f)
	if !ok {
		return policy.Decision{Reason: policy.ReasonUnknownSource, Addr: f.src.Addr()}, netip.AddrPort{}, nil
	}
	d := sb.Policy.DecideNamePort(name, f.dst.Port())
	if name == "" {
		d.Addr = f.dst.Addr()
	}
	if f.want != "" && d.Name != f.want {
		// The TLS SNI or HTTP Host is not the name the client asked the
		// proxy for (domain fronting through an allowed name).
		return policy.Decision{Reason: policy.ReasonNameMismatch, Name: name, Addr: f.dst.Addr()}, netip.AddrPort{}, nil
	}
	if !d.Allowed() {
		return d, netip.AddrPort{}, nil
	}
	if d.Reason == policy.ReasonNoName || d.Reason == policy.ReasonInvalidName {
		// Report-only mode and no name to resolve: the flow goes where
		// the sandbox sent it, if the host guard lets it.
		return s.admitRaw(set, sb, f, d)
	}
	target, pd, err := s.pin(ctx, f, set, sb, d.Name)
	if err != nil {
		return pd, netip.AddrPort{}, err
	}
	if r, denied := sb.Policy.DeniedAddrPort(target.Addr(), policy.ProtoTCP, target.Port()); denied {
		// Only report-only mode pins to such an address: say so.
		d = sb.Policy.Audited(policy.Decision{Reason: policy.ReasonDenyCIDR, Name: d.Name, Addr: target.Addr(),
			Prefix: r.Prefix, Scope: r.Scope()})
	}
	if d, ok := s.admit(set, f, d.Name, d, target); !ok {
		return d, netip.AddrPort{}, errCut
	}
	return d, target, nil
}

// admitRaw admits f, allowed (in report-only mode) with no name to pin,
// to its original destination unless the host guard forbids it.
func (s *Server) admitRaw(set *policy.Set, sb *policy.Sandbox, f *flow, d policy.Decision) (policy.Decision, netip.AddrPort, error) {
	d.Addr = f.dst.Addr()
	if g, bad := set.Guarded(sb, d.Addr); bad {
		return g, netip.AddrPort{}, nil
	}
	if d, ok := s.admit(set, f, "", d, f.dst); !ok {
		return d, netip.AddrPort{}, errCut
	}
	return d, f.dst, nil
}

// forwardNameless relays f, whose first bytes (peeked) carry no name: an
// explicit proxy's flow to the name its client asked for, when certain
// says those bytes are neither TLS nor HTTP (bytes that came late, or a
// request line of an HTTP version the gate does not take, could still
// name another host at the same address); or, when its sandbox is in
// report-only mode, to its original destination. It reports whether it
// did; otherwise such a flow is refused.
func (s *Server) forwardNameless(ctx context.Context, f *flow, peeked []byte, certain bool) bool {
	set, sb, ok := s.sandboxOf(f)
	f.client.SetReadDeadline(time.Time{}) // relayed from here, or refused
	switch {
	case !ok:
		return false
	case f.want != "" && !certain:
		return false
	case f.want != "":
		// The client named the destination to the proxy; the protocol
		// it speaks carries no name to check it against.
		d, target, err := s.admitName(ctx, f, f.want)
		if !d.Allowed() {
			s.refuse(f, d, err)
			return true
		}
		s.forward(ctx, f, target, peeked)
		return true
	case !sb.Policy.Audit():
		return false
	}
	d, target, err := s.admitRaw(set, sb, f, sb.Policy.Audited(policy.Decision{Reason: policy.ReasonNoName}))
	if !d.Allowed() {
		s.refuse(f, d, err)
		return true
	}
	s.forward(ctx, f, target, peeked)
	return true
}

// inspectHTTP gates a plain-HTTP connection request by request.
// The first request head is read through peek (charged to the peek
// budget) and the charge ends once it is admitted.
func (s *Server) inspectHTTP(ctx context.Context, f *flow, peeked []byte, peek *peekReader) {
	if len(peeked) > 0 && !mayStartRequest(peeked[0]) {
		// Neither TLS nor HTTP (a Postgres startup message, a binary
		// protocol): reset now rather than wait for a request line.
		f.client.SetReadDeadline(time.Time{})
		if s.forwardNameless(ctx, f, peeked, true) {
			return
		}
		s.refuse(f, policy.Decision{Reason: policy.ReasonMalformed, Addr: f.dst.Addr()},
			fmt.Errorf("first byte 0x%02x starts neither a TLS ClientHello nor an HTTP request", peeked[0]))
		return
	}
	g := &httpFlow{s: s, ctx: ctx, f: f, peek: peek}
	var src io.Reader = io.MultiReader(bytes.NewReader(peeked), peek)
	if _, sb, ok := s.sandboxOf(f); ok && (sb.Policy.Audit() || f.want != "") {
		// Report-only mode, or an explicit proxy's flow to a name: keep
		// what the gate reads until it admits a request, to relay it raw
		// if it turns out not to be HTTP.
		g.seen = &bytes.Buffer{}
		src = io.TeeReader(src, g.seen)
	}
	err := gateHTTP(bufio.NewReader(src), g, g.check, f.ingress != IngressTProxy)
	g.finish(err)
}

// httpFlow is the upstream side of a gated HTTP connection: dialled when the
// first request is admitted, written to by gateHTTP.
type httpFlow struct {
	s        *Server
	ctx      context.Context
	f        *flow
	host     string
	remote   *net.TCPConn
	denial   *policy.Decision // set when check refused a request
	downDone chan struct{}    // closed when the upstream → sandbox copy ends
	downErr  error            // its error; read after downDone
	peek     *peekReader      // released once the first request is admitted
	seen     *bytes.Buffer    // report-only mode: the bytes read before the first admission
}

func (g *httpFlow) check(host string) error {
	if g.remote != nil {
		if n, err := policy.NormalizeName(host); err != nil || n != g.host {
			g.denial = &policy.Decision{Reason: policy.ReasonHostChanged, Name: host}
			return errHostChanged
		}
		return nil
	}
	g.f.client.SetReadDeadline(time.Time{})
	g.s.peekLat.Observe(time.Since(g.f.start))
	d, target, err := g.s.admitName(g.ctx, g.f, host)
	if !d.Allowed() {
		g.denial = &d
		if err == nil {
			err = errDenied
		}
		return err
	}
	remote, err := g.s.dial(g.ctx, g.f, target)
	if err != nil {
		g.denial = &policy.Decision{Reason: policy.ReasonDialFailed, Name: d.Name, Addr: target.Addr()}
		return err
	}
	g.host, g.remote = d.Name, remote
	g.peek.release()
	g.seen = nil
	g.downDone = make(chan struct{})
	go func() {
		if err := proxyDown(g.f, remote); err != nil {
			g.downErr = err
		}
		close(g.downDone)
	}()
	return nil
}

var errDenied = errors.New("denied by policy")

func (g *httpFlow) Write(p []byte) (int, error) {
	n, err := g.remote.Write(p)
	g.f.up.Add(int64(n))
	return n, err
}

// finish ends the connection after gateHTTP returned.
func (g *httpFlow) finish(err error) {
	f := g.f
	if g.remote == nil { // nothing admitted: refuse, politely for HTTP clients
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		d := policy.Decision{Reason: policy.ReasonNoName, Addr: f.dst.Addr()}
		if g.denial != nil {
			d = *g.denial
		} else if r, ok := gateReason(err); ok {
			d.Reason = r
		}
		if g.relayRaw(err) && g.s.forwardNameless(g.ctx, f, g.seen.Bytes(), !looksLikeHTTP(g.seen.Bytes())) {
			return
		}
		if d.Reason == policy.ReasonMalformed {
			// Not HTTP (an SSH client's banner): an HTTP 403 would be
			// noise in its protocol. Reset.
			g.s.refuse(f, d, err)
			return
		}
		writeForbidden(f.client, f.sandbox, d)
		g.s.endFlow(f, d, err)
		f.client.Close()
		return
	}
	if r, ok := gateReason(err); ok && g.denial == nil {
		g.denial = &policy.Decision{Reason: r, Name: g.host, Addr: f.dst.Addr()}
	}
	if err == nil {
		g.remote.CloseWrite()
		<-g.downDone
		err = g.downErr
	} else {
		f.kill()
		<-g.downDone
	}
	g.remote.Close()
	f.client.Close()
	if g.denial != nil {
		g.s.endFlow(f, *g.denial, err)
		return
	}
	g.s.endFlow(f, f.decision, err)
}

// relayRaw reports whether a connection the gate admitted no request of,
// having ended with err, goes on raw: one that is not HTTP, to the name an
// explicit proxy's client asked for; or, in report-only mode, one that
// never sent a whole request head (a partial line, then silence). Not an
// explicit proxy's flow that started as HTTP: its later bytes could name
// another host. Not what the gate refused (unsafe-http and the like).
func (g *httpFlow) relayRaw(err error) bool {
	if g.seen == nil || g.denial != nil {
		return false
	}
	if errors.Is(err, errNotHTTP) {
		return true
	}
	_, sb, ok := g.s.sandboxOf(g.f)
	incomplete := errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, io.ErrUnexpectedEOF)
	return ok && sb.Policy.Audit() && g.f.want == "" && incomplete
}

// refuse ends a denied flow with a TCP reset and logs the decision.
func (s *Server) refuse(f *flow, d policy.Decision, err error) {
	resetClose(f.client)
	s.endFlow(f, d, err)
}

// gateReason is the denial reason of an error gateHTTP returned for a
// request it refused, if it is one.
func gateReason(err error) (policy.Reason, bool) {
	switch {
	case unsafeHTTP(err):
		return policy.ReasonUnsafeHTTP, true
	case errors.Is(err, errHTTPMalformed):
		return policy.ReasonMalformed, true
	case errors.Is(err, errPeekBudget):
		return policy.ReasonPeekLimit, true
	}
	return 0, false
}

// writeForbidden answers a denied HTTP request: 403, a body naming the
// sandbox, the host and the rule, and the reason in X-Egressd-Deny.
func writeForbidden(c net.Conn, sandbox string, d policy.Decision) {
	body := "egressd: sandbox " + strconv.Quote(sandbox) + ": " + d.String() + "\n"
	c.SetWriteDeadline(time.Now().Add(time.Second))
	io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nConnection: close\r\n"+
		"X-Egressd-Deny: "+d.Reason.String()+"\r\n"+
		"Content-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
}

func addrPort(a net.Addr) netip.AddrPort {
	ta, _ := a.(*net.TCPAddr)
	if ta == nil {
		return netip.AddrPort{}
	}
	ap := ta.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
