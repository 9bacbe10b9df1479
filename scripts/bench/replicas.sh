#!/usr/bin/env bash
# The hub on etcd, 1 replica + 1 member beside 3 replicas + 3 members, in one run.
#
#   scripts/bench/replicas.sh [RUNS] [PATCHES]     (default 3 runs, 20,000 patches a measurement)
#
# Each topology is started from nothing: Debian's etcd (/usr/bin/etcd) with its members' data
# on tmpfs (/dev/shm), `outpost hub serve --store etcd` replicas, and Debian's haproxy in front
# with the configuration of docs/scale.md (loopback addresses put in). Then, RUNS times:
# durable patches/s with 16 and 64 clients through haproxy, and desired delivery p50/p99 with
# the PATCH sent to replica A and the device long-polling replica B (the same replica when
# there is one). The load program is scripts/bench/replicabench.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-3}
patches=${2:-20000}
work=$(mktemp -d)
shm=$(mktemp -d /dev/shm/outpost-replicas-XXXXXX)
pids=()
# shellcheck source=scripts/bench/lib.sh
. scripts/bench/lib.sh
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work" "$shm"
}
trap cleanup EXIT
command -v haproxy >/dev/null || { echo "needs Debian's haproxy (apt-get install haproxy)" >&2; exit 1; }
[ -x /usr/bin/etcd ] || { echo "needs Debian's etcd at /usr/bin/etcd (apt-get install etcd-server)" >&2; exit 1; }
go build -o "$work/outpost" ./cmd/outpost
go build -o "$work/replicabench" ./scripts/bench/replicabench

# The HAProxy configuration of docs/scale.md.
haproxy_cfg=$(awk '/^```text$/ {b=""; inb=1; next} /^```$/ && inb {if (b ~ /frontend hub/) {print b; exit}; inb=0; next} inb {b = b $0 "\n"}' docs/scale.md)

# show_stat SOCKET: haproxy's "show stat" (CSV) from its stats socket.
show_stat() {
	python3 -c 'import socket,sys
s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"show stat\n")
b=b""
while True:
    d=s.recv(65536)
    if not d: break
    b+=d
sys.stdout.write(b.decode())' "$1" 2>/dev/null || true
}

# topology N: N etcd members, N replicas and haproxy; sets cs, ca, replicas (addresses), lb.
topology() {
	local n=$1 dir=$work/t$1 i peers="" clients="" lbport
	mkdir -p "$dir"
	declare -ga eclients=() epeers=()
	for i in $(seq 1 "$n"); do
		eclients+=("http://127.0.0.1:$(free_port)")
		epeers+=("http://127.0.0.1:$(free_port)")
		peers+="${peers:+,}e$i=${epeers[-1]}"
	done
	clients=$(IFS=,; echo "${eclients[*]}")
	for i in $(seq 1 "$n"); do
		/usr/bin/etcd --name "e$i" --data-dir "$shm/t$n-e$i" \
			--listen-client-urls "${eclients[i-1]}" --advertise-client-urls "${eclients[i-1]}" \
			--listen-peer-urls "${epeers[i-1]}" --initial-advertise-peer-urls "${epeers[i-1]}" \
			--initial-cluster "$peers" --initial-cluster-state new --log-level warn \
			--quota-backend-bytes 8589934592 >"$dir/etcd$i.log" 2>&1 &
		pids+=($!)
	done
	lbport=$(free_port)
	lb=127.0.0.1:$lbport
	replicas=()
	for i in $(seq 1 "$n"); do
		replicas+=("127.0.0.1:$(free_port)")
		# The first replica alone first: it makes the CA and the owner's key in etcd.
		OUTPOST_CONFIG=/dev/null "$work/outpost" hub serve --store etcd --etcd-endpoints "$clients" \
			--data "$dir/hub$i" --listen "${replicas[-1]}" --amqp-listen "" --hostname "localhost:$lbport" \
			>"$dir/hub$i.out" 2>"$dir/hub$i.log" &
		pids+=($!)
		for _ in $(seq 600); do
			curl -skf "https://${replicas[-1]}/readyz" >/dev/null && break
			sleep 0.1
		done
		curl -skf "https://${replicas[-1]}/readyz" >/dev/null || { cat "$dir/hub$i.log"; exit 1; }
	done
	local cfg=$haproxy_cfg servers=""
	cfg=${cfg//\/run\/haproxy\/outpost.sock/$dir/haproxy.sock}
	cfg=${cfg//bind :443/bind $lb}
	for i in $(seq 1 "$n"); do servers+="    server r$i ${replicas[i-1]}"$'\n'; done
	# The docs' three server lines become this topology's.
	cfg=$(printf '%s\n' "$cfg" | grep -v '^    server r[0-9] 10\.0\.0\.')
	printf '%s\n%s' "$cfg" "$servers" >"$dir/haproxy.cfg"
	haproxy -c -f "$dir/haproxy.cfg" >/dev/null
	haproxy -db -f "$dir/haproxy.cfg" >"$dir/haproxy.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 100); do
		[ "$(show_stat "$dir/haproxy.sock" | grep -c '^replicas,r[0-9]*,.*,UP,')" = "$n" ] && break
		sleep 0.2
	done
	cs=$(sed -n 's/.*"connectionString": *"\([^"]*\)".*/\1/p' "$dir/hub1/credentials.json")
	ca=$dir/hub1/ca.pem
}

# stop_topology: everything started so far.
stop_topology() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	pids=()
}

for n in 1 3; do
	topology "$n"
	a=${replicas[0]}
	b=${replicas[-1]}
	echo "== $n replica(s) + $n etcd member(s) (haproxy $lb; delivery: patch to $a, device on $b)"
	for run in $(seq 1 "$runs"); do
		echo "run $run, load: $(cut -d' ' -f1-3 /proc/loadavg)"
		for c in 16 64; do
			"$work/replicabench" -hub "$cs" -ca "$ca" -mode patch -clients "$c" -patches "$patches"
		done
		"$work/replicabench" -hub "$cs" -ca "$ca" -mode delivery -a "$a" -b "$b" -deliveries 500
	done
	stop_topology
done
