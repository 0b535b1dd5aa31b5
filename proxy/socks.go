package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"

	"github.com/things-go/go-socks5"
	"github.com/things-go/go-socks5/statute"

	"github.com/egressd/egressd/policy"
)

// socksVersion is the first byte of a SOCKS5 client's greeting.
const socksVersion = statute.VersionSocks5

// serveSOCKS serves one SOCKS5 connection (RFC 1928) with
// github.com/things-go/go-socks5, which negotiates (no authentication, or
// RFC 1929 username and password for a listener with listen_auth), reads
// the request and sends replies; egressd judges and relays. BIND and UDP
// ASSOCIATE are refused: one would let the outside connect in, the other
// carry UDP past the kernel's rules.
func (s *Server) serveSOCKS(ctx context.Context, el *explicitListener, f *flow, br *bufio.Reader, requestDone func()) {
	refuseCmd := func(_ context.Context, w io.Writer, req *socks5.Request) error {
		socks5.SendReply(w, statute.RepCommandNotSupported, nil)
		s.endFlow(f, policy.Decision{Reason: policy.ReasonUnsupported, Name: socksCommand(req.Command)}, nil)
		return nil
	}
	opts := []socks5.Option{
		socks5.WithResolver(noResolver{}), // egressd resolves, once the policy allows the name
		socks5.WithConnectHandle(func(_ context.Context, w io.Writer, req *socks5.Request) error {
			requestDone() // the flow runs in this call: its request's bytes are no longer peeked
			s.socksConnect(ctx, f, w, req, br)
			return nil
		}),
		socks5.WithBindHandle(refuseCmd),
		socks5.WithAssociateHandle(refuseCmd),
	}
	if el.spec.User != "" {
		opts = append(opts, socks5.WithCredential(credentialStore{el}))
	}
	err := socks5.NewServer(opts...).ServeConn(prefixConn{conn: f.client, r: br})
	select {
	case <-f.done: // a request was judged; its flow has ended
	default:
		d := policy.Decision{Reason: policy.ReasonMalformed}
		if errors.Is(err, statute.ErrUserAuthFailed) || errors.Is(err, statute.ErrNoSupportedAuth) {
			d.Reason = policy.ReasonAuth
		}
		s.refuse(f, d, err)
	}
}

// socksConnect judges a CONNECT and, when allowed, answers success and
// runs the flow to its end (ServeConn closes the connection on return).
func (s *Server) socksConnect(ctx context.Context, f *flow, w io.Writer, req *socks5.Request, br *bufio.Reader) {
	host := req.RawDestAddr.FQDN
	if host == "" {
		host = req.RawDestAddr.IP.String()
	}
	d, next, deny := s.judgeRequest(ctx, f, host, uint16(req.RawDestAddr.Port))
	if deny {
		socks5.SendReply(w, socksReply(d), nil)
		s.endFlow(f, d, nil)
		return
	}
	if inner, ok := req.Reader.(*bufio.Reader); ok {
		takeBuffered(f, inner)
	}
	takeBuffered(f, br)
	bound, _ := f.client.LocalAddr().(*net.TCPAddr)
	if bound == nil { // a unix socket: there is no address to report
		bound = &net.TCPAddr{IP: net.IPv4zero}
	}
	if err := socks5.SendReply(w, statute.RepSuccess, bound); err != nil {
		s.refuse(f, d, err)
		return
	}
	next()
	<-f.done
}

// socksReply is the reply code of a refused request.
func socksReply(d policy.Decision) uint8 {
	if d.Reason == policy.ReasonNotResolved {
		return statute.RepHostUnreachable
	}
	return statute.RepRuleFailure // "connection not allowed by ruleset"
}

func socksCommand(c byte) string {
	switch c {
	case statute.CommandBind:
		return "SOCKS5 BIND"
	case statute.CommandAssociate:
		return "SOCKS5 UDP ASSOCIATE"
	}
	return "SOCKS5 command"
}

// noResolver leaves names unresolved: go-socks5 would otherwise look one
// up before egressd has judged it.
type noResolver struct{}

func (noResolver) Resolve(ctx context.Context, _ string) (context.Context, net.IP, error) {
	return ctx, nil, nil
}

// credentialStore checks RFC 1929 credentials against listen_auth.
type credentialStore struct{ el *explicitListener }

func (c credentialStore) Valid(user, password, _ string) bool {
	return c.el.credentials(user, password)
}
