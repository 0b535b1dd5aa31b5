package proxy

import (
	"errors"
	"fmt"
	"io"
	"slices"
)

// TLS ClientHello reading: the record layer and the handshake message are
// parsed here by hand, with every length checked against what is left, so
// that a hello split over many TCP segments and many TLS records yields the
// same SNI as one sent in a single write (RFC 8446 §4.1.2, §5.1; RFC 6066 §3).

const (
	// maxHelloBytes caps what readClientHello consumes, record headers
	// included. Real hellos are 0.3–2 KB (Go's with an X25519MLKEM768 key
	// share is ~1.8 KB); RFC 8446 allows up to 2^24, we do not.
	maxHelloBytes = 64 << 10

	recordHeaderLen      = 5
	maxPlaintextRecord   = 1 << 14 // RFC 8446 §5.1
	recordTypeHandshake  = 0x16
	handshakeClientHello = 0x01
	extServerName        = 0x0000
	sniHostName          = 0x00
)

var (
	// errNotTLS: the first byte is not a TLS handshake record; the bytes
	// read (one to five) are in raw and the caller may try HTTP.
	errNotTLS = errors.New("not a TLS handshake")
	// errMalformedHello: the bytes claim to be a ClientHello but break its grammar.
	errMalformedHello = errors.New("malformed TLS ClientHello")
	// errHelloTooLarge: the hello, with its record headers, exceeds maxHelloBytes.
	errHelloTooLarge = errors.New("TLS ClientHello too large")
)

// readClientHello reads one TLS ClientHello from r, possibly split over many TCP segments and over several
// TLS handshake records, and returns every byte it consumed (so the caller can replay them upstream) and
// the SNI host_name. Hard memory cap: maxHelloBytes.
//
// It never reads past the record that ends the hello, so bytes the client
// sends later stay in r. raw holds the consumed bytes on error too. A hello
// without a server_name extension yields sni "" and a nil error.
func readClientHello(r io.Reader) (raw []byte, sni string, err error) {
	// One read for what has come of the first record header (a byte at
	// least, five at most: never past the header), rather than its first
	// byte, then the rest.
	raw = make([]byte, recordHeaderLen, 2048)
	n, err := io.ReadAtLeast(r, raw, 1)
	raw = raw[:n]
	if err != nil {
		return raw[:0], "", fmt.Errorf("tls: reading first byte: %w", err)
	}
	if raw[0] != recordTypeHandshake {
		return raw, "", fmt.Errorf("tls: first byte 0x%02x: %w", raw[0], errNotTLS)
	}
	raw, msg, err := readHandshakeMessage(r, raw)
	if err != nil {
		return raw, "", err
	}
	sni, err = parseClientHello(msg)
	return raw, sni, err
}

// readHandshakeMessage reads handshake records, appending them to raw
// (which already holds the first record's type byte), until one complete
// handshake message is assembled; it returns the message with its 4-byte
// header. The message must end on a record boundary.
func readHandshakeMessage(r io.Reader, raw []byte) ([]byte, []byte, error) {
	var msg []byte // fragments, copied only once the message spans records
	records := 0
	want := -1 // message length with header, once known
	for want < 0 || len(msg) < want {
		body, err := readRecord(r, &raw, records == 0)
		if err != nil {
			return raw, nil, err
		}
		records++
		if records == 1 {
			msg = body
		} else {
			if records == 2 {
				msg = slices.Clone(msg)
			}
			msg = append(msg, body...)
		}
		if want < 0 && len(msg) >= 4 {
			if want, err = handshakeLen(msg); err != nil {
				return raw, nil, err
			}
		}
	}
	if len(msg) != want {
		return raw, nil, fmt.Errorf("tls: %d bytes after the ClientHello in its last record: %w",
			len(msg)-want, errMalformedHello)
	}
	return raw, msg, nil
}

