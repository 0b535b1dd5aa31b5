package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/egressd/egressd/policy"
)

// proxyRequest is the first request on an explicit listener that is not
// SOCKS5: CONNECT host:port, or an HTTP request in absolute form (or
// origin form with a Host) to be gated like the transparent path's.
type proxyRequest struct {
	connect bool
	host    string // name or address literal (no brackets)
	port    uint16
	user    string // Proxy-Authorization: Basic, if sent
	pass    string
	hasAuth bool
}

var (
	errProxyRequest = errors.New("not an HTTP proxy request")
	errHTTPS        = errors.New("an https:// URL goes through CONNECT, not as a plain request")
)

// parseProxyRequest reads a request head (through its blank line).
func parseProxyRequest(head []byte) (proxyRequest, error) {
	line, rest := nextLine(head)
	for line != nil && len(line) == 0 {
		line, rest = nextLine(rest)
	}
	method, target, _, err := parseRequestLine(line)
	if err != nil {
		return proxyRequest{}, fmt.Errorf("%w: %w", errProxyRequest, err)
	}
	var r proxyRequest
	var authority, hostField []byte
	switch authority, _ = cutScheme(target); {
	case string(method) == "CONNECT":
		r.connect, authority = true, target
	case len(target) >= 8 && equalFold(target[:8], "https://"):
		return proxyRequest{}, errHTTPS
	}
	for {
		if line, rest = nextLine(rest); line == nil {
			return proxyRequest{}, fmt.Errorf("%w: bare CR or no blank line", errProxyRequest)
		}
		if len(line) == 0 {
			break
		}
		name, value, err := parseField(line)
		if err != nil {
			return proxyRequest{}, fmt.Errorf("%w: %w", errProxyRequest, err)
		}
		switch {
		case equalFold(name, "host"):
			hostField = value
		case equalFold(name, "proxy-authorization"):
			r.user, r.pass, r.hasAuth = parseBasic(value)
		}
	}
	if len(authority) == 0 {
		authority = hostField // origin form: the Host says where
	}
	host, port, err := splitAuthority(authority, !r.connect)
	if err != nil {
		return proxyRequest{}, err
	}
	r.host, r.port = host, port
	return r, nil
}

// splitAuthority reads host[:port] ([v6]:port); the port is required for
// CONNECT, 80 otherwise.
func splitAuthority(a []byte, defaultPort bool) (string, uint16, error) {
	if _, ok := splitHostPort(a); !ok {
		return "", 0, fmt.Errorf("%w: authority %q", errProxyRequest, a)
	}
	host, port, err := net.SplitHostPort(string(a))
	if err != nil {
		if !defaultPort {
			return "", 0, fmt.Errorf("%w: authority %q: want host:port", errProxyRequest, a)
		}
		host, port = string(bytes.Trim(a, "[]")), "80"
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 || host == "" {
		return "", 0, fmt.Errorf("%w: authority %q", errProxyRequest, a)
	}
	return host, uint16(n), nil
}

// parseBasic reads `Basic base64(user:password)`.
func parseBasic(v []byte) (user, pass string, ok bool) {
	scheme, cred, found := bytes.Cut(v, []byte{' '})
	if !found || !equalFold(scheme, "basic") {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(cred)))
	if err != nil {
		return "", "", false
	}
	u, p, found := bytes.Cut(raw, []byte{':'})
	return string(u), string(p), found
}

// serveHTTPProxy serves a connection whose first byte is not SOCKS5's: an
// HTTP CONNECT tunnel, or plain HTTP requests gated one by one.
func (s *Server) serveHTTPProxy(ctx context.Context, el *explicitListener, f *flow, br *bufio.Reader) {
	g := &httpGate{in: br, up: io.Discard}
	head, err := g.readHead()
	if err != nil {
		s.refuse(f, policy.Decision{Reason: policy.ReasonMalformed}, err)
		return
	}
	req, err := parseProxyRequest(head)
	switch {
	case errors.Is(err, errHTTPS):
		s.answer(f, "400 Bad Request", policy.Decision{Reason: policy.ReasonUnsupported, Name: "https:// absolute-form"}, err)
		return
	case err != nil:
		s.refuse(f, policy.Decision{Reason: policy.ReasonMalformed}, err)
		return
	case el.spec.User != "" && !(req.hasAuth && el.credentials(req.user, req.pass)):
		s.answer(f, "407 Proxy Authentication Required", policy.Decision{Reason: policy.ReasonAuth}, nil)
		return
	}
	if !req.connect {
		// Plain HTTP: the transparent path's gate judges every request's
		// Host and drops the Proxy-* fields; the first request's port is
		// the flow's.
		f.pre = append([]byte(nil), head...)
		takeBuffered(f, br)
		f.dst = netip.AddrPortFrom(netip.Addr{}, req.port)
		if a, err := netip.ParseAddr(req.host); err == nil { // http://198.51.100.7/: a raw destination
			f.dst = netip.AddrPortFrom(a.Unmap().WithZone(""), req.port)
			if set, sb, ok := s.sandboxOf(f); ok {
				s.route(ctx, set, f, set.DecideAddrPort(sb, f.dst, policy.ProtoTCP))
				return
			}
		}
		s.inspect(ctx, f)
		return
	}
	d, next, deny := s.judgeRequest(ctx, f, req.host, req.port)
	if deny {
		s.answer(f, "403 Forbidden", d, nil)
		return
	}
	f.client.SetWriteDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(f.client, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		s.refuse(f, d, err)
		return
	}
	f.client.SetWriteDeadline(time.Time{})
	takeBuffered(f, br)
	next()
}

// answer refuses a proxy request with an HTTP status: the 403 of a denial
// names the sandbox and rule (writeForbidden); a 407 asks for
// credentials.
func (s *Server) answer(f *flow, status string, d policy.Decision, err error) {
	f.client.SetWriteDeadline(time.Now().Add(time.Second))
	if status == "403 Forbidden" {
		writeForbidden(f.client, f.sandbox, d)
	} else {
		body := "egressd: " + d.String() + "\n"
		challenge := ""
		if d.Reason == policy.ReasonAuth {
			challenge = "Proxy-Authenticate: Basic realm=\"egressd\"\r\n"
		}
		io.WriteString(f.client, "HTTP/1.1 "+status+"\r\nContent-Type: text/plain\r\nConnection: close\r\n"+
			challenge+"X-Egressd-Deny: "+d.Reason.String()+"\r\n"+
			"Content-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
	}
	f.client.Close()
	s.endFlow(f, d, err)
}
