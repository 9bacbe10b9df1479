#!/usr/bin/env bash
# Build + push of the tempsensor module, outpost side by side with docker.
#
#   scripts/bench/build-push.sh [RUNS]      (default 3; prints each run and the median)
#
# Starts its own Docker engine (Debian's docker.io; --bridge=none --iptables=false, socket
# and data dir under the work dir) unless DOCKER_HOST is set, and a CNCF registry (Debian's
# docker-registry) on a free loopback port with its own config. No base image can be pulled
# here, so golang:local is made with `docker import` of /usr/local/go plus a static busybox.
#
# Flows, each timed from start to the pushed digest:
#   docker-ms   docker multi-stage (golang:local → scratch), docker build --network none && docker push
#   docker-pre  go build, then a FROM scratch + COPY Dockerfile, docker build && docker push
#   outpost     outpost build --push
# Cases: cold (docker: no build cache; outpost: an empty image cache, with the host's Go
# build cache as a developer has it, and once more with a fresh GOCACHE too), a rebuild after
# a one-line change, a push of an unchanged image, and outpost for 3 platforms vs 1.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
runs=${1:-3}
work=$(mktemp -d /tmp/outpost-bench-build.XXXXXX)
pids=()
. scripts/bench/lib.sh
trap stop_and_clean EXIT

for c in dockerd docker-registry busybox; do
	command -v $c >/dev/null || { echo "build-push.sh: $c is missing (apt-get install docker.io docker-registry busybox-static)" >&2; exit 1; }
done

start_dockerd

start_registry "delete: {enabled: true}"

make_golang_local

# The module, in a copy whose repository is the bench registry.
src=$work/tempsensor
copy_tempsensor "$src"
sed -i "s|^repository: .*|repository: $reg/tempsensor|; s|^platforms: .*|platforms: [linux/amd64]|" "$src/module.yaml"
cat >"$src/stamp.go" <<'EOC'
package main

import "os"

var benchStamp = "0"

func init() {
	if os.Getenv("OUTPOST_BENCH_STAMP") != "" {
		println(benchStamp)
	}
}
EOC
stamp=0
change() { stamp=$((stamp + 1)); sed -i "s/^var benchStamp = .*/var benchStamp = \"$stamp\"/" "$src/stamp.go"; }
multistage_dockerfile >"$work/Dockerfile.ms"
cat >"$work/Dockerfile.pre" <<'EOC'
FROM scratch
COPY tempsensor /tempsensor
ENTRYPOINT ["/tempsensor"]
EOC

go build -o "$work/outpost" ./cmd/outpost
outpost() { OUTPOST_CONFIG=/dev/null OUTPOST_CACHE="$work/oci" "$work/outpost" "$@"; }

docker_ms() {
	docker build -q --network none -t "$reg/ts-ms:bench" -f "$work/Dockerfile.ms" "$src" >/dev/null
	docker push -q "$reg/ts-ms:bench" >/dev/null
}
docker_pre() {
	(cd "$src" && CGO_ENABLED=0 go build -trimpath -o "$work/pre/tempsensor" .)
	docker build -q -t "$reg/ts-pre:bench" -f "$work/Dockerfile.pre" "$work/pre" >/dev/null
	docker push -q "$reg/ts-pre:bench" >/dev/null
}
outpost_push() { outpost build "$src" --push >/dev/null 2>&1; }
mkdir -p "$work/pre"

declare -A res
record() { res[$1]+="$2 "; printf '  %-34s %6d ms\n' "$1" "$2"; }

for run in $(seq "$runs"); do
	echo "run $run"
	# Cold: no build caches.
	docker builder prune -af >/dev/null 2>&1 || true
	docker image rm -f "$reg/ts-ms:bench" "$reg/ts-pre:bench" >/dev/null 2>&1 || true
	change
	t=$(date +%s%N); docker_ms; record "cold: docker multi-stage" "$(ms $t)"
	rm -rf "$work/oci"
	change
	t=$(date +%s%N); GOCACHE=$work/gocache-$run outpost_push; record "cold: outpost, fresh GOCACHE too" "$(ms $t)"
	rm -rf "$work/oci"
	change
	t=$(date +%s%N); outpost_push; record "cold: outpost build --push" "$(ms $t)"

	# A one-line change, caches warm.
	change; t=$(date +%s%N); docker_ms; record "change: docker multi-stage" "$(ms $t)"
	change; t=$(date +%s%N); docker_pre; record "change: go build + docker (prebuilt)" "$(ms $t)"
	change; t=$(date +%s%N); (cd "$src" && CGO_ENABLED=0 go build -trimpath -o "$work/gobuild" .); record "change: go build alone" "$(ms $t)"
	change; t=$(date +%s%N); outpost_push; record "change: outpost build --push" "$(ms $t)"

	# Unchanged: push again.
	t=$(date +%s%N); outpost push "$src" >/dev/null 2>&1; record "unchanged: outpost push" "$(ms $t)"
	t=$(date +%s%N); docker push -q "$reg/ts-pre:bench" >/dev/null; record "unchanged: docker push" "$(ms $t)"

	# Three platforms vs one, after a change each.
	change; t=$(date +%s%N); outpost build "$src" --platform linux/amd64 >/dev/null 2>&1; record "change: outpost build, 1 platform" "$(ms $t)"
	change; t=$(date +%s%N); outpost build "$src" --platform linux/amd64,linux/arm64,linux/arm/v7 >/dev/null 2>&1; record "change: outpost build, 3 platforms" "$(ms $t)"
done

echo
echo "medians over $runs runs (ms):"
for k in "${!res[@]}"; do
	printf '  %-34s %6d\n' "$k" "$(echo "${res[$k]}" | tr ' ' '\n' | grep -v '^$' | median)"
done | sort