// readRecord reads one handshake record onto *raw and returns its body
// (aliasing *raw). For the first record *raw already holds the start of
// its header (its type byte at least).
func readRecord(r io.Reader, raw *[]byte, first bool) ([]byte, error) {
	start := len(*raw)
	if first {
		start = 0
	}
	if start+recordHeaderLen > maxHelloBytes {
		return nil, fmt.Errorf("tls: record header at offset %d: %w", start, errHelloTooLarge)
	}
	if err := readMore(r, raw, start+recordHeaderLen-len(*raw)); err != nil {
		return nil, fmt.Errorf("tls: reading record header at offset %d: %w", start, err)
	}
	h := (*raw)[start:]
	if h[0] != recordTypeHandshake {
		return nil, fmt.Errorf("tls: record type 0x%02x inside the ClientHello: %w", h[0], errMalformedHello)
	}
	if h[1] != 3 {
		return nil, fmt.Errorf("tls: record version 0x%02x%02x: %w", h[1], h[2], errMalformedHello)
	}
	n := int(h[3])<<8 | int(h[4])
	if n == 0 || n > maxPlaintextRecord {
		return nil, fmt.Errorf("tls: record length %d: %w", n, errMalformedHello)
	}
	if len(*raw)+n > maxHelloBytes {
		return nil, fmt.Errorf("tls: record of %d bytes at offset %d: %w", n, start, errHelloTooLarge)
	}
	if err := readMore(r, raw, n); err != nil {
		return nil, fmt.Errorf("tls: reading %d-byte record at offset %d: %w", n, start, err)
	}
	return (*raw)[start+recordHeaderLen:], nil
}

// readMore appends exactly n bytes from r to *raw. A short read keeps what
// arrived in *raw and reports io.ErrUnexpectedEOF.
//
// The buffer grows as bytes arrive, readStep at a time, not by the length
// a record header claims: a client that announces 16 KiB and sends none
// makes egressd hold nothing for it.
func readMore(r io.Reader, raw *[]byte, n int) error {
	for n > 0 {
		k := min(n, readStep)
		old := len(*raw)
		*raw = slices.Grow(*raw, k)[:old+k]
		got, err := io.ReadFull(r, (*raw)[old:])
		*raw = (*raw)[:old+got]
		n -= got
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// readStep is the most readMore reads, and grows its buffer by, at once.
const readStep = 4 << 10

// handshakeLen checks the handshake header at the start of msg and returns
// the message's total length.
func handshakeLen(msg []byte) (int, error) {
	if msg[0] != handshakeClientHello {
		return 0, fmt.Errorf("tls: handshake type %d: %w", msg[0], errMalformedHello)
	}
	n := int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3])
	if n+4 > maxHelloBytes {
		return 0, fmt.Errorf("tls: ClientHello of %d bytes: %w", n, errHelloTooLarge)
	}
	return n + 4, nil
}

// parseClientHello walks a complete ClientHello message (with its 4-byte
// header) and returns its SNI host_name, or "" when it has none.
func parseClientHello(msg []byte) (string, error) {
	s := helloReader(msg[4:])
	var legacyVersion uint16
	var sessionID, suites, compression []byte
	ok := s.u16(&legacyVersion) && s.skip(32) && // random
		s.vec8(&sessionID) && s.vec16(&suites) && s.vec8(&compression)
	switch {
	case !ok:
		return "", fmt.Errorf("tls: truncated ClientHello: %w", errMalformedHello)
	case legacyVersion>>8 != 3:
		return "", fmt.Errorf("tls: ClientHello version 0x%04x: %w", legacyVersion, errMalformedHello)
	case len(sessionID) > 32:
		return "", fmt.Errorf("tls: session id of %d bytes: %w", len(sessionID), errMalformedHello)
	case len(suites) == 0 || len(suites)%2 != 0:
		return "", fmt.Errorf("tls: cipher suites of %d bytes: %w", len(suites), errMalformedHello)
	case len(compression) == 0:
		return "", fmt.Errorf("tls: no compression methods: %w", errMalformedHello)
	case len(s) == 0:
		return "", nil // no extensions block (pre-TLS 1.2 clients)
	}
	var exts []byte
	if !s.vec16(&exts) || len(s) != 0 {
		return "", fmt.Errorf("tls: extensions block length: %w", errMalformedHello)
	}
	return parseExtensions(exts)
}

