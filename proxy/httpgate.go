package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

// Plain-HTTP gating, RFC 9112 read strictly wherever leniency could let the
// upstream see a request boundary this gate did not (request smuggling).

const (
	maxHTTPHead    = 32 << 10 // request line and header section; also the trailer section
	maxHTTPHeaders = 100      // header fields in a head; also trailer fields
	maxChunkLine   = 4 << 10  // chunk-size line with extensions
	maxPending     = 32 << 10 // checked bytes held back to coalesce small writes
)

var (
	errHTTPMalformed  = errors.New("malformed HTTP/1.x request")
	errConnectRefused = errors.New("CONNECT refused: the tunnel would pass unchecked")
	errUpgradeRefused = errors.New("Upgrade refused: the upgraded stream would pass unchecked")
	errBodyRefused    = errors.New("body refused: a backend that ignored its framing could read it as a request")
	errLineTooLong    = errors.New("line too long")
)

// unsafeHTTP reports whether err refused a request that is well formed but
// could reach the upstream as something the gate did not check.
func unsafeHTTP(err error) bool {
	return errors.Is(err, errConnectRefused) || errors.Is(err, errUpgradeRefused) || errors.Is(err, errBodyRefused)
}

// gateHTTP forwards HTTP/1.x requests from client to upstream, one at a time, calling check(host) with the
// request's Host before its head is forwarded. It follows bodies (Content-Length, chunked incl. trailers) to find
// the next head. It returns when client reaches EOF (nil), on the first denied or malformed request (error; nothing
// of that request was written upstream), or on a write error. The caller answers a denial with a short 403.
//
// A malformed body is found after its head went upstream: tear the
// connection down. Bytes pass exactly as received, small pieces coalesced,
// none held back while the gate waits for the client.
func gateHTTP(client *bufio.Reader, upstream io.Writer, check func(host string) error, proxy bool) error {
	g := &httpGate{in: client, up: upstream, proxy: proxy}
	err := g.run(check)
	if ferr := g.flush(); err == nil {
		err = ferr
	}
	return err
}

// httpGate is one connection's gating state.
type httpGate struct {
	in         *bufio.Reader
	up         io.Writer
	out        []byte // bytes of checked requests not yet written upstream
	head, line []byte // reused buffers: request head; chunk-size or trailer line
	proxy      bool   // an explicit proxy's: Proxy-Authorization and Proxy-Connection stay here
}

func (g *httpGate) run(check func(string) error) error {
	for {
		head, err := g.readHead()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		req, err := parseRequestHead(head)
		if err != nil {
			return err
		}
		if err := check(req.host); err != nil {
			return fmt.Errorf("http: host %q: %w", req.host, err)
		}
		if g.proxy {
			head = dropProxyFields(head)
		}
		if err := g.emit(head); err != nil {
			return err
		}
		if err := g.checkBodyStart(req.bodyLen); err != nil {
			return fmt.Errorf("http: host %q: %w", req.host, err)
		}
		if req.bodyLen >= 0 {
			err = g.copyBody(req.bodyLen)
		} else {
			err = g.copyChunked()
		}
		if err != nil {
			return fmt.Errorf("http: host %q: body: %w", req.host, err)
		}
	}
}

// emit queues checked bytes for upstream. p may alias the client buffer: it
// is copied or written before the next read.
func (g *httpGate) emit(p []byte) error {
	if len(g.out)+len(p) <= maxPending {
		g.out = append(g.out, p...)
		return nil
	}
	if err := g.flush(); err != nil {
		return err
	}
	if _, err := g.up.Write(p); err != nil {
		return fmt.Errorf("http: writing upstream: %w", err)
	}
	return nil
}

func (g *httpGate) flush() error {
	if len(g.out) == 0 {
		return nil
	}
	_, err := g.up.Write(g.out)
	g.out = g.out[:0]
	if err != nil {
		return fmt.Errorf("http: writing upstream: %w", err)
	}
	return nil
}

// readLine appends one line, through its '\n', to dst; dst may grow to at
// most limit bytes. Before a read that may block, checked bytes are flushed.
func (g *httpGate) readLine(dst []byte, limit int) ([]byte, error) {
	for {
		if buf, _ := g.in.Peek(g.in.Buffered()); bytes.IndexByte(buf, '\n') < 0 {
			if err := g.flush(); err != nil {
				return dst, err
			}
		}
		frag, err := g.in.ReadSlice('\n')
		if len(dst)+len(frag) > limit {
			return dst, errLineTooLong
		}
		dst = append(dst, frag...)
		if err != bufio.ErrBufferFull {
			return dst, err
		}
	}
}

