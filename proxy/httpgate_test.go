package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

var errTestDenied = errors.New("test: denied")

// denyTest denies hosts starting with "deny", as the fuzz target does.
func denyTest(host string) error {
	if strings.HasPrefix(strings.ToLower(host), "deny") {
		return errTestDenied
	}
	return nil
}

// gateRecorder is an upstream that fails the test when written to before
// any check passed.
type gateRecorder struct {
	tb      testing.TB
	out     bytes.Buffer
	allowed int
}

func (r *gateRecorder) Write(p []byte) (int, error) {
	if r.allowed == 0 {
		r.tb.Errorf("%d bytes written upstream before any check passed", len(p))
	}
	if len(p) > maxPending {
		r.tb.Errorf("one write of %d bytes: more than maxPending held back", len(p))
	}
	return r.out.Write(p)
}

type gateRun struct {
	out   string
	hosts []string
	err   error
}

func runGate(tb testing.TB, r io.Reader, bufSize int) gateRun {
	rec := &gateRecorder{tb: tb}
	var hosts []string
	err := gateHTTP(bufio.NewReaderSize(r, bufSize), rec, func(h string) error {
		hosts = append(hosts, h)
		err := denyTest(h)
		if err == nil {
			rec.allowed++
		}
		return err
	}, false)
	return gateRun{rec.out.String(), hosts, err}
}

const (
	get1 = "GET / HTTP/1.1\r\nHost: a.example\r\n\r\n"
	get2 = "GET /two HTTP/1.1\nHost: b.example:8080\nAccept: */*\n\n"
	// smuggled looks like a request head; inside a body it must stay data.
	smuggled = "GET /admin HTTP/1.1\r\nHost: deny.example\r\n\r\n"
	chunked  = "POST /up HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n"
	same     = "\x00same as input"
	get11    = "GET / HTTP/1.1\r\n"
	getA     = get11 + "Host: a.example\r\n"
	post     = "POST / HTTP/1.1\r\nHost: a.example\r\n"
)

type gateCase struct {
	name  string
	in    string
	hosts []string // hosts check saw
	out   string   // written upstream
	err   error
}

