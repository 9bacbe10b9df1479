#!/usr/bin/env bash
# Deployment → module running on runc, image cached, side by side with `docker run`.
#
#   scripts/bench/deploy.sh [ROUNDS]     (default 5)
#
# Run it as root (runc, and the Docker engine it starts). Each round, the two sides in turn
# (which goes first alternates, as the machine's load drifts):
#   outpost  TestDeployToRunning/runc of internal/agent (a real hub and registry in process,
#            the agent on the runc runtime with outpost-shim): a module's version changed at
#            the hub → its new instance running, the old one stopped first; 10 changes, their
#            median;
#   docker   `docker run -d --network none` of tempsensor (imported into the engine, so
#            cached) until it returns with the container started, 10 times, their median;
#            each container is removed (docker rm -f) after it is timed.
# Prints each round and the medians of the rounds' medians, and their ratio.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-5}
[ "$(id -u)" = 0 ] || { echo "deploy.sh: run it as root (runc and the Docker engine need root)" >&2; exit 1; }
for c in dockerd docker runc curl python3; do
	command -v $c >/dev/null || { echo "deploy.sh: $c is missing (apt-get install docker.io runc curl python3)" >&2; exit 1; }
done
work=$(mktemp -d /tmp/outpost-bench-deploy.XXXXXX)
pids=()
. scripts/bench/lib.sh
trap stop_and_clean EXIT

go test -c -o "$work/agent.test" ./internal/agent
go build -o "$work/outpost-shim" ./cmd/outpost-shim
copy_tempsensor "$work/src"
mkdir -p "$work/ts"
(cd "$work/src" && CGO_ENABLED=0 go build -trimpath -o "$work/ts/tempsensor" .)
start_dockerd
tar -C "$work/ts" -c tempsensor | docker import --change 'ENTRYPOINT ["/tempsensor"]' --change 'ENV INTERVAL=5' - tempsensor:bench >/dev/null

outpost_side() {
	(cd internal/agent && OUTPOST_SHIM="$work/outpost-shim" "$work/agent.test" -test.run '^TestDeployToRunning$/^runc$' -test.v -test.count=1) |
		grep -o 'median [0-9.]*[mµ]*s' | awk '{v=$2; if (v ~ /ms$/) print int(v); else if (v ~ /µs$/) print 0; else print int(v * 1000)}'
}
docker_side() {
	local t cid all=
	for _ in $(seq 10); do
		t=$(date +%s%N)
		cid=$(docker run -d --network none tempsensor:bench)
		all+="$(ms $t) "
		docker rm -f "$cid" >/dev/null
	done
	echo $all | median
}
op=() dk=()
echo "load average before: $(uptime | sed 's/.*load average: //')"
for n in $(seq "$rounds"); do
	if [ $((n % 2)) = 1 ]; then o=$(outpost_side); d=$(docker_side); else d=$(docker_side); o=$(outpost_side); fi
	op+=($o) dk+=($d)
	echo "round $n: outpost deployment → running $o ms (median of 10), docker run -d $d ms (median of 10)"
done
echo "load average after: $(uptime | sed 's/.*load average: //')"
mo=$(echo "${op[@]}" | median) md=$(echo "${dk[@]}" | median)
echo "medians: outpost $mo ms (rounds: ${op[*]}), docker run -d $md ms (rounds: ${dk[*]}): $(awk -v a=$mo -v b=$md 'BEGIN {printf "%.2f×", a / b}')"
