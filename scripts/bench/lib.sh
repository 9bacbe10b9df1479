# Shared by the benchmark scripts: source it after setting work (a temp dir the script
# removes) and pids (an array of the background processes its cleanup kills).

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); } # T0_NS → milliseconds since
# median of numbers on stdin, one per line or space-separated.
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else printf "%d\n", (a[NR/2]+a[NR/2+1])/2}'; }

# build_outpost DIR: DIR/outpost and, beside it as the release archives hold them,
# DIR/outpost-shim (the runtime shim the daemon starts for each runc or process instance).
build_outpost() { go build -o "$1/outpost" ./cmd/outpost && go build -o "$1/outpost-shim" ./cmd/outpost-shim; }

# start_hub BINARY: `outpost hub serve` on a free loopback port, data in $work/hub; exports
# OUTPOST_CONNECTION_STRING (the owner's) and OUTPOST_CA for the CLI commands that follow.
start_hub() {
	local port
	port=$(free_port)
	# Started directly, not through a shell function: one in the background is a subshell,
	# and killing that would leave the hub running.
	OUTPOST_CONFIG=/dev/null "$1" hub serve --data "$work/hub" --listen 127.0.0.1:$port >"$work/hub.out" 2>"$work/hub.log" &
	pids+=($!)
	until grep -q "hub listening" "$work/hub.log"; do sleep 0.05; done
	OUTPOST_CONNECTION_STRING=$(head -1 "$work/hub.out")
	export OUTPOST_CONNECTION_STRING OUTPOST_CA=$work/hub/ca.pem
}

# start_dockerd: unless DOCKER_HOST is set, Debian's dockerd with a socket and data dir of
# its own under $work/docker (no bridge, no iptables: use --network none or host); exports
# DOCKER_HOST. Unmount what it leaves under $work on cleanup (see unmount_under_work).
start_dockerd() {
	if [ -z "${DOCKER_HOST:-}" ]; then
		mkdir -p "$work/docker"
		dockerd --bridge=none --iptables=false --ip6tables=false --host "unix://$work/docker/docker.sock" \
			--data-root "$work/docker/data" --exec-root "$work/docker/exec" --pidfile "$work/docker/pid" \
			>"$work/docker/log" 2>&1 &
		pids+=($!)
		export DOCKER_HOST="unix://$work/docker/docker.sock"
		for _ in $(seq 150); do docker version >/dev/null 2>&1 && break; sleep 0.2; done
	fi
	docker version >/dev/null
}

# start_registry [STORAGE_EXTRA]: the CNCF registry (Debian's docker-registry) on a free
# loopback port, storage in $work/registry; sets reg to its host:port. STORAGE_EXTRA adds
# to its storage config, e.g. "delete: {enabled: true}".
start_registry() {
	reg=127.0.0.1:$(free_port)
	cat >"$work/registry.yml" <<EOC
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/registry}${1:+, $1}}
http: {addr: $reg}
EOC
	docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 100); do curl -sf "http://$reg/v2/" >/dev/null && break; sleep 0.05; done
}

# unmount_under_work: what runc instances and dockerd leave mounted under $work, deepest first.
unmount_under_work() {
	awk -v d="$work/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
}

# stop_and_clean: kill $pids, wait for them, unmount what is left under $work and remove it.
# Scripts trap it on EXIT, or call it last in a cleanup of their own.
stop_and_clean() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	unmount_under_work
	rm -rf "$work" 2>/dev/null || true
}

