#!/usr/bin/env bash
# Reload under load: 32 clients fetch from an allowed host over TLS through
# egressd while its policy changes every 100 ms for 60 s, alternating
# SIGHUP (config rewritten) and admin API calls; every variant keeps the
# host allowed. Reports failed requests (goal: 0) and egressd's RSS,
# threads, open files and live flows (goal: no growth). See README.md.
#
#   sudo bench/reload/run.sh [-duration 60s] [-clients 32] [-interval 100ms] ...
#
# Arguments go to the load program (bench/reload, `go run ./bench/reload -h`).
# Uses the demo topology of examples/lockdown (network namespaces, no
# uplink), removed on exit. EGRESSD=path picks the binary (default: built).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$root/examples/lockdown/topology.sh"

[ "$(id -u)" = 0 ] || { echo "run.sh: needs root" >&2; exit 2; }

work=$(mktemp -d /tmp/egressd-reload.XXXXXX)
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

egressd=${EGRESSD:-}
(
	cd "$root"
	[ -n "$egressd" ] || go build -o "$work/egressd" ./cmd/egressd
	go build -o "$work/demoserver" ./examples/lockdown/demoserver
	go build -o "$work/reload" ./bench/reload
)
egressd=${egressd:-$work/egressd}

topo_up "rl-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
topo_server_addr 198.51.100.10/32 198.51.100.53/32

sock=$work/run/admin.sock
# config VARIANT-LINES: the config file with sb1's custom policy lines.
config() { topo_config "$sock" "$work/state" "mode = \"custom\"
$1"; }
config 'allow_domains = ["pkg.test", "a.test"]
allow_cidrs = ["203.0.113.7/32"]' >"$work/a.toml"
config 'allow_domains = ["pkg.test", "*.b.test"]
deny_cidrs = ["198.51.100.128/25"]' >"$work/b.toml"
cp "$work/a.toml" "$work/egressd.toml"

ip netns exec "$IN" "$work/demoserver" serve -ca "$work/ca.pem" -dns 198.51.100.53:53 \
	-zone pkg.test=198.51.100.10 >/dev/null 2>&1 &
pids+=($!)
ip netns exec "$FW" "$egressd" run -config "$work/egressd.toml" >"$work/egressd.log" 2>&1 &
egressd_pid=$!
pids+=("$egressd_pid")
for i in $(seq 100); do
	"$egressd" policy list -socket "$sock" >/dev/null 2>&1 && [ -s "$work/ca.pem" ] && break
	kill -0 "$egressd_pid" 2>/dev/null || { cat "$work/egressd.log" >&2; exit 1; }
	sleep 0.1
done

echo "$(nproc) CPUs, $(uname -r), $(go version | cut -d' ' -f3)"
status=0
ip netns exec "$SB" "$work/reload" -pid "$egressd_pid" -socket "$sock" -config "$work/egressd.toml" \
	-config-a "$work/a.toml" -config-b "$work/b.toml" -ca "$work/ca.pem" "$@" || status=$?

log=$work/egressd.log
printf 'egressd log: %d SIGHUP reloads applied, %d refused, %d flows cut by a policy change, %d errors\n' \
	"$(grep -c '"msg":"reloaded"' "$log" || true)" "$(grep -c '"msg":"reload refused' "$log" || true)" \
	"$(grep -c '"msg":"flow cut by policy change"' "$log" || true)" "$(grep -c '"level":"error"' "$log" || true)"
if grep -q '"msg":"flow cut by policy change"' "$log"; then
	echo "FAIL: allowed flows were cut" >&2
	status=1
fi
exit "$status"
