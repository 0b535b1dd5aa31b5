# Demo topology for egressd, in shell: three network namespaces wired with
# veth pairs and nothing else (no uplink: nothing reaches a real network).
# Source this file, then call topo_up ID and, on exit, topo_down.
#
#   $SB (sandbox)          $FW (firewall: egressd)              $IN (internet)
#   eth0 ───────────── veth-sb1              veth-inet ─────── eth0
#   10.231.0.2/24         10.231.0.1/24      198.51.100.1/24    198.51.100.2/24
#   fd00:231::2/64        fd00:231::1/64     2001:db8::1/64     2001:db8::2/64
#
# The same layout as internal/netnstest, which the e2e tests use. Server
# addresses go on the internet side with topo_server_addr.

TOPO_NS=()

# topo_up ID: create $SB, $FW and $IN (named ID-sb, ID-fw, ID-in).
topo_up() {
	local id=$1 ns
	SB=$id-sb FW=$id-fw IN=$id-in
	for ns in "$SB" "$FW" "$IN"; do
		ip netns add "$ns"
		TOPO_NS+=("$ns")
		ip netns exec "$ns" sysctl -q -w net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
		ip -n "$ns" link set lo up
	done
	ip -n "$FW" link add veth-sb1 type veth peer name eth0 netns "$SB"
	ip -n "$FW" link add veth-inet type veth peer name eth0 netns "$IN"
	topo_addr "$SB" eth0 10.231.0.2/24 fd00:231::2/64
	topo_addr "$FW" veth-sb1 10.231.0.1/24 fd00:231::1/64
	topo_addr "$FW" veth-inet 198.51.100.1/24 2001:db8::1/64
	topo_addr "$IN" eth0 198.51.100.2/24 2001:db8::2/64
	ip -n "$SB" link set eth0 up
	ip -n "$FW" link set veth-sb1 up
	ip -n "$FW" link set veth-inet up
	ip -n "$IN" link set eth0 up
	ip -n "$SB" route add default via 10.231.0.1
	ip -n "$SB" -6 route add default via fd00:231::1
	ip -n "$FW" route add default via 198.51.100.2
	ip -n "$FW" -6 route add default via 2001:db8::2
	ip -n "$IN" route add default via 198.51.100.1
	ip -n "$IN" -6 route add default via 2001:db8::1
	ip netns exec "$FW" sysctl -q -w net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
	topo_wait_up "$SB" eth0 "$FW" veth-sb1 "$FW" veth-inet "$IN" eth0
}

# topo_addr NS DEV PREFIX...: add addresses (IPv6 without DAD).
topo_addr() {
	local ns=$1 dev=$2 p
	shift 2
	for p in "$@"; do
		case $p in
		*:*) ip -n "$ns" addr add "$p" dev "$dev" nodad ;;
		*) ip -n "$ns" addr add "$p" dev "$dev" ;;
		esac
	done
}

# topo_server_addr PREFIX...: more addresses for the internet's servers.
topo_server_addr() { topo_addr "$IN" eth0 "$@"; }

# topo_wait_up NS DEV [NS DEV...]: wait until each link is UP (the kernel
# drops the first packets on a link its watcher has not seen yet).
topo_wait_up() {
	local i
	while [ $# -ge 2 ]; do
		for i in $(seq 100); do
			ip -n "$1" -o link show dev "$2" | grep -q ' state UP ' && break
			sleep 0.1
		done
		shift 2
	done
}

# topo_config SOCKET STATE_DIR POLICY-LINES: an egressd config for sandbox
# sb1 of this topology (upstream DNS 198.51.100.53), with POLICY-LINES
# (mode and lists) for its policy.
topo_config() {
	cat <<TOML
[proxy]
upstream_dns = ["198.51.100.53:53"]

[admin]
socket = "$1"

[state]
dir = "$2"

[[sandbox]]
name      = "sb1"
interface = "veth-sb1"
sources   = ["10.231.0.2/32", "fd00:231::2/128"]
$3
TOML
}

# topo_down: delete the namespaces topo_up created.
topo_down() {
	local ns
	for ns in "${TOPO_NS[@]}"; do
		ip netns del "$ns" 2>/dev/null || true
	done
	TOPO_NS=()
}
