// Compatibility test: a leaf device (a child of an outpost edge device)
// written with Microsoft's Node.js device SDK (azure-iot-device +
// azure-iot-device-mqtt, unmodified) sends telemetry and answers direct
// methods through the edge device's broker (GatewayHostName=localhost), as
// it would through IoT Edge's edgeHub; the service SDK (azure-iothub) calls
// it with Client.invokeDeviceMethod(leafId, …) at the hub.
//
// Run in phases by internal/daemon/leafmessages_node_test.go (go test
// ./internal/daemon -run NodeLeafMessages), which starts a hub on
// 127.0.0.1:443 as "localhost", the edge device's daemon with its broker on
// 127.0.0.1:8883 and the route
//   leaves: FROM /messages/* WHERE NOT IS_DEFINED($connectionModuleId) INTO $upstream
// and sets:
//   OUTPOST_PHASE          online: events and methods with the hub up;
//                          offline: events with the hub stopped
//   OUTPOST_TAG            names this run's messages ({tag}-1, {tag}-2;
//                          default the phase)
//   OUTPOST_LEAF_CS        the leaf's connection string, GatewayHostName=localhost
//   OUTPOST_CA             the device CA the broker's certificate chains to
//   OUTPOST_TEST_CS        the hub's owner connection string (online phase)
//   NODE_EXTRA_CA_CERTS    the hub's CA file (online phase)
// The Go test reads the messages at the hub (outpost messages list LEAF).
'use strict';

const fs = require('node:fs');
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Client, Message } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');
const { rejects } = require('./sdkcall');

const phase = process.env.OUTPOST_PHASE;
const leafCS = process.env.OUTPOST_LEAF_CS;
if (!leafCS || !process.env.OUTPOST_CA || !['online', 'offline'].includes(phase) || (phase === 'online' && !process.env.OUTPOST_TEST_CS)) {
  console.error('OUTPOST_PHASE (online|offline), OUTPOST_LEAF_CS, OUTPOST_CA (and OUTPOST_TEST_CS online) must be set: run this through `go test ./internal/daemon -run NodeLeafMessages`');
  process.exit(2);
}
const leafId = /DeviceId=([^;]+)/.exec(leafCS)[1];
const tag = process.env.OUTPOST_TAG || phase;
const STEP_TIMEOUT = 60000; // ms

async function connect() {
  const client = Client.fromConnectionString(leafCS, Mqtt);
  client.on('error', (err) => console.error('leaf client error:', err));
  await client.setOptions({ ca: fs.readFileSync(process.env.OUTPOST_CA, 'utf8') });
  await client.open();
  return client;
}

function event(id, n) {
  const m = new Message(JSON.stringify({ n, phase }));
  m.messageId = id;
  m.contentType = 'application/json';
  m.contentEncoding = 'utf-8';
  m.properties.add('phase', phase);
  return m;
}

describe(`leaf device ${leafId} through the edge device (${phase})`, { timeout: STEP_TIMEOUT * 4 }, () => {
  let leaf;
  before(async () => { leaf = await connect(); });
  after(async () => { if (leaf) await leaf.close().catch(() => {}); });

  if (phase === 'online') {
    it('sendEvent is acknowledged (durable on the edge device)', { timeout: STEP_TIMEOUT }, async () => {
      await leaf.sendEvent(event(`${tag}-1`, 1));
      await leaf.sendEvent(event(`${tag}-2`, 2));
      console.log(`SENT ${tag}`);
    });

    it('invokeDeviceMethod(leafId, …) reaches onDeviceMethod through the parent and brings back its answer', { timeout: STEP_TIMEOUT }, async () => {
      const { Client: ServiceClient } = require('azure-iothub');
      const service = ServiceClient.fromConnectionString(process.env.OUTPOST_TEST_CS);
      const calls = [];
      leaf.onDeviceMethod('blink', (req, res) => {
        calls.push({ name: req.methodName, payload: req.payload });
        res.send(200, { blinked: req.payload.times }, (err) => err && console.error('blink answer:', err));
      });
      // connectTimeoutInSeconds: the leaf's subscription to methods may
      // still be on its way; the edge device waits for it that long.
      const { result } = await service.invokeDeviceMethod(leafId, {
        methodName: 'blink', payload: { times: 3 }, responseTimeoutInSeconds: 10, connectTimeoutInSeconds: 10,
      });
      assert.equal(result.status, 200);
      assert.deepEqual(result.payload, { blinked: 3 });
      assert.deepEqual(calls, [{ name: 'blink', payload: { times: 3 } }]);

      // The leaf disconnected: 404 DeviceNotOnline (404103) after the
      // connect timeout, saying the leaf is not on the edge device.
      await leaf.close();
      leaf = undefined;
      const err = await rejects('blink with the leaf disconnected', service.invokeDeviceMethod(leafId, {
        methodName: 'blink', payload: {}, responseTimeoutInSeconds: 5, connectTimeoutInSeconds: 1,
      }));
      assert.equal(err.response.statusCode, 404, String(err));
      assert.match(err.responseBody, /"errorCode":404103/);
      assert.match(err.responseBody, new RegExp(`leaf device ${leafId} is not connected to edge device`));
    });
  } else {
    it('with the hub stopped, sendEvent is still acknowledged', { timeout: STEP_TIMEOUT }, async () => {
      await leaf.sendEvent(event(`${tag}-1`, 1));
      await leaf.sendEvent(event(`${tag}-2`, 2));
      console.log(`SENT ${tag}`);
    });
  }
});
