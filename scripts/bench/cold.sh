#!/usr/bin/env bash
# Cold pull + unpack + start of the tempsensor module: outpost's device daemon side by side
# with `docker pull && docker run`, same image, same registry, same tag.
#
#   scripts/bench/cold.sh [ROUNDS] [RUNTIME]     (default 5, runc; RUNTIME: runc or process)
#
# Run it as root: the runc runtime needs root, and so does the Docker engine it starts.
#
# Starts a hub (outpost hub serve) and a CNCF registry (Debian's docker-registry) on free
# loopback ports, its own Docker engine (Debian's docker.io; --bridge=none --iptables=false,
# socket and data dir under the work dir) unless DOCKER_HOST is set, builds and pushes
# fixtures/modules/tempsensor (a copy whose repository is the bench registry, linux/amd64)
# with `outpost build --push`, and creates one device. Then, each round (the two sides
# alternate which goes first):
#   outpost  an empty deployment is applied at the hub, and a new `outpost daemon` starts with
#            a new, empty data dir (so an empty image store) and waits until it has synced and
#            sent its reports. Cold: from the start of an `outpost deploy` of tempsensor to an
#            `outpost list -o json` showing it with a pid (pull, verify, unpack, start).
#            Warm: a version change of the module, image cached, until the new instance has a
#            pid (the daemon stops the old instance first). The daemon is then stopped
#            (SIGTERM), which stops the module.
#   docker   the image is removed from the engine (docker rmi -f of its id and of every
#            */tempsensor image, docker image prune -f).
#            Cold: `docker pull REF && docker run -d --network none REF` (run -d returns once
#            the container started). Warm: `docker run -d --network none REF` of the cached
#            image. Each container is removed (docker rm -f) after it is timed.
# Both sides' times include their CLI processes. Beside the totals: each instance's start
# time (outpost list's startedAt, docker inspect's State.StartedAt) from the start of the
# timing; the pull time outpost's daemon logs ("image store: pulled … took=": the layers'
# download, verify, unpack and syncfs, not the manifest and config before them); docker's
# pull alone; and the `outpost deploy` process alone.
# Prints each round and the medians as a markdown table, and outpost/docker ratios.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-5}
rt=${2:-runc}
case "$rt" in runc | process) ;; *) echo "cold.sh: RUNTIME must be runc or process, not $rt" >&2; exit 2 ;; esac
if [ "$(id -u)" != 0 ] && { [ "$rt" = runc ] || [ -z "${DOCKER_HOST:-}" ]; }; then
	echo "cold.sh: run it as root (the runc runtime and the Docker engine it starts need root)" >&2
	exit 1
fi
for c in dockerd docker docker-registry python3 curl; do
	command -v $c >/dev/null || { echo "cold.sh: $c is missing (apt-get install docker.io docker-registry python3 curl)" >&2; exit 1; }
done
[ "$rt" != runc ] || command -v runc >/dev/null || { echo "cold.sh: runc is missing (apt-get install runc)" >&2; exit 1; }

