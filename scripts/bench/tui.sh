#!/usr/bin/env bash
# outpost tui against a hub with a large fleet, driven in tmux.
#
#   scripts/bench/tui.sh [DEVICES]      (default 10000 devices × 1 module)
#   OUTPOST_BIN=/path/to/outpost scripts/bench/tui.sh   (that binary, e.g. of another commit)
#
# Prints: start → first complete frame of the fleet view (a "devices (N" title and the
# screen's rows of devices; a 10 ms poll can miss the first page's frame, so any page counts),
# the TUI's RSS on the fleet view, hub change → visible in an open twin view (a CLI desired
# patch; timed from the CLI's return, 5 runs), and a 32 KiB twin: 400 `j` sent at once →
# the 400th key is the first line (no key dropped). Times include the 10 ms polling of
# tmux capture-pane. Needs tmux.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v tmux >/dev/null || { echo "tui.sh: needs tmux (apt-get install tmux)" >&2; exit 1; }
devices=${1:-10000}
dir=${BENCH_DIR:-/tmp/outpost-bench-tui}/${devices}
if [ -n "${OUTPOST_BIN:-}" ]; then
	bin=$OUTPOST_BIN # a binary built elsewhere (another commit, to compare)
else
	bin=$(mktemp -d)/outpost
	go build -o "$bin" ./cmd/outpost
fi
sock=$(mktemp -u /tmp/outpost-tui-bench.XXXXXX)
T() { tmux -S "$sock" "$@"; }

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
	start_hub
	kill -TERM $pid; wait $pid || true
	go run ./scripts/bench/hubfill -data "$dir" -devices "$devices" -modules 1
	touch "$dir/filled"
fi
start_hub
trap 'T kill-server 2>/dev/null || true; kill -TERM $pid 2>/dev/null || true' EXIT
addr=$(grep -o 'https://[^ ]*' "$log" | head -1)
cs=$("$bin" hub credentials --data "$dir" -o json | sed -n 's/.*"connectionString": "\(.*\)".*/\1/p')
export OUTPOST_CONNECTION_STRING=$(echo "$cs" | sed "s/HostName=[^;]*/HostName=localhost:${addr##*:}/")
export OUTPOST_CA=$dir/ca.pem OUTPOST_CONFIG=/dev/null NO_COLOR=1
# One tmux server for every run (a session that only sleeps keeps it, started after the
# exports above, which its sessions inherit), so that a run's
# time is the UI's and not the start of a tmux server.
T new-session -d -s keep "sleep 3600"

now() { date +%s%N; }
# wait_screen TEXT [-E]: until the pane shows TEXT (a fixed string, or with -E an extended
# regular expression; 60 s at most).
wait_screen() {
	local until=$(( $(now) + 60000000000 )) how=${2:--F}
	until T capture-pane -p -t b | grep -q "$how" -- "$1"; do
		[ "$(now)" -lt $until ] || { echo "tui.sh: the screen never showed $1:" >&2; T capture-pane -p -t b >&2; exit 1; }
		sleep 0.01
	done
}
ms() { echo $(( ($2 - $1) / 1000000 )); }

n=$((devices))
for run in 1 2 3; do
	start=$(now)
	T new-session -d -s b -x 120 -y 40 "exec $bin tui"
	# The first complete frame: a count of 100 or more devices and the rows that fill the
	# screen (device-00030 is on the 34th line of 40).
	wait_screen "devices \([0-9]{3,}.*device-00030|device-00030.*devices \([0-9]{3,}" -zE
	first=$(now)
	tpid=$(T list-panes -t b -F '#{pane_pid}')
	# CPU time of the TUI process up to the first frame (user + system, in clock ticks): what
	# the start costs whatever else the machine is doing.
	cpu=$(awk '{print ($14 + $15) * 1000 / '"$(getconf CLK_TCK)"'}' /proc/$tpid/stat)
	wait_screen "devices ($n)"
	all=$(now)
	sleep 1
	rss=$(awk '/VmRSS/ {print $2}' /proc/$tpid/status)
	hwm=$(awk '/VmHWM/ {print $2}' /proc/$tpid/status)
	T kill-session -t b
	printf 'fleet run %d: first frame (first page of 100 rows) %d ms (TUI CPU %d ms), all %d devices %d ms; RSS %d MB (peak %d MB)\n' "$run" "$(ms $start $first)" "$cpu" "$n" "$(ms $start $all)" $((rss / 1024)) $((hwm / 1024))
done

T new-session -d -s b -x 120 -y 40 "exec $bin tui device-00000/module-0"
wait_screen "reported (\$version"
for run in 1 2 3 4 5; do
	"$bin" twin patch device-00000/module-0 --desired "{\"bench\": $run$RANDOM}" 2>/dev/null
	sent=$(now)
	wait_screen "\"bench\": $run"
	printf 'change run %d: CLI patch → visible in the open twin view %d ms\n' "$run" "$(ms $sent $(now))"
done
T kill-session -t b

# A 32 KiB desired document: 1000 keys 0000…0999 of 24 bytes each (digits sort before the
# keys hubfill gave the twin).
# Earlier runs' keys are removed in the same patch (null), so that it stays under 32 KiB.
big=$("$bin" twin get device-00001/module-0 -o json | python3 -c '
import json, sys
old = json.load(sys.stdin)["properties"]["desired"]
patch = {k: None for k in old if not k.startswith("$")}
patch.update({"%04d" % i: "x" * 16 for i in range(1000)})
print(json.dumps(patch))')
"$bin" twin patch device-00001/module-0 --desired "$big"
T new-session -d -s b -x 120 -y 40 "exec $bin tui device-00001/module-0"
wait_screen '"0000"'
start=$(now)
T send-keys -t b $(printf 'j %.0s' $(seq 400))
# The view's first line (screen line 4) is the 400th key once every j is taken.
until T capture-pane -p -t b | sed -n 4p | grep -qF '"0399"'; do
	[ $(( $(now) - start )) -lt 60000000000 ] || { echo "32 KiB twin: keys dropped; the screen shows:" >&2; T capture-pane -p -t b >&2; exit 1; }
	sleep 0.01
done
printf '32 KiB twin: 400 j sent at once → 0399 the first line (none dropped) after %d ms\n' "$(ms $start $(now))"