# copy_tempsensor DEST: fixtures/modules/tempsensor copied to DEST with, beside it, the Go
# SDK it builds against (DEST/outpost-sdk, as `outpost init` writes it: sdk/sdk.go's GoMod
# and sdk/moduleclient without its tests).
copy_tempsensor() {
	cp -r fixtures/modules/tempsensor "$1"
	mkdir -p "$1/outpost-sdk/sdk/moduleclient"
	awk '/^const GoMod = `/ {on = 1; sub(/^const GoMod = `/, ""); print; next} on && /^`/ {exit} on' sdk/sdk.go >"$1/outpost-sdk/go.mod"
	for f in sdk/moduleclient/*.go; do
		case "$f" in *_test.go) ;; *) cp "$f" "$1/outpost-sdk/sdk/moduleclient/" ;; esac
	done
}

# make_golang_local: the image golang:local (no base image can be pulled here): /usr/local/go
# plus a static busybox, made with `docker import` unless the engine has it.
make_golang_local() {
	if ! docker image inspect golang:local >/dev/null 2>&1; then
		mkdir -p "$work/golang/bin"
		cp "$(command -v busybox)" "$work/golang/bin/busybox"
		for a in sh ls cat cp mv rm mkdir env; do ln -s busybox "$work/golang/bin/$a"; done
		mkdir -p "$work/golang/tmp" "$work/golang/root"
		chmod 1777 "$work/golang/tmp"
		tar -C / -cf "$work/golang.tar" usr/local/go
		tar -C "$work/golang" -rf "$work/golang.tar" bin tmp root
		docker import --change 'ENV PATH=/usr/local/go/bin:/bin' --change 'ENV HOME=/root' \
			--change 'ENV GOTOOLCHAIN=local' "$work/golang.tar" golang:local >/dev/null
		rm -f "$work/golang.tar"
	fi
}

# multistage_dockerfile: the Dockerfile IoT Edge's templates use for a Go module, on
# golang:local: go build in a build stage, the binary alone in a scratch image.
multistage_dockerfile() {
	cat <<'EOC'
FROM golang:local AS build
WORKDIR /src
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /tempsensor .
FROM scratch
COPY --from=build /tempsensor /tempsensor
ENTRYPOINT ["/tempsensor"]
EOC
}

# show_stat SOCKET: haproxy's "show stat" (CSV) from its stats socket.
show_stat() { haproxy_socket "$1" "show stat"; }

# haproxy_socket SOCKET COMMAND: COMMAND's answer on haproxy's stats socket SOCKET.
haproxy_socket() {
	python3 -c 'import socket,sys
s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(sys.argv[2].encode()+b"\n")
b=b""
while True:
    d=s.recv(65536)
    if not d: break
    b+=d
sys.stdout.write(b.decode())' "$1" "$2" 2>/dev/null || true
}

# haproxy_config_from_docs: the HAProxy configuration of docs/scale.md.
haproxy_config_from_docs() {
	awk '/^```text$/ {b=""; inb=1; next} /^```$/ && inb {if (b ~ /frontend hub/) {print b; exit}; inb=0; next} inb {b = b $0 "\n"}' docs/scale.md
}

# lb_capacity: the connections one haproxy can hold here: two open files a connection (client
# and server side), a few to spare, under the hard limit (haproxy raises its soft one).
lb_capacity() {
	local h
	h=$(ulimit -Hn)
	[ "$h" = unlimited ] && h=1048576
	echo $(((h - 100) / 2))
}

# need_etcd_haproxy: exits, saying what to install, unless Debian's etcd and haproxy are there.
need_etcd_haproxy() {
	command -v haproxy >/dev/null || { echo "needs Debian's haproxy (apt-get install haproxy)" >&2; exit 1; }
	[ -x /usr/bin/etcd ] || { echo "needs Debian's etcd at /usr/bin/etcd (apt-get install etcd-server)" >&2; exit 1; }
}

# etcd_topology N [LBS [HUB_FLAG…]]: from nothing, N members of Debian's etcd (/usr/bin/etcd,
# data under $shm, a tmpfs dir the script removes), N `outpost hub serve --store etcd`
# replicas ($work/outpost, with HUB_FLAGs) and LBS (default 1) Debian haproxy processes in
# front of all of them, each with the configuration of docs/scale.md (loopback addresses put
# in; its global maxconn lowered to what the open-file limit allows, two files a connection).
# Sets cs (the owner's connection string, HostName the first haproxy), ca, replicas (their
# addresses), rpids, lb and lbaddrs (the haproxies' addresses), lbpids, and pids (all).
etcd_topology() {
	local n=$1 nlb=${2:-1} i peers="" cfg servers lbmax
	shift 2 || shift $#
	tdir=$work/t$n
	mkdir -p "$tdir"
	hub_flags=("$@")
	declare -ga eclients=() epeers=() epids=() rpids=() lbpids=() lbaddrs=() replicas=()
	for i in $(seq 1 "$n"); do
		eclients+=("http://127.0.0.1:$(free_port)")
		epeers+=("http://127.0.0.1:$(free_port)")
		peers+="${peers:+,}e$i=${epeers[-1]}"
	done
	for i in $(seq 1 "$n"); do
		/usr/bin/etcd --name "e$i" --data-dir "$shm/t$n-e$i" \
			--listen-client-urls "${eclients[i-1]}" --advertise-client-urls "${eclients[i-1]}" \
			--listen-peer-urls "${epeers[i-1]}" --initial-advertise-peer-urls "${epeers[i-1]}" \
			--initial-cluster "$peers" --initial-cluster-state new --log-level warn \
			--quota-backend-bytes 8589934592 >"$tdir/etcd$i.log" 2>&1 &
		epids+=($!)
	done
	pids=("${epids[@]}")
	for i in $(seq 1 "$nlb"); do lbaddrs+=("127.0.0.1:$(free_port)"); done
	lb=${lbaddrs[0]}
	for i in $(seq 1 "$n"); do replicas+=("127.0.0.1:$(free_port)"); done
	start_replicas
	lbmax=$(lb_capacity)
	servers=""
	for i in $(seq 1 "$n"); do servers+="    server r$i ${replicas[i-1]}"$'\n'; done
	for i in $(seq 1 "$nlb"); do
		cfg=$(haproxy_config_from_docs)
		cfg=${cfg//\/run\/haproxy\/outpost.sock/$tdir/haproxy$i.sock}
		cfg=${cfg//bind :443/bind ${lbaddrs[i-1]}}
		# The docs' three server lines become this topology's, its maxconn what fits here.
		cfg=$(printf '%s\n' "$cfg" | grep -v '^    server r[0-9] 10\.0\.0\.' | sed -E "s/^(    maxconn )[0-9]+/\1$lbmax/")
		# Each session logged as it ends (to the haproxy's log file): option tcplog's format
		# (client, replica, times, bytes to the client, termination state, ...) and the source
		# port of the connection to the replica, the one a replica's log names.
		cfg=$(printf '%s\n' "$cfg" | sed -E 's/^global$/global\n    log stdout format raw local0/; s/^defaults$/defaults\n    log global\n    log-format "%ci:%cp [%t] %ft %b\/%s %Tw\/%Tc\/%Tt %B %ts %ac\/%fc\/%bc\/%sc\/%rc %sq\/%bq %bi:%bp"/')
		printf '%s\n%s' "$cfg" "$servers" >"$tdir/haproxy$i.cfg"
		haproxy -c -f "$tdir/haproxy$i.cfg" >/dev/null
		haproxy -db -f "$tdir/haproxy$i.cfg" >"$tdir/haproxy$i.log" 2>&1 &
		lbpids+=($!)
	done
	pids=("${epids[@]}" "${rpids[@]}" "${lbpids[@]}")
	wait_replicas_up
	cs=$(sed -n 's/.*"connectionString": *"\([^"]*\)".*/\1/p' "$tdir/hub1/credentials.json")
	ca=$tdir/hub1/ca.pem
}

