#!/usr/bin/env bash
# bench/run.sh — egressd's benchmark (run by `make bench`, as root).
#
# Builds a throwaway three-namespace topology (sandbox ↔ firewall ↔
# internet, veth only, no uplink), then measures, one setup after the other
# in that same topology:
#
#   direct          the firewall only forwards: the physical limit
#   egressd         `egressd run`, custom policy allowing bench.test
#   haproxy         HAProxy, TPROXY + `bind transparent`, SNI ACL,
#                   `server orig 0.0.0.0` (connects to the original destination)
#   haproxy-splice  the same with `option splice-auto`
#
# and writes the markdown table to bench/results/latest.md. Everything it
# starts is killed by PID and the namespaces deleted on exit, Ctrl-C or not.
#
# Explicit proxies (SETUPS="egressd-socks5 egressd-connect tinyproxy", not
# in the default): egressd's SOCKS5 and CONNECT listener next to Debian's
# tinyproxy, conns/s and bulk only.
# Knobs (environment): SETUPS, BULK1_BYTES, BULK8_BYTES (per stream),
# BULK_REPEAT and RATE_REPEAT (rounds, median reported),
# RATE_SECS, LAT_N, IDLE_N, EGRESSD (a prebuilt binary), OUT, KEEP (keep
# the work directory with every log), PROFILE (a file for egressd's CPU
# profile under the rate load, top 15 by cumulative time).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SETUPS=${SETUPS:-"direct egressd haproxy haproxy-splice"}
BULK1_BYTES=${BULK1_BYTES:-1073741824}
BULK8_BYTES=${BULK8_BYTES:-268435456}
BULK_REPEAT=${BULK_REPEAT:-3}
RATE_SECS=${RATE_SECS:-10}
RATE_REPEAT=${RATE_REPEAT:-3}
LAT_N=${LAT_N:-2000}
IDLE_N=${IDLE_N:-5000}
OUT=${OUT:-$ROOT/bench/results/latest.md}

NAME=bench.test
SERVER_IP=198.51.100.10
DNS_IP=198.51.100.53
EGRESSD_PORT=15001
HAPROXY_PORT=15002
HAPROXY_MARK=0x2b1
HAPROXY_TABLE=7768
EXPLICIT_PORT=1080
GATEWAY_IP=10.231.0.1 # the firewall, as the sandbox sees it

LOG_TAG=bench
WORK=$(mktemp -d /tmp/egressd-bench.XXXXXX)
# shellcheck source=lib.sh
. "$ROOT/bench/lib.sh"
trap bench_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- preflight ---------------------------------------------------------------

[ "$(id -u)" = 0 ] || die "needs root (network namespaces, nftables, TPROXY)"
"$ROOT/scripts/install-deps.sh"
for t in ip nft haproxy curl go; do
	command -v "$t" >/dev/null || die "missing tool: $t"
done
# Each idle connection holds two descriptors in the proxy (its two
# sockets; egressd takes splice pipes only for bulk flows) and one in each
# loadgen process. Without CAP_SYS_RESOURCE the hard limit cannot be raised: fewer idle
# connections then (the per-connection figures stay comparable).
ulimit -n "$(ulimit -Hn)"
NOTES=()
if [ "$(ulimit -n)" != unlimited ]; then
	idle_max=$((($(ulimit -n) - 1000) / 2))
	if [ "$IDLE_N" -gt "$idle_max" ]; then
		NOTES+=("IDLE_N lowered from $IDLE_N to $idle_max: open-file hard limit $(ulimit -n), a proxy needs 2 per idle connection.")
		log "warning: ${NOTES[-1]}"
		IDLE_N=$idle_max
	fi
fi
HAPROXY_MAXCONN=$((IDLE_N + 2000))

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
SUF=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')

# ---- build -------------------------------------------------------------------

log "building loadgen and egressd"
(cd "$ROOT" && go build -o "$WORK/loadgen" ./bench/loadgen)
if [ -z "${EGRESSD:-}" ]; then
	EGRESSD=$WORK/egressd
	(cd "$ROOT" && go build -o "$EGRESSD" ./cmd/egressd)
fi
LOADGEN=$WORK/loadgen

# ---- topology ----------------------------------------------------------------

topo_up "egb-$SUF"
log "topology $SB ↔ $FW ↔ $IN"
for ns in "$SB" "$FW" "$IN"; do
	# Ephemeral ports above the proxies' listening ports: an outgoing
	# socket in TIME_WAIT on 15002 would keep HAProxy from binding it.
	ip netns exec "$ns" sysctl -q -w net.ipv4.ip_local_port_range="20000 65535" net.ipv4.tcp_tw_reuse=1 \
		net.core.somaxconn=16384 net.ipv4.tcp_max_syn_backlog=16384
