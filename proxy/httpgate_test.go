package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
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
	})
	return gateRun{rec.out.String(), hosts, err}
}

const (
	get1 = "GET / HTTP/1.1\r\nHost: a.example\r\n\r\n"
	get2 = "GET /two HTTP/1.1\nHost: b.example:8080\nAccept: */*\n\n"
	// smuggled looks like a request head; inside a body it must stay data.
	smuggled = "GET /admin HTTP/1.1\r\nHost: deny.example\r\n\r\n"
	chunked  = "POST /up HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n"
	same     = "\x00same as input"
)

func TestGateHTTP(t *testing.T) {
	long := strings.Repeat("x", 40<<10)
	tests := []struct {
		name  string
		in    string
		hosts []string // hosts check saw
		out   string   // written upstream
		err   error
	}{
		{"origin-form", get1, []string{"a.example"}, same, nil},
		{"bare LF and port", get2, []string{"b.example"}, same, nil},
		{"OWS around Host", "GET / HTTP/1.1\r\nHost: \t a.example \t\r\n\r\n", []string{"a.example"}, same, nil},
		{"obs-text in a value", "GET / HTTP/1.1\r\nX: caf\xe9\r\nHost: a.example\r\n\r\n", []string{"a.example"}, same, nil},
		{"HTTP/1.0 absolute-form without Host", "GET http://a.example/x HTTP/1.0\r\n\r\n", []string{"a.example"}, same, nil},
		{"absolute-form agrees with Host", "GET HTTP://A.example:80/x?y HTTP/1.1\r\nHost: a.EXAMPLE\r\n\r\n", []string{"a.EXAMPLE"}, same, nil},
		{"https absolute-form", "GET https://a.example HTTP/1.1\r\nHost: a.example:443\r\n\r\n", []string{"a.example"}, same, nil},
		{"OPTIONS asterisk", "OPTIONS * HTTP/1.1\r\nHost: a.example\r\n\r\n", []string{"a.example"}, same, nil},
		{"IPv6 literal kept bracketed", "GET / HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\n\r\n", []string{"[2001:db8::1]"}, same, nil},
		{"IPv4 literal", "GET / HTTP/1.1\r\nHost: 198.51.100.7\r\n\r\n", []string{"198.51.100.7"}, same, nil},
		{"empty lines before request", "\r\n\n" + get1, []string{"a.example"}, same, nil},
		{"empty input", "", nil, "", nil},
		{"only empty lines", "\r\n\r\n", nil, "", nil},
		{"keep-alive and pipelined", get1 + get2 + get1, []string{"a.example", "b.example", "a.example"}, same, nil},
		{"body holding a request head", "POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 43\r\n\r\n" + smuggled + get1,
			[]string{"a.example", "a.example"}, same, nil},
		{"repeated equal Content-Length", "POST / HTTP/1.1\r\nContent-Length: 2\r\nHost: a.example\r\nContent-Length: 2\r\n\r\nhi" + get1,
			[]string{"a.example", "a.example"}, same, nil},
		{"body larger than the write buffer", "PUT / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 40960\r\n\r\n" + long + get1,
			[]string{"a.example", "a.example"}, same, nil},
		{"chunked with extensions and trailers", chunked + "5;a=b;q=\"x y\"\r\nhello\r\n2B\r\n" + smuggled + "\r\n0 ;last\r\nX-T: v\r\nY: w\r\n\r\n" + get1,
			[]string{"a.example", "a.example"}, same, nil},
		{"chunked upper case", "POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: CHUNKED\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n", []string{"a.example"}, same, nil},

		{"second of three denied", get1 + "GET / HTTP/1.1\r\nHost: deny.example\r\n\r\n" + get2, []string{"a.example", "deny.example"}, get1, errTestDenied},
		{"first denied", "GET / HTTP/1.1\r\nHost: Deny.example\r\n\r\n", []string{"Deny.example"}, "", errTestDenied},
		{"CONNECT", "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n", nil, "", errConnectRefused},
		{"connect lower case after a request", get1 + "connect a.example:443 HTTP/1.1\r\nHost: a.example\r\n\r\n", []string{"a.example"}, get1, errConnectRefused},
		{"Upgrade websocket", "GET / HTTP/1.1\r\nHost: a.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", nil, "", errUpgradeRefused},
		{"Upgrade h2c after a request", get1 + "GET / HTTP/1.1\r\nHost: a.example\r\nupgrade: h2c\r\n\r\n", []string{"a.example"}, get1, errUpgradeRefused},

		{"HTTP/0.9", "GET /\r\n\r\n", nil, "", errHTTPMalformed},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", nil, "", errHTTPMalformed},
		{"HTTP/1.2", "GET / HTTP/1.2\r\nHost: a.example\r\n\r\n", nil, "", errHTTPMalformed},
		{"lower-case version", "GET / http/1.1\r\nHost: a.example\r\n\r\n", nil, "", errHTTPMalformed},
		{"two spaces in request line", "GET  / HTTP/1.1\r\nHost: a.example\r\n\r\n", nil, "", errHTTPMalformed},
		{"tab in request line", "GET\t/ HTTP/1.1\r\nHost: a.example\r\n\r\n", nil, "", errHTTPMalformed},
		{"non-ASCII target", "GET /\xff HTTP/1.1\r\nHost: a.example\r\n\r\n", nil, "", errHTTPMalformed},
		{"two equal Host fields", "GET / HTTP/1.1\r\nHost: a.example\r\nHost: a.example\r\n\r\n", nil, "", errHTTPMalformed},
		{"HTTP/1.1 without Host", "GET / HTTP/1.1\r\n\r\n", nil, "", errHTTPMalformed},
		{"HTTP/1.0 origin-form without Host", "GET / HTTP/1.0\r\n\r\n", nil, "", errHTTPMalformed},
		{"empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", nil, "", errHTTPMalformed},
		{"Host with path", "GET / HTTP/1.1\r\nHost: a.example/x\r\n\r\n", nil, "", errHTTPMalformed},
		{"Host with userinfo", "GET / HTTP/1.1\r\nHost: u@a.example\r\n\r\n", nil, "", errHTTPMalformed},
		{"Host port 0", "GET / HTTP/1.1\r\nHost: a.example:0\r\n\r\n", nil, "", errHTTPMalformed},
		{"Host port 65536", "GET / HTTP/1.1\r\nHost: a.example:65536\r\n\r\n", nil, "", errHTTPMalformed},
		{"Host empty port", "GET / HTTP/1.1\r\nHost: a.example:\r\n\r\n", nil, "", errHTTPMalformed},
		{"Host two ports", "GET / HTTP/1.1\r\nHost: a.example:80:80\r\n\r\n", nil, "", errHTTPMalformed},
		{"Host unclosed bracket", "GET / HTTP/1.1\r\nHost: [2001:db8::1\r\n\r\n", nil, "", errHTTPMalformed},
		{"absolute-form disagrees with Host", "GET http://deny.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n", nil, "", errHTTPMalformed},
		{"absolute-form with userinfo", "GET http://a.example@deny.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n", nil, "", errHTTPMalformed},
		{"absolute-form empty authority", "GET http:///x HTTP/1.0\r\n\r\n", nil, "", errHTTPMalformed},
		{"authority-form GET", "GET a.example:80 HTTP/1.1\r\nHost: a.example\r\n\r\n", nil, "", errHTTPMalformed},
		{"asterisk GET", "GET * HTTP/1.1\r\nHost: a.example\r\n\r\n", nil, "", errHTTPMalformed},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: a.example\r\nX: a\r\n b\r\n\r\n", nil, "", errHTTPMalformed},
		{"obs-fold first field", "GET / HTTP/1.1\r\n Host: deny.example\r\nHost: a.example\r\n\r\n", nil, "", errHTTPMalformed},
		{"space before colon", "GET / HTTP/1.1\r\nHost : a.example\r\n\r\n", nil, "", errHTTPMalformed},
		{"tab before colon", "GET / HTTP/1.1\r\nHost\t: a.example\r\n\r\n", nil, "", errHTTPMalformed},
		{"field without colon", "GET / HTTP/1.1\r\nHost: a.example\r\nX\r\n\r\n", nil, "", errHTTPMalformed},
		{"bare CR inside a field", "GET / HTTP/1.1\r\nX: a\rHost: deny.example\r\nHost: a.example\r\n\r\n", nil, "", errHTTPMalformed},
		{"CR CR LF", "GET / HTTP/1.1\r\nHost: a.example\r\r\n\r\n", nil, "", errHTTPMalformed},
		{"bare CR before request line", "\r\r\n" + get1, nil, "", errHTTPMalformed},
		{"NUL in a value", "GET / HTTP/1.1\r\nHost: a.example\r\nX: \x00\r\n\r\n", nil, "", errHTTPMalformed},
		{"Content-Length and Transfer-Encoding", "POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n", nil, "", errHTTPMalformed},
		{"Transfer-Encoding and Content-Length", "POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n", nil, "", errHTTPMalformed},
		{"differing Content-Length", "POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 4\r\nContent-Length: 43\r\n\r\n", nil, "", errHTTPMalformed},
		{"Content-Length list", "POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 4, 4\r\n\r\n", nil, "", errHTTPMalformed},
		{"Content-Length signed", "POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: +4\r\n\r\n", nil, "", errHTTPMalformed},
		{"Content-Length 19 digits", "POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 1000000000000000000\r\n\r\n", nil, "", errHTTPMalformed},
		{"Transfer-Encoding gzip, chunked", "POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", nil, "", errHTTPMalformed},
		{"Transfer-Encoding twice", "POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", nil, "", errHTTPMalformed},
		{"Transfer-Encoding with Kelvin sign", "POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chun\u212aed\r\n\r\n", nil, "", errHTTPMalformed},
		{"Transfer-Encoding in HTTP/1.0", "POST / HTTP/1.0\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n", nil, "", errHTTPMalformed},
		{"101 header fields", "GET / HTTP/1.1\r\nHost: a.example\r\n" + strings.Repeat("X: y\r\n", 100) + "\r\n", nil, "", errHTTPMalformed},
		{"head over 32 KiB", "GET / HTTP/1.1\r\nHost: a.example\r\nX: " + long + "\r\n\r\n", nil, "", errHTTPMalformed},
		{"head cut short", get1[:20], nil, "", io.ErrUnexpectedEOF},

		{"body cut short", "POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 9\r\n\r\nabc", []string{"a.example"}, same, io.ErrUnexpectedEOF},
		{"chunk size not hex", chunked + "5g\r\nhello\r\n", []string{"a.example"}, chunked, errHTTPMalformed},
		{"chunk size line with bare LF", chunked + "5\nhello\r\n0\r\n\r\n", []string{"a.example"}, chunked, errHTTPMalformed},
		{"chunk size trailing space", chunked + "5 \r\nhello\r\n0\r\n\r\n", []string{"a.example"}, chunked, errHTTPMalformed},
		{"chunk size overflow", chunked + "10000000000000000\r\n", []string{"a.example"}, chunked, errHTTPMalformed},
		{"chunk extension with bare CR", chunked + "5;a\rb\r\nhello\r\n0\r\n\r\n", []string{"a.example"}, chunked, errHTTPMalformed},
		{"chunk data longer than its size", chunked + "3\r\nhello\r\n0\r\n\r\n", []string{"a.example"}, chunked + "3\r\nhel", errHTTPMalformed},
		{"chunk data then bare LF", chunked + "5\r\nhello\n0\r\n\r\n", []string{"a.example"}, chunked + "5\r\nhello", errHTTPMalformed},
		{"trailer with Host", chunked + "0\r\nHost: deny.example\r\n\r\n", []string{"a.example"}, chunked + "0\r\n", errHTTPMalformed},
		{"trailer obs-fold", chunked + "0\r\nX: a\r\n b\r\n\r\n", []string{"a.example"}, chunked + "0\r\nX: a\r\n", errHTTPMalformed},
		{"trailer with bare LF", chunked + "0\r\nX: a\n\r\n", []string{"a.example"}, chunked + "0\r\n", errHTTPMalformed},
		{"chunked cut short", chunked + "5\r\nhel", []string{"a.example"}, chunked + "5\r\nhel", io.ErrUnexpectedEOF},
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
				if got.out != tt.out {
					t.Errorf("%s: upstream got %d bytes %.80q, want %d bytes %.80q", mode, len(got.out), got.out, len(tt.out), tt.out)
				}
			}
			checkGateInvariants(t, []byte(tt.in))
		})
	}
}

