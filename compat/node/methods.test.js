// Compatibility test: direct methods between Microsoft's Node.js SDKs,
// unmodified, through an outpost hub and daemon. A module written with the
// module SDK (azure-iot-device + azure-iot-device-mqtt) answers
// onMethod('reboot', …) on the daemon's broker; the service SDK
// (azure-iothub) calls it with Client.invokeDeviceMethod(device, module, …)
// at the hub.
//
// Run by internal/daemon/methods_node_test.go (go test ./internal/daemon
// -run NodeMethods), which starts a hub on 127.0.0.1:443 as "localhost", a
// daemon for the device with its broker on 127.0.0.1:8883, and sets:
//   OUTPOST_TEST_CS        the hub's owner connection string
//   NODE_EXTRA_CA_CERTS    the hub's CA file
//   OUTPOST_TEST_DEVICE    the device
//   OUTPOST_MODULE_CS      the module's connection string, GatewayHostName=localhost
//   OUTPOST_CA             the device CA the broker's certificate chains to
'use strict';

const fs = require('node:fs');
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Client: ServiceClient } = require('azure-iothub');
const { ModuleClient } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');

const cs = process.env.OUTPOST_TEST_CS;
const deviceId = process.env.OUTPOST_TEST_DEVICE;
const moduleCS = process.env.OUTPOST_MODULE_CS;
if (!cs || !deviceId || !moduleCS || !process.env.OUTPOST_CA) {
  console.error('OUTPOST_TEST_CS, OUTPOST_TEST_DEVICE, OUTPOST_MODULE_CS and OUTPOST_CA must be set: run this through `go test ./internal/daemon -run NodeMethods`');
  process.exit(2);
}
const moduleId = /ModuleId=([^;]+)/.exec(moduleCS)[1];
const STEP_TIMEOUT = 30000; // ms

// failure runs a call that must fail and returns its error.
async function failure(what, fn) {
  try {
    const res = await fn();
    assert.fail(`${what} succeeded: ${JSON.stringify(res && res.result)}`);
  } catch (err) {
    if (err instanceof assert.AssertionError) throw err;
    return err;
  }
}

describe(`direct methods on ${deviceId}/${moduleId} through outpost`, { timeout: STEP_TIMEOUT * 6 }, () => {
  const service = ServiceClient.fromConnectionString(cs);
  let mod;
  let lateSent; // resolves once the slow handler answered, after its call timed out
  const calls = [];

  before(async () => {
    mod = ModuleClient.fromConnectionString(moduleCS, Mqtt);
    mod.on('error', (err) => console.error('module client error:', err));
    await mod.setOptions({ ca: fs.readFileSync(process.env.OUTPOST_CA, 'utf8') });
    await mod.open();
    mod.onMethod('reboot', (req, res) => {
      calls.push({ name: req.methodName, payload: req.payload });
      res.send(200, { rebooted: true, delay: req.payload && req.payload.delay }, (err) => err && console.error('reboot answer:', err));
    });
    lateSent = new Promise((resolve) => {
      mod.onMethod('slow', (req, res) => {
        setTimeout(() => res.send(200, 'too late', () => resolve()), 7000);
      });
    });
  });

  after(async () => {
    if (mod) await mod.close().catch(() => {});
  });

  it('invokeDeviceMethod(device, module, …) reaches onMethod and brings back its answer', { timeout: STEP_TIMEOUT }, async () => {
    // connectTimeoutInSeconds: the module's subscription to methods may
    // still be on its way; the daemon waits for it that long.
    const { result, message } = await service.invokeDeviceMethod(deviceId, moduleId, {
      methodName: 'reboot', payload: { delay: 3 }, responseTimeoutInSeconds: 10, connectTimeoutInSeconds: 10,
    });
    assert.equal(message.statusCode, 200);
    assert.equal(result.status, 200);
    assert.deepEqual(result.payload, { rebooted: true, delay: 3 });
    assert.deepEqual(calls, [{ name: 'reboot', payload: { delay: 3 } }]);
  });

  it('a module that answers after responseTimeoutInSeconds gives 504 GatewayTimeout', { timeout: STEP_TIMEOUT }, async () => {
    const err = await failure('slow', () => service.invokeDeviceMethod(deviceId, moduleId, {
      methodName: 'slow', payload: null, responseTimeoutInSeconds: 5,
    }));
    assert.equal(err.constructor.name, 'GatewayTimeoutError', String(err));
    assert.equal(err.response.statusCode, 504);
    assert.match(err.responseBody, /"errorCode":504101/);
    await lateSent; // the late answer: the daemon drops it (the Go test reads its log)
  });

  it('a module that is not connected gives 404 DeviceNotOnline (404103)', { timeout: STEP_TIMEOUT }, async () => {
    await mod.close();
    mod = undefined;
    const err = await failure('reboot offline', () => service.invokeDeviceMethod(deviceId, moduleId, {
      methodName: 'reboot', payload: {}, responseTimeoutInSeconds: 5, connectTimeoutInSeconds: 1,
    }));
    assert.equal(err.response.statusCode, 404);
    assert.match(err.responseBody, /"errorCode":404103/);
    assert.match(err.responseBody, /DeviceNotOnline/);
  });

  it('a method name the hub refuses is a 400 naming it', { timeout: STEP_TIMEOUT }, async () => {
    const err = await failure('bad name', () => service.invokeDeviceMethod(deviceId, moduleId, { methodName: 'a/b' }));
    assert.equal(err.response.statusCode, 400);
    assert.match(err.responseBody, /methodName/);
  });
});