done
topo_server_addr "$SERVER_IP/32" "$DNS_IP/32"

# ---- the fake internet -------------------------------------------------------

log "starting TLS server $SERVER_IP:443 and DNS $DNS_IP:53"
start "$IN" "$WORK/server.log" "$LOADGEN" server -listen "$SERVER_IP:443" -name "$NAME" -ca "$WORK/ca.pem"
start "$IN" "$WORK/dns.log" "$LOADGEN" dns -listen "$DNS_IP:53" -name "$NAME" -addr "$SERVER_IP"
wait_for 10 "the TLS server" test -s "$WORK/ca.pem"
wait_for 10 "the DNS server" sh -c "ip netns exec $FW dig +short +time=1 +tries=1 @$DNS_IP $NAME | grep -qx $SERVER_IP"
wait_for 10 "a route to the server" ip netns exec "$SB" ping -c1 -W1 "$SERVER_IP"

RESULTS=$WORK/results.jsonl
: >"$RESULTS"

# client SETUP SUBCOMMAND FLAGS...: run a loadgen client in the sandbox and
# keep its JSON line. It runs in the background and the shell waits for it
# with the wait builtin, which a trapped signal interrupts at once (a
# foreground command would delay Ctrl-C until it ends).
client() {
	local setup=$1 cmd=$2 out=$WORK/client.out pid line
	shift 2
	ip netns exec "$SB" "$LOADGEN" "$cmd" -setup "$setup" -target "$SERVER_IP:443" \
		-name "$NAME" -ca "$WORK/ca.pem" "$@" >"$out" &
	pid=$!
	PIDS+=("$pid")
	wait "$pid" || die "$setup $cmd failed"
	forget "$pid"
	line=$(cat "$out")
	printf '%s\n' "$line" >>"$RESULTS"
	log "  $cmd: $line"
}

# measure_explicit SETUP PROXY: what an explicit proxy's clients feel,
# through PROXY (socks5://… or http://…, asked for bench.test:443).
measure_explicit() {
	local setup=$1 proxy=$2
	client "$setup" rate -concurrency 32 -duration "${RATE_SECS}s" -proxy "$proxy"
	client "$setup" bulk -streams 1 -bytes "$BULK1_BYTES" -repeat "$BULK_REPEAT" -proxy "$proxy"
	client "$setup" bulk -streams 8 -bytes "$BULK8_BYTES" -repeat "$BULK_REPEAT" -proxy "$proxy"
}

# measure SETUP PID: every metric for one setup; PID is the proxy (0: none).
measure() {
	local setup=$1 pid=$2
	if [ "$pid" != 0 ]; then
		client "$setup" idle -n "$IDLE_N" -pid "$pid"
	fi
	client "$setup" latency -n "$LAT_N"
	client "$setup" rate -concurrency 32 -duration "${RATE_SECS}s" -repeat "$RATE_REPEAT" -pid "$pid"
	client "$setup" bulk -streams 1 -bytes "$BULK1_BYTES" -repeat "$BULK_REPEAT" -pid "$pid"
	client "$setup" bulk -streams 8 -bytes "$BULK8_BYTES" -repeat "$BULK_REPEAT" -pid "$pid"
}

# profile_rate SOCKET OUT: one more rate round (not in the results) while
# egressd's CPU profile is taken over its admin socket; the top 15
# functions by cumulative time go to OUT, the profile next to it.
profile_rate() {
	local sock=$1 out=$2 cpid
	log "  CPU profile of egressd under the rate load → $out"
	curl -sf --unix-socket "$sock" -o "$out.pprof" \
		"http://egressd/debug/pprof/profile?seconds=$RATE_SECS" &
	cpid=$!
	PIDS+=("$cpid")
	ip netns exec "$SB" "$LOADGEN" rate -setup egressd-profile -target "$SERVER_IP:443" -name "$NAME" \
		-ca "$WORK/ca.pem" -concurrency 32 -duration "$((RATE_SECS + 1))s" >/dev/null
	wait "$cpid" || die "no CPU profile from $sock"
	forget "$cpid"
	(cd "$ROOT" && go tool pprof -top -cum -nodecount=15 "$EGRESSD" "$out.pprof") >"$out"
}

# deny_check SETUP: a name outside the policy must not get through. curl
# exits 52 (empty reply) when it reaches the server, which does not speak
# HTTP; a proxy that refuses makes the TLS handshake fail instead.
deny_check() {
	local rc=0
	ip netns exec "$SB" curl -sk --max-time 5 --resolve "other.test:443:$SERVER_IP" https://other.test/ \
		>/dev/null 2>&1 || rc=$?
	[ "$rc" != 52 ] || die "$1: other.test reached the server: the proxy is not in the path"
	log "  deny check: other.test refused (curl exit $rc)"
}

