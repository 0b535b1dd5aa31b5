// Package proxy is egressd's transparent TCP proxy.
//
// The kernel (see package iptables) diverts every TCP connection a sandbox
// opens to an IP_TRANSPARENT listener, so the accepted socket's local address
// is the destination the sandbox asked for. For each connection:
//
//	accept ──► sandbox by source ──► policy.DecideAddr(dst)
//	              │ none: reset          │
//	              ▼                      ├─ deny (deny_cidrs, deny-all): reset
//	                                     ├─ allow (allow-all, allow_cidrs): dial dst, relay raw
//	                                     └─ needs a name: peek under peek_timeout
//	                                          ├─ TLS ClientHello ─► SNI ─┐
//	                                          ├─ HTTP/1.x head ──► Host ─┤
//	                                          └─ other: reset            ▼
//	                                           policy.DecideName ─► pin: dial only an address
//	                                           the name resolves to (never a spoofed dst)
//	                                           ─► write peeked bytes ─► relay both ways
//
// Plain HTTP is gated request by request (every Host is checked, bodies are
// followed to find the next head); TLS is relayed after the ClientHello.
//
// An admitted flow's bytes are moved by a pump (pump.go): one epoll
// instance and goroutine per CPU for all flows, so idle and short flows
// hold no goroutine and no buffer. Past 256 KiB in one direction the flow
// is handed to a goroutine per direction that splices (relay.go): bulk
// transfers stay zero-copy.
package proxy
