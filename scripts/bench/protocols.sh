#!/usr/bin/env bash
# How long Microsoft's Node SDKs take to fail against what the hub does not speak.
#
#   scripts/bench/protocols.sh [OUTPOST_BINARY]     (default: built from this checkout)
#
# Starts `outpost hub serve` on 127.0.0.1:443 (HostName=localhost, where the SDKs connect;
# run as root), taking port 443's lock as the Node SDK tests do, and times, with the SDKs of
# compat/node (npm ci there first): azure-iothub's Client.open() over Amqp (port 5671) and
# AmqpWs (443, /$iothub/websocket), and azure-iot-device's Client.open() over MqttWs (443).
# Prints one JSON line each: the milliseconds until open() failed, and its error. Give it
# an older build to compare (a hub that does not refuse AMQP: each AMQP open retries for
# about 4 minutes).
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d /tmp/outpost-bench-protocols.XXXXXX)
pids=()
. scripts/bench/lib.sh
trap stop_and_clean EXIT
bin=${1:-}
if [ -z "$bin" ]; then
	go build -o "$work/outpost" ./cmd/outpost
	bin=$work/outpost
fi
[ -d compat/node/node_modules/azure-iothub ] || { echo "protocols.sh: run npm ci in compat/node first" >&2; exit 1; }

exec 9>"${TMPDIR:-/tmp}/outpost-test-port-127.0.0.1_443.lock" # internal/sdktest's lock of 127.0.0.1:443
flock 9
exec 8>"${TMPDIR:-/tmp}/outpost-test-port-127.0.0.1_5671.lock"
flock 8
OUTPOST_CONFIG=/dev/null "$bin" hub serve --data "$work/hub" --listen 127.0.0.1:443 --hostname localhost >"$work/hub.out" 2>"$work/hub.log" &
pids+=($!)
until grep -q "hub listening" "$work/hub.log"; do sleep 0.05; done
cs=$(head -1 "$work/hub.out")
key=$(OUTPOST_CONFIG=/dev/null OUTPOST_CONNECTION_STRING=$cs OUTPOST_CA=$work/hub/ca.pem "$bin" device create bench-protocols -o json | jq -r .authentication.symmetricKey.primaryKey)
export NODE_PATH=$PWD/compat/node/node_modules NODE_EXTRA_CA_CERTS=$work/hub/ca.pem
node scripts/bench/protocols.js amqp "$cs"
node scripts/bench/protocols.js amqpws "$cs"
node scripts/bench/protocols.js mqttws "HostName=localhost;DeviceId=bench-protocols;SharedAccessKey=$key"
