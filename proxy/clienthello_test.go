package proxy

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// recordHello captures the first TLS record a real crypto/tls client writes:
// its ClientHello, in one record as Go sends it.
func recordHello(tb testing.TB, cfg *tls.Config) []byte {
	tb.Helper()
	c, s := net.Pipe()
	done := make(chan struct{})
	go clientHandshake(c, cfg, done)
	defer func() { s.Close(); <-done }()
	hdr := make([]byte, recordHeaderLen)
	if _, err := io.ReadFull(s, hdr); err != nil {
		tb.Fatalf("reading record header: %v", err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(s, body); err != nil {
		tb.Fatalf("reading record body: %v", err)
	}
	return append(hdr, body...)
}

func clientHandshake(c net.Conn, cfg *tls.Config, done chan<- struct{}) {
	defer close(done)
	tls.Client(c, cfg).Handshake()
	c.Close()
}

// refragment re-records the handshake message of the single-record hello rec
// into records carrying at most size bytes each.
func refragment(rec []byte, size int) []byte {
	msg := rec[recordHeaderLen:]
	var out []byte
	for len(msg) > 0 {
		n := min(size, len(msg))
		out = append(out, recordTypeHandshake, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

// deliver writes b then tail to w in chunks of the given sizes (the last
// size repeats), the way TCP segments would arrive.
func deliver(w net.Conn, b, tail []byte, sizes []int) {
	defer w.Close()
	for i := 0; len(b) > 0; i++ {
		n := min(sizes[min(i, len(sizes)-1)], len(b))
		if _, err := w.Write(b[:n]); err != nil {
			return
		}
		b = b[n:]
	}
	w.Write(tail)
}

var realHelloConfigs = []struct {
	name string
	cfg  *tls.Config
	sni  string
}{
	{"default", &tls.Config{ServerName: "example.com"}, "example.com"},
	{"no-sni", &tls.Config{InsecureSkipVerify: true}, ""},
	{"ip-server-name", &tls.Config{ServerName: "198.51.100.7"}, ""},
	{"tls12-only", &tls.Config{ServerName: "api.example.org", MaxVersion: tls.VersionTLS12}, "api.example.org"},
	{"alpn-and-long-name", &tls.Config{
		ServerName: strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + ".example",
		NextProtos: []string{"h2", "http/1.1"},
	}, strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + ".example"},
}

func TestReadClientHelloRealGo(t *testing.T) {
	segments := map[string][]int{"one-write": {1 << 20}, "1-byte-writes": {1}, "3-segments": nil}
	for _, hc := range realHelloConfigs {
		hello := recordHello(t, hc.cfg)
		for _, recSize := range []int{0, 1, 7, 512} {
			in := hello
			if recSize > 0 {
				in = refragment(hello, recSize)
			}
			for segName, sizes := range segments {
				if sizes == nil {
					sizes = []int{len(in)/3 + 1}
				}
				name := hc.name + "/records-" + itoa(recSize) + "/" + segName
				t.Run(name, func(t *testing.T) { checkPipeHello(t, in, sizes, hc.sni) })
			}
		}
	}
}

func itoa(n int) string {
	if n == 0 {
		return "whole"
	}
	return strconv.Itoa(n)
}

// checkPipeHello sends in over a net.Pipe in the given write sizes, followed
// by more bytes, and checks readClientHello returns exactly in and sni and
// leaves the following bytes unread.
func checkPipeHello(t *testing.T, in []byte, sizes []int, sni string) {
	c, s := net.Pipe()
	t.Cleanup(func() { s.Close() })
	tail := []byte("after the hello")
	go deliver(c, in, tail, sizes)
	s.SetDeadline(time.Now().Add(10 * time.Second)) // a hang guard, not a timing assertion
	raw, got, err := readClientHello(s)
	if err != nil {
		t.Fatalf("readClientHello: %v", err)
	}
	if got != sni {
		t.Errorf("sni = %q, want %q", got, sni)
	}
	if !bytes.Equal(raw, in) {
		t.Errorf("raw is %d bytes, differs from the %d sent", len(raw), len(in))
	}
	rest, _ := io.ReadAll(s)
	if !bytes.Equal(rest, tail) {
		t.Errorf("after the hello the reader had %q, want %q", rest, tail)
	}
}

// TestReadClientHelloMatchesCryptoTLS checks our SNI equals what a Go TLS
// server sees for the same bytes.
func TestReadClientHelloMatchesCryptoTLS(t *testing.T) {
	for _, hc := range realHelloConfigs {
		t.Run(hc.name, func(t *testing.T) {
			hello := recordHello(t, hc.cfg)
			_, sni, err := readClientHello(bytes.NewReader(hello))
			if err != nil {
				t.Fatal(err)
			}
			goSNI, ok := serverNameSeenByGo(hello)
			if !ok || goSNI != sni {
				t.Errorf("crypto/tls saw %q (parsed %v), we saw %q", goSNI, ok, sni)
			}
		})
	}
}

// serverNameSeenByGo feeds b to a crypto/tls server and returns the SNI it
// parsed; ok is false when it rejected the hello.
func serverNameSeenByGo(b []byte) (sni string, ok bool) {
	stop := errors.New("stop")
	cfg := &tls.Config{GetConfigForClient: func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
		sni, ok = chi.ServerName, true
		return nil, stop
	}}
	tls.Server(&bytesConn{r: bytes.NewReader(b)}, cfg).Handshake()
	return sni, ok
}

// bytesConn is a net.Conn reading from r and discarding writes.
type bytesConn struct {
	net.Conn
	r io.Reader
}

func (c *bytesConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *bytesConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *bytesConn) Close() error                     { return nil }
func (c *bytesConn) SetDeadline(time.Time) error      { return nil }
func (c *bytesConn) SetReadDeadline(time.Time) error  { return nil }
func (c *bytesConn) SetWriteDeadline(time.Time) error { return nil }
func (c *bytesConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *bytesConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }

func TestReadClientHelloShortReads(t *testing.T) {
	hello := recordHello(t, realHelloConfigs[0].cfg)
	readers := map[string]io.Reader{
		"one-byte-reader": iotest.OneByteReader(bytes.NewReader(hello)),
		"half-reader":     iotest.HalfReader(bytes.NewReader(hello)),
		"data-err-reader": iotest.DataErrReader(bytes.NewReader(hello)),
	}
	for name, r := range readers {
		t.Run(name, func(t *testing.T) {
			raw, sni, err := readClientHello(r)
			if err != nil || sni != "example.com" || !bytes.Equal(raw, hello) {
				t.Errorf("got sni %q, %d raw bytes, err %v", sni, len(raw), err)
			}
		})
	}
}

func TestReadClientHelloAllocs(t *testing.T) {
	hello := recordHello(t, realHelloConfigs[0].cfg)
	r := bytes.NewReader(hello)
	allocs := testing.AllocsPerRun(100, func() {
		r.Reset(hello)
		if _, _, err := readClientHello(r); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 2 { // raw and the SNI string
		t.Errorf("readClientHello allocates %v times per call, budget 2", allocs)
	}
}

func BenchmarkReadClientHello(b *testing.B) {
	hello := recordHello(b, realHelloConfigs[0].cfg)
	for _, size := range []int{0, 64} {
		in := hello
		if size > 0 {
			in = refragment(hello, size)
		}
		b.Run("records-"+itoa(size), func(b *testing.B) {
			r := bytes.NewReader(in)
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				r.Reset(in)
				if _, _, err := readClientHello(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func FuzzReadClientHello(f *testing.F) {
	for _, hc := range realHelloConfigs[:2] {
		hello := recordHello(f, hc.cfg)
		f.Add(hello)
		f.Add(refragment(hello, 100))
	}
	f.Add(helloRecord(helloMsg(sniExt(0, "example.com"))))
	f.Fuzz(func(t *testing.T, in []byte) {
		raw, sni, err := readClientHello(bytes.NewReader(in))
		if !bytes.HasPrefix(in, raw) {
			t.Fatalf("raw (%d bytes) is not a prefix of the input", len(raw))
		}
		if len(raw) > maxHelloBytes {
			t.Fatalf("consumed %d bytes, cap %d", len(raw), maxHelloBytes)
		}
		if err != nil {
			if sni != "" {
				t.Fatalf("error %v with sni %q", err, sni)
			}
			return
		}
		for i := 0; i < len(sni); i++ {
			if sni[i] <= ' ' || sni[i] >= 0x7f {
				t.Fatalf("sni %q has byte 0x%02x", sni, sni[i])
			}
		}
		if goSNI, ok := serverNameSeenByGo(raw); ok && goSNI != sni {
			t.Fatalf("crypto/tls saw sni %q, we saw %q", goSNI, sni)
		}
	})
}

// Hand-built hellos for the grammar cases.

func u16(n int) []byte { return []byte{byte(n >> 8), byte(n)} }

func ext(typ uint16, data []byte) []byte {
	return append(append(u16(int(typ)), u16(len(data))...), data...)
}

// sniExt builds a server_name extension with one entry of type typ per name.
func sniExt(typ byte, names ...string) []byte {
	var list []byte
	for _, n := range names {
		list = append(append(append(list, typ), u16(len(n))...), n...)
	}
	return ext(extServerName, append(u16(len(list)), list...))
}

// helloBody builds a ClientHello body; exts nil means no extensions block.
func helloBody(sessionID, suites, compression, exts []byte) []byte {
	b := append([]byte{3, 3}, make([]byte, 32)...)
	b = append(append(b, byte(len(sessionID))), sessionID...)
	b = append(append(b, u16(len(suites))...), suites...)
	b = append(append(b, byte(len(compression))), compression...)
	if exts != nil {
		b = append(append(b, u16(len(exts))...), exts...)
	}
	return b
}

func handshake(body []byte) []byte {
	return append([]byte{handshakeClientHello, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
}

func helloMsg(exts ...[]byte) []byte {
	return handshake(helloBody(make([]byte, 32), []byte{0x13, 0x01}, []byte{0}, bytes.Join(exts, nil)))
}

func helloRecord(msg []byte) []byte {
	return append([]byte{recordTypeHandshake, 3, 1, byte(len(msg) >> 8), byte(len(msg))}, msg...)
}

func TestReadClientHelloGrammar(t *testing.T) {
	good := helloRecord(helloMsg(sniExt(0, "example.com")))
	alpn := ext(16, []byte{0, 3, 2, 'h', '2'})
	tooManyRecords := refragment(helloRecord(handshake(make([]byte, 20000))), 1)
	tests := []struct {
		name    string
		in      []byte
		wantSNI string
		wantErr error
	}{
		{"sni", good, "example.com", nil},
		{"sni among other extensions", helloRecord(helloMsg(alpn, sniExt(0, "a.example"), ext(43, []byte{2, 3, 4}))), "a.example", nil},
		{"no sni extension", helloRecord(helloMsg(alpn)), "", nil},
		{"no extensions block", helloRecord(handshake(helloBody(nil, []byte{0, 0x2f}, []byte{0}, nil))), "", nil},
		{"empty extensions block", helloRecord(helloMsg()), "", nil},
		{"empty input", nil, "", io.EOF},
		{"http request", []byte("GET / HTTP/1.1\r\n"), "", errNotTLS},
		{"sslv2 hello", []byte{0x80, 0x2e, 0x01, 0x03, 0x01}, "", errNotTLS},
		{"truncated header", good[:3], "", io.ErrUnexpectedEOF},
		{"truncated body", good[:len(good)-1], "", io.ErrUnexpectedEOF},
		{"record version 2", append([]byte{0x16, 2}, good[2:]...), "", errMalformedHello},
		{"zero-length record", append([]byte{0x16, 3, 1, 0, 0}, good...), "", errMalformedHello},
		{"record over 2^14", []byte{0x16, 3, 1, 0x40, 0x01}, "", errMalformedHello},
		{"alert between fragments", append(refragment(good, 10)[:15], 0x15, 3, 3, 0, 2, 2, 40), "", errMalformedHello},
		{"server hello", helloRecord([]byte{2, 0, 0, 0}), "", errMalformedHello},
		{"handshake length over cap", helloRecord([]byte{1, 0x01, 0, 0}), "", errHelloTooLarge},
		{"many tiny records over cap", tooManyRecords, "", errHelloTooLarge},
		{"bytes after hello in its record", helloRecord(append(helloMsg(), 0x0e, 0, 0, 0)), "", errMalformedHello},
		{"empty hello body", helloRecord(handshake(nil)), "", errMalformedHello},
		{"hello version 2.0", helloRecord(handshake(append([]byte{2, 0}, helloBody(nil, []byte{0, 1}, []byte{0}, nil)[2:]...))), "", errMalformedHello},
		{"session id 33 bytes", helloRecord(handshake(helloBody(make([]byte, 33), []byte{0, 1}, []byte{0}, nil))), "", errMalformedHello},
		{"odd cipher suites", helloRecord(handshake(helloBody(nil, []byte{0, 1, 2}, []byte{0}, nil))), "", errMalformedHello},
		{"no cipher suites", helloRecord(handshake(helloBody(nil, nil, []byte{0}, nil))), "", errMalformedHello},
		{"no compression", helloRecord(handshake(helloBody(nil, []byte{0, 1}, nil, nil))), "", errMalformedHello},
		{"extensions length past end", helloRecord(handshake(append(helloBody(nil, []byte{0, 1}, []byte{0}, nil), 0, 9, 0, 0))), "", errMalformedHello},
		{"bytes after extensions", helloRecord(handshake(append(helloBody(nil, []byte{0, 1}, []byte{0}, alpn), 0))), "", errMalformedHello},
		{"truncated extension", helloRecord(helloMsg([]byte{0, 16, 0, 9, 1})), "", errMalformedHello},
		{"duplicate extension", helloRecord(helloMsg(alpn, sniExt(0, "a.example"), alpn)), "", errMalformedHello},
		{"duplicate server_name", helloRecord(helloMsg(sniExt(0, "a.example"), sniExt(0, "a.example"))), "", errMalformedHello},
		{"server_name with no names", helloRecord(helloMsg(sniExt(0))), "", errMalformedHello},
		{"server_name with two names", helloRecord(helloMsg(sniExt(0, "a.example", "b.example"))), "", errMalformedHello},
		{"server_name of type 1", helloRecord(helloMsg(sniExt(1, "a.example"))), "", errMalformedHello},
		{"empty host_name", helloRecord(helloMsg(sniExt(0, ""))), "", errMalformedHello},
		{"host_name with NUL", helloRecord(helloMsg(sniExt(0, "a.example\x00.evil"))), "", errMalformedHello},
		{"host_name with space", helloRecord(helloMsg(sniExt(0, "a example"))), "", errMalformedHello},
		{"host_name with UTF-8", helloRecord(helloMsg(sniExt(0, "bücher.example"))), "", errMalformedHello},
		{"server_name list shorter than extension", helloRecord(helloMsg(ext(0, append(sniExt(0, "a.example")[4:], 0)))), "", errMalformedHello},
		{"server_name list longer than extension", helloRecord(helloMsg(ext(0, []byte{0, 12, 0, 0, 9, 'a'}))), "", errMalformedHello},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, sni, err := readClientHello(bytes.NewReader(tt.in))
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if sni != tt.wantSNI {
				t.Errorf("sni = %q, want %q", sni, tt.wantSNI)
			}
			if !bytes.HasPrefix(tt.in, raw) || len(raw) > maxHelloBytes {
				t.Errorf("raw (%d bytes) is not a capped prefix of the input", len(raw))
			}
			if tt.wantErr == nil && len(raw) != len(tt.in) {
				t.Errorf("consumed %d of %d bytes", len(raw), len(tt.in))
			}
		})
	}
}
