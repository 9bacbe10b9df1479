#!/usr/bin/env bash
# The inner loop: from the save of a one-line change to the sample module's main.go to the
# new instance's first log line carrying it. outpost dev (process and runc runtimes) beside
# `go build` alone and the docker loop IoT Edge developers use today.
#
#   scripts/bench/devloop.sh [ROUNDS]      (default 5; prints each round and the medians)
#
# Run it as root (runc, and the Docker engine it starts, need root). Each side works on a
# solution of its own made by `outpost init`; scripts/bench/devbench does the timing:
#   go build   CGO_ENABLED=0 go build -trimpath of the module after each change (the reference)
#   process    `outpost dev --runtime process`: a change is timed until its line appears in
#              dev's output; dev's own account of the round's go build is kept beside it
#   runc       the same with --runtime runc
#   docker     multi-stage `docker build` (golang:local → scratch, as build-push.sh makes it;
#              the module vendored, for --network none) with a new tag, `docker push` to a
#              CNCF registry, `outpost deploy` of a manifest with that tag (no digest, as IoT
#              Edge deploys), the device's `outpost daemon --runtime docker` re-creating the
#              module; timed until the line is in the module's logs (management API, followed).
# Starts its own Docker engine (Debian's docker.io; --bridge=none --iptables=false, socket and
# data dir under the work dir) unless DOCKER_HOST is set, a hub and a registry on free
# loopback ports.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-5}
if [ "$(id -u)" != 0 ]; then
	echo "devloop.sh: run it as root (runc and the Docker engine it starts need root)" >&2
	exit 1
fi
for c in runc dockerd docker docker-registry busybox python3 curl; do
	command -v $c >/dev/null || { echo "devloop.sh: $c is missing (apt-get install runc docker.io docker-registry busybox-static python3 curl)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/outpost-bench-devloop.XXXXXX)
pids=()
. scripts/bench/lib.sh
dpid=
cleanup() {
	if [ -n "$dpid" ]; then kill -TERM "$dpid" 2>/dev/null || true; wait "$dpid" 2>/dev/null || true; fi
	stop_and_clean
}
trap cleanup EXIT

build_outpost "$work"
go build -o "$work/devbench" ./scripts/bench/devbench
op() { OUTPOST_CONFIG=/dev/null "$work/outpost" "$@"; }
solution() { op init "$work/$1" >/dev/null 2>&1; }
declare -A med
row() { # NAME DEVBENCH-ARGS...: runs devbench, echoes its rounds, keeps its median line
	local name=$1 out
	shift
	echo "$name" >&2
	out=$("$work/devbench" -outpost "$work/outpost" -rounds "$rounds" "$@")
	echo "$out" >&2
	med[$name]=$(tail -1 <<<"$out")
}

solution gobuild
row "go build" -mode gobuild -dir "$work/gobuild"
solution process
row "outpost dev, process" -mode dev -runtime process -dir "$work/process"
solution runc
row "outpost dev, runc" -mode dev -runtime runc -dir "$work/runc"

# The docker loop.
start_dockerd
start_registry
make_golang_local
start_hub "$work/outpost"
op device create bench-dev >"$work/device.cs" 2>/dev/null
solution docker
(cd "$work/docker/modules/tempsensor" && go mod vendor)
multistage_dockerfile >"$work/Dockerfile"
sock=$work/mgmt.sock
OUTPOST_CONFIG=/dev/null OUTPOST_BROKER_LISTEN=127.0.0.1:$(free_port) "$work/outpost" daemon \
	--connection-string "$(cat "$work/device.cs")" --data "$work/device" --runtime docker \
	--mgmt-socket "$sock" 2>"$work/daemon.log" &
dpid=$!
until [ -S "$sock" ]; do sleep 0.05; done
row "docker build + push + deploy" -mode docker -dir "$work/docker" -registry "$reg" -device bench-dev \
	-mgmt-socket "$sock" -dockerfile "$work/Dockerfile"

echo
echo "| loop ($rounds one-line changes; median ms) | save → first new log line | its build |"
echo "|---|---:|---:|"
for name in "go build" "outpost dev, process" "outpost dev, runc" "docker build + push + deploy"; do
	read -r _ total _ build <<<"${med[$name]}"
	echo "| $name | $total | ${build:--} |"
done