// readHead reads a request head through its blank line. Empty lines before
// the request line are tolerated (RFC 9112 §2.2) and kept in the head; EOF
// before any request line is io.EOF.
func (g *httpGate) readHead() ([]byte, error) {
	head := g.head[:0]
	defer func() { g.head = head[:0] }()
	started := false
	for {
		start := len(head)
		var err error
		head, err = g.readLine(head, maxHTTPHead)
		line := head[start:]
		switch {
		case err == io.EOF && !started && len(line) == 0:
			return nil, io.EOF
		case err == io.EOF:
			return nil, fmt.Errorf("http: request head cut short after %d bytes: %w: %w",
				len(head), errHTTPMalformed, io.ErrUnexpectedEOF)
		case errors.Is(err, errLineTooLong):
			return nil, fmt.Errorf("http: request head over %d bytes: %w", maxHTTPHead, errHTTPMalformed)
		case err != nil:
			return nil, fmt.Errorf("http: reading request head: %w", err)
		}
		switch {
		case !isEmptyLine(line) && !started:
			// Judge the request line as soon as it is in: a line
			// protocol that is not HTTP is refused now, not when its
			// client gives up waiting for an answer.
			if _, _, _, err := parseRequestLine(bytes.TrimRight(line, "\r\n")); err != nil {
				return nil, fmt.Errorf("%w: %w", errNotHTTP, err)
			}
			started = true
		case isEmptyLine(line) && started:
			return head, nil
		}
	}
}

// looksLikeHTTP reports whether the first line of b could be an HTTP
// request to some server, though not one the gate takes (HTTP/1.2,
// spaces a lenient server skips): it names HTTP, or starts with a method.
func looksLikeHTTP(b []byte) bool {
	line, _, _ := bytes.Cut(b, []byte{'\n'})
	if bytes.Contains(bytes.ToUpper(line), []byte("HTTP/")) {
		return true
	}
	method, _, _ := bytes.Cut(bytes.TrimLeft(line, " \t\r"), []byte{' '})
	switch string(bytes.ToUpper(method)) {
	case "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH", "CONNECT", "PRI":
		return true
	}
	return false
}

// errNotHTTP is a first line that is no HTTP request line: the flow speaks
// another protocol.
var errNotHTTP = errors.New("not HTTP")

// dropProxyFields removes the fields meant for the proxy from a checked
// request head: the client's credentials for egressd must not reach the
// upstream.
func dropProxyFields(head []byte) []byte {
	out := make([]byte, 0, len(head))
	for rest := head; len(rest) > 0; {
		i := bytes.IndexByte(rest, '\n') + 1
		if i == 0 {
			i = len(rest)
		}
		line := rest[:i]
		rest = rest[i:]
		name, _, _ := bytes.Cut(line, []byte{':'})
		if equalFold(name, "proxy-authorization") || equalFold(name, "proxy-connection") {
			continue
		}
		out = append(out, line...)
	}
	return out
}

func isEmptyLine(l []byte) bool {
	return len(l) == 1 || (len(l) == 2 && l[0] == '\r')
}

// Bodies and request smuggling (CL.0). A backend that does not expect a
// body (many skip it on GET, Python's http.server on any method it does
// not implement) reads the body's bytes as the next request, whose Host
// the gate never checked. So:
//
//   - on a method that defines no body semantics (GET, HEAD, DELETE,
//     OPTIONS, TRACE) a body is refused outright, before anything of the
//     request goes upstream;
//   - on any other method, the body must not start like a request line:
//     after what a lenient parser skips (CR, LF, SP, HTAB), an upper-case
//     token and a space ("GET /…", "POST http://…"). The check reads the
//     body as it is on the wire (a chunked body's first chunk-size line),
//     which is what a backend that ignored the framing would read.
//
// Well-formed bodies (JSON, forms, uploads) never start that way.

// bodilessMethods define no semantics for a request body (RFC 9110 §9.3).
var bodilessMethods = []string{"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"}

// maxBodyLead bounds the CR, LF, SP and HTAB a body may start with.
const maxBodyLead = 16

