#!/usr/bin/env bash
# Hub start time and memory with a large registry.
#
#   scripts/bench/hub.sh [DEVICES] [MODULES]     (default 10000 × 5: 50,000 module twins)
#
# Fills a data dir with hubfill (once; kept in $BENCH_DIR, default /tmp/outpost-bench-hub),
# then starts `outpost hub serve` on it three times and prints, for each start, the time from
# exec to the listening line, the CPU time the hub had used by then, and the hub's RSS: once
# started, right after it has served a full device list, and 10 s after that.
set -euo pipefail
cd "$(dirname "$0")/../.."
devices=${1:-10000}
modules=${2:-5}
dir=${BENCH_DIR:-/tmp/outpost-bench-hub}/${devices}x${modules}
# OUTPOST_BIN: an outpost binary to measure instead of one built from this tree.
bin=${OUTPOST_BIN:-}
if [ -z "$bin" ]; then
	bin=$(mktemp -d)/outpost
	go build -o "$bin" ./cmd/outpost
fi

# start_hub: `hub serve` on $dir in the background, returning once it listens; sets pid and log.
start_hub() {
	log=$(mktemp)
	"$bin" hub serve --data "$dir" --listen 127.0.0.1:0 >/dev/null 2>"$log" &
	pid=$!
	until grep -q "hub listening" "$log"; do
		kill -0 $pid 2>/dev/null || { cat "$log"; exit 1; }
		sleep 0.005
	done
}

if [ ! -f "$dir/filled" ]; then
	rm -rf "$dir"
	# The hub makes its data dir (CA, owner policy) first; hubfill adds the fleet to it.
	start_hub
	kill -TERM $pid; wait $pid || true
	go run ./scripts/bench/hubfill -data "$dir" -devices "$devices" -modules "$modules"
	touch "$dir/filled"
fi
echo "data: $dir ($(find "$dir/store/records" -type f | wc -l) records, $(du -sh "$dir/store" | cut -f1))"

for run in 1 2 3; do
	start=$(date +%s%N)
	start_hub
	ready=$(date +%s%N)
	cpu=$(awk '{print $14 + $15}' /proc/$pid/stat) # utime + stime, in clock ticks
	idle=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
	addr=$(grep -o 'https://[^ ]*' "$log" | head -1)
	cs=$("$bin" hub credentials --data "$dir" -o json | sed -n 's/.*"connectionString": "\(.*\)".*/\1/p')
	cs=$(echo "$cs" | sed "s/HostName=[^;]*/HostName=localhost:${addr##*:}/")
	n=$(OUTPOST_CONFIG=/dev/null "$bin" --hub "$cs" --ca "$dir/ca.pem" device list -o json | grep -c '"deviceId"')
	rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
	sleep 10
	settled=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
	hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
	kill -TERM $pid; wait $pid || true
	printf 'run %d: start %d ms (%d ms of CPU); RSS %d MB started, %d MB right after listing %d devices, %d MB 10 s later (peak %d MB)\n' \
		"$run" $(( (ready - start) / 1000000 )) $(( cpu * 1000 / $(getconf CLK_TCK) )) $(( idle / 1024 )) $(( rss / 1024 )) "$n" $(( settled / 1024 )) $(( hwm / 1024 ))
	rm -f "$log"
done
