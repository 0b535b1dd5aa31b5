// Package dnsfilter is egressd's DNS side: the filtering resolver that
// answers every DNS query of a sandbox, and the upstream client it shares
// with the proxy.
//
//	sandbox ──udp/tcp 53, any address──► kernel TPROXY (iptables/) ──► Resolver (proxy.dns_port)
//	                                                                      │
//	  unknown source, deny-all ─────────────────────────────► no answer   │
//	  ANY/NULL/AXFR/IXFR, other class ──────────────────────► REFUSED     │ policy.DecideName
//	  name not allowed (custom) ────────────────────────────► REFUSED ◄───┤ (never sent upstream)
//	                                                                      ▼
//	        shared answer cache ◄── miss ── Upstream.Exchange: upstream_dns, failover, TCP on TC
//	                │
//	                ▼ per sandbox: CNAME chain checked, rebinding guard, ech stripped
//	        reply ──► bindings (sandbox, name, address) ──► proxy: Bound(...)
//
// The core is socket-free: Query takes a parsed message and a source
// address and returns the reply, or nil for no answer. Listen and Serve
// only move bytes.
//
// # Decisions
//
// Denied names get REFUSED, not NXDOMAIN. REFUSED is the rcode RFC 1035
// gives for a policy refusal, and it is true: the name may well exist.
// NXDOMAIN would be a lie that caches downstream (a caching stub in the
// sandbox would keep "does not exist" after the policy allows the name) and
// that makes stubs walk their search list. The reply carries an Extended
// DNS Error (RFC 8914, "Prohibited") whose text is the policy decision, so
// `dig` shows why. glibc reports REFUSED as a temporary failure; that is
// the price of not lying.
//
// Query types that serve tunnelling or zone transfers (ANY, NULL, AXFR,
// IXFR, MAILA, MAILB) and classes other than IN are refused in every mode,
// allow-all included. Names that are not strict host names (policy's wire
// name rules: letters, digits, '-', '_') are refused in every mode too; the
// root name is forwarded only in allow-all.
//
// Wildcards leak. A name under an allowed wildcard is forwarded upstream
// whatever its labels say, so a sandbox allowed "*.example.com" can send
// data to whoever runs example.com's name servers by asking for
// "<data>.example.com". Allow wildcards only for zones whose owner you
// trust with what the sandbox holds.
//
// UDP replies leave by raw sockets. TPROXY hands the resolver datagrams
// sent to any address and port; the reply must come back from that address
// and port or the client drops it. IP_RECVORIGDSTADDR tells the resolver
// the original destination. IP_PKTINFO can set a reply's source address
// but not its port. A transparent socket bound to the original destination
// per reply (cilium's way) costs six system calls a reply, and, bound to a
// local address such as the gateway's, can take port 53 from a resolver
// the host runs there. So replies are written, IP and UDP headers
// included, to an IPPROTO_RAW socket per family (CAP_NET_RAW), in batches
// with sendmmsg: one system call per batch, no port taken. Replies never
// exceed 1232 bytes (the EDNS0 buffer size egressd advertises), so they
// need no fragmentation. Over TCP the accepted connection's local address
// already is the original destination.
//
// Bindings. Every A and AAAA record in an answer, along the CNAME chain
// from the question name (owner names checked), and every address hint of
// an HTTPS or SVCB answer, binds that address to the question name for the
// sandbox, until max(TTL, MinBindingTTL) after the last time it was
// answered. Addresses are never unbound because a later answer differs:
// rotating short-TTL answers and names with hundreds of addresses keep all
// their recent addresses. Each sandbox keeps at most MaxBindingsPerSandbox
// pairs; beyond that the least recently answered or used go, and
// Stats.BindingEvictions counts them. The proxy dials a flow's original
// destination when it is bound to the flow's name (Bound).
//
// Answers are edited for the sandbox, never forwarded blind: answer
// records outside the CNAME chain are removed; A and AAAA records (and
// hints) inside the sandbox's deny_cidrs are removed; with
// BlockPrivateAnswers, for names allowed by allow_domains, so are
// private, loopback, link-local (the cloud metadata address included),
// CGNAT, ULA and IPv6 forms embedding such IPv4 addresses, unless
// allow_cidrs lists them (allow-all sandboxes reach those ranges directly,
// so the guard would protect nothing there). The ech parameter of HTTPS and
// SVCB records is removed (and from their mandatory list): with Encrypted
// Client Hello the real name would travel encrypted and the proxy would
// see only the public cover name, so clients must keep sending a visible
// SNI. An edited answer carries the EDE "Filtered", loses its AD bit, and
// no longer validates with DNSSEC at the client.
//
// EDNS0. Upstream queries carry egressd's own OPT record (1232 bytes, the
// client's DO bit), never the client's options: no client subnet, cookie
// or padding leaves the host. A client that sent EDNS0 gets an OPT record
// back; UDP replies are truncated (TC) to what the client accepts, 512
// bytes without EDNS0.
//
// Cache. One cache of upstream answers serves every sandbox, after each
// sandbox's own policy check, keyed by name, type and the DO and CD bits.
// Positive answers live for their smallest TTL, negative ones for the
// SOA's negative TTL (RFC 2308: min(SOA TTL, MINIMUM); no SOA, no
// caching), both at most an hour; the least recently used go first.
// Concurrent misses for one question share one upstream query. Repeated
// questions are answered from a packed copy of the first reply (the fast
// path, fastpath.go), byte for byte what the full path would build.
//
// Upstream. Servers are tried in order, starting with the one that
// answered last; each attempt has its own timeout, random ID and source
// port, must answer the exact question asked, and is retried over TCP when
// truncated. SERVFAIL, REFUSED and timeouts fail over to the next server;
// when none answers, the client gets SERVFAIL.
//
// Logs: one line per query ("dns query", "dns query refused", "dns query
// dropped") with the policy.Decision fields the proxy logs, never sampled.
package dnsfilter