// TestGateHTTPDenialErrorNamesHost checks the error carries the judged host.
func TestGateHTTPDenialErrorNamesHost(t *testing.T) {
	got := runGate(t, strings.NewReader(get1+"GET / HTTP/1.1\r\nHost: deny.example:81\r\n\r\n"), 4096)
	if got.err == nil || !strings.Contains(got.err.Error(), `host "deny.example"`) {
		t.Errorf("err = %v, want it to name host \"deny.example\"", got.err)
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
	go func() { done <- gateHTTP(bufio.NewReader(s), up, denyTest) }()
	reqs := []string{get1, chunked + "5\r\nhello\r\n", "0\r\n\r\n", "GET / HTTP/1.1\r\nHost: deny.example\r\n\r\n"}
	want, have := 0, 0
	for _, r := range reqs[:3] {
		c.Write([]byte(r))
		for want += len(r); have < want; have += <-up.got {
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
	err := gateHTTP(bufio.NewReader(strings.NewReader(get1+get1)), failWriter{}, denyTest)
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
		if err := gateHTTP(br, io.Discard, denyTest); err != nil {
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
	})
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

func FuzzGateHTTP(f *testing.F) {
	for _, s := range []string{get1 + get2, smuggled, chunked + "5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\n" + get1,
		"POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 43\r\n\r\n" + smuggled + smuggled} {
		f.Add([]byte(s))
	}
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
		if err := gateHTTP(br, io.Discard, denyTest); err != nil {
			b.Fatal(err)
		}
	}
}