# start_replicas: etcd_topology's replicas, one after the other (the first alone makes the CA
# and the owner's key in etcd), each ready (/readyz) before the next; sets rpids.
start_replicas() {
	local i clients
	clients=$(IFS=,; echo "${eclients[*]}")
	rpids=()
	for i in $(seq 1 "${#replicas[@]}"); do
		OUTPOST_CONFIG=/dev/null "$work/outpost" hub serve --store etcd --etcd-endpoints "$clients" \
			--data "$tdir/hub$i" --listen "${replicas[i-1]}" --amqp-listen "" --hostname "localhost:${lb##*:}" \
			"${hub_flags[@]}" >"$tdir/hub$i.out" 2>>"$tdir/hub$i.log" &
		rpids+=($!)
		pids+=($!)
		for _ in $(seq 600); do
			curl -skf "https://${replicas[i-1]}/readyz" >/dev/null && break
			sleep 0.1
		done
		curl -skf "https://${replicas[i-1]}/readyz" >/dev/null || { cat "$tdir/hub$i.log"; exit 1; }
	done
}

# restart_replicas: etcd_topology's replicas stopped and started again (fresh processes on
# the same etcd), and up again in every haproxy.
restart_replicas() {
	local p
	for p in "${rpids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${rpids[@]}"; do wait "$p" 2>/dev/null || true; done
	pids=("${epids[@]}" "${lbpids[@]}")
	start_replicas
	wait_replicas_up
}

# wait_replicas_up: until every haproxy shows every replica UP (20 s at most).
wait_replicas_up() {
	local i ok
	for _ in $(seq 100); do
		ok=1
		for i in $(seq 1 "${#lbpids[@]}"); do
			[ "$(show_stat "$tdir/haproxy$i.sock" | grep -c '^replicas,r[0-9]*,.*,UP,')" = "${#replicas[@]}" ] || ok=
		done
		[ -n "$ok" ] && return
		sleep 0.2
	done
	echo "haproxy: not every replica UP after 20 s (see $tdir/haproxy*.log, $tdir/hub*.log)" >&2
}

# stop_topology: everything started so far.
stop_topology() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	pids=()
}
