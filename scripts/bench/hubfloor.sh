#!/usr/bin/env bash
# The hub's durable PATCH rate beside its store's and beside the floor under a PATCH,
# with the load from a C program (wrk, Debian's package) in another process, so that the
# server's CPU per request is not mixed with a Go client's.
#
#   scripts/bench/hubfloor.sh [RUNS] [SECONDS]     (default 3 runs of 10 s per point)
#
# Each run, one after the other:
#   store   the store's BenchmarkPut16Writers (in process: 16 goroutines writing);
#   https   scripts/bench/httpsfloor -no-store: HTTPS alone (read the body, answer);
#   floor   scripts/bench/httpsfloor: HTTPS and one durable Put per request;
#   hub     a fresh `outpost hub serve` (file store), desired PATCHes on module twins;
# the last three driven by wrk (scripts/bench/wrkpatch.lua) with 16, 64 and 256
# connections. Prints each rate, the server process's CPU per request (wrk's own is not
# counted), and the share of the machine's two cores busy meanwhile (/proc/stat, every
# process and the kernel's own work: what is left is idle or waiting on the disk).
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-3}
secs=${2:-10}
command -v wrk >/dev/null || apt-get install -y wrk >/dev/null
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
go build -o "$work/httpsfloor" ./scripts/bench/httpsfloor
go test -c -o "$work/store.test" ./internal/store
lua=$PWD/scripts/bench/wrkpatch.lua

hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
busy_idle() { awk '/^cpu / {print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat; } # busy, idle+iowait ticks
busy_pct() { # BEFORE AFTER (each "busy idle")
	set -- $1 $2
	echo $(( 100 * ($3 - $1) / ($3 - $1 + $4 - $2) ))
}

# drive NAME PID ADDR: wrk at 16, 64, 256 connections on ADDR, server process PID.
drive() {
	for c in 16 64 256; do
		local t0 m0 out t1 m1 n
		t0=$(cpu_ticks "$2"); m0=$(busy_idle)
		out=$(wrk -t2 -c"$c" -d"${secs}s" -s "$lua" "https://$3" -- "$c" 2)
		t1=$(cpu_ticks "$2"); m1=$(busy_idle)
		n=$(echo "$out" | awk '/requests in/ {print $1}')
		printf '%-6s c=%-3d %6d req/s  %4d µs CPU/req  machine %3d%% busy  %s\n' "$1" "$c" \
			"$(echo "$out" | awk '/Requests\/sec/ {print int($2)}')" $(( (t1 - t0) * 1000000 / hz / n )) \
			"$(busy_pct "$m0" "$m1")" "$(echo "$out" | grep '^errors')"
	done
}

# floor [ARGS]: httpsfloor in the background; sets fpid and faddr.
floor() {
	rm -rf "$work/floor" && mkdir "$work/floor"
	"$work/httpsfloor" -data "$work/floor" "$@" 2>"$work/floor.log" &
	fpid=$!
	pids+=("$fpid")
	until grep -q listening "$work/floor.log"; do sleep 0.05; done
	faddr=$(awk '{print $2}' "$work/floor.log")
}

for run in $(seq 1 "$runs"); do
	echo "run $run, load: $(cut -d' ' -f1-3 /proc/loadavg)"
	m0=$(busy_idle)
	out=$(cd "$work" && ./store.test -test.run '^$' -test.bench 'Put16Writers$' -test.benchtime 10s | grep '^Benchmark')
	echo "store  w=16  $(echo "$out" | awk '{print int($7)}') writes/s  $(echo "$out" | awk '{print int($5)}') µs CPU/write  machine $(busy_pct "$m0" "$(busy_idle)")% busy"

	TOKEN=x floor -no-store
	TOKEN=x drive https "$fpid" "$faddr"
	kill "$fpid"; wait "$fpid" 2>/dev/null || true; unset 'pids[-1]'

	TOKEN=x floor
	TOKEN=x drive floor "$fpid" "$faddr"
	kill "$fpid"; wait "$fpid" 2>/dev/null || true; unset 'pids[-1]'

	rm -rf "$work/hub" "$work/hub.log" "$work/hub.out"
	start_hub "$work/outpost"
	hub=${pids[-1]}
	"$work/replicabench" -mode patch -clients 256 -patches 256 >/dev/null # device bench, modules m0 … m255
	TOKEN=$("$work/outpost" token --ttl 2h)
	export TOKEN
	drive hub "$hub" "$(echo "$OUTPOST_CONNECTION_STRING" | sed 's/.*HostName=\([^;]*\).*/\1/')"
	kill "$hub"; wait "$hub" 2>/dev/null || true; unset 'pids[-1]'
done
