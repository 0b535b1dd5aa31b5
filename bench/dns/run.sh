#!/usr/bin/env bash
# bench/dns/run.sh — egressd's resolver against dnsmasq and unbound (as root).
#
# One throwaway topology, veth only, no uplink:
#
#   sandbox netns ──────── firewall netns ──────────── internet netns
#   dnsperf                resolver under test          authoritative dnsmasq
#   10.231.0.2             10.231.0.1                   198.51.100.53 (*.bench.test,
#                                                        TTL 1h)
#
# Each resolver in turn serves the sandbox at 10.231.0.1:53 and forwards to
# 198.51.100.53: dnsmasq (--cache-size), unbound (2 threads, forward-zone),
# then egressd (`egressd run`, custom policy allow_domains *.bench.test, its
# kernel rules TPROXY the queries to the resolver). The workload is the same
# for all: NAMES names, A queries, warmed so every answer is cached. For
# each resolver:
#
#   max   dnsperf -c CLIENTS -q OUTSTANDING for SECS s: queries/s
#   half  dnsperf -Q (half of egressd's max) for SECS s, -v: p50/p99 latency
#
# Each measurement is taken ROUNDS times, the resolvers taking turns, and
# the median reported: on a small shared VM single runs vary by 20 %.
# The markdown table goes to OUT (bench/dns/latest.md). Everything started
# is killed by PID and the namespaces deleted on exit.
#
# Knobs (environment): NAMES, SECS, CLIENTS, OUTSTANDING, ROUNDS, EGRESSD
# (a prebuilt binary), OUT.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
NAMES=${NAMES:-1000}
SECS=${SECS:-10}
CLIENTS=${CLIENTS:-8}
OUTSTANDING=${OUTSTANDING:-200}
ROUNDS=${ROUNDS:-3}
OUT=${OUT:-$ROOT/bench/dns/latest.md}
RES_IP=10.231.0.1
AUTH_IP=198.51.100.53

LOG_TAG=bench/dns
WORK=$(mktemp -d /tmp/egressd-dnsbench.XXXXXX)
# shellcheck source=../lib.sh
. "$ROOT/bench/lib.sh"
trap bench_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- preflight ---------------------------------------------------------------

[ "$(id -u)" = 0 ] || die "needs root (network namespaces, nftables, TPROXY)"
"$ROOT/scripts/install-deps.sh"
missing=""
command -v dnsmasq >/dev/null || missing="$missing dnsmasq-base"
command -v unbound >/dev/null || missing="$missing unbound"
if [ -n "$missing" ]; then
	# Comparison servers only; the unbound package may start a system
	# service, which this script neither needs nor touches.
	log "installing$missing"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
for t in ip nft dnsperf dnsmasq unbound go; do
	command -v "$t" >/dev/null || die "missing tool: $t"
done

SUF=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')

# ---- topology ----------------------------------------------------------------

topology() {
	topo_up "egd-$SUF"
	topo_server_addr "$AUTH_IP/32"
}


# wait_answer: until the resolver at RES_IP answers a bench name (10 s).
wait_answer() {
	for _ in $(seq 100); do
		if ip netns exec "$SB" dig +short +tries=1 +time=1 "@$RES_IP" n0.bench.test A | grep -q 198.51.100.10; then
			return 0
		fi
		sleep 0.1
	done
	die "resolver not answering; see $WORK"
}

# ---- servers -----------------------------------------------------------------

start_auth() {
	start "$IN" "$WORK/auth.log" dnsmasq --keep-in-foreground --no-resolv --no-hosts --no-poll \
		--listen-address="$AUTH_IP" --bind-interfaces --port=53 --pid-file= --user=root \
		--address=/bench.test/198.51.100.10 --local-ttl=3600 --log-facility=/dev/null
}

start_dnsmasq() {
	start "$FW" "$WORK/dnsmasq.log" dnsmasq --keep-in-foreground --no-resolv --no-hosts --no-poll \
		--listen-address="$RES_IP" --bind-interfaces --port=53 --pid-file= --user=root \
		--server="$AUTH_IP" --cache-size=10000 --dns-forward-max=1000 --log-facility=/dev/null
}

start_unbound() {
	cat >"$WORK/unbound.conf" <<-EOF
	server:
	    interface: $RES_IP
	    port: 53
	    access-control: 10.231.0.0/24 allow
	    do-daemonize: no
	    chroot: ""
	    username: ""
	    directory: "$WORK"
	    pidfile: ""
	    use-syslog: no
	    logfile: ""
	    verbosity: 0
	    num-threads: 2
	    so-reuseport: yes
	    do-ip6: no
	    module-config: "iterator"
	    do-not-query-localhost: no
	    msg-cache-size: 64m
	    rrset-cache-size: 64m
	    local-zone: "test." nodefault
	remote-control:
	    control-enable: no
	forward-zone:
	    name: "."
	    forward-addr: $AUTH_IP
	EOF
	start "$FW" "$WORK/unbound.log" unbound -d -c "$WORK/unbound.conf"
}

start_egressd() {
	cat >"$WORK/egressd.toml" <<-EOF
	[proxy]
	upstream_dns = ["$AUTH_IP:53"]
	[admin]
	socket = "$WORK/admin.sock"
	[state]
	dir = "$WORK/state"
	[dns]
	cache_size = 10000
	[[sandbox]]
	name = "bench"
	interface = "veth-sb1"
	sources = ["10.231.0.2/32"]
	mode = "custom"
	allow_domains = ["*.bench.test"]
	EOF
	start "$FW" "$WORK/egressd.log" "$EGRESSD" run -cleanup-on-exit -config "$WORK/egressd.toml"
}

