#!/usr/bin/env bash
# 10,000 simulated devices holding sync long polls on one hub, one desired patch fanned out
# to all of them.
#
#   scripts/bench/fanout.sh [DEVICES] [RUNS]     (default 10,000 devices, 3 runs)
#
# Starts `outpost hub serve` (file store, data in a temp dir; --max-conns-per-ip raised, as
# every simulated device connects from 127.0.0.1), makes the devices once (each with one
# module, "m"), then RUNS times: every device opens its own TLS connection and holds a sync
# long poll; once the hub holds them all, one desired patch goes to every device's module
# twin (`twin patch` on each, 64 at a time); timed until the last device's poll has returned
# with it. The hub's RSS before the devices connect and with every poll held gives the memory
# a held connection costs. The load program is scripts/bench/replicabench (-mode fanout).
set -euo pipefail
cd "$(dirname "$0")/../.."
devices=${1:-10000}
runs=${2:-3}
work=$(mktemp -d)
pids=()
# shellcheck source=scripts/bench/lib.sh
. scripts/bench/lib.sh
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
# The hub and the load program each hold a connection a device, and some files to spare.
need=$((devices + 1024))
if [ "$(ulimit -Sn)" != unlimited ] && [ "$(ulimit -Sn)" -lt "$need" ]; then
	hard=$(ulimit -Hn)
	if [ "$hard" != unlimited ] && [ "$hard" -lt "$need" ]; then
		echo "open files: $need needed, the hard limit is $hard: raise it (limits.conf, or run as root with CAP_SYS_RESOURCE)" >&2
		exit 1
	fi
	ulimit -Sn "$need"
fi
go build -o "$work/outpost" ./cmd/outpost
go build -o "$work/replicabench" ./scripts/bench/replicabench
# A fresh hub each run (same data dir): Go keeps freed heap for a while, so a hub that held
# the last run's connections would start the next one with their memory.
port=$(free_port)
for run in $(seq 1 "$runs"); do
	: >"$work/hub.log"
	OUTPOST_CONFIG=/dev/null "$work/outpost" hub serve --data "$work/hub" --listen "127.0.0.1:$port" \
		--amqp-listen "" --max-conns-per-ip -1 >"$work/hub.out" 2>"$work/hub.log" &
	hub=$!
	pids=($hub)
	until grep -q "hub listening" "$work/hub.log"; do sleep 0.05; done
	[ "$run" = 1 ] && cs=$(head -1 "$work/hub.out")
	echo "run $run, load: $(cut -d' ' -f1-3 /proc/loadavg)"
	"$work/replicabench" -hub "$cs" -ca "$work/hub/ca.pem" -mode fanout -devices "$devices" -clients 64 -pid "$hub"
	kill "$hub"
	wait "$hub" || true
done
