// Compatibility test: Microsoft's Node.js IoT Hub service SDK (azure-iothub),
// unmodified, reading an edge device's system module twins, $edgeAgent and
// $edgeHub, as IoT Edge's tools read them.
//
// Run by internal/daemon/systemmodules_node_test.go (go test ./internal/daemon
// -run NodeSystemModule), which deploys an IoT Edge manifest to a device, runs
// a real daemon for it until it has reported, and sets:
//   OUTPOST_TEST_CS       the hub's owner connection string
//   NODE_EXTRA_CA_CERTS   the hub's CA file
//   OUTPOST_TEST_DEVICE   the device
//   OUTPOST_TEST_IMAGE    the image of its module "sensor"
'use strict';

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const { Registry } = require('azure-iothub');

const cs = process.env.OUTPOST_TEST_CS;
const deviceId = process.env.OUTPOST_TEST_DEVICE;
const image = process.env.OUTPOST_TEST_IMAGE;
if (!cs || !deviceId || !image) {
  console.error('OUTPOST_TEST_CS, OUTPOST_TEST_DEVICE and OUTPOST_TEST_IMAGE must be set: run this through `go test ./internal/daemon -run NodeSystemModule`');
  process.exit(2);
}

const STEP_TIMEOUT = 15000; // ms; the Go test gives node 60 s in all
const registry = Registry.fromConnectionString(cs);

// twin reads a module twin with the SDK, failing with the hub's answer.
async function twin(moduleId) {
  try {
    const res = await registry.getModuleTwin(deviceId, moduleId);
    return res.responseBody;
  } catch (err) {
    throw new Error(`registry.getModuleTwin(${deviceId}, ${moduleId}): ${err.message} ${err.responseBody || ''}`);
  }
}

describe('system module twins through azure-iothub', { timeout: STEP_TIMEOUT * 4 }, () => {
  it('$edgeAgent holds the deployment and the agent status, by IoT Edge\'s success rule', { timeout: STEP_TIMEOUT }, async () => {
    const t = await twin('$edgeAgent');
    assert.equal(t.moduleId, '$edgeAgent');
    const desired = t.properties.desired;
    const reported = t.properties.reported;
    assert.equal(desired.schemaVersion, '1.1');
    assert.equal(desired.systemModules.edgeHub.settings.image, 'mcr.microsoft.com/azureiotedge-hub:1.5');
    assert.equal(desired.modules.sensor.settings.image, image);
    assert.equal(desired.modules.sensor.status, 'running');
    // What tools check to call a deployment successful (IoT Edge's doc/reported_states_during_deployment.md).
    assert.equal(reported.lastDesiredVersion, desired.$version);
    assert.equal(reported.lastDesiredStatus.code, 200);
    assert.equal(reported.systemModules.edgeHub.status, desired.systemModules.edgeHub.status);
    assert.equal(reported.modules.sensor.runtimeStatus, desired.modules.sensor.status);
    assert.equal(reported.modules.sensor.settings.image, desired.modules.sensor.settings.image);
    assert.equal(reported.schemaVersion, '1.0');
    assert.ok(reported.version && reported.version.version, 'reported.version.version');
    assert.ok(reported.runtime.platform.os, 'reported.runtime.platform.os');
    assert.equal(reported.systemModules.edgeAgent.runtimeStatus, 'running');
    assert.ok(Date.parse(reported.modules.sensor.lastStartTimeUtc), 'reported.modules.sensor.lastStartTimeUtc');
  });

  it('$edgeHub holds the routes as given and the broker status', { timeout: STEP_TIMEOUT }, async () => {
    const t = await twin('$edgeHub');
    assert.equal(t.moduleId, '$edgeHub');
    const desired = t.properties.desired;
    assert.equal(desired.schemaVersion, '1.2');
    assert.equal(desired.routes.upstream, 'FROM /messages/* INTO $upstream');
    assert.deepEqual(desired.routes.toFilter, {
      route: 'FROM /messages/modules/sensor/outputs/out INTO BrokeredEndpoint("/modules/sensor/inputs/in")',
      priority: 1,
      timeToLiveSecs: 3600,
    });
    assert.equal(desired.storeAndForwardConfiguration.timeToLiveSecs, 7200);
    const reported = t.properties.reported;
    assert.equal(reported.schemaVersion, '1.0');
    assert.equal(reported.lastDesiredVersion, desired.$version);
    assert.equal(reported.lastDesiredStatus.code, 200);
  });

  it('lists both system modules, keeps them reserved, and reads $agent as $edgeAgent', { timeout: STEP_TIMEOUT }, async () => {
    const mods = (await registry.getModulesOnDevice(deviceId)).responseBody.map((m) => m.moduleId);
    assert.ok(mods.includes('$edgeAgent') && mods.includes('$edgeHub'), `modules: ${mods}`);
    assert.ok(!mods.includes('$agent'), `modules: ${mods}`);
    await assert.rejects(registry.removeModule(deviceId, '$edgeHub'), (err) => {
      assert.match(String(err.responseBody), /reserved for system modules/);
      return true;
    });
    await assert.rejects(registry.addModule({ deviceId, moduleId: '$edgeHub' }), (err) => {
      assert.match(String(err.responseBody), /reserved for system modules/);
      return true;
    });
    const old = await twin('$agent');
    assert.equal(old.moduleId, '$edgeAgent');
  });
});
