#!/usr/bin/env bash
# Automatic deployment rollout across a fleet: BenchmarkFleetRollout of internal/daemon.
#
#   scripts/bench/fleet.sh [ROLLOUTS]     (default 5)
#
# A hub (in process) with $DEVICES devices (default 1000), all syncing: $DAEMONS real daemons
# on the process runtime (default 5), the others simulated (a long-poll sync and a reported
# upload per deployment, as the daemon does). Two automatic deployments target tags.ring='a'
# and tags.ring='b'. Each rollout moves $CHANGED devices (default 100, the real daemons among
# them) to the other ring and times it until every one of them reports at the hub that it
# runs the other deployment (lastDesiredVersion current, status 200, its module running).
set -euo pipefail
cd "$(dirname "$0")/../.."
rollouts=${1:-5}
echo "load average before: $(uptime | sed 's/.*load average: //')"
go test -run '^$' -bench '^BenchmarkFleetRollout$' -benchtime "${rollouts}x" -timeout 30m ./internal/daemon \
	-fleet.devices="${DEVICES:-1000}" -fleet.changed="${CHANGED:-100}" -fleet.daemons="${DAEMONS:-5}" |
	grep -E 'moved|all run|ms/rollout' | sed 's/^ *fleet_bench_test.go:[0-9]*: //'
echo "load average after: $(uptime | sed 's/.*load average: //')"
