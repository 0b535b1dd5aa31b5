// Package dnsfilter is egressd's DNS side.
//
// Today it holds the upstream client (Upstream) that the proxy uses to pin a
// flow admitted by a domain rule to an address its name really resolves to:
//
//	proxy ──name──► Upstream.LookupAddrs ──cache hit──► addresses
//	                      │ miss
//	                      ▼
//	             A + AAAA to upstream_dns (failover, TCP on truncation)
//
// The filtering resolver that answers the sandbox's own queries is built on
// the same client (issue #4).
package dnsfilter
