// Package e2e holds egressd's end-to-end tests: the real binary, real kernel
// rules and real clients (curl, openssl, Go's crypto/tls) in network
// namespaces the tests create:
//
//	sandbox netns ──veth-sb1──► firewall netns (egressd run) ──► internet netns
//	10.231.0.2                  10.231.0.1                        198.51.100.0/24
//	fd00:231::2                 fd00:231::1                       203.0.113.0/24, 2001:db8::/64
//
// The internet namespace runs TLS, HTTP, TCP, UDP and DNS servers that
// record everything they receive, so a test can prove that nothing leaked.
package e2e
