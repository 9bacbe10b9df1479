// Compatibility test: Microsoft's Node.js IoT Hub service SDK (azure-iothub),
// unmodified, creating, reading, updating and removing configurations
// (automatic deployments, device and module configurations) on an outpost
// hub, and the hub applying one of each.
//
// Run by internal/hub/configurations_node_test.go
// (go test ./internal/hub -run NodeConfigurations), which starts a hub on
// 127.0.0.1:443 with HostName "localhost" and sets:
//   OUTPOST_TEST_CS       the hub's owner connection string
//   NODE_EXTRA_CA_CERTS   the hub's CA file
//   OUTPOST_TEST_CONTENT  a modulesContent (JSON) to deploy
'use strict';

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { Registry } = require('azure-iothub');

const cs = process.env.OUTPOST_TEST_CS;
if (!cs) {
  console.error('OUTPOST_TEST_CS is not set: run this through `go test ./internal/hub -run NodeConfigurations`');
  process.exit(2);
}
const modulesContent = JSON.parse(process.env.OUTPOST_TEST_CONTENT);
const suffix = `${Date.now().toString(36)}-${crypto.randomBytes(4).toString('hex')}`;
const registry = Registry.fromConnectionString(cs);

// why says what the hub answered behind an SDK error.
function why(err) {
  if (!err || typeof err !== 'object') return String(err);
  const res = err.response;
  return `${err.name}: ${err.message}` + (res ? ` (${res.statusCode}: ${err.responseBody})` : '');
}

