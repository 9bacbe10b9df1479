#!/usr/bin/env bash
# What a flood of slow clients costs the hub, and whether it still answers others.
#
#   scripts/bench/slowclients.sh [CLIENTS] [SOURCES]    (default 10000 clients from 10 addresses)
#
# For each mode of scripts/bench/slowflood (bad: a bad token, then a trickled body; good: the
# owner's token, then a trickled body; silent: part of the headers only), starts a fresh
# `outpost hub serve` (HTTPS, default limits), floods it, and prints the hub's open fds and RSS
# once every client has connected, and how long a normal GET /devices took meanwhile.
# BEFORE=<commit> also runs the hub built from that commit, for a before/after comparison.
set -euo pipefail
cd "$(dirname "$0")/../.."
clients=${1:-10000}
sources=${2:-10}
work=$(mktemp -d)
pids=()
. scripts/bench/lib.sh
trap stop_and_clean EXIT

go build -o "$work/after" ./cmd/outpost
go build -o "$work/slowflood" ./scripts/bench/slowflood
bins=(after)
if [ -n "${BEFORE:-}" ]; then
	mkdir "$work/src"
	git archive "$BEFORE" | tar -x -C "$work/src"
	(cd "$work/src" && go build -o "$work/before" ./cmd/outpost)
	bins=(before after)
fi

for bin in "${bins[@]}"; do
	for mode in bad good silent; do
		rm -rf "$work/hub" "$work/hub.log" "$work/hub.out"
		start_hub "$work/$bin"
		hub=${pids[-1]}
		addr=$(grep -o 'https://[^ ]*' "$work/hub.log" | head -1)
		printf '%s: ' "$bin"
		"$work/slowflood" -addr "${addr#https://}" -ca "$OUTPOST_CA" -cs "$OUTPOST_CONNECTION_STRING" \
			-pid "$hub" -clients "$clients" -sources "$sources" -mode "$mode"
		kill "$hub"; wait "$hub" 2>/dev/null || true
	done
done