func TestGateHTTP(t *testing.T) {
	onlyA, twoA := []string{"a.example"}, []string{"a.example", "a.example"}
	long := strings.Repeat("x", 40<<10)
	tests := []gateCase{
		{"origin-form", get1, onlyA, same, nil},
		{"bare LF and port", get2, []string{"b.example"}, same, nil},
		{"OWS around Host", get11 + "Host: \t a.example \t\r\n\r\n", onlyA, same, nil},
		{"obs-text in a value", get11 + "X: caf\xe9\r\nHost: a.example\r\n\r\n", onlyA, same, nil},
		{"HTTP/1.0 absolute-form without Host", "GET http://a.example/x HTTP/1.0\r\n\r\n", onlyA, same, nil},
		{"absolute-form agrees with Host", "GET HTTP://A.example:80/x?y HTTP/1.1\r\nHost: a.EXAMPLE\r\n\r\n", []string{"a.EXAMPLE"}, same, nil},
		{"https absolute-form", "GET https://a.example HTTP/1.1\r\nHost: a.example:443\r\n\r\n", onlyA, same, nil},
		{"OPTIONS asterisk", "OPTIONS * HTTP/1.1\r\nHost: a.example\r\n\r\n", onlyA, same, nil},
		{"IPv6 literal kept bracketed", get11 + "Host: [2001:db8::1]:8080\r\n\r\n", []string{"[2001:db8::1]"}, same, nil},
		{"IPv4 literal", get11 + "Host: 198.51.100.7\r\n\r\n", []string{"198.51.100.7"}, same, nil},
		{"empty lines before request", "\r\n\n" + get1, onlyA, same, nil},
		{"empty input", "", nil, "", nil},
		{"only empty lines", "\r\n\r\n", nil, "", nil},
		{"keep-alive and pipelined", get1 + get2 + get1, []string{"a.example", "b.example", "a.example"}, same, nil},
		{"JSON body", post + "Content-Length: 7\r\n\r\n{\"a\":1}" + get1, twoA, same, nil},
		{"text body in lower case", post + "Content-Length: 11\r\n\r\nhello world" + get1, twoA, same, nil},
		{"body shorter than a request line", post + "Content-Length: 3\r\n\r\nGET" + get1, twoA, same, nil},
		{"body that is a method and a space", post + "Content-Length: 4\r\n\r\nGET " + get1, onlyA, post + "Content-Length: 4\r\n\r\n", errBodyRefused},
		{"upper-case body without a space", post + "Content-Length: 6\r\n\r\nABCDEF" + get1, twoA, same, nil},
		{"DELETE without a body", "DELETE /x HTTP/1.1\r\nHost: a.example\r\nContent-Length: 0\r\n\r\n", onlyA, same, nil},
		{"repeated equal Content-Length", post + "Content-Length: 2\r\nContent-Length: 2\r\n\r\nhi" + get1, twoA, same, nil},
		{"body larger than the write buffer", post + "Content-Length: 40960\r\n\r\n" + long + get1, twoA, same, nil},
		{"chunked with extensions and trailers", chunked + "5;a=b;q=\"x y\"\r\nhello\r\n2B\r\n" + smuggled + "\r\n0 ;last\r\nX-T: v\r\nY: w\r\n\r\n" + get1, twoA, same, nil},
		{"chunked upper case", post + "Transfer-Encoding: CHUNKED\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n", onlyA, same, nil},

		{"second of three denied", get1 + get11 + "Host: deny.example:81\r\n\r\n" + get2, []string{"a.example", "deny.example"}, get1, errTestDenied},
		{"first denied", get11 + "Host: Deny.example\r\n\r\n", []string{"Deny.example"}, "", errTestDenied},
		{"CONNECT", "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n", nil, "", errConnectRefused},
		// CL.0: a backend that ignores the body would read it as a request.
		{"body holding a request head", post + "Content-Length: 43\r\n\r\n" + smuggled + get1, onlyA, post + "Content-Length: 43\r\n\r\n", errBodyRefused},
		{"body holding a request after empty lines", post + "Content-Length: 45\r\n\r\n\r\n" + smuggled, onlyA, post + "Content-Length: 45\r\n\r\n", errBodyRefused},
		{"body holding an HTTP/0.9 request", post + "Content-Length: 12\r\n\r\nGET /admin\r\n", onlyA, post + "Content-Length: 12\r\n\r\n", errBodyRefused},
		{"GET with a body", getA + "Content-Length: 5\r\n\r\nhello", nil, "", errBodyRefused},
		{"HEAD with a chunked body", "HEAD / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", nil, "", errBodyRefused},
		{"DELETE with a body after a request", get1 + "DELETE /x HTTP/1.1\r\nHost: a.example\r\nContent-Length: 2\r\n\r\nhi", onlyA, get1, errBodyRefused},
		{"connect lower case after a request", get1 + "connect a.example:443 HTTP/1.1\r\nHost: a.example\r\n\r\n", onlyA, get1, errConnectRefused},
		{"Upgrade websocket", getA + "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n", nil, "", errUpgradeRefused},
		{"Upgrade h2c after a request", get1 + getA + "upgrade: h2c\r\n\r\n", onlyA, get1, errUpgradeRefused},

		{"head cut short", get1[:20], nil, "", io.ErrUnexpectedEOF},

		{"body cut short", post + "Content-Length: 9\r\n\r\nabc", onlyA, same, io.ErrUnexpectedEOF},
		{"chunk size not hex", chunked + "5g\r\nhello\r\n", onlyA, chunked, errHTTPMalformed},
		{"chunk size line with bare LF", chunked + "5\nhello\r\n0\r\n\r\n", onlyA, chunked, errHTTPMalformed},
		{"chunk size trailing space", chunked + "5 \r\nhello\r\n0\r\n\r\n", onlyA, chunked, errHTTPMalformed},
		{"chunk size overflow", chunked + "10000000000000000\r\n", onlyA, chunked, errHTTPMalformed},
		{"chunk extension with bare CR", chunked + "5;a\rb\r\nhello\r\n0\r\n\r\n", onlyA, chunked, errHTTPMalformed},
		{"chunk data longer than its size", chunked + "3\r\nhello\r\n0\r\n\r\n", onlyA, chunked + "3\r\nhel", errHTTPMalformed},
		{"chunk data then bare LF", chunked + "5\r\nhello\n0\r\n\r\n", onlyA, chunked + "5\r\nhello", errHTTPMalformed},
		{"trailer with Host", chunked + "0\r\nHost: deny.example\r\n\r\n", onlyA, chunked + "0\r\n", errHTTPMalformed},
		{"trailer obs-fold", chunked + "0\r\nX: a\r\n b\r\n\r\n", onlyA, chunked + "0\r\nX: a\r\n", errHTTPMalformed},
		{"trailer with bare LF", chunked + "0\r\nX: a\n\r\n", onlyA, chunked + "0\r\n", errHTTPMalformed},
		{"chunked cut short", chunked + "5\r\nhel", onlyA, chunked + "5\r\nhel", io.ErrUnexpectedEOF},
	}
	// Malformed heads: refused before check, nothing forwarded.
	for _, m := range []struct{ name, in string }{
		{"HTTP/0.9", "GET /\r\n\r\n"},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"},
		{"HTTP/1.2", "GET / HTTP/1.2\r\nHost: a.example\r\n\r\n"},
		{"lower-case version", "GET / http/1.1\r\nHost: a.example\r\n\r\n"},
		{"two spaces in request line", "GET  / HTTP/1.1\r\nHost: a.example\r\n\r\n"},
		{"tab in request line", "GET\t/ HTTP/1.1\r\nHost: a.example\r\n\r\n"},
		{"non-ASCII target", "GET /\xff HTTP/1.1\r\nHost: a.example\r\n\r\n"},
		{"two equal Host fields", getA + "Host: a.example\r\n\r\n"},
		{"HTTP/1.1 without Host", get11 + "\r\n"},
		{"HTTP/1.0 origin-form without Host", "GET / HTTP/1.0\r\n\r\n"},
		{"empty Host", get11 + "Host:\r\n\r\n"},
		{"Host with path", get11 + "Host: a.example/x\r\n\r\n"},
		{"Host with userinfo", get11 + "Host: u@a.example\r\n\r\n"},
		{"Host port 0", get11 + "Host: a.example:0\r\n\r\n"},
		{"Host port 65536", get11 + "Host: a.example:65536\r\n\r\n"},
		{"Host empty port", get11 + "Host: a.example:\r\n\r\n"},
		{"Host two ports", get11 + "Host: a.example:80:80\r\n\r\n"},
		{"Host unclosed bracket", get11 + "Host: [2001:db8::1\r\n\r\n"},
		{"absolute-form disagrees with Host", "GET http://deny.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n"},
		{"absolute-form with userinfo", "GET http://a.example@deny.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n"},
		{"absolute-form empty authority", "GET http:///x HTTP/1.0\r\n\r\n"},
		{"authority-form GET", "GET a.example:80 HTTP/1.1\r\nHost: a.example\r\n\r\n"},
		{"asterisk GET", "GET * HTTP/1.1\r\nHost: a.example\r\n\r\n"},
		{"obs-fold", getA + "X: a\r\n b\r\n\r\n"},
		{"obs-fold first field", get11 + " Host: deny.example\r\nHost: a.example\r\n\r\n"},
		{"space before colon", get11 + "Host : a.example\r\n\r\n"},
		{"tab before colon", get11 + "Host\t: a.example\r\n\r\n"},
		{"field without colon", getA + "X\r\n\r\n"},
		{"bare CR inside a field", get11 + "X: a\rHost: deny.example\r\nHost: a.example\r\n\r\n"},
		{"CR CR LF", get11 + "Host: a.example\r\r\n\r\n"},
		{"bare CR before request line", "\r\r\n" + get1},
		{"NUL in a value", getA + "X: \x00\r\n\r\n"},
		{"Content-Length and Transfer-Encoding", post + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{"Transfer-Encoding and Content-Length", post + "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"},
		{"differing Content-Length", post + "Content-Length: 4\r\nContent-Length: 43\r\n\r\n"},
		{"Content-Length list", post + "Content-Length: 4, 4\r\n\r\n"},
		{"Content-Length signed", post + "Content-Length: +4\r\n\r\n"},
		{"Content-Length 19 digits", post + "Content-Length: 1000000000000000000\r\n\r\n"},
		{"Transfer-Encoding gzip, chunked", post + "Transfer-Encoding: gzip, chunked\r\n\r\n"},
		{"Transfer-Encoding twice", post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{"Transfer-Encoding with Kelvin sign", post + "Transfer-Encoding: chun\u212aed\r\n\r\n"},
		{"Transfer-Encoding in HTTP/1.0", "POST / HTTP/1.0\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{"101 header fields", getA + strings.Repeat("X: y\r\n", 100) + "\r\n"},
		{"head over 32 KiB", getA + "X: " + long + "\r\n\r\n"},
	} {
		tests = append(tests, gateCase{m.name, m.in, nil, "", errHTTPMalformed})
	}
	for _, tt := range tests {
		if tt.out == same {
			tt.out = tt.in
		}
		t.Run(tt.name, func(t *testing.T) {
			for _, mode := range []string{"whole", "one-byte-reads"} {
				var got gateRun
				if mode == "whole" {
					got = runGate(t, strings.NewReader(tt.in), 4096)
				} else {
					got = runGate(t, iotest.OneByteReader(strings.NewReader(tt.in)), 16)
				}
				if !errors.Is(got.err, tt.err) || (got.err == nil) != (tt.err == nil) {
					t.Errorf("%s: err = %v, want %v", mode, got.err, tt.err)
				}
				if strings.Join(got.hosts, " ") != strings.Join(tt.hosts, " ") {
					t.Errorf("%s: check saw %q, want %q", mode, got.hosts, tt.hosts)
				}
				if tt.err == errTestDenied && !strings.Contains(got.err.Error(), strconv.Quote(got.hosts[len(got.hosts)-1])) {
					t.Errorf("%s: err %q does not name the denied host", mode, got.err)
				}
				if got.out != tt.out {
					t.Errorf("%s: upstream got %d bytes %.80q, want %d bytes %.80q", mode, len(got.out), got.out, len(tt.out), tt.out)
				}
			}
			checkGateInvariants(t, []byte(tt.in))
		})
	}
}

// TestGateHTTPWaitsForResponses plays a client that sends each request only
// after upstream received the previous one: the gate must not hold checked
// bytes back while it waits for the client.
func TestGateHTTPWaitsForResponses(t *testing.T) {
	c, s := net.Pipe()
	t.Cleanup(func() { c.Close(); s.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second)) // hang guards, not timing assertions
	s.SetDeadline(time.Now().Add(10 * time.Second))
	up := &notifyWriter{got: make(chan int, 16)}
	done := make(chan error, 1)
	go func() { done <- gateHTTP(bufio.NewReader(s), up, denyTest, false) }()
	reqs := []string{get1, chunked + "5\r\nhello\r\n", "0\r\n\r\n", "GET / HTTP/1.1\r\nHost: deny.example\r\n\r\n"}
	want, have := 0, 0
	for _, r := range reqs[:3] {
		c.Write([]byte(r))
		for want += len(r); have < want; {
			select {
			case n := <-up.got:
				have += n
			case <-time.After(10 * time.Second): // a hang guard, not a timing assertion
				t.Fatalf("upstream has %d of %d bytes while the gate waits for the client", have, want)
			}
		}
	}
	c.Write([]byte(reqs[3]))
	if err := <-done; !errors.Is(err, errTestDenied) {
		t.Fatalf("err = %v, want the denial", err)
	}
	if string(up.buf) != reqs[0]+reqs[1]+reqs[2] {
		t.Errorf("upstream got %q", up.buf)
	}
}

type notifyWriter struct {
	buf []byte
	got chan int
}

func (w *notifyWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	w.got <- len(p)
	return len(p), nil
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, net.ErrClosed }

func TestGateHTTPWriteError(t *testing.T) {
	err := gateHTTP(bufio.NewReader(strings.NewReader(get1+get1)), failWriter{}, denyTest, false)
	if !errors.Is(err, net.ErrClosed) {
		t.Errorf("err = %v, want the write error", err)
	}
}

func TestGateHTTPAllocs(t *testing.T) {
	in := strings.Repeat(get1+get2, 10)
	r := strings.NewReader(in)
	br := bufio.NewReader(r)
	allocs := testing.AllocsPerRun(50, func() {
		r.Reset(in)
		br.Reset(r)
		if err := gateHTTP(br, io.Discard, denyTest, false); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 20+10 { // a host string per request; the gate and its growing buffers
		t.Errorf("gateHTTP allocates %v times for 20 requests, budget 30", allocs)
	}
}

// checkGateInvariants runs the gate on in and checks what must always hold:
// upstream gets a prefix of in, none of a denied request, and where
// net/http also parses a request, both see the same host and head end.
func checkGateInvariants(t *testing.T, in []byte) {
	t.Helper()
	rd := bytes.NewReader(in)
	br := bufio.NewReader(rd)
	rec := &gateRecorder{tb: t}
	type checkCall struct {
		host    string
		headEnd int
		err     error
	}
	var calls []checkCall
	err := gateHTTP(br, rec, func(h string) error {
		if len(calls) > 0 && calls[len(calls)-1].err != nil {
			t.Fatalf("check called after a denial")
		}
		c := checkCall{h, len(in) - rd.Len() - br.Buffered(), denyTest(h)}
		calls = append(calls, c)
		if c.err == nil {
			rec.allowed++
		}
		return c.err
	}, false)
	out := rec.out.Bytes()
	if !bytes.HasPrefix(in, out) {
		t.Fatalf("upstream got bytes that are not a prefix of the input")
	}
	if n := len(calls); n > 0 && calls[n-1].err != nil {
		last := calls[n-1]
		req, perr := parseRequestHead(in[len(out):last.headEnd])
		if !errors.Is(err, last.err) || perr != nil || req.host != last.host {
			t.Fatalf("denied %q, but upstream got %d bytes, not all before its head ending at %d (err %v)",
				last.host, len(out), last.headEnd, err)
		}
	}
	if err == nil && len(bytes.Trim(in[len(out):], "\r\n")) > 0 {
		t.Fatalf("gate returned nil with %d bytes not forwarded", len(in)-len(out))
	}
	rd2 := bytes.NewReader(in)
	br2 := bufio.NewReader(rd2)
	for i := 0; i < len(calls); i++ {
		req, err := http.ReadRequest(br2)
		if err != nil {
			return
		}
		end := len(in) - rd2.Len() - br2.Buffered()
		if end != calls[i].headEnd || !strings.EqualFold(stripPort(req.Host), calls[i].host) {
			t.Fatalf("request %d: gate saw host %q ending at %d, net/http %q ending at %d",
				i, calls[i].host, calls[i].headEnd, req.Host, end)
		}
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return
		}
	}
}

func stripPort(h string) string {
	if i := strings.LastIndexByte(h, ':'); i > strings.LastIndexByte(h, ']') {
		return h[:i]
	}
	return h
}

// FuzzGateHTTP's seeds are in testdata/fuzz/FuzzGateHTTP.
func FuzzGateHTTP(f *testing.F) {
	f.Add([]byte(get1 + get2))
	f.Fuzz(func(t *testing.T, in []byte) {
		checkGateInvariants(t, in)
	})
}

func BenchmarkGateHTTP(b *testing.B) {
	in := strings.Repeat(get1+"POST /form HTTP/1.1\r\nHost: a.example\r\nContent-Type: text/plain\r\nContent-Length: 1024\r\n\r\n"+
		strings.Repeat("z", 1024)+chunked+"100\r\n"+strings.Repeat("c", 256)+"\r\n0\r\n\r\n", 10)
	r := strings.NewReader(in)
	br := bufio.NewReader(r)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(in)
		br.Reset(r)
		if err := gateHTTP(br, io.Discard, denyTest, false); err != nil {
			b.Fatal(err)
		}
	}
}
