package main

import (
	"crypto/tls"
)

// The bench protocol: after the TLS handshake the client sends one line.
//
//	BULK <n>\n  the server sends n bytes, then closes
//	PING\n      the server answers PONG\n, then closes
//
// The server always closes first, so TIME_WAIT piles up on the server side
// (fixed port) and never exhausts the clients' ephemeral ports. A client
// that sends nothing (idle) is simply held open.
const (
	cmdBulk = "BULK"
	cmdPing = "PING"
	pong    = "PONG\n"
)

// curves is the key exchange both ends use: X25519 alone keeps the
// endpoints' handshake cost low, so the proxies' share shows, and the
// ClientHello stays one small segment for every setup alike.
var curves = []tls.CurveID{tls.X25519}
