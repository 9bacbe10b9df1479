#!/usr/bin/env bash
# Reported patches through the module broker of a real `outpost daemon`, and its memory.
#
#   scripts/bench/report.sh [PATCHES] [WINDOW]     (default 20000, 8)
#
# Starts a hub (outpost hub serve) on a free loopback port, creates a device with 10
# modules, starts `outpost daemon` for it (process runtime, nothing deployed: the modules
# are the 10 paho clients of scripts/bench/reportbench, connected to its broker on a free
# loopback port). Prints the daemon's VmRSS and Pss idle with the 10 modules connected,
# the acknowledged patches/s with WINDOW patches in flight per module, the daemon's peak
# memory under that load, the time until the hub holds every module's last patch, and
# the memory idle again.
set -euo pipefail
cd "$(dirname "$0")/../.."
patches=${1:-20000}
window=${2:-8}
work=$(mktemp -d /tmp/outpost-bench-report.XXXXXX)
pids=()
. scripts/bench/lib.sh
trap stop_and_clean EXIT

go build -o "$work/outpost" ./cmd/outpost
go build -o "$work/reportbench" ./scripts/bench/reportbench
op() { OUTPOST_CONFIG=/dev/null "$work/outpost" "$@"; }

start_hub "$work/outpost"
devcs=$(op device create bench-dev)
for i in $(seq 0 9); do op module create bench-dev/m$i; done >"$work/modules"

port=$(free_port)
OUTPOST_CONFIG=/dev/null "$work/outpost" daemon --connection-string "$devcs" --data "$work/device" \
	--runtime process --mgmt-socket "$work/mgmt.sock" --broker-listen 127.0.0.1:$port \
	--gateway-hostname localhost --workload-dir "$work/workload" 2>"$work/daemon.log" &
dpid=$!
pids+=($dpid)
until [ -S "$work/mgmt.sock" ]; do sleep 0.05; done
until op status --mgmt-socket "$work/mgmt.sock" -o json 2>/dev/null | grep -q '"lastSync"'; do sleep 0.1; done

"$work/reportbench" -pid $dpid -broker 127.0.0.1:$port -ca "$work/device/ca/device-ca.pem" \
	-modules "$work/modules" -patches "$patches" -window "$window"
