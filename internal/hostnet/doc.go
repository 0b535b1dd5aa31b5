// Package hostnet asks the kernel about the host egressd runs on, over
// rtnetlink, in the network namespace of the calling thread:
//
//   - IsLocal: is an address the host's own (a route lookup answering
//     local, broadcast, anycast or multicast)? Asked at the moment of use,
//     so an address added after start counts at once. LocalCache keeps
//     the answers until rtnetlink announces a change of links, addresses,
//     routes or rules.
//   - Links: the interfaces, with the master (bridge, bond, …) each one is
//     a port of.
//
// Netlink rather than /sys: /sys shows the namespace it was mounted in,
// which need not be egressd's.
package hostnet