async function call(what, fn) {
  try {
    return await fn();
  } catch (err) {
    assert.fail(`${what}: ${why(err)}`);
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

describe('configurations through azure-iothub', () => {
  const deviceId = `node-cfg-${suffix}`;
  const env = `prod-${suffix}`;

  it('adds, gets, lists, updates and removes a device configuration (the SDK e2e shape)', async () => {
    const config = {
      id: `node_e2e_device_${suffix}`,
      content: { deviceContent: { 'properties.desired': { prop1: 'foo' } } },
      targetCondition: '',
      priority: 20,
    };
    await call('addConfiguration', () => registry.addConfiguration(config));
    const { responseBody: found } = await call('getConfiguration', () => registry.getConfiguration(config.id));
    assert.equal(found.id, config.id);
    assert.deepEqual(found.content, config.content);
    assert.equal(found.schemaVersion, '1.0');
    assert.ok(found.etag, 'no etag');
    const { responseBody: all } = await call('getConfigurations', () => registry.getConfigurations());
    const listed = all.find((c) => c.id === config.id);
    assert.ok(listed, 'not in getConfigurations');
    assert.deepEqual(listed.content, config.content);

    found.priority = 99;
    await call('updateConfiguration', () => registry.updateConfiguration(found));
    const { responseBody: updated } = await call('getConfiguration after update', () => registry.getConfiguration(config.id));
    assert.equal(updated.priority, 99);
    assert.notEqual(updated.etag, found.etag);
    // A stale etag is refused; forceUpdate ("*") is not.
    found.priority = 1;
    await assert.rejects(registry.updateConfiguration(found), (err) => err.response && err.response.statusCode === 412);
    await call('updateConfiguration with forceUpdate', () => registry.updateConfiguration(found, true));

    await call('removeConfiguration', () => registry.removeConfiguration(config.id));
    await assert.rejects(registry.getConfiguration(config.id), (err) => err.response && err.response.statusCode === 404);
  });

  it('deploys an edge deployment to the device its target condition matches', async () => {
    await call('create device', () => registry.create({ deviceId, capabilities: { iotEdge: true } }));
    await call('tag the device', () => registry.updateTwin(deviceId, { tags: { environment: env } }, '*'));
    const config = {
      id: `node-deploy-${suffix}`,
      content: { modulesContent },
      targetCondition: `tags.environment='${env}'`,
      priority: 10,
      labels: { by: 'node' },
    };
    await call('addConfiguration', () => registry.addConfiguration(config));
    let applied = 0;
    for (let i = 0; i < 600 && applied !== 1; i++) {
      const { responseBody: c } = await call('getConfiguration', () => registry.getConfiguration(config.id));
      applied = c.systemMetrics && c.systemMetrics.results.appliedCount;
      if (applied !== 1) await sleep(100);
    }
    assert.equal(applied, 1, 'appliedCount never reached 1');
    const { responseBody: c } = await call('getConfiguration', () => registry.getConfiguration(config.id));
    assert.equal(c.systemMetrics.results.targetedCount, 1);
    assert.deepEqual(c.labels, { by: 'node' });
    assert.ok(c.createdTimeUtc && c.lastUpdatedTimeUtc, 'times missing');
    const { responseBody: agent } = await call('getModuleTwin $edgeAgent', () => registry.getModuleTwin(deviceId, process.env.OUTPOST_TEST_AGENT));
    assert.deepEqual(agent.configurations, { [config.id]: { status: 'Applied' } });
    await call('removeConfiguration', () => registry.removeConfiguration(config.id));
    await call('delete device', () => registry.delete(deviceId));
  });

  it('applies a device configuration (deviceContent) to the device twins it targets', async () => {
    const leafId = `node-adm-${suffix}`;
    await call('create leaf device', () => registry.create({ deviceId: leafId }));
    await call('tag the leaf', () => registry.updateTwin(leafId, { tags: { kind: `chiller-${suffix}` } }, '*'));
    const config = {
      id: `node-adm-${suffix}`,
      content: { deviceContent: { 'properties.desired.chillerWaterSettings': { temperature: 38, pressure: 78 } } },
      targetCondition: `tags.kind='chiller-${suffix}'`,
      priority: 10,
    };
    await call('addConfiguration', () => registry.addConfiguration(config));
    let twin;
    for (let i = 0; i < 600; i++) {
      ({ responseBody: twin } = await call('getTwin', () => registry.getTwin(leafId)));
      if (twin.properties.desired.chillerWaterSettings) break;
      await sleep(100);
    }
    assert.deepEqual(twin.properties.desired.chillerWaterSettings, { temperature: 38, pressure: 78 });
    assert.deepEqual(twin.configurations, { [config.id]: { status: 'Applied' } });
    const { responseBody: c } = await call('getConfiguration', () => registry.getConfiguration(config.id));
    assert.equal(c.systemMetrics.results.appliedCount, 1);
    assert.equal(c.systemMetrics.results.targetedCount, 1);
    await call('removeConfiguration', () => registry.removeConfiguration(config.id));
    await call('delete leaf device', () => registry.delete(leafId));
  });

  it('applies a module configuration (moduleContent) to the module twins it targets', async () => {
    const devId = `node-mod-${suffix}`;
    const kind = `chiller-${suffix}`;
    await call('create device', () => registry.create({ deviceId: devId }));
    for (const [moduleId, tags] of [['chiller', { kind }], ['pump', { kind: 'pump' }]]) {
      await call(`addModule ${moduleId}`, () => registry.addModule({ deviceId: devId, moduleId }));
      await call(`tag module ${moduleId}`, () => registry.updateModuleTwin(devId, moduleId, { tags }, '*'));
    }
    const config = {
      id: `node-mod-${suffix}`,
      content: { moduleContent: { 'properties.desired.chillerWaterSettings': { temperature: 38, pressure: 78 } } },
      targetCondition: `FROM devices.modules WHERE tags.kind = '${kind}'`,
      priority: 10,
    };
    await call('addConfiguration', () => registry.addConfiguration(config));
    let twin;
    for (let i = 0; i < 600; i++) {
      ({ responseBody: twin } = await call('getModuleTwin', () => registry.getModuleTwin(devId, 'chiller')));
      if (twin.properties.desired.chillerWaterSettings) break;
      await sleep(100);
    }
    assert.deepEqual(twin.properties.desired.chillerWaterSettings, { temperature: 38, pressure: 78 });
    assert.deepEqual(twin.configurations, { [config.id]: { status: 'Applied' } });
    const { responseBody: pump } = await call('getModuleTwin pump', () => registry.getModuleTwin(devId, 'pump'));
    assert.equal(pump.properties.desired.chillerWaterSettings, undefined, 'pump is not targeted');
    const { responseBody: c } = await call('getConfiguration', () => registry.getConfiguration(config.id));
    assert.deepEqual(c.content, config.content);
    assert.equal(c.systemMetrics.results.appliedCount, 1);
    assert.equal(c.systemMetrics.results.targetedCount, 1);
    // A module configuration's condition is over module twins: IoT Hub's form is required.
    await assert.rejects(
      registry.addConfiguration({ ...config, id: `node-mod-bad-${suffix}`, targetCondition: `tags.kind = '${kind}'` }),
      (err) => err.response && err.response.statusCode === 400,
    );
    await call('removeConfiguration', () => registry.removeConfiguration(config.id));
    await call('delete device', () => registry.delete(devId));
  });
});
