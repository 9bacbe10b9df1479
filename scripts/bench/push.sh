#!/usr/bin/env bash
# Push of a 200 MB, 5-layer image to a CNCF registry on loopback: outpost push
# side by side with crane push (crane 0.22.1, installed into a temp GOBIN for this
# script only; it is not a dependency of outpost).
#
#   scripts/bench/push.sh [RUNS]      (default 3; prints each run and the median)
#
# The image (5 layers of 40 MiB of random data, gzipped once) is made by
# scripts/bench/pushbench as a docker tarball and in an outpost image cache (an
# OCI layout). The registry is Debian's docker-registry with its own config, on a
# free loopback port, its storage emptied before each cold push.
#
# Cases, each the wall time of the command:
#   outpost        outpost push REF (from the cache)
#   crane-tar      crane push image.tar REF (crane hashes the tarball's layers first)
#   crane-layout   crane push CACHE_DIR REF (the same OCI layout outpost reads)
#   unchanged      a second push of the same image (HEAD requests only), outpost and crane
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-3}
work=$(mktemp -d /tmp/outpost-bench-push.XXXXXX)
regpid=
cleanup() { [ -n "$regpid" ] && kill "$regpid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

command -v docker-registry >/dev/null || { echo "push.sh: docker-registry is missing (apt-get install docker-registry)" >&2; exit 1; }
. scripts/bench/lib.sh

GOBIN=$work/bin go install github.com/google/go-containerregistry/cmd/crane@v0.22.1
crane=$work/bin/crane
go build -o "$work/bin/outpost" ./cmd/outpost
outpost=$work/bin/outpost

reg=127.0.0.1:$(free_port)
cat >"$work/registry.yml" <<EOC
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $work/registry}, delete: {enabled: true}}
http: {addr: $reg}
EOC
start_registry() {
	[ -n "$regpid" ] && { kill "$regpid"; wait "$regpid" 2>/dev/null || true; }
	rm -rf "$work/registry"
	env -u REGISTRY_AUTH_FILE docker-registry serve "$work/registry.yml" >>"$work/registry.log" 2>&1 &
	regpid=$!
	for _ in $(seq 100); do curl -sf "http://$reg/v2/" >/dev/null && return; sleep 0.05; done
	cat "$work/registry.log" >&2; exit 1
}

ref=$reg/bench/push:1
go run ./scripts/bench/pushbench -dir "$work" -ref "$ref"
export OUTPOST_CONFIG=/dev/null OUTPOST_CACHE=$work/cache

declare -A times
for run in $(seq "$runs"); do
	for tool in outpost crane-tar crane-layout; do
		start_registry
		sync
		t=$(date +%s%N)
		case $tool in
		outpost) "$outpost" push "$ref" >/dev/null 2>"$work/err" ;;
		crane-tar) "$crane" push "$work/image.tar" "$ref" >/dev/null 2>"$work/err" ;;
		crane-layout) "$crane" push "$work/cache" "$ref" >/dev/null 2>"$work/err" ;;
		esac || { cat "$work/err" >&2; exit 1; }
		d=$(ms "$t")
		times[$tool]+="$d "
		printf 'run %d: %-13s cold push  %6d ms\n' "$run" "$tool" "$d"
	done
	# The image is in the registry now (pushed by crane from the same layout).
	for tool in outpost crane-layout; do
		t=$(date +%s%N)
		case $tool in
		outpost) "$outpost" push "$ref" >/dev/null 2>&1 ;;
		crane-layout) "$crane" push "$work/cache" "$ref" >/dev/null 2>&1 ;;
		esac
		d=$(ms "$t")
		times[unchanged-$tool]+="$d "
		printf 'run %d: %-13s unchanged  %6d ms\n' "$run" "$tool" "$d"
	done
done

echo
echo "median of $runs runs (200 MiB, 5 layers, CNCF registry on loopback; $(nproc) CPUs):"
for k in outpost crane-tar crane-layout unchanged-outpost unchanged-crane-layout; do
	printf '  %-24s %6d ms\n' "$k" "$(echo "${times[$k]}" | tr ' ' '\n' | grep . | median)"
done
