// Compatibility test: what Microsoft's Node.js SDKs (unmodified) get from an
// outpost hub for what it does not speak, and for a hub not on port 443.
//
// Run by internal/hub/compat_protocols_test.go (go test ./internal/hub -run NodeProtocols),
// which starts a hub on 127.0.0.1:443 (HTTPS) and 127.0.0.1:5671 (AMQPS) with
// HostName "localhost", and a second hub on another port, and sets:
//   OUTPOST_TEST_CS        the owner connection string of the hub on 443
//   OUTPOST_TEST_PORT_CS   the owner connection string of the hub on another port
//                          (HostName=localhost:PORT)
//   NODE_EXTRA_CA_CERTS    a file with both hubs' CAs
// Each refused attempt is logged by the hub; the Go test counts them, so that a
// retry (what the SDKs do on transient errors, for minutes) fails the test.
//
// Run by internal/broker/compat_protocols_test.go (go test ./internal/broker -run NodeDevice),
// which starts a daemon's module broker on 127.0.0.1:8883 and sets instead:
//   OUTPOST_TEST_DEVICE_CS  a device's connection string, HostName=localhost: the
//                           device SDK's MQTT goes to localhost:8883, the broker
//   NODE_EXTRA_CA_CERTS     the broker's CA
'use strict';

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { Registry, Client: ServiceClient, Amqp, AmqpWs } = require('azure-iothub');
const { Client: DeviceClient } = require('azure-iot-device');
const { Mqtt, MqttWs } = require('azure-iot-device-mqtt');

const cs = process.env.OUTPOST_TEST_CS;
const portCS = process.env.OUTPOST_TEST_PORT_CS;
const deviceCS = process.env.OUTPOST_TEST_DEVICE_CS;
const hubSuite = Boolean(cs && portCS);
if (!hubSuite && !deviceCS) {
  console.error('neither OUTPOST_TEST_CS and OUTPOST_TEST_PORT_CS nor OUTPOST_TEST_DEVICE_CS is set: run this through ' +
    '`go test ./internal/hub -run NodeProtocols` or `go test ./internal/broker -run NodeDevice`');
  process.exit(2);
}

const STEP_TIMEOUT = 15000; // ms: a step that hangs fails; the SDKs' own retries last 4 minutes

// failure runs an SDK call that must fail, and returns its error and how long
// it took (printed for the record, not judged: the machine is shared).
async function failure(what, fn) {
  const start = Date.now();
  try {
    await fn();
  } catch (err) {
    const ms = Date.now() - start;
    console.log(`${what}: failed after ${ms} ms with ${err.name}: ${err.message}` +
      (err.amqpError ? ` (AMQP ${err.amqpError.condition}: ${err.amqpError.description})` : ''));
    return err;
  }
  assert.fail(`${what} succeeded, but the hub does not serve it`);
}

describe('what the outpost hub does not speak fails at once', { timeout: 50000, skip: !hubSuite }, () => {
  it('azure-iothub Client over AMQP (port 5671): NotImplementedError carrying what to use', { timeout: STEP_TIMEOUT }, async () => {
    const client = ServiceClient.fromConnectionString(cs, Amqp);
    const err = await failure('Client.open over Amqp', () => client.open());
    assert.equal(err.name, 'NotImplementedError', `${err.name}: ${err.message}`);
    assert.equal(err.amqpError?.condition, 'amqp:not-implemented');
    assert.match(err.amqpError?.description, /outpost hub does not speak AMQP: use IoT Hub's REST API over HTTPS on port 443/);
  });

  it('azure-iothub Client over AMQP over WebSocket (port 443, /$iothub/websocket): the same', { timeout: STEP_TIMEOUT }, async () => {
    const client = ServiceClient.fromConnectionString(cs, AmqpWs);
    const err = await failure('Client.open over AmqpWs', () => client.open());
    assert.equal(err.name, 'NotImplementedError', `${err.name}: ${err.message}`);
    assert.equal(err.amqpError?.condition, 'amqp:not-implemented');
    assert.match(err.amqpError?.description, /outpost hub does not speak AMQP/);
  });

  it('a device over MQTT over WebSocket (port 443): refused, not retried', { timeout: STEP_TIMEOUT }, async () => {
    const registry = Registry.fromConnectionString(cs);
    const deviceId = `protocols-${crypto.randomBytes(4).toString('hex')}`;
    const dev = (await registry.create({ deviceId })).responseBody;
    try {
      const deviceCS = `HostName=localhost;DeviceId=${deviceId};SharedAccessKey=${dev.authentication.symmetricKey.primaryKey}`;
      const client = DeviceClient.fromConnectionString(deviceCS, MqttWs);
      const err = await failure('device Client.open over MqttWs', () => client.open());
      // The SDK words every failure of a first MQTT connection this way; the
      // hub's log (checked by the Go test) says what it refused and why.
      assert.match(err.message, /Failure on first connection/);
      await client.close().catch(() => {});
    } finally {
      await registry.delete(deviceId);
    }
  });
});

describe('a hub on another port than 443', { timeout: 20000, skip: !hubSuite }, () => {
  it('azure-iothub Registry cannot reach it: the SDK takes HostName for a DNS name', { timeout: STEP_TIMEOUT }, async () => {
    const host = /HostName=([^;]+)/.exec(portCS)[1];
    assert.match(host, /^localhost:\d+$/, `the hub's HostName ${host} has no port`);
    assert.notEqual(host, 'localhost:443');
    const registry = Registry.fromConnectionString(portCS);
    const err = await failure('Registry.list', () => registry.list());
    // As docs/hub-api.md says: getaddrinfo ENOTFOUND localhost:PORT.
    assert.equal(err.code, 'ENOTFOUND', `${err.name}: ${err.message}`);
    assert.match(err.message, new RegExp(`getaddrinfo ENOTFOUND ${host}`));
  });
});

describe("a device on MQTT to a daemon's module broker", { timeout: 20000, skip: !deviceCS }, () => {
  it('is refused at its first attempt: the edge device itself is no child of its own broker', { timeout: STEP_TIMEOUT }, async () => {
    const client = DeviceClient.fromConnectionString(deviceCS, Mqtt);
    const err = await failure('device Client.open over Mqtt', () => client.open());
    // CONNACK 0x05 (not authorized), which the SDK words so on a first
    // connection; the broker's log (checked by the Go test) says why.
    assert.match(err.message, /Failure on first connection \(Not authorized\): Connection refused: Not authorized/);
    await client.close().catch(() => {});
  });
});