// checkBodyStart refuses a body (of n bytes, -1: chunked) whose first
// bytes could be read as a request line. It reads no further than needed
// to tell, and never past the body's end.
func (g *httpGate) checkBodyStart(n int64) error {
	if n == 0 {
		return nil
	}
	for k := 1; ; k++ {
		if n > 0 && int64(k) > n {
			return nil // the whole body, and no request line in it
		}
		if g.in.Buffered() < k {
			if err := g.flush(); err != nil {
				return err
			}
		}
		p, err := g.in.Peek(k)
		if err != nil {
			return fmt.Errorf("body: %w", noEOF(err))
		}
		switch requestLike(p) {
		case likeRequest:
			return fmt.Errorf("body starts %q: %w", p, errBodyRefused)
		case notRequest:
			return nil
		}
	}
}

type likeness int

const (
	undecided likeness = iota
	likeRequest
	notRequest
)

// requestLike tells whether p, the first bytes of a body, starts like a
// request line, or cannot tell yet.
func requestLike(p []byte) likeness {
	i := 0
	for i < len(p) && (p[i] == '\r' || p[i] == '\n' || p[i] == ' ' || p[i] == '\t') {
		i++
	}
	if i > maxBodyLead {
		return likeRequest // a lenient parser skips them: refuse rather than guess
	}
	start := i
	for i < len(p) && (p[i] >= 'A' && p[i] <= 'Z' || p[i] == '-' || p[i] == '_') {
		i++
	}
	switch {
	case i == len(p):
		if i-start > 32 {
			return notRequest // no method is that long
		}
		return undecided
	case i > start && p[i] == ' ':
		return likeRequest
	}
	return notRequest
}

// copyBody passes on n body bytes.
func (g *httpGate) copyBody(n int64) error {
	for n > 0 {
		if g.in.Buffered() == 0 {
			if err := g.flush(); err != nil {
				return err
			}
			if _, err := g.in.Peek(1); err != nil {
				return fmt.Errorf("cut short %d bytes before its end: %w", n, noEOF(err))
			}
		}
		k := int(min(n, int64(g.in.Buffered())))
		p, _ := g.in.Peek(k)
		if err := g.emit(p); err != nil {
			return err
		}
		g.in.Discard(k)
		n -= int64(k)
	}
	return nil
}

// copyChunked passes on a chunked body and its trailer section (RFC 9112
// §7.1). Every framing line must end in CRLF: a bare LF here is where
// front and back ends have disagreed before.
func (g *httpGate) copyChunked() error {
	for {
		line, err := g.readCRLFLine(maxChunkLine)
		if err != nil {
			return fmt.Errorf("chunk size line: %w", err)
		}
		size, ok := parseChunkSize(line[:len(line)-2])
		if !ok {
			return fmt.Errorf("chunk size line %q: %w", line, errHTTPMalformed)
		}
		if err := g.emit(line); err != nil {
			return err
		}
		if size == 0 {
			return g.copyTrailers()
		}
		if err := g.copyBody(size); err != nil {
			return err
		}
		if line, err = g.readCRLFLine(2); err != nil || len(line) != 2 {
			return fmt.Errorf("no CRLF after chunk data: %w", errHTTPMalformed)
		}
		if err := g.emit(line); err != nil {
			return err
		}
	}
}

func (g *httpGate) copyTrailers() error {
	total := 0
	for n := 0; ; n++ {
		line, err := g.readCRLFLine(maxHTTPHead - total)
		if err != nil {
			return fmt.Errorf("trailer section: %w", err)
		}
		total += len(line)
		if len(line) == 2 {
			return g.emit(line)
		}
		name, _, err := parseField(line[:len(line)-2])
		switch {
		case err != nil:
			return fmt.Errorf("trailer: %w", err)
		case n >= maxHTTPHeaders:
			return fmt.Errorf("over %d trailer fields: %w", maxHTTPHeaders, errHTTPMalformed)
		case equalFold(name, "host"), equalFold(name, "content-length"),
			equalFold(name, "transfer-encoding"), equalFold(name, "upgrade"):
			return fmt.Errorf("trailer field %q: %w", name, errHTTPMalformed)
		}
		if err := g.emit(line); err != nil {
			return err
		}
	}
}

