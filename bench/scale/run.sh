#!/usr/bin/env bash
# Scale benchmark: N sandboxes, each on its own interface with one /32
# source and a custom policy of 5 domains and 2 CIDRs. For each N, in a
# fresh egressd: start-up until GET /v1/sandboxes answers; RSS idle; the
# kernel objects (set elements) per sandbox; sandbox #1's ping p50 to an
# allowed CIDR (the per-packet kernel path) and a TLS download through the
# proxy; then, while 32 TLS clients in sandbox #1 keep fetching, 50 POST,
# PUT and DELETE of one sandbox (p50/p95) and a SIGHUP with one sandbox
# edited. Median of ROUNDS rounds. See README.md.
#
#   sudo bench/scale/run.sh [N...]        (default: 1 100 1000 3000; ROUNDS=3)
#
# Sandbox #1 is the topology of examples/lockdown; the other N-1 sit on
# veth interfaces in the firewall namespace whose peers are in a namespace
# of their own (their traffic is not the point: their kernel objects,
# their links and their cost to every change are).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$root/examples/lockdown/topology.sh"
[ "$(id -u)" = 0 ] || { echo "run.sh: needs root" >&2; exit 2; }

sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1 100 1000 3000)
rounds=${ROUNDS:-3}
ops=${OPS:-50}

work=$(mktemp -d /tmp/egressd-scale.XXXXXX)
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	topo_down
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

(
	cd "$root"
	go build -o "$work/egressd" ./cmd/egressd
	go build -o "$work/demoserver" ./examples/lockdown/demoserver
	go build -o "$work/reload" ./bench/reload
)
egressd=$work/egressd
topo_up "sc-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
topo_server_addr 198.51.100.10/32 198.51.100.53/32 198.51.100.77/32
ip netns exec "$IN" "$work/demoserver" serve -ca "$work/ca.pem" -dns 198.51.100.53:53 \
	-zone pkg.test=198.51.100.10 >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/ca.pem" ] && break; sleep 0.05; done

policy='mode = "custom"
allow_domains = ["pkg.test", "a.test", "*.b.test", "c.test", "d.test"]
allow_cidrs = ["198.51.100.77/32", "203.0.113.7/32"]'

# config N [EDITED]: sb1 plus N-1 sandboxes on interfaces sbx2..sbxN; with
# EDITED, sandbox sbN is deny-all (the SIGHUP's one change).
config() {
	local n=$1 edited=${2:-} i
	topo_config "$work/admin.sock" "$work/state" "$policy"
	for ((i = 2; i <= n; i++)); do
		printf '\n[[sandbox]]\nname = "sb%d"\ninterface = "sbx%d"\nsources = ["10.240.%d.%d/32"]\n' \
			"$i" "$i" $((i / 250)) $((i % 250 + 1))
		if [ -n "$edited" ] && [ "$i" = "$n" ]; then echo 'mode = "deny-all"'; else echo "$policy"; fi
	done
}

# veths add|del N: sbx2..sbxN in the firewall namespace, their peers in
# namespace $PEERS (deleting it deletes the pairs, at once: one by one,
# 1,000 pairs take 16 s).
PEERS=${FW%-fw}-peers
veths() {
	local i
	if [ "$1" = del ]; then
		ip netns del "$PEERS"
		while ip -n "$FW" link show sbx2 >/dev/null 2>&1; do sleep 0.1; done
		return
	fi
	ip netns add "$PEERS"
	TOPO_NS+=("$PEERS")
	for ((i = 2; i <= $2; i++)); do
		echo "link add sbx$i type veth peer name p$i netns $PEERS"
	done | ip -n "$FW" -batch -
}

now_ms() { date +%s%3N; }

# one N: prints one line of figures for one round.
one() {
	local n=$1 t0 pid rss elems ping dl hupsb
	rm -rf "$work/state"
	config "$n" >"$work/egressd.toml"
	config "$n" edited >"$work/edited.toml"
	t0=$(now_ms)
	ip netns exec "$FW" "$egressd" run -config "$work/egressd.toml" >"$work/egressd.log" 2>&1 &
	pid=$!
	pids+=("$pid")
	until "$egressd" policy list -socket "$work/admin.sock" >/dev/null 2>&1; do
		kill -0 "$pid" 2>/dev/null || { tail -5 "$work/egressd.log" >&2; exit 1; }
		sleep 0.005
	done
	local startup=$(($(now_ms) - t0))
	if [ -n "${NICE:-}" ]; then for t in /proc/$pid/task/*; do renice -n "$NICE" -p "${t##*/}" >/dev/null; done; fi
	sleep 1
	rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
	elems=$("$egressd" rules -config "$work/egressd.toml" | awk '/elements = \{$/ {e=1; next} e && /^\t\t}/ {e=0} e && !/#/ {n++} END {print n+0}')
	ping=$(ip netns exec "$SB" ping -n -c 200 -i 0.005 198.51.100.77 | awk -F'time=' '/time=/ {split($2, a, " "); print a[1]}' |
		sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}')
	dl=$(ip netns exec "$SB" curl -s -o /dev/null -w '%{speed_download}' --cacert "$work/ca.pem" \
		--resolve pkg.test:443:198.51.100.10 "https://pkg.test/scale?size=536870912")
	hupsb=""
	[ "$n" -gt 1 ] && hupsb=sb$n
	local opsline
	opsline=$(ip netns exec "$SB" "$work/reload" -ops "$ops" -clients "${CLIENTS:-32}" -pid "$pid" -socket "$work/admin.sock" \
		-config "$work/egressd.toml" -config-a "$work/edited.toml" -ca "$work/ca.pem" -sandbox "$hupsb" | head -1)
	kill "$pid"; wait "$pid" 2>/dev/null || true
	printf 'N=%d startup %d ms | RSS idle %d KiB (%.1f KiB/sandbox) | %.1f elements/sandbox | sb1 ping p50 %s ms, download %.2f Gbit/s | %s\n' \
		"$n" "$startup" "$rss" "$(echo "$rss / $n" | bc -l)" "$(echo "$elems / $n" | bc -l)" "$ping" \
		"$(echo "$dl * 8 / 1000000000" | bc -l)" "$opsline"
}

echo "$(nproc) CPUs, $(uname -r), $(go version | cut -d' ' -f3), $rounds rounds, $ops operations each"
for n in "${sizes[@]}"; do
	veths add "$n"
	for ((r = 1; r <= rounds; r++)); do one "$n"; done
	veths del "$n"
done
