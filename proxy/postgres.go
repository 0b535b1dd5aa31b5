package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/egressd/egressd/policy"
)

// Postgres over TLS (sslmode=require and stricter) opens with STARTTLS: the
// client sends an 8-byte SSLRequest, the server answers 'S', and the TLS
// ClientHello, SNI included, follows. egressd plays the server's part of
// that opening, judges the ClientHello like any other, and on allow plays
// the client's part towards the upstream before it relays: it sends the
// SSLRequest itself and checks the 'S' (consumed, not passed on twice).
// A GSSENCRequest is answered 'N' (no GSSAPI encryption) so that the
// client falls back to TLS; a plain-text startup message carries no name
// and is refused.
var (
	pgSSLRequest    = []byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f} // length 8, code 80877103
	pgGSSENCRequest = []byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30} // length 8, code 80877104

	errPgPlain    = errors.New("postgres: a plain-text startup message: no name to judge (use sslmode=require or stricter)")
	errPgNoTLS    = errors.New("postgres: the server answered the SSLRequest with N: it does not speak TLS")
	errPgOpening  = errors.New("postgres: more than one GSSENCRequest")
	errPgBadReply = errors.New("postgres: the server's answer to the SSLRequest is neither S nor N")
)

// isPostgresOpening reports whether the first byte could open a Postgres
// connection: every opening message starts with a 4-byte big-endian
// length far below 2^24 (SSLRequest, GSSENCRequest: 8).
func isPostgresOpening(first byte) bool { return first == 0 }

// inspectPostgres serves a flow whose first byte (peeked) is 0: it reads
// the 8-byte opening, answers it, and peeks the ClientHello that follows a
// SSLRequest. It returns the peeked ClientHello and SNI, or refuses f.
func (s *Server) inspectPostgres(ctx context.Context, f *flow, peeked []byte, peek io.Reader) (raw []byte, sni string, ok bool) {
	msg := append(make([]byte, 0, 8), peeked...)
	for gss := 0; ; gss++ {
		if n, err := io.ReadFull(peek, msg[len(msg):8][:8-len(msg)]); err != nil {
			// Fewer than 8 bytes: no Postgres opening, and a zero byte
			// starts neither TLS nor HTTP.
			if !s.forwardNameless(ctx, f, msg[:len(msg)+n], true) {
				s.refuse(f, policy.Decision{Reason: policy.ReasonNoName, Addr: f.dst.Addr()}, fmt.Errorf("postgres opening: %w", err))
			}
			return nil, "", false
		}
		msg = msg[:8]
		switch {
		case bytes.Equal(msg, pgGSSENCRequest) && gss == 0:
			if !s.answerClient(f, 'N') {
				return nil, "", false
			}
			msg = msg[:0] // its fallback comes next
			continue
		case bytes.Equal(msg, pgSSLRequest):
			if !s.answerClient(f, 'S') {
				return nil, "", false
			}
			raw, sni, err := readClientHello(peek)
			if err != nil {
				s.refuse(f, policy.Decision{Reason: policy.ReasonMalformed, Addr: f.dst.Addr()}, fmt.Errorf("postgres: after S: %w", err))
				return nil, "", false
			}
			f.postgres = true
			return raw, sni, true
		case bytes.Equal(msg, pgGSSENCRequest):
			s.refuse(f, policy.Decision{Reason: policy.ReasonMalformed, Addr: f.dst.Addr()}, errPgOpening)
		default:
			if !s.forwardNameless(ctx, f, msg, true) {
				s.refuse(f, policy.Decision{Reason: policy.ReasonNoName, Addr: f.dst.Addr()}, errPgPlain)
			}
		}
		return nil, "", false
	}
}

// answerClient writes the one-byte answer to an opening request.
func (s *Server) answerClient(f *flow, b byte) bool {
	f.client.SetWriteDeadline(time.Now().Add(time.Second))
	_, err := f.client.Write([]byte{b})
	f.client.SetWriteDeadline(time.Time{})
	if err != nil {
		s.refuse(f, policy.Decision{Reason: policy.ReasonNoName, Addr: f.dst.Addr()}, fmt.Errorf("postgres: answering the client: %w", err))
		return false
	}
	return true
}

// startPostgresTLS plays the client's opening towards the upstream: the
// SSLRequest, and its 'S'.
func startPostgresTLS(remote *net.TCPConn, timeout time.Duration) error {
	remote.SetDeadline(time.Now().Add(timeout))
	defer remote.SetDeadline(time.Time{})
	if _, err := remote.Write(pgSSLRequest); err != nil {
		return fmt.Errorf("postgres: SSLRequest to the server: %w", err)
	}
	var b [1]byte
	if _, err := io.ReadFull(remote, b[:]); err != nil {
		return fmt.Errorf("postgres: the server's answer to the SSLRequest: %w", err)
	}
	switch b[0] {
	case 'S':
		return nil
	case 'N':
		return errPgNoTLS
	}
	return errPgBadReply
}
