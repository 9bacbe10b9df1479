#!/usr/bin/env bash
# Hub start time and memory with a large registry.
#
#   scripts/bench/hub.sh [DEVICES] [MODULES] [CONFIGS]   (default 10000 × 5: 50,000 module twins)
#
# Fills a data dir with hubfill (once; kept in $BENCH_DIR, default /tmp/outpost-bench-hub),
# then starts `outpost hub serve` on it three times and prints, for each start, the time from
# exec to the listening line, the CPU time the hub had used by then, and the hub's RSS: once
# started, right after it has served a full device list, and 10 s after that.
#
# With CONFIGS > 0 the fleet's module twins are tagged and CONFIGS automatic module
# configurations added (hubfill -configs: one targets most module twins, one a few, one none),
# and a first start evaluates them all (its time is printed). Each start then also prints when
# the hub was done evaluating them (its "start evaluation done" line), the CPU it used after
# listening until then, and the latency of module twin GETs (`outpost twin get`, one at a
# time, a process each) meanwhile and once done. A last start then creates a module
# configuration that targets no module twin (every module twin is evaluated again), deletes
# it, and prints how long the hub was busy after each and the CPU it used: until its CPU time
# grows by less than 20 ms in a second (that second not counted). To measure the fleet after
# its module twins changed, run hubfill -report on the data dir, then this again.
set -euo pipefail
cd "$(dirname "$0")/../.."
devices=${1:-10000}
modules=${2:-5}
configs=${3:-0}
dir=${BENCH_DIR:-/tmp/outpost-bench-hub}/${devices}x${modules}
[ "$configs" -gt 0 ] && dir=${dir}c${configs}
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
	go run ./scripts/bench/hubfill -data "$dir" -devices "$devices" -modules "$modules" -configs "$configs"
	if [ "$configs" -gt 0 ]; then
		start_hub
		until grep -q "start evaluation done" "$log"; do sleep 0.05; done
		echo "first start, module twins evaluated: $(grep -o 'queued=[0-9]* took=[^ ]*' "$log")"
		kill -TERM $pid; wait $pid || true
		rm -f "$log"
	fi
	touch "$dir/filled"
fi

# ms: milliseconds since the epoch. cpu_ms PID: the CPU time PID has used, in ms.
ms() { echo $(( $(date +%s%N) / 1000000 )); }
cpu_ms() { awk -v t="$(getconf CLK_TCK)" '{print int(($14 + $15) * 1000 / t)}' /proc/$1/stat; }
# wait_quiet PID: waits until PID uses less than 20 ms of CPU in a second; prints the ms and
# the CPU ms it used until the start of that quiet second.
wait_quiet() {
	local t0 c0 c i=0
	local -a cs ts
	t0=$(ms); c0=$(cpu_ms $1)
	while :; do
		sleep 0.25
		i=$(( i + 1 ))
		cs[$i]=$(cpu_ms $1); ts[$i]=$(ms)
		if [ $i -gt 4 ] && [ $(( cs[i] - cs[i-4] )) -lt 20 ]; then
			echo "$(( ts[i-4] - t0 )) ms, $(( cs[i-4] - c0 )) ms of CPU"
			return
		fi
	done
}
# median of the numbers on stdin
median() { sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "-"}'; }
echo "data: $dir ($(find "$dir/store/records" -type f | wc -l) records, $(du -sh "$dir/store" | cut -f1))"

# The owner's connection string, its host name replaced by each start's address.
cs0=$("$bin" hub credentials --data "$dir" -o json | sed -n 's/.*"connectionString": "\(.*\)".*/\1/p')
for run in 1 2 3; do
	start=$(date +%s%N)
	start_hub
	ready=$(date +%s%N)
	cpu=$(awk '{print $14 + $15}' /proc/$pid/stat) # utime + stime, in clock ticks
	idle=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
	addr=$(grep -o 'https://[^ ]*' "$log" | head -1)
	cs=$(echo "$cs0" | sed "s/HostName=[^;]*/HostName=localhost:${addr##*:}/")
	if [ "$configs" -gt 0 ]; then
		# Module twin GETs, one at a time, until the hub logs that the start's evaluation is done.
		lat=$(mktemp)
		while ! grep -q "start evaluation done" "$log"; do
			t0=$(ms)
			OUTPOST_CONFIG=/dev/null "$bin" --hub "$cs" --ca "$dir/ca.pem" twin get device-00042/module-1 -o json >/dev/null
			echo $(( $(ms) - t0 )) >>"$lat"
		done
		done_ms=$(( $(ms) - ready / 1000000 ))
		busy=$(( $(cpu_ms $pid) - cpu * 1000 / $(getconf CLK_TCK) ))
		after=$(for _ in 1 2 3 4 5; do
			t0=$(ms)
			OUTPOST_CONFIG=/dev/null "$bin" --hub "$cs" --ca "$dir/ca.pem" twin get device-00042/module-1 -o json >/dev/null
			echo $(( $(ms) - t0 ))
		done | median)
		printf 'run %d: evaluation done %d ms after listening (%s), %d ms of CPU after listening; twin GET during it: %d, median %s ms, max %s ms; after: median %s ms\n' \
			"$run" "$done_ms" "$(grep -o 'queued=[0-9]* took=[^ ]*' "$log")" "$busy" "$(wc -l <"$lat")" "$(median <"$lat")" "$(sort -n "$lat" | tail -1)" "$after"
		rm -f "$lat"
	fi
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

if [ "$configs" -gt 0 ]; then
	start_hub
	until grep -q "start evaluation done" "$log"; do sleep 0.05; done
	wait_quiet $pid >/dev/null
	addr=$(grep -o 'https://[^ ]*' "$log" | head -1)
	cs=$(echo "$cs0" | sed "s/HostName=[^;]*/HostName=localhost:${addr##*:}/")
	out() { OUTPOST_CONFIG=/dev/null "$bin" --hub "$cs" --ca "$dir/ca.pem" "$@" >/dev/null 2>&1; }
	content=$(mktemp)
	echo '{"moduleContent": {"properties.desired.benchChange": 1}}' >"$content"
	out deployment create bench-change -f "$content" --target-condition "FROM devices.modules WHERE tags.role = 'none'"
	echo "module configuration created while running: busy $(wait_quiet $pid)"
	out deployment delete bench-change
	echo "module configuration deleted while running: busy $(wait_quiet $pid)"
	kill -TERM $pid; wait $pid || true
	rm -f "$log" "$content"
fi
