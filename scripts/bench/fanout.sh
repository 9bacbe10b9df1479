#!/usr/bin/env bash
# 10,000 simulated devices holding sync long polls on one hub, or on hub replicas on etcd,
# one desired patch fanned out to all of them.
#
#   scripts/bench/fanout.sh [DEVICES] [RUNS] [TOPOLOGIES]
#
# Default 10,000 devices, 3 runs, topology file. TOPOLOGIES, space-separated, one after the
# other in one run:
#
#   file   one `outpost hub serve` on the file store (data in a temp dir), devices connecting
#          to it directly;
#   etcd1  1 replica on 1 member of Debian's etcd, behind Debian's haproxy;
#   etcd3  3 replicas on 3 etcd members, behind haproxy (leastconn spreads the devices).
#
# The etcd topologies are scripts/bench/replicas.sh's (etcd_topology in lib.sh: the haproxy
# configuration of docs/scale.md, members' data on tmpfs), started from nothing; where one
# haproxy cannot hold every device's connection under the open-file limit (two files a
# connection), there are as many haproxies as it takes, the devices taking each in turn, the
# PATCHes going through the first. Every hub runs with --max-conns-per-ip raised, as every
# simulated device (and haproxy) connects from 127.0.0.1.
#
# The devices are made once a topology (each with one module, "m"), then RUNS times, on a fresh
# hub (file) or fresh replicas (etcd: Go keeps freed heap for a while, so a process that held
# the last run's connections would start the next one with their memory): every device opens
# its own TLS connection and holds a sync long poll; once the hub holds them all, one desired
# patch goes to every device's module twin (`twin patch` on each, 64 at a time); timed until
# the last device's poll has returned with it. The RSS of each hub process (and haproxy)
# before the devices connect and with every poll held gives the memory a held connection
# costs. The load program is scripts/bench/replicabench (-mode fanout).
#
# Its simulated devices compute at most FANOUT_DEVICE_CPU (default 8; 0: all at once) TLS
# answers at a time, as if each had its own CPU, and retry as internal/syncer does
# (FANOUT_RETRY=fixed: after 100 ms). A device request that failed is counted apart when it
# was the hub closing a new connection at its limits on a slow client (the replicas' log counts
# the same: client_answer_late, no_client_hello, closed_before_first_request). With
# FANOUT_LOGS=DIR the etcd topologies' logs are kept there: each failed device request
# (errorsRUN.log), each HAProxy session as it ended (haproxyN.log) and the replicas' logs.
set -euo pipefail
cd "$(dirname "$0")/../.."
devices=${1:-10000}
runs=${2:-3}
topologies=${3:-file}
work=$(mktemp -d)
shm=
pids=()
# shellcheck source=scripts/bench/lib.sh
. scripts/bench/lib.sh
# keep_logs: with FANOUT_LOGS set, the topology's logs (haproxy's sessions, the replicas',
# the devices' errors) copied to FANOUT_LOGS/TOPOLOGY, before they go with $work.
keep_logs() {
	[ -n "${FANOUT_LOGS:-}" ] && [ -n "${tdir:-}" ] && [ -d "$tdir" ] || return 0
	mkdir -p "$FANOUT_LOGS/${tdir##*/}"
	cp "$tdir"/*.log "$tdir"/*.cfg "$FANOUT_LOGS/${tdir##*/}/" 2>/dev/null || true
}
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	keep_logs
	rm -rf "$work" ${shm:+"$shm"}
}
trap cleanup EXIT
for t in $topologies; do
	case $t in
	file) ;;
	etcd1 | etcd3) need_etcd_haproxy ;;
	*) echo "topology $t: use file, etcd1 or etcd3" >&2; exit 1 ;;
	esac