// parseExtensions rejects duplicate extensions (RFC 8446 §4.2) and returns
// the SNI from the server_name extension, "" without one.
func parseExtensions(exts []byte) (string, error) {
	s := helloReader(exts)
	var seenBuf [64]uint16
	seen := seenBuf[:0]
	sni := ""
	for len(s) > 0 {
		var typ uint16
		var data []byte
		if !s.u16(&typ) || !s.vec16(&data) {
			return "", fmt.Errorf("tls: truncated extension: %w", errMalformedHello)
		}
		seen = append(seen, typ)
		if typ != extServerName {
			continue
		}
		name, err := parseServerName(data)
		if err != nil {
			return "", err
		}
		sni = name
	}
	slices.Sort(seen)
	for i := 1; i < len(seen); i++ {
		if seen[i] == seen[i-1] {
			return "", fmt.Errorf("tls: duplicate extension 0x%04x: %w", seen[i], errMalformedHello)
		}
	}
	return sni, nil
}

// parseServerName reads a server_name extension body (RFC 6066 §3): exactly
// one entry, of type host_name, non-empty, printable ASCII.
func parseServerName(data []byte) (string, error) {
	s := helloReader(data)
	var list, name []byte
	var typ uint8
	if !s.vec16(&list) || len(s) != 0 {
		return "", fmt.Errorf("tls: server_name list length: %w", errMalformedHello)
	}
	l := helloReader(list)
	if !l.u8(&typ) || !l.vec16(&name) {
		return "", fmt.Errorf("tls: empty or truncated server_name list: %w", errMalformedHello)
	}
	switch {
	case len(l) != 0:
		return "", fmt.Errorf("tls: more than one server_name entry: %w", errMalformedHello)
	case typ != sniHostName:
		return "", fmt.Errorf("tls: server_name type %d: %w", typ, errMalformedHello)
	case len(name) == 0:
		return "", fmt.Errorf("tls: empty server_name: %w", errMalformedHello)
	}
	for i, c := range name {
		if c <= ' ' || c >= 0x7f {
			return "", fmt.Errorf("tls: server_name byte 0x%02x at %d: %w", c, i, errMalformedHello)
		}
	}
	return string(name), nil
}

// helloReader is a bounds-checked cursor over handshake bytes; each method
// consumes what it reads and reports false, consuming nothing, when too
// few bytes are left.
type helloReader []byte

func (s *helloReader) skip(n int) bool {
	if len(*s) < n {
		return false
	}
	*s = (*s)[n:]
	return true
}

func (s *helloReader) u8(v *uint8) bool {
	if len(*s) < 1 {
		return false
	}
	*v = (*s)[0]
	*s = (*s)[1:]
	return true
}

func (s *helloReader) u16(v *uint16) bool {
	if len(*s) < 2 {
		return false
	}
	*v = uint16((*s)[0])<<8 | uint16((*s)[1])
	*s = (*s)[2:]
	return true
}

// vec8 reads a vector with a 1-byte length prefix.
func (s *helloReader) vec8(v *[]byte) bool {
	if len(*s) < 1 || len(*s) < 1+int((*s)[0]) {
		return false
	}
	n := int((*s)[0])
	*v = (*s)[1 : 1+n]
	*s = (*s)[1+n:]
	return true
}

// vec16 reads a vector with a 2-byte length prefix.
func (s *helloReader) vec16(v *[]byte) bool {
	if len(*s) < 2 {
		return false
	}
	n := int((*s)[0])<<8 | int((*s)[1])
	if len(*s) < 2+n {
		return false
	}
	*v = (*s)[2 : 2+n]
	*s = (*s)[2+n:]
	return true
}