# ---- setups ------------------------------------------------------------------

run_direct() {
	log "setup direct: the firewall forwards"
	measure direct 0
}

run_egressd() {
	log "setup egressd"
	mkdir -p "$WORK/egressd-state"
	cat >"$WORK/egressd.toml" <<EOF
[proxy]
tproxy_port  = $EGRESSD_PORT
upstream_dns = ["$DNS_IP:53"]
peek_timeout = "5s"
dial_timeout = "5s"
shutdown_timeout = "2s"
max_conns_per_sandbox = 20000

[admin]
socket = "$WORK/egressd-admin.sock"

[state]
dir = "$WORK/egressd-state"

[[sandbox]]
name      = "bench"
interface = "veth-sb1"
sources   = ["10.231.0.2/32"]
mode      = "custom"
allow_domains = ["$NAME"]
EOF
	start "$FW" "$WORK/egressd.log" "$EGRESSD" run -config "$WORK/egressd.toml" -cleanup-on-exit
	local pid=$LAST_PID
	wait_for 10 "egressd ready" grep -q '"msg":"ready"' "$WORK/egressd.log"
	deny_check egressd
	measure egressd "$pid"
	if [ -n "${PROFILE:-}" ]; then
		profile_rate "$WORK/egressd-admin.sock" "$PROFILE"
	fi
	stop "$pid"
	ip netns exec "$FW" nft delete table inet egressd 2>/dev/null || true
	log "  egressd logged $(grep -c '"msg":"flow"' "$WORK/egressd.log") flow lines"
}

# run_haproxy SETUP SPLICE: HAProxy behind TPROXY for the sandbox's TCP 443.
run_haproxy() {
	local setup=$1 splice=$2
	log "setup $setup"
	ip netns exec "$FW" nft -f - <<EOF
table inet benchhap {
	chain prerouting {
		type filter hook prerouting priority mangle; policy accept;
		iifname "veth-sb1" meta nfproto ipv4 tcp dport 443 tproxy ip to :$HAPROXY_PORT meta mark set $HAPROXY_MARK accept
	}
}
EOF
	ip -n "$FW" rule add fwmark "$HAPROXY_MARK" table "$HAPROXY_TABLE"
	ip -n "$FW" route add local 0.0.0.0/0 dev lo table "$HAPROXY_TABLE"
	cat >"$WORK/$setup.cfg" <<EOF
global
	maxconn $HAPROXY_MAXCONN
	log stdout format raw local0 info

defaults
	mode tcp
	log global
	option tcplog
	maxconn $HAPROXY_MAXCONN
	timeout connect 5s
	timeout client 120s
	timeout server 120s
	$splice

frontend tls
	bind 0.0.0.0:$HAPROXY_PORT transparent
	tcp-request inspect-delay 5s
	tcp-request content accept if { req.ssl_sni -i $NAME }
	tcp-request content reject
	default_backend original

backend original
	# 0.0.0.0 without a port: the original destination address and port.
	server orig 0.0.0.0
EOF
	haproxy -c -q -f "$WORK/$setup.cfg" || die "$setup: bad HAProxy config"
	start "$FW" "$WORK/$setup.log" haproxy -db -f "$WORK/$setup.cfg"
	local pid=$LAST_PID
	wait_for 10 "$setup listening" sh -c "ip netns exec $FW ss -Hltn 'sport = :$HAPROXY_PORT' | grep -q LISTEN"
	deny_check "$setup"
	measure "$setup" "$pid"
	stop "$pid"
	ip netns exec "$FW" nft delete table inet benchhap
	ip -n "$FW" rule del fwmark "$HAPROXY_MARK" table "$HAPROXY_TABLE"
	ip -n "$FW" route flush table "$HAPROXY_TABLE"
	log "  $setup logged $(wc -l <"$WORK/$setup.log") lines"
}

# run_egressd_explicit KIND: egressd as an explicit proxy (no kernel
# rules: its only sandbox has a listener), asked through SOCKS5 or CONNECT.
run_egressd_explicit() {
	local kind=$1 setup=egressd-$1 scheme=socks5
	[ "$kind" = connect ] && scheme=http
	log "setup $setup"
	mkdir -p "$WORK/$setup-state"
	cat >"$WORK/$setup.toml" <<EOF
[proxy]
upstream_dns = ["$DNS_IP:53"]
peek_timeout = "5s"
dial_timeout = "5s"
shutdown_timeout = "2s"
max_conns_per_sandbox = 20000

[admin]
socket = "$WORK/$setup-admin.sock"

[state]
dir = "$WORK/$setup-state"

[[sandbox]]
name   = "bench"
listen = ["$GATEWAY_IP:$EXPLICIT_PORT"]
mode   = "custom"
allow_domains = ["$NAME"]
EOF
	start "$FW" "$WORK/$setup.log" "$EGRESSD" run -config "$WORK/$setup.toml"
	local pid=$LAST_PID
	wait_for 10 "$setup ready" grep -q '"msg":"ready"' "$WORK/$setup.log"
	measure_explicit "$setup" "$scheme://$GATEWAY_IP:$EXPLICIT_PORT"
	stop "$pid"
	log "  $setup logged $(grep -c '"msg":"flow"' "$WORK/$setup.log") flow lines"
}