done
# The hub and the load program each hold a connection a device, and some files to spare.
need=$((devices + 1024))
if [ "$(ulimit -Sn)" != unlimited ] && [ "$(ulimit -Sn)" -lt "$need" ]; then
	hard=$(ulimit -Hn)
	if [ "$hard" != unlimited ] && [ "$hard" -lt "$need" ]; then
		echo "open files: $need needed, the hard limit is $hard: raise it (limits.conf, or run as root with CAP_SYS_RESOURCE)" >&2
		exit 1
	fi
	ulimit -Sn "$need"
fi
go build -o "$work/outpost" ./cmd/outpost
go build -o "$work/replicabench" ./scripts/bench/replicabench
join() { local IFS=,; echo "$*"; }
# The TLS handshakes a hub's log says failed (cut or timed out), and the most that waited for
# their turn at once: it logs them every 10 s.
handshakes_failed() { awk '/TLS handshakes failed/ {for (i = 1; i <= NF; i++) if ($i ~ /^failed=/) {sub(/^failed=/, "", $i); n += $i}} END {print n + 0}' "$1"; }
# hub_count KEY LOG: the sum of KEY=N over the handshake lines of a hub's log, e.g.
# client_answer_late (the client took longer than --read-timeout to answer the hub's part of
# a TLS handshake) or closed_before_first_request (no request within --read-header-timeout
# after the handshake): a client gets EOF for both.
hub_count() { awk -v k="$1" '/hub: (TLS handshakes failed|connections closed before)/ {for (i = 1; i <= NF; i++) if (index($i, k "=") == 1) {sub(/^[^=]*=/, "", $i); n += $i}} END {print n + 0}' "$2"; }
handshakes_queued() { awk '/TLS handshakes/ {for (i = 1; i <= NF; i++) if ($i ~ /^max_waiting_for_slot=/) {sub(/^[^=]*=/, "", $i); if ($i + 0 > m) m = $i + 0}} END {print m + 0}' "$1"; }
# Connections the kernel dropped because a listener's accept queue was full (all listeners of
# this network namespace: other programs' too).
overflows() { nstat -az TcpExtListenOverflows 2>/dev/null | awk '$1 == "TcpExtListenOverflows" {print $2}'; }

# The devices' failed requests (replicabench -errlog) by where they failed: in the TLS
# handshake, on a reused connection before an answer, ...; each line's stage without numbers.
errors_by_stage() {
	[ -s "$1" ] || return 0
	sed -E 's/^[0-9.]+ s fan-[0-9]+ //; s/ from [0-9.:]+:/:/; s/[0-9]+(\.[0-9]+)?(ms|s|µs)?/N/g' "$1" | sort | uniq -c | sort -rn | head -8
}
# termination_states LOG: haproxy's sessions (option tcplog) counted by termination state,
# the two letters after the byte count.
termination_states() {
	awk '$5 ~ /^-?[0-9]+\/-?[0-9]+\/[0-9]+$/ && $7 ~ /^[-A-Za-z][-A-Za-z]$/ {n[$7]++} END {for (s in n) printf "  %s %d\n", s, n[s]}' "$1" | sort -k2 -rn
}