work=$(mktemp -d /tmp/outpost-bench-cold.XXXXXX)
pids=()
dpid=
cleanup() {
	# The daemon first: on SIGTERM it stops its modules.
	if [ -n "$dpid" ]; then kill -TERM "$dpid" 2>/dev/null || true; wait "$dpid" 2>/dev/null || true; fi
	if [ -n "${DOCKER_HOST:-}" ] && [ -n "${cids:-}" ]; then docker rm -f $cids >/dev/null 2>&1 || true; fi
	# Instances or shims a daemon left behind (it should leave none): runc's containers, then
	# any process still running from the work dir, by pid.
	for r in "$work"/device-*/runtime/runc; do
		[ -d "$r" ] || continue
		for id in $(runc --root "$r" list -q 2>/dev/null); do runc --root "$r" delete --force "$id" 2>/dev/null || true; done
	done
	for d in /proc/[0-9]*; do
		p=${d#/proc/}
		c=$(tr '\0' ' ' <"$d/cmdline" 2>/dev/null) || continue
		if [[ $c == *"$work/device-"* ]]; then kill -KILL "$p" 2>/dev/null || true; fi
	done
	# Then the hub, registry and dockerd; runc overlay mounts and what dockerd leaves.
	stop_and_clean
}
trap cleanup EXIT
. scripts/bench/lib.sh

build_outpost "$work"
op() { OUTPOST_CONFIG=/dev/null "$work/outpost" "$@"; }

start_hub "$work/outpost"

start_dockerd

start_registry

# The module's image, and the tag both sides pull.
copy_tempsensor "$work/ts"
sed -i "s|^repository: .*|repository: $reg/tempsensor|; s|^platforms: .*|platforms: [linux/amd64]|" "$work/ts/module.yaml"
pushed=$(op build "$work/ts" --push 2>/dev/null | tail -1)
ref=${pushed%@*}
echo "image: $ref (pushed as $pushed)"

op device create bench-dev >"$work/device.cs" 2>/dev/null
manifest() { # VERSION, or nothing for an empty module set
	if [ -z "${1:-}" ]; then printf '{"schemaVersion":"1.0","modules":{}}'; return; fi
	printf '{"schemaVersion":"1.0","modules":{"ts":{"image":"%s","version":"%s","env":{"INTERVAL":"5"}}}}' "$ref" "$1"
}
deploy() { manifest "${1:-}" >"$work/deploy.json"; op deploy bench-dev -f "$work/deploy.json" >/dev/null 2>&1; }
list() { op list --mgmt-socket "$sock" -o json 2>/dev/null || true; }
pid_of_ts() { list | grep -o '"pid": [0-9]*' | grep -o '[0-9]*$' || echo 0; } # one module: ts

declare -A res
record() { res[$1]+="$2 "; }
last() { echo ${res[$1]} | awk '{print $NF}'; }
since() { echo $(( ($(date -d "$2" +%s%N) - $1) / 1000000 )); } # T0_NS RFC3339_TIME
started_of_ts() { grep -o '"startedAt": "[^"]*"' <<<"$1" | cut -d'"' -f4; }
digest_op=
digest_dk=
cids=
left_mounts=
outpost_round() { # ROUND
	local n=$1 t old p json took idle=0
	deploy # an empty module set: the new daemon starts with nothing to run
	sock=$work/mgmt-$n.sock
	OUTPOST_CONFIG=/dev/null "$work/outpost" daemon --connection-string "$(cat "$work/device.cs")" \
		--data "$work/device-$n" --runtime "$rt" --mgmt-socket "$sock" 2>"$work/daemon-$n.log" &
	dpid=$!
	until [ -S "$sock" ]; do sleep 0.05; done
	# Idle: connected, synced, no module, nothing left to report (twice, 200 ms apart).
	for _ in $(seq 300); do
		if op status --mgmt-socket "$sock" -o json 2>/dev/null | python3 -c '
import json, sys
s = json.load(sys.stdin)
sys.exit(0 if s["connected"] and s.get("lastSync") and s["outbox"]["patches"] == 0 else 1)' &&
			[ "$(list | tr -d ' \n')" = "[]" ]; then
			idle=$((idle + 1)); [ $idle -ge 2 ] && break
		else
			idle=0
		fi
		sleep 0.2
	done
	[ $idle -ge 2 ] || { echo "cold.sh: the daemon did not become idle; its log:" >&2; tail -20 "$work/daemon-$n.log" >&2; exit 1; }

	# Cold: empty image store.
	t=$(date +%s%N)
	deploy 1
	record op_deploy "$(ms $t)"
	until json=$(list) && grep -q '"pid":' <<<"$json"; do sleep 0.01; done
	record op_cold "$(ms $t)"
	record op_cold_started "$(since $t "$(started_of_ts "$json")")"
	digest_op=$(grep -o '"imageDigest": "[^"]*"' <<<"$json" | cut -d'"' -f4)
	# The daemon logs the pull (download, verify, unpack, syncfs) with its duration, the Go
	# way: 41ms, 1.2s.
	took=$(grep -o 'image store: pulled.* took=[^ ]*' "$work/daemon-$n.log" | sed 's/.*took=//' | head -1)
	record op_pull "$(awk -v d="$took" 'BEGIN { if (d ~ /ms$/) print int(d); else if (d ~ /s$/) print int(d * 1000); else print "?" }')"

	# Warm: a version change, the image cached; the daemon stops the old instance first.
	old=$(pid_of_ts)
	t=$(date +%s%N)
	deploy 2
	until json=$(list) && p=$(grep -o '"pid": [0-9]*' <<<"$json" | grep -o '[0-9]*$') && [ "$p" != "$old" ]; do sleep 0.01; done
	record op_warm "$(ms $t)"
	record op_warm_started "$(since $t "$(started_of_ts "$json")")"

	kill -TERM "$dpid"; wait "$dpid" || true; dpid=
	# The daemon stops its modules on SIGTERM but keeps the stopped instances, and with
	# them (runc) the overlay of each rootfs, for the next daemon to remove. None will
	# here: unmount them.
	left=$(awk -v d="$work/device-$n/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r)
	if [ -n "$left" ]; then
		left_mounts+="$(wc -l <<<"$left") "
		xargs -r -n1 umount <<<"$left"
	else
		left_mounts+="0 "
	fi
}

docker_round() {
	local t tp cid
	# By image id: every tag of it goes (an engine shared with other runs may hold the same
	# image under another registry's name, and would then pull no layer at all).
	docker rmi -f $(docker images -q --no-trunc "$ref") $(docker images -q --no-trunc --filter "reference=*/tempsensor") >/dev/null 2>&1 || true
	docker image prune -f >/dev/null
	if docker image inspect "$ref" >/dev/null 2>&1; then echo "cold.sh: could not remove $ref from the engine" >&2; exit 1; fi
	! docker image inspect "$ref" >/dev/null 2>&1 || { echo "cold.sh: $ref is still in the engine" >&2; exit 1; }

	# Cold: the image not in the engine.
	t=$(date +%s%N)
	docker pull "$ref" >"$work/pull.out"
	tp=$(ms $t)
	cid=$(docker run -d --network none "$ref")
	record dk_cold "$(ms $t)"
	record dk_pull "$tp"
	cids+="$cid "
	[ "$(docker inspect -f '{{.State.Running}}' "$cid")" = true ] || { echo "cold.sh: the container is not running" >&2; docker logs "$cid" >&2; exit 1; }
	record dk_cold_started "$(since $t "$(docker inspect -f '{{.State.StartedAt}}' "$cid")")"
	docker rm -f "$cid" >/dev/null
	digest_dk=$(grep -o 'sha256:[0-9a-f]*' "$work/pull.out" | head -1)

	# Warm: the image cached.
	t=$(date +%s%N)
	cid=$(docker run -d --network none "$ref")
	record dk_warm "$(ms $t)"
	cids+="$cid "
	record dk_warm_started "$(since $t "$(docker inspect -f '{{.State.StartedAt}}' "$cid")")"
	docker rm -f "$cid" >/dev/null
}

load() { uptime | sed 's/.*load average: //'; }
echo "runtime $rt, $rounds rounds; load average before: $(load)"
for n in $(seq "$rounds"); do
	if [ $((n % 2)) = 1 ]; then outpost_round "$n"; docker_round; else docker_round; outpost_round "$n"; fi
	echo "round $n: cold: outpost $(last op_cold) ms (daemon's pull+unpack $(last op_pull) ms), docker $(last dk_cold) ms" \
		"(pull $(last dk_pull) ms); warm: outpost $(last op_warm) ms, docker $(last dk_warm) ms"
done
echo "load average after: $(load)"
echo "mounts a daemon left under its data dir after SIGTERM, each round (unmounted by this script): $left_mounts"
same=different; [ "$digest_op" = "$digest_dk" ] && same="the same"
echo "image digest: outpost $digest_op, docker $digest_dk ($same)"

# Medians: the middle value, or the mean of the two middle values.
range() { echo ${res[$1]} | tr ' ' '\n' | sort -n | awk 'NR==1 {lo=$1} {hi=$1} END {printf "%s – %s", lo, hi}'; }
declare -A med
for k in "${!res[@]}"; do med[$k]=$(echo ${res[$k]} | median); done
ratio() { awk -v a="${med[$1]}" -v b="${med[$2]}" 'BEGIN {printf "%.2f×", a / b}'; }
col() { echo ${res[$1]} | awk -v i="$2" '{print $i}'; }

echo
echo '```'
echo "scripts/bench/cold.sh $rounds $rt"
echo '```'
echo
echo "Medians of $rounds rounds (range), ms; outpost's daemon on the $rt runtime."
echo
echo "| | outpost ($rt) | docker | outpost/docker |"
echo "|---|---|---|---|"
echo "| cold: \`outpost deploy\` → \`outpost list\` shows a pid / \`docker pull && docker run -d --network none\` | ${med[op_cold]} ($(range op_cold)) | ${med[dk_cold]} ($(range dk_cold)) | $(ratio op_cold dk_cold) |"
echo "| cold, to the instance's start time (its startedAt) | ${med[op_cold_started]} ($(range op_cold_started)) | ${med[dk_cold_started]} ($(range dk_cold_started)) | $(ratio op_cold_started dk_cold_started) |"
echo "| of it, pull (outpost: the daemon's \"image store: pulled … took=\": layers downloaded, verified, unpacked, syncfs, after the manifest and config; docker: all of \`docker pull\`) | ${med[op_pull]} ($(range op_pull)) | ${med[dk_pull]} ($(range dk_pull)) | $(ratio op_pull dk_pull) |"
echo "| warm: version change, image cached (old instance stopped first) / \`docker run -d --network none\` | ${med[op_warm]} ($(range op_warm)) | ${med[dk_warm]} ($(range dk_warm)) | $(ratio op_warm dk_warm) |"
echo "| warm, to the instance's start time | ${med[op_warm_started]} ($(range op_warm_started)) | ${med[dk_warm_started]} ($(range dk_warm_started)) | $(ratio op_warm_started dk_warm_started) |"
echo
echo "Each round, ms (\`outpost deploy\` alone, the CLI process that applies the deployment at the hub, took ${med[op_deploy]} ($(range op_deploy))):"
echo
echo "| round | outpost cold | started at | pull | docker cold | started at | pull | outpost warm | started at | docker warm | started at |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for n in $(seq "$rounds"); do
	echo "| $n | $(col op_cold $n) | $(col op_cold_started $n) | $(col op_pull $n) | $(col dk_cold $n) | $(col dk_cold_started $n) | $(col dk_pull $n) | $(col op_warm $n) | $(col op_warm_started $n) | $(col dk_warm $n) | $(col dk_warm_started $n) |"
done
