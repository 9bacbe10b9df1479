#!/usr/bin/env bash
# Leaf devices (children of one edge device) on one real `outpost daemon`.
#
#   scripts/bench/leaves.sh [LEAVES] [WINDOW] [OFFLINE] [ROUTE]   (default 1000, 60s, 60s, none)
#
# ROUTE upstream deploys a route that sends the leaves' telemetry to the hub ($upstream);
# none leaves the edge device without routes (the broker acknowledges and drops it).
#
# Builds outpost and runs scripts/bench/leafbench: a hub (outpost hub serve) on a free
# loopback port, an edge device and LEAVES leaf devices created with it as their parent,
# `outpost daemon` for the edge device (process runtime, nothing deployed), and LEAVES
# paho clients connected to its broker as the leaf devices (TLS to the device CA, their
# own SAS tokens). Prints the daemon's CPU and memory while every leaf reports a patch a
# second for WINDOW, the latency of a desired patch to every leaf made at the hub, and
# how long the outbox takes to drain after the hub was stopped for OFFLINE (0: skip),
# extrapolated to an hour offline. Needs `ulimit -n` of at least 2×LEAVES+256.
set -euo pipefail
cd "$(dirname "$0")/../.."
leaves=${1:-1000}
window=${2:-60s}
offline=${3:-60s}
route=${4:-none}
bin=$(mktemp -d /tmp/outpost-bench-leaves-bin.XXXXXX)
trap 'rm -rf "$bin"' EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
go build -o "$bin/outpost" ./cmd/outpost
go build -o "$bin/leafbench" ./scripts/bench/leafbench
echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"
up=false
[ "$route" = upstream ] && up=true
"$bin/leafbench" -outpost "$bin/outpost" -n "$leaves" -window "$window" -offline "$offline" -upstream="$up"