for t in $topologies; do
	if [ "$t" = file ]; then
		echo "== file store, one hub, devices connecting to it directly"
		port=$(free_port)
		for run in $(seq 1 "$runs"); do
			: >"$work/hub.log"
			OUTPOST_CONFIG=/dev/null "$work/outpost" hub serve --data "$work/hub" --listen "127.0.0.1:$port" \
				--amqp-listen "" --max-conns-per-ip -1 >"$work/hub.out" 2>"$work/hub.log" &
			hub=$!
			pids=($hub)
			until grep -q "hub listening" "$work/hub.log"; do sleep 0.05; done
			[ "$run" = 1 ] && cs=$(head -1 "$work/hub.out")
			echo "run $run, load: $(cut -d' ' -f1-3 /proc/loadavg)"
			o=$(overflows)
			"$work/replicabench" -hub "$cs" -ca "$work/hub/ca.pem" -mode fanout -devices "$devices" -clients 64 -pid "$hub" -retry "${FANOUT_RETRY:-jitter}" -device-cpu "${FANOUT_DEVICE_CPU:-8}"
			[ -z "$o" ] || echo "accept queue overflows (nstat TcpExtListenOverflows): $(($(overflows) - o))"
			echo "hub: $(handshakes_failed "$work/hub.log") TLS handshakes failed ($(hub_count client_answer_late "$work/hub.log") with the client's answer later than --read-timeout), at most $(handshakes_queued "$work/hub.log") waiting for their turn, $(hub_count closed_before_first_request "$work/hub.log") connections closed before their first request"
			grep "TLS handshakes failed" "$work/hub.log" | head -3 || true
			kill "$hub"
			wait "$hub" || true
		done
		continue
	fi
	n=${t#etcd}
	shm=$(mktemp -d /dev/shm/outpost-fanout-XXXXXX)
	cap=$(lb_capacity)
	nlb=$(((devices + 200 + cap - 1) / cap))
	etcd_topology "$n" "$nlb" --max-conns-per-ip -1
	echo "== $n replica(s) + $n etcd member(s), behind $nlb haproxy(s) ($(join "${lbaddrs[@]}"); up to $cap connections each)"
	for run in $(seq 1 "$runs"); do
		[ "$run" = 1 ] || restart_replicas
		echo "run $run, load: $(cut -d' ' -f1-3 /proc/loadavg)"
		o=$(overflows)
		"$work/replicabench" -hub "$cs" -ca "$ca" -mode fanout -devices "$devices" -clients 64 \
			-lbs "$(join "${lbaddrs[@]}")" -replicas "$(join "${replicas[@]}")" \
			-pid "$(join "${rpids[@]}")" -lbpid "$(join "${lbpids[@]}")" -errlog "$tdir/errors$run.log" -retry "${FANOUT_RETRY:-jitter}" -device-cpu "${FANOUT_DEVICE_CPU:-8}"
		errors_by_stage "$tdir/errors$run.log"
		[ -z "$o" ] || echo "accept queue overflows (nstat TcpExtListenOverflows): $(($(overflows) - o))"
		# What haproxy saw: how often a replica's /readyz check failed under the load (see
		# docs/scale.md on shutdown-sessions) and the connections it refused meanwhile.
		for i in $(seq 1 "$nlb"); do
			show_stat "$tdir/haproxy$i.sock" | awk -F, -v lb="$i" 'NR == 1 {for (f = 1; f <= NF; f++) c[$f] = f; next}
				$1 == "replicas" && $2 != "BACKEND" {printf "haproxy %s, %s: %s sessions so far, marked down %s times (%s s), last check %s %s ms, %s connections failed\n", lb, $2, $c["stot"], $c["chkdown"], $c["downtime"], $c["check_status"], $c["check_duration"], $c["econ"]}
				$1 == "replicas" && $2 == "BACKEND" {printf "haproxy %s: %s client connections refused (no replica up)\n", lb, $c["econ"]}'
		done
	done
	for i in $(seq 1 "$n"); do
		echo "replica $i: $(grep -ciE 'error|panic' "$tdir/hub$i.log" || true) lines with error or panic in its log, $(handshakes_failed "$tdir/hub$i.log") TLS handshakes failed ($(hub_count client_answer_late "$tdir/hub$i.log") with the client's answer later than --read-timeout) and at most $(handshakes_queued "$tdir/hub$i.log") waiting for their turn, $(hub_count closed_before_first_request "$tdir/hub$i.log") connections closed before their first request (all runs)"
		grep -iE 'error|panic' "$tdir/hub$i.log" | sed -E 's/^[^ ]+ [^ ]+ //' | sort | uniq -c | sort -rn | head -3 || true
	done
	stop_topology
	for i in $(seq 1 "$nlb"); do
		echo "haproxy $i: sessions by termination state (all runs; -- is a normal end):"
		termination_states "$tdir/haproxy$i.log"
	done
	keep_logs
	rm -rf "$shm"
	shm=
done