// readCRLFLine reads a line into g.line that must end in CRLF and hold no
// other control byte but HTAB.
func (g *httpGate) readCRLFLine(limit int) ([]byte, error) {
	line, err := g.readLine(g.line[:0], limit)
	g.line = line
	switch {
	case errors.Is(err, errLineTooLong):
		return nil, fmt.Errorf("line over %d bytes: %w", limit, errHTTPMalformed)
	case err != nil:
		return nil, noEOF(err)
	case len(line) < 2 || line[len(line)-2] != '\r':
		return nil, fmt.Errorf("line %q does not end in CRLF: %w", line, errHTTPMalformed)
	case !fieldValueOK(line[:len(line)-2]):
		return nil, fmt.Errorf("control byte in line %q: %w", line, errHTTPMalformed)
	}
	return line, nil
}

// parseChunkSize reads 1*HEXDIG [ BWS ";" chunk-ext ].
func parseChunkSize(b []byte) (int64, bool) {
	var n int64
	i := 0
	for ; i < len(b); i++ {
		d := strings.IndexByte("0123456789abcdef", lower(b[i]))
		if d < 0 {
			break
		}
		if n > math.MaxInt64>>4 {
			return 0, false
		}
		n = n<<4 | int64(d)
	}
	if i == 0 {
		return 0, false
	}
	rest := b[i:]
	if len(rest) == 0 {
		return n, true
	}
	rest = bytes.TrimLeft(rest, " \t")
	return n, len(rest) > 0 && rest[0] == ';'
}

// noEOF turns EOF inside a message into io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// httpRequest is what the gate needs of a request head.
type httpRequest struct {
	host    string
	bodyLen int64 // -1: chunked
}

// parseRequestHead parses a head as read by readHead.
func parseRequestHead(head []byte) (httpRequest, error) {
	line, rest := nextLine(head)
	for line != nil && len(line) == 0 {
		line, rest = nextLine(rest)
	}
	method, target, minor, err := parseRequestLine(line)
	if err != nil {
		return httpRequest{}, err
	}
	if equalFold(method, "CONNECT") {
		return httpRequest{}, fmt.Errorf("http: CONNECT %q: %w", target, errConnectRefused)
	}
	var host, cl []byte
	hosts, chunked, req := 0, false, httpRequest{}
	for n := 0; ; n++ {
		if line, rest = nextLine(rest); line == nil {
			return req, fmt.Errorf("http: bare CR in header section: %w", errHTTPMalformed)
		}
		if len(line) == 0 {
			break
		}
		name, value, err := parseField(line)
		switch {
		case err != nil:
			return req, fmt.Errorf("http: %w", err)
		case n >= maxHTTPHeaders:
			return req, fmt.Errorf("http: over %d header fields: %w", maxHTTPHeaders, errHTTPMalformed)
		case equalFold(name, "host"):
			host, hosts = value, hosts+1
		case equalFold(name, "content-length"):
			if cl != nil && !bytes.Equal(cl, value) {
				return req, fmt.Errorf("http: Content-Length %q and %q: %w", cl, value, errHTTPMalformed)
			}
			var ok bool
			if req.bodyLen, ok = parseDigits(value, 18); !ok {
				return req, fmt.Errorf("http: Content-Length %q: %w", value, errHTTPMalformed)
			}
			cl = value
		case equalFold(name, "transfer-encoding"):
			if chunked || !equalFold(value, "chunked") {
				return req, fmt.Errorf("http: Transfer-Encoding %q: %w", value, errHTTPMalformed)
			}
			chunked = true
		case equalFold(name, "upgrade"):
			return req, fmt.Errorf("http: Upgrade %q: %w", value, errUpgradeRefused)
		}
	}
	switch {
	case chunked && cl != nil:
		return req, fmt.Errorf("http: both Content-Length and Transfer-Encoding: %w", errHTTPMalformed)
	case chunked && minor == 0:
		return req, fmt.Errorf("http: Transfer-Encoding in HTTP/1.0: %w", errHTTPMalformed)
	case chunked:
		req.bodyLen = -1
	}
	if req.bodyLen != 0 && slices.Contains(bodilessMethods, string(method)) {
		return req, fmt.Errorf("http: %s with a body: %w", method, errBodyRefused)
	}
	req.host, err = requestHost(method, target, host, hosts, minor)
	return req, err
}

// nextLine splits off the first line of b without its LF or CRLF; line is
// nil (not empty) when it holds a bare CR.
func nextLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return nil, nil
	}
	line, rest = b[:i], b[i+1:]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, rest
	}
	return line[:len(line):len(line)], rest
}

