#!/usr/bin/node
// An IoT Edge module written with Microsoft's Node.js module SDK
// (azure-iot-device + azure-iot-device-mqtt, unmodified), as a user writes
// one: ModuleClient.fromEnvironment(Mqtt) reads the IOTEDGE_* variables the
// daemon sets, signs its SAS tokens through the workload socket, trusts the
// bundle it serves and connects to the broker at IOTEDGE_GATEWAYHOSTNAME:8883.
//
// The daemon runs it (internal/daemon/nodemodule_test.go), on runc and
// process runtimes: the image holds this script and its node_modules; the
// host's /usr/bin/node runs it (bound in read-only under runc). It drives
// itself and prints one JSON line per step to its log:
//   {"step":"twin","desired":…}         the twin it read at start
//   {"step":"reported","n":N}          report {"n":N} acknowledged (every 300 ms)
//   {"step":"desired","patch":…}       a desired change, echoed in reported
//                                      {"echo":{"ping":…,"version":…}}
//   {"step":"error",…}                 and it exits 1
// At start it reports {"started":{"desired":<the desired it read>,"version":…}}.
//
// NODEMOD_TOKEN_TTL (seconds), when set, makes its SAS tokens that short-lived
// (renewed at half their life, through the workload API): the SDK's
// tokenRenewal option. Setting options replaces the MQTT transport's, so the
// trust bundle fromEnvironment set is handed again with them (fetched from
// the workload socket as the SDK does).
'use strict';

const http = require('node:http');
const { ModuleClient } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');

function say(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function fail(step, err) {
  say({ step: 'error', during: step, error: String(err && (err.stack || err.message) || err) });
  process.exit(1);
}

// trustBundle reads GET /trust-bundle from the workload socket.
function trustBundle() {
  const uri = process.env.IOTEDGE_WORKLOADURI || '';
  if (!uri.startsWith('unix://')) {
    return Promise.reject(new Error(`IOTEDGE_WORKLOADURI ${JSON.stringify(uri)} is not unix://`));
  }
  const path = '/trust-bundle?api-version=' + (process.env.IOTEDGE_APIVERSION || '2019-01-30');
  return new Promise((resolve, reject) => {
    http.get({ socketPath: uri.slice('unix://'.length), path }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => {
        if (res.statusCode !== 200) return reject(new Error(`trust bundle: ${res.statusCode} ${body}`));
        try {
          resolve(JSON.parse(body).certificate);
        } catch (err) {
          reject(err);
        }
      });
    }).on('error', reject);
  });
}

async function main() {
  const client = await ModuleClient.fromEnvironment(Mqtt);
  client.on('error', (err) => fail('client', err));
  const ttl = Number(process.env.NODEMOD_TOKEN_TTL || 0);
  if (ttl) {
    await client.setOptions({
      ca: await trustBundle(),
      tokenRenewal: { tokenValidTimeInSeconds: ttl, tokenRenewalMarginInSeconds: Math.floor(ttl / 2) },
    });
  }
  await client.open();
  const twin = await client.getTwin();
  const desired = JSON.parse(JSON.stringify(twin.properties.desired));
  say({ step: 'twin', desired });

  // Reports one at a time, in order.
  let queue = Promise.resolve();
  const report = (patch, then) => {
    queue = queue
      .then(() => new Promise((resolve, reject) => twin.properties.reported.update(patch, (err) => (err ? reject(err) : resolve()))))
      .then(then, (err) => fail('report', err));
    return queue;
  };
  // Reported properties take no $ names: the desired without $version.
  const seen = Object.fromEntries(Object.entries(desired).filter(([k]) => !k.startsWith('$')));
  await report({ started: { desired: seen, version: desired.$version } }, () => say({ step: 'started' }));
  twin.on('properties.desired', (patch) => {
    say({ step: 'desired', patch });
    if (patch.ping !== undefined) {
      report({ echo: { ping: patch.ping, version: patch.$version } });
    }
  });
  for (let n = 1; ; n++) {
    await report({ n }, () => say({ step: 'reported', n }));
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
}

main().catch((err) => fail('main', err));