# ---- measurement -------------------------------------------------------------

# max_rate NAME: all-out run; prints queries/s.
max_rate() {
	ip netns exec "$SB" dnsperf -s "$RES_IP" -d "$WORK/queries" -l "$SECS" \
		-c "$CLIENTS" -q "$OUTSTANDING" -T 1 >"$WORK/$1.max" 2>&1 || true
	awk '/Queries per second:/ {printf "%d\n", $4}' "$WORK/$1.max"
}

# at_rate NAME QPS: paced run with per-query latencies; prints
# "qps p50_us p99_us lost".
at_rate() {
	ip netns exec "$SB" dnsperf -s "$RES_IP" -d "$WORK/queries" -l "$SECS" \
		-c "$CLIENTS" -q "$OUTSTANDING" -T 1 -Q "$2" -v >"$WORK/$1.half" 2>&1 || true
	local qps lost
	qps=$(awk '/Queries per second:/ {printf "%d", $4}' "$WORK/$1.half")
	lost=$(awk '/Queries lost:/ {print $3}' "$WORK/$1.half")
	awk '$1 == ">" {print $NF * 1000000}' "$WORK/$1.half" | sort -n >"$WORK/$1.lat"
	local n
	n=$(wc -l <"$WORK/$1.lat")
	[ "$n" -gt 0 ] || die "no latencies for $1; see $WORK/$1.half"
	printf '%s %s %s %s\n' "$qps" \
		"$(sed -n "$(((n + 1) / 2))p" "$WORK/$1.lat" | cut -d. -f1)" \
		"$(sed -n "$(((n * 99 + 99) / 100))p" "$WORK/$1.lat" | cut -d. -f1)" "$lost"
}

# warm: until the resolver answers, then one pass over the workload so
# that every answer is cached.
warm() {
	wait_answer
	ip netns exec "$SB" dnsperf -s "$RES_IP" -d "$WORK/queries" -n 1 -c 1 -q 50 >/dev/null 2>&1 || true
}

# median: the middle of the numbers on stdin.
median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

main() {
	EGRESSD=${EGRESSD:-$WORK/egressd}
	if [ ! -x "$EGRESSD" ]; then
		(cd "$ROOT" && go build -o "$EGRESSD" ./cmd/egressd)
	fi
	for i in $(seq 0 $((NAMES - 1))); do
		echo "n$i.bench.test A"
	done >"$WORK/queries"
	topology
	start_auth
	sleep 0.3
	local setups="dnsmasq unbound egressd" s r
	declare -gA MAX P50 P99 LOST QPS
	for r in $(seq "$ROUNDS"); do
		for s in $setups; do
			"start_$s"
			warm
			max_rate "$s" >>"$WORK/$s.maxes"
			log "$s: round $r max $(tail -1 "$WORK/$s.maxes") q/s"
			stop "$LAST_PID"
		done
	done
	for s in $setups; do
		MAX[$s]=$(median <"$WORK/$s.maxes")
	done
	HALF=$((MAX[egressd] / 2))
	for r in $(seq "$ROUNDS"); do
		for s in $setups; do
			"start_$s"
			warm
			at_rate "$s" "$HALF" >>"$WORK/$s.paced"
			log "$s: round $r at $HALF q/s: $(tail -1 "$WORK/$s.paced") (q/s p50 p99 lost)"
			stop "$LAST_PID"
		done
	done
	for s in $setups; do
		QPS[$s]=$(awk '{print $1}' "$WORK/$s.paced" | median)
		P50[$s]=$(awk '{print $2}' "$WORK/$s.paced" | median)
		P99[$s]=$(awk '{print $3}' "$WORK/$s.paced" | median)
		LOST[$s]=$(awk '{n += $4} END {print n}' "$WORK/$s.paced")
	done
	report
}

report() {
	local s
	{
		echo "# DNS resolver benchmark"
		echo
		echo "$(date -u +%F), $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)),"
		echo "dnsperf $(dnsperf -h 2>&1 | awk '/Version/ {print $2}'), $NAMES names cached, A queries over UDP,"
		echo "dnsperf -c $CLIENTS -q $OUTSTANDING -T 1 for $SECS s in the sandbox netns, resolver in the firewall netns;"
		echo "medians of $ROUNDS rounds (lost: total). egressd runs with its kernel rules (TPROXY)."
		echo
		echo "| resolver | max q/s | q/s at $HALF (half egressd max) | p50 µs | p99 µs | lost |"
		echo "|---|---:|---:|---:|---:|---:|"
		for s in dnsmasq unbound egressd; do
			echo "| $s | ${MAX[$s]} | ${QPS[$s]} | ${P50[$s]} | ${P99[$s]} | ${LOST[$s]} |"
		done
		echo
		echo "Every round:"
		echo
		for s in dnsmasq unbound egressd; do
			echo "- $s: max $(paste -sd' ' "$WORK/$s.maxes"); paced (q/s p50 p99 lost) $(paste -sd';' "$WORK/$s.paced")"
		done
	} >"$OUT"
	cat "$OUT"
}

main
