#!/usr/bin/env bash
# The device's memory with 10 modules running: the daemon and its runtime shims, in PSS.
#
#   scripts/bench/memory.sh [RUNTIME] [SAMPLES]     (default runc, 5; RUNTIME: runc or process)
#
# Run it as root for the runc runtime. Starts a hub (outpost hub serve) and a CNCF registry
# (Debian's docker-registry) on free loopback ports, builds and pushes
# fixtures/modules/tempsensor, creates a device, deploys 10 modules of that image and starts
# `outpost daemon` for the device (binaries built as goreleaser builds them: outpost and
# outpost-daemon beside it, as the release archives hold them). Once the 10 modules run it waits 10 s, then
# takes SAMPLES samples 2 s apart of the daemon's and each shim's memory from
# /proc/PID/smaps_rollup:
#   PSS  proportional set size: private pages, plus each shared page divided by the number
#        of processes that map it (a binary's pages shared by 10 shims count a tenth each);
#        the sum over processes is what they cost the machine together;
#   RSS  resident pages, shared ones counted in full in every process.
# The shims are found by their pids in the instances' state.json (state dir
# device/runtime/instances/*/state.json): one process serves all 10 instances (two while an
# upgraded daemon's old shim still serves instances it started). The modules themselves are not counted: they are
# the workload, as the containers of IoT Edge's modules are. Prints each sample and the
# medians.
#
# For comparison: OUTPOST_BENCH_DAEMON=inprocess builds no outpost-daemon (the daemon runs
# in the outpost process, as before it); OUTPOST_BENCH_SHIM=binary builds outpost-shim
# beside them (the daemon starts it rather than re-executing itself).
set -euo pipefail
cd "$(dirname "$0")/../.."
rt=${1:-runc}
samples=${2:-5}
case "$rt" in runc | process) ;; *) echo "memory.sh: RUNTIME must be runc or process, not $rt" >&2; exit 2 ;; esac
if [ "$rt" = runc ] && [ "$(id -u)" != 0 ]; then echo "memory.sh: the runc runtime needs root" >&2; exit 1; fi
for c in docker-registry python3 curl; do
	command -v $c >/dev/null || { echo "memory.sh: $c is missing (apt-get install docker-registry python3 curl)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/outpost-bench-memory.XXXXXX)
pids=()
dpid=
cleanup() {
	# The daemon first: on SIGTERM it stops its modules; then what the daemon left.
	if [ -n "$dpid" ]; then kill -TERM "$dpid" 2>/dev/null || true; wait "$dpid" 2>/dev/null || true; fi
	if [ -d "$work/device/runtime/runc" ]; then
		for id in $(runc --root "$work/device/runtime/runc" list -q 2>/dev/null); do
			runc --root "$work/device/runtime/runc" delete --force "$id" 2>/dev/null || true
		done
	fi
	stop_and_clean
}
trap cleanup EXIT
. scripts/bench/lib.sh

# Built as goreleaser builds the release binaries.
release_build() { CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$@"; }
release_build "$work/outpost" ./cmd/outpost
# `outpost daemon` executes outpost-daemon from beside it, which re-executes itself as the
# shim; without it (OUTPOST_BENCH_DAEMON=inprocess) outpost runs the daemon in its own
# process, and re-executes itself as the shim.
[ "${OUTPOST_BENCH_DAEMON:-}" = inprocess ] || release_build "$work/outpost-daemon" ./cmd/outpost-daemon
# OUTPOST_BENCH_SHIM=binary: the small outpost-shim binary beside them, which the daemon
# then starts as the shim instead.
[ "${OUTPOST_BENCH_SHIM:-}" != binary ] || release_build "$work/outpost-shim" ./cmd/outpost-shim
op() { OUTPOST_CONFIG=/dev/null "$work/outpost" "$@"; }

# The hub from a copy of the binary: pages of the daemon's binary that a hub mapped too would
# count half in the daemon's PSS, and a device runs no hub.
cp "$work/outpost" "$work/outpost-hub"
start_hub "$work/outpost-hub"
start_registry

copy_tempsensor "$work/ts"
sed -i "s|^repository: .*|repository: $reg/tempsensor|; s|^platforms: .*|platforms: [linux/amd64]|" "$work/ts/module.yaml"
img=$(op build "$work/ts" --push 2>/dev/null | tail -1)
devcs=$(op device create bench-dev)
{
	printf '{"schemaVersion":"1.0","modules":{'
	for i in $(seq 0 9); do
		printf '"m%d":{"image":"%s","env":{"INTERVAL":"5"}}' "$i" "$img"
		[ "$i" -lt 9 ] && printf ','
	done
	printf '}}'
} >"$work/deploy.json"
op deploy bench-dev -f "$work/deploy.json" >/dev/null

OUTPOST_CONFIG=/dev/null "$work/outpost" daemon --connection-string "$devcs" --data "$work/device" \
	--runtime "$rt" --mgmt-socket "$work/mgmt.sock" --broker-listen "127.0.0.1:$(free_port)" 2>"$work/daemon.log" &
dpid=$!
pids+=($dpid)
running() { op list --mgmt-socket "$work/mgmt.sock" -o json 2>/dev/null | grep -c '"status": "running"' || true; }
for _ in $(seq 600); do [ "$(running)" = 10 ] && break; sleep 0.1; done
[ "$(running)" = 10 ] || { echo "memory.sh: the 10 modules did not start; the daemon's log:" >&2; tail -20 "$work/daemon.log" >&2; exit 1; }
sleep 10

kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/smaps_rollup"; } # PID FIELD → kB
mb() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
shim_pids() {
	python3 - "$work/device/runtime/instances" <<'EOF'
import glob, json, os, sys
for f in glob.glob(os.path.join(sys.argv[1], "*", "state.json")):
    print(json.load(open(f))["shim"]["pid"])
EOF
}
declare -a d_pss s_pss t_pss d_rss s_rss
for n in $(seq "$samples"); do
	shims=($(shim_pids | sort -u))
	[ "${#shims[@]}" -ge 1 ] || { echo "memory.sh: no shim found" >&2; exit 1; }
	dp=$(kb $dpid Pss) dr=$(kb $dpid Rss) sp=0 sr=0 sa=0 each=
	for p in "${shims[@]}"; do
		v=$(kb $p Pss); sp=$((sp + v)); sr=$((sr + $(kb $p Rss))); sa=$((sa + $(kb $p Pss_Anon))); each+="$(mb $v) "
	done
	d_pss+=($dp) s_pss+=($sp) t_pss+=($((dp + sp))) d_rss+=($dr) s_rss+=($sr)
	echo "sample $n: daemon PSS $(mb $dp) MB (anonymous $(mb $(kb $dpid Pss_Anon)), RSS $(mb $dr), $(ls /proc/$dpid/task | wc -l) threads); ${#shims[@]} shim process(es) PSS $(mb $sp) MB (anonymous $(mb $sa); each: $each; RSS $(mb $sr) in all); total PSS $(mb $((dp + sp))) MB"
	sleep 2
done
med() { echo "$@" | median; }
echo
echo "medians of $samples samples, runtime $rt, daemon: $([ "${OUTPOST_BENCH_DAEMON:-}" = inprocess ] && echo "in the outpost process" || echo outpost-daemon), shim: $([ "${OUTPOST_BENCH_SHIM:-}" = binary ] && echo outpost-shim || echo "the daemon's binary re-executed")"
echo "| | PSS | RSS |"
echo "|---|---|---|"
echo "| daemon | $(mb $(med "${d_pss[@]}")) MB | $(mb $(med "${d_rss[@]}")) MB |"
echo "| shims of the 10 instances (${#shims[@]} process(es)) | $(mb $(med "${s_pss[@]}")) MB | $(mb $(med "${s_rss[@]}")) MB (shared pages counted in each) |"
echo "| daemon + shims | **$(mb $(med "${t_pss[@]}")) MB** | |"
