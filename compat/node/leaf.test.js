// Compatibility test: a leaf device written with Microsoft's Node.js device
// SDK (azure-iot-device + azure-iot-device-mqtt), unmodified, connecting
// through its parent edge device's daemon, as IoT Edge's transparent gateway:
// Client.fromConnectionString('HostName=…;DeviceId=leaf;SharedAccessKey=…;
// GatewayHostName=localhost', Mqtt), with the device CA trusted.
//
// Run by internal/daemon/leaf_node_test.go (go test ./internal/daemon -run
// NodeLeaf) in phases, each one run of this file with OUTPOST_LEAF_PHASE:
//   online     the hub is up: getTwin (the desired set at the hub before),
//              a reported update visible at the hub (azure-iothub
//              Registry), a desired change made at the hub received;
//   offline    the hub is stopped: getTwin (what the device keeps) and a
//              reported update (acknowledged once durable on the device);
//   restarted  the edge daemon was restarted with the hub still stopped:
//              the same again.
// Environment:
//   OUTPOST_LEAF_CS        the leaf's connection string, GatewayHostName=localhost
//   OUTPOST_CA             the device CA the broker's certificate chains to
//   OUTPOST_TEST_CS        the hub's owner connection string (phase online)
//   NODE_EXTRA_CA_CERTS    the hub's CA file (phase online)
'use strict';

const fs = require('node:fs');
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Client } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');

const phase = process.env.OUTPOST_LEAF_PHASE;
const leafCS = process.env.OUTPOST_LEAF_CS;
if (!leafCS || !process.env.OUTPOST_CA || !['online', 'offline', 'restarted'].includes(phase)) {
  console.error('OUTPOST_LEAF_CS, OUTPOST_CA and OUTPOST_LEAF_PHASE (online, offline or restarted) must be set: run this through `go test ./internal/daemon -run NodeLeaf`');
  process.exit(2);
}
const leafId = /DeviceId=([^;]+)/.exec(leafCS)[1];
const STEP_TIMEOUT = 30000; // ms

// until polls fn every 100 ms until it returns a truthy value.
async function until(what, fn, ms = STEP_TIMEOUT - 2000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe(`leaf device ${leafId} through its edge device (${phase})`, { timeout: STEP_TIMEOUT * 5 }, () => {
  let client;
  let twin;

  before(async () => {
    client = Client.fromConnectionString(leafCS, Mqtt);
    client.on('error', (err) => console.error('leaf client error:', err));
    await client.setOptions({ ca: fs.readFileSync(process.env.OUTPOST_CA, 'utf8') });
    await client.open();
  });

  after(async () => {
    if (client) await client.close().catch(() => {});
  });

  it('reads its twin', { timeout: STEP_TIMEOUT }, async () => {
    twin = await client.getTwin();
    const { desired, reported } = twin.properties;
    assert.equal(desired.greeting, 'hello');
    console.log(JSON.stringify({ step: 'twin', phase, desired, reported }));
    if (phase === 'offline') {
      assert.equal(reported.phase, 'online'); // as the hub had it
      assert.equal(desired.ping, 'one');
    }
    if (phase === 'restarted') {
      assert.equal(reported.phase, 'offline'); // as the device kept it
    }
  });

  it('reports', { timeout: STEP_TIMEOUT }, async () => {
    // update takes a callback and returns nothing (no promise in this SDK).
    await new Promise((resolve, reject) => twin.properties.reported.update({ phase, at: new Date().toISOString() }, (err) => (err ? reject(err) : resolve())));
    // Read back through the edge device.
    const again = await client.getTwin();
    assert.equal(again.properties.reported.phase, phase);
  });

  if (phase === 'online') {
    const { Registry } = require('azure-iothub');
    const registry = Registry.fromConnectionString(process.env.OUTPOST_TEST_CS);

    it('its report is at the hub', { timeout: STEP_TIMEOUT }, async () => {
      await until('the report at the hub', async () => {
        const { responseBody } = await registry.getTwin(leafId);
        return responseBody.properties.reported.phase === 'online';
      });
    });

    it('gets a desired change made at the hub', { timeout: STEP_TIMEOUT }, async () => {
      const got = new Promise((resolve) => {
        twin.on('properties.desired', (patch) => {
          if (patch.ping === 'one') resolve(patch);
        });
      });
      const { responseBody: t } = await registry.getTwin(leafId);
      await registry.updateTwin(leafId, { properties: { desired: { ping: 'one' } } }, t.etag);
      const patch = await got;
      assert.ok(patch.$version >= 3, `desired $version ${patch.$version}`);
    });
  }
});
