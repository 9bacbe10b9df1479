#!/usr/bin/env bash
# The device daemon's memory, and deployment → running, with real processes.
#
#   scripts/bench/daemon.sh [REDEPLOY_MINUTES] [RUNTIME]     (default 10, runc)
#
# Starts a hub (outpost hub serve) and a CNCF registry (Debian's docker-registry) on free
# loopback ports, builds and pushes fixtures/modules/tempsensor, creates a device, deploys
# 10 modules of that image, and starts `outpost daemon` for the device. Then prints:
#   - the time from applying a deployment at the hub to all 10 modules running, and from a
#     version change of one module to its new instance running (both measured from the start
#     of an `outpost deploy` process to an `outpost list` that shows it, so they include
#     those two CLI processes);
#   - the daemon's RSS with the 10 modules running, idle (its shims are separate processes
#     and are reported apart);
#   - the daemon's RSS each minute while a deployment with a changed version is applied every
#     3 s for REDEPLOY_MINUTES.
set -euo pipefail
cd "$(dirname "$0")/../.."
minutes=${1:-10}
rt=${2:-runc}
work=$(mktemp -d /tmp/outpost-bench-daemon.XXXXXX)
pids=()
. scripts/bench/lib.sh
trap stop_and_clean EXIT
rss() { awk '/VmRSS/ {print int($2/1024)}' /proc/$1/status; }

build_outpost "$work"
op() { OUTPOST_CONFIG=/dev/null "$work/outpost" "$@"; }

start_hub "$work/outpost"
start_registry

copy_tempsensor "$work/ts"
sed -i "s|^repository: .*|repository: $reg/tempsensor|; s|^platforms: .*|platforms: [linux/amd64]|" "$work/ts/module.yaml"
img=$(op build "$work/ts" --push 2>/dev/null | tail -1)
echo "image: $img"

devcs=$(op device create bench-dev)
manifest() { # VERSION_OF_m0
	printf '{"schemaVersion":"1.0","modules":{'
	for i in $(seq 0 9); do
		v=1; [ "$i" = 0 ] && v=$1
		printf '"m%d":{"image":"%s","version":"%s","env":{"INTERVAL":"5"}}' "$i" "$img" "$v"
		[ "$i" -lt 9 ] && printf ','
	done
	printf '}}'
}
deploy() { manifest "$1" >"$work/deploy.json"; op deploy bench-dev -f "$work/deploy.json" >/dev/null 2>&1; }
running() { op list --mgmt-socket "$work/mgmt.sock" -o json 2>/dev/null | grep -c '"status": "running"' || true; }
pid_of() { op list --mgmt-socket "$work/mgmt.sock" -o json 2>/dev/null | python3 -c "import json,sys; print([m.get('pid',0) for m in json.load(sys.stdin) if m['name']=='$1'][0])"; }

OUTPOST_CONFIG=/dev/null "$work/outpost" daemon --connection-string "$devcs" --data "$work/device" \
	--runtime "$rt" --mgmt-socket "$work/mgmt.sock" 2>"$work/daemon.log" &
dpid=$!
pids+=($dpid)
until [ -S "$work/mgmt.sock" ]; do sleep 0.05; done
sleep 1 # first sync

t=$(date +%s%N)
deploy 1
until [ "$(running)" = 10 ]; do sleep 0.01; done
echo "deployment of 10 modules at the hub → all running: $(ms $t) ms (image pulled once, cold)"

for v in 2 3 4 5 6; do
	old=$(pid_of m0)
	t=$(date +%s%N)
	deploy $v
	until p=$(pid_of m0) && [ "$p" != "$old" ] && [ "$p" != 0 ]; do sleep 0.005; done
	echo "version change of m0 at the hub → new instance running: $(ms $t) ms"
done

sleep 5
shims=0; shimrss=0
for d in /proc/[0-9]*; do
	p=${d#/proc/}
	if [ "$p" != "$dpid" ] && grep -qz '^OUTPOST_RUNTIME_SHIM=' "$d/environ" 2>/dev/null; then
		shims=$((shims + 1)); shimrss=$((shimrss + $(rss $p)))
	fi
done
echo "daemon RSS idle with 10 modules running: $(rss $dpid) MB ($shims shims, separate processes: $shimrss MB RSS in all, most of it shared pages)"

v=100
end=$(( $(date +%s) + minutes * 60 ))
next=$(( $(date +%s) + 60 ))
echo "redeploying every 3 s for $minutes min:"
echo "  minute 0: daemon RSS $(rss $dpid) MB"
m=0
while [ "$(date +%s)" -lt "$end" ]; do
	v=$((v + 1)); deploy $v; sleep 3
	if [ "$(date +%s)" -ge "$next" ]; then
		m=$((m + 1)); next=$((next + 60))
		echo "  minute $m: daemon RSS $(rss $dpid) MB, $(running) running"
	fi
done
kill -TERM $dpid; wait $dpid || true