# run_tinyproxy: Debian's tinyproxy, the well-known explicit proxy to
# compare with: CONNECT to port 443 only, a default-deny filter allowing
# bench.test, one log line per connection (LogLevel Info), bench.test in
# the firewall namespace's /etc/hosts (ip netns exec mounts it).
run_tinyproxy() {
	log "setup tinyproxy"
	mkdir -p "/etc/netns/$FW"
	echo "$SERVER_IP $NAME" >"/etc/netns/$FW/hosts"
	printf '^%s$\n' "${NAME//./\\.}" >"$WORK/tinyproxy.filter"
	cat >"$WORK/tinyproxy.conf" <<EOF
Port $EXPLICIT_PORT
Listen $GATEWAY_IP
Timeout 120
MaxClients 4096
Allow 10.231.0.0/24
ConnectPort 443
FilterDefaultDeny Yes
Filter "$WORK/tinyproxy.filter"
FilterType ere
LogLevel Info
LogFile "$WORK/tinyproxy.log"
EOF
	start "$FW" "$WORK/tinyproxy.out" tinyproxy -d -c "$WORK/tinyproxy.conf"
	local pid=$LAST_PID
	wait_for 10 "tinyproxy listening" sh -c "ip netns exec $FW ss -Hltn 'sport = :$EXPLICIT_PORT' | grep -q LISTEN"
	measure_explicit tinyproxy "http://$GATEWAY_IP:$EXPLICIT_PORT"
	stop "$pid"
	rm -rf "/etc/netns/$FW"
	log "  tinyproxy logged $(wc -l <"$WORK/tinyproxy.log") lines"
}

for s in $SETUPS; do
	case $s in
	egressd-socks5) run_egressd_explicit socks5 ;;
	egressd-connect) run_egressd_explicit connect ;;
	tinyproxy) run_tinyproxy ;;
	direct) run_direct ;;
	egressd) run_egressd ;;
	haproxy) run_haproxy haproxy "" ;;
	haproxy-splice) run_haproxy haproxy-splice "option splice-auto" ;;
	*) die "unknown setup $s" ;;
	esac
done

# ---- report ------------------------------------------------------------------

ENV_TEXT=$(
	cat <<EOF
Run $(date -u +%Y-%m-%dT%H:%MZ) · egressd $(cd "$ROOT" && git describe --tags --always --dirty 2>/dev/null || echo dev) · $(go version | cut -d' ' -f3) · $(haproxy -v | head -1 | cut -d' ' -f1-3) · Linux $(uname -r) · $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), shared by client, proxy and server · load average at start $LOAD0, at end $(cut -d' ' -f1-3 /proc/loadavg) (anything else running skews the figures).

Setups in one topology (sandbox ↔ firewall ↔ internet, veth): *direct* = the firewall forwards; *egressd* = \`egressd run\`, custom policy allowing $NAME; *HAProxy* = TPROXY to \`bind transparent\`, \`req.ssl_sni\` ACL then reject, \`server orig 0.0.0.0\` (original destination), both proxies log one line per connection; *HAProxy+splice* = the same with \`option splice-auto\`. TLS 1.3, X25519, ECDSA P-256, no resumption.
Bulk: one download of $BULK1_BYTES bytes, or 8 parallel of $BULK8_BYTES each; Gbit/s of payload from the common start to the last byte, median of $BULK_REPEAT rounds. Conns/s: 32 workers for ${RATE_SECS}s, median of $RATE_REPEAT rounds, each connection = connect + full handshake + 5-byte request/response + close. Setup latency: $LAT_N sequential connections (after 100 warm-up), time from connect(2) to the client's handshake complete. Idle RSS: (VmRSS with $IDLE_N idle handshaken connections − VmRSS before) / $IDLE_N. Proxy CPU: user + system time of the proxy process and its children (/proc/PID/stat) over the measure, per completed connection of the rate measure and per GiB of payload of the bulk measure, median round.
EOF
	for n in "${NOTES[@]}"; do printf '\n**Note:** %s\n' "$n"; done
)
mkdir -p "$(dirname "$OUT")"
"$LOADGEN" report -in "$RESULTS" -out "$OUT" -env "$ENV_TEXT"
log "written $OUT"
