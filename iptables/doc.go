// Package iptables installs the kernel rules that divert a sandbox's traffic
// to egressd.
//
// The name is historical and kept as a public contract (it names the step in
// the data path: packet → kernel rule → proxy or resolver). The rules are
// written for nftables, not iptables: `nft -f -` loads IPv4 and IPv6 rules and
// the CIDR sets they use in one atomic transaction, interval sets replace
// ipset, and no iptables/ip6tables pair can drift apart.
//
// Everything egressd installs lives in tables inet egressd and bridge
// egressd (which drops frames entering a bridge through a sandbox or
// guarded interface), the bridge netfilter switches of bridges that are
// sandbox interfaces (set by the daemon, see internal/hostnet), plus one policy
// routing rule per family (fwmark Mark → table RouteTable, which routes
// everything to lo so TPROXY-marked packets are delivered locally):
//
//	packet from a sandbox interface (prerouting, priority mangle)
//	  │
//	  ├─ IPv6 neighbour discovery with this host ─────────────► accept
//	  ├─ not IP, or source not in the sandbox's sources ──────► drop
//	  ├─ reply on a connection opened into the sandbox ───────► accept
//	  │    (conntrack reply direction, established, not related;
//	  │    egressd running, else drop)
//	  ├─ report-only (Sandbox.Audit): chain audit ─► DNS and TCP as below,
//	  │    host guard, then accept, recorded in kaudit4/kaudit6
//	  ├─ mode deny-all ─────────────────► drop (TCP: reject with reset)
//	  ├─ DNS (udp/tcp 53, any destination) ─► TPROXY to the resolver port
//	  │    on a bridge: mark NATMark, REDIRECT   (no resolver: drop)
//	  ├─ non-TCP to deny_cidrs ───────────────────────────────► drop
//	  ├─ TCP SYN (any destination, deny_cidrs too) ─► TPROXY to the proxy
//	  │    port; on a bridge: mark NATMark, REDIRECT (no listener: drop)
//	  ├─ TCP of a connection the proxy holds ─────────────────► accept
//	  ├─ any other TCP ─────────────────────► reject with a TCP reset
//	  ├─ egressd not running (heartbeat set expired) ─────────► drop
//	  ├─ protect_host: to an address of this host (fib) ──────► drop
//	  ├─ isolate_sandboxes: to another sandbox's sources ─────► drop
//	  └─ other protocols: allow-all ► accept; custom ► accept if the
//	     destination is in allow_cidrs; else drop
//
// What a sandbox starts is judged packet by packet, with no conntrack
// shortcut, so a reload takes effect on flows already open; conntrack is
// used only for replies on connections into the sandbox and for the NAT of
// bridge traffic (docs/design.md, "Bridges, conntrack and published
// ports"). The nat_divert chain REDIRECTs what the mode chains marked
// NATMark; the forward chain drops a packet marked for egressd that is
// about to be forwarded instead. TPROXY falls through when no socket
// listens; the explicit drop after it makes egressd fail closed when the
// daemon is down. Rule comments name the reason of every drop and drop rules
// carry counters (`nft list table inet egressd`).
//
// The operator's part, which this package does not touch: enable forwarding
// (net.ipv4.ip_forward, net.ipv6.conf.all.forwarding) for non-TCP traffic the
// policy lets through, and keep rp_filter as the host needs it. The proxy and
// resolver listeners need IP_TRANSPARENT/IPV6_TRANSPARENT (CAP_NET_ADMIN),
// must listen on the wildcard address (or the sandbox interface's address),
// and the resolver on both UDP and TCP; its UDP replies must leave from the
// original destination address and port.
//
// Apply and Cleanup are not safe for concurrent use; callers serialise them.
package iptables

// Kernel identifiers egressd owns.
const (
	// Table is the nftables table (family inet) holding every egressd rule.
	Table = "egressd"
	// Mark is the packet mark set on diverted packets ("egress" in hex speak).
	Mark = 0x1e57
	// NATMark is the mark of packets that arrive on a bridge and go to
	// egressd by REDIRECT instead of TPROXY (see onBridge).
	NATMark = 0x1e59
	// RouteTable is the routing table Mark selects; it routes all to lo.
	RouteTable = 7767
	// RulePriority is the priority of the fwmark rules (before main, 32766).
	RulePriority = 7767
	// AuditChain is the chain of the sandboxes in report-only mode.
	AuditChain = "audit"
)
