# Shared by bench/run.sh and bench/dns/run.sh (bash). Source it after
# setting LOG_TAG and WORK, then `trap bench_cleanup EXIT`. It also sources
# the demo topology (topo_up, topo_server_addr, topo_down).

# shellcheck source=../examples/lockdown/topology.sh
. "$(dirname "${BASH_SOURCE[0]}")/../examples/lockdown/topology.sh"

PIDS=()

log() { printf '%s %s: %s\n' "$(date +%T)" "$LOG_TAG" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# start NS LOGFILE CMD...: run CMD in namespace NS in the background; its
# PID (ip netns exec execs CMD, so the PID is CMD's) goes to PIDS and to
# the global LAST_PID.
start() {
	local ns=$1 logf=$2
	shift 2
	ip netns exec "$ns" "$@" >"$logf" 2>&1 &
	LAST_PID=$!
	PIDS+=("$LAST_PID")
}

# stop PID: SIGTERM, wait, and forget it.
stop() {
	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
	forget "$1"
}

# forget PID: drop it from PIDS.
forget() {
	local keep=() p
	for p in "${PIDS[@]}"; do
		[ "$p" = "$1" ] || keep+=("$p")
	done
	PIDS=("${keep[@]}")
}

# wait_for SECONDS DESCRIPTION CMD...: poll CMD until it succeeds.
wait_for() {
	local secs=$1 what=$2 i
	shift 2
	for ((i = 0; i < secs * 20; i++)); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.05
	done
	die "timed out waiting for $what"
}

# bench_cleanup: the EXIT trap. SIGTERM to everything started (egressd
# drains for up to its shutdown_timeout), SIGKILL after 5 s, the
# namespaces deleted; WORK is kept on failure or when KEEP is set.
bench_cleanup() {
	local rc=$? pid
	trap - EXIT INT TERM
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		for _ in {1..50}; do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	topo_down
	if [ "$rc" != 0 ] || [ -n "${KEEP:-}" ]; then
		log "exit $rc; logs kept in $WORK"
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
