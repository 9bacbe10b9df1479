#!/usr/bin/env bash
# The hub on etcd, 1 replica + 1 member beside 3 replicas + 3 members, in one run.
#
#   scripts/bench/replicas.sh [RUNS] [PATCHES]     (default 3 runs, 20,000 patches a measurement)
#
# Each topology is started from nothing: Debian's etcd (/usr/bin/etcd) with its members' data
# on tmpfs (/dev/shm), `outpost hub serve --store etcd` replicas, and Debian's haproxy in front
# with the configuration of docs/scale.md (loopback addresses put in). Then, RUNS times:
# durable patches/s with 16 and 64 clients through haproxy, and desired delivery p50/p99 with
# the PATCH sent to replica A and the device long-polling replica B (the same replica when
# there is one). The load program is scripts/bench/replicabench.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-3}
patches=${2:-20000}
work=$(mktemp -d)
shm=$(mktemp -d /dev/shm/outpost-replicas-XXXXXX)
pids=()
# shellcheck source=scripts/bench/lib.sh
. scripts/bench/lib.sh
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work" "$shm"
}
trap cleanup EXIT
need_etcd_haproxy
go build -o "$work/outpost" ./cmd/outpost
go build -o "$work/replicabench" ./scripts/bench/replicabench

for n in 1 3; do
	etcd_topology "$n"
	a=${replicas[0]}
	b=${replicas[-1]}
	echo "== $n replica(s) + $n etcd member(s) (haproxy $lb; delivery: patch to $a, device on $b)"
	for run in $(seq 1 "$runs"); do
		echo "run $run, load: $(cut -d' ' -f1-3 /proc/loadavg)"
		for c in 16 64; do
			"$work/replicabench" -hub "$cs" -ca "$ca" -mode patch -clients "$c" -patches "$patches"
		done
		"$work/replicabench" -hub "$cs" -ca "$ca" -mode delivery -a "$a" -b "$b" -deliveries 500
	done
	stop_topology
done
