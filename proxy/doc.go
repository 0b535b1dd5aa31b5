// Package proxy is egressd's transparent TCP proxy.
//
// The kernel (see package iptables) diverts every TCP connection a sandbox
// opens to an IP_TRANSPARENT listener, so the accepted socket's local address
// is the destination the sandbox asked for. For each connection:
//
//	accept ──► sandbox by source ──► policy.DecideAddr(dst)
//	              │ none: reset          │
//	              ▼                      ├─ deny (deny_cidrs, deny-all): reset
//	                                     ├─ allow (allow-all, allow_cidrs): dial dst, splice raw
//	                                     └─ needs a name: peek under peek_timeout
//	                                          ├─ TLS ClientHello ─► SNI ─┐
//	                                          ├─ HTTP/1.x head ──► Host ─┤
//	                                          └─ other: reset            ▼
//	                                           policy.DecideName ─► pin: dial only an address
//	                                           the name resolves to (never a spoofed dst)
//	                                           ─► write peeked bytes ─► splice(2) both ways
//
// Plain HTTP is gated request by request (every Host is checked, bodies are
// followed to find the next head); TLS is spliced after the ClientHello.
package proxy