// parseRequestLine reads `method SP request-target SP HTTP/1.x`.
func parseRequestLine(line []byte) (method, target []byte, minor byte, err error) {
	method, rest, ok1 := bytes.Cut(line, []byte{' '})
	target, version, ok2 := bytes.Cut(rest, []byte{' '})
	switch {
	case !ok1 || !ok2 || !isToken(method) || len(target) == 0:
		return nil, nil, 0, fmt.Errorf("http: request line %q: %w", line, errHTTPMalformed)
	case string(version) == "HTTP/1.1":
		minor = 1
	case string(version) != "HTTP/1.0":
		return nil, nil, 0, fmt.Errorf("http: version %q: %w", version, errHTTPMalformed)
	}
	if bytes.ContainsFunc(target, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
		return nil, nil, 0, fmt.Errorf("http: request target %q: %w", target, errHTTPMalformed)
	}
	return method, target, minor, nil
}

// parseField splits `name ":" OWS value OWS`, refusing obs-fold and
// whitespace before the colon.
func parseField(line []byte) (name, value []byte, err error) {
	name, value, ok := bytes.Cut(line, []byte{':'})
	if !ok || !isToken(name) {
		return nil, nil, fmt.Errorf("field line %q: %w", line, errHTTPMalformed)
	}
	value = bytes.Trim(value, " \t")
	if !fieldValueOK(value) {
		return nil, nil, fmt.Errorf("field value %q: %w", value, errHTTPMalformed)
	}
	return name, value, nil
}

// requestHost picks the host a request goes to: its Host field, which an
// absolute-form target must agree with.
func requestHost(method, target, host []byte, hosts int, minor byte) (string, error) {
	authority, absolute := cutScheme(target)
	switch {
	case target[0] == '/':
	case string(target) == "*" && string(method) == "OPTIONS":
	case !absolute || len(authority) == 0 || bytes.IndexByte(authority, '@') >= 0:
		return "", fmt.Errorf("http: request target %q: %w", target, errHTTPMalformed)
	}
	if hosts > 1 || hosts == 0 && (minor == 1 || !absolute) {
		return "", fmt.Errorf("http: %d Host fields: %w", hosts, errHTTPMalformed)
	}
	if hosts == 0 {
		host = authority
	}
	h, ok := splitHostPort(host)
	if !ok {
		return "", fmt.Errorf("http: Host %q: %w", host, errHTTPMalformed)
	}
	if absolute {
		if a, ok := splitHostPort(authority); !ok || !equalFold(a, string(h)) {
			return "", fmt.Errorf("http: target %q and Host %q differ: %w", target, host, errHTTPMalformed)
		}
	}
	return string(h), nil
}

// cutScheme returns the authority of an http or https absolute-form target.
func cutScheme(target []byte) (authority []byte, ok bool) {
	for _, scheme := range []string{"http://", "https://"} {
		if len(target) >= len(scheme) && equalFold(target[:len(scheme)], scheme) {
			rest := target[len(scheme):]
			if i := bytes.IndexAny(rest, "/?#"); i >= 0 {
				rest = rest[:i]
			}
			return rest, true
		}
	}
	return nil, false
}

// splitHostPort strips a valid port; a bracketed IP literal keeps its
// brackets, for the caller to refuse.
func splitHostPort(v []byte) ([]byte, bool) {
	host, inner, chars := v, v, regNameChars
	if i := bytes.LastIndexByte(v, ':'); i > bytes.LastIndexByte(v, ']') {
		if n, ok := parseDigits(v[i+1:], 5); !ok || n < 1 || n > 65535 {
			return nil, false
		}
		host, inner = v[:i], v[:i]
	}
	if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		inner, chars = host[1:len(host)-1], "0123456789abcdefABCDEF:."
	}
	return host, len(inner) > 0 && len(bytes.Trim(inner, chars)) == 0
}

// parseDigits reads 1*maxDigits DIGIT.
func parseDigits(v []byte, maxDigits int) (int64, bool) {
	if len(v) == 0 || len(v) > maxDigits {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

const regNameChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;="

// equalFold reports whether b equals s, ignoring ASCII case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		if lower(b[i]) != lower(s[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func isToken(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return len(b) > 0
}

// fieldValueOK refuses control bytes but HTAB.
func fieldValueOK(v []byte) bool {
	for _, c := range v {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// mayStartRequest reports whether c can be the first byte of an HTTP/1.x
// request: a method's first character, or the empty lines RFC 9112 §2.2
// lets come first.
func mayStartRequest(c byte) bool {
	return c == '\r' || c == '\n' || isToken([]byte{c})
}
