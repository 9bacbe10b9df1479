#!/usr/bin/env bash
# The hub's durable PATCH rate beside its store's own, from the real binaries.
#
#   scripts/bench/hubpatch.sh [RUNS] [PATCHES]     (default 3 runs of 20000 patches)
#
# Each run: the store's BenchmarkPut16Writers, then a fresh `outpost hub serve` (file store,
# data in a temp dir on the same disk) driven by scripts/bench/replicabench -mode patch with
# 16, 64 and 256 clients from another process, first as `hub serve` runs (twice the Ps:
# store.Procs; heap headroom max(live/4, 32 MiB): gctune), then as it ran before those
# two (GOMAXPROCS=$(nproc) GOGC=25). Prints each rate with the hub process's CPU per PATCH
# (the load program's own CPU is not counted) and its peak RSS.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-3}
patches=${2:-20000}
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
. scripts/bench/lib.sh
go build -o "$work/outpost" ./cmd/outpost
go build -o "$work/replicabench" ./scripts/bench/replicabench
go test -c -o "$work/store.test" ./internal/store

hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

for run in $(seq 1 "$runs"); do
	echo "run $run, load: $(cut -d' ' -f1-3 /proc/loadavg)"
	(cd "$work" && ./store.test -test.run '^$' -test.bench 'Put16Writers$' -test.benchtime "${patches}x" | grep '^Benchmark')
	for as in now before; do
		rm -rf "$work/hub" "$work/hub.log" "$work/hub.out"
		if [ "$as" = now ]; then
			start_hub "$work/outpost"
		else
			GOMAXPROCS=$(nproc) GOGC=25 start_hub "$work/outpost"
		fi
		hub=${pids[-1]}
		for c in 16 64 256; do
			t0=$(cpu_ticks "$hub")
			out=$("$work/replicabench" -hub "$OUTPOST_CONNECTION_STRING" -ca "$OUTPOST_CA" -mode patch -clients "$c" -patches "$patches")
			t1=$(cpu_ticks "$hub")
			echo "hub ($as) $out, hub CPU $(( (t1 - t0) * 1000000 / hz / patches )) µs/patch, peak RSS $(awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$hub/status") MB"
		done
		kill "$hub"; wait "$hub" 2>/dev/null || true
		unset 'pids[-1]'
	done
done
