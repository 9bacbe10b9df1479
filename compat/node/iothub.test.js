// Compatibility test: Microsoft's Node.js IoT Hub service SDK (azure-iothub),
// unmodified, against an outpost hub over HTTPS.
//
// Run by internal/hub/compat_node_test.go (go test ./internal/hub -run Node),
// which starts a hub on 127.0.0.1:443 with HostName "localhost" and sets:
//   OUTPOST_TEST_CS       the hub's owner connection string
//   NODE_EXTRA_CA_CERTS   the hub's CA file
// By hand: OUTPOST_TEST_CS=... NODE_EXTRA_CA_CERTS=... node --test compat/node/iothub.test.js
'use strict';

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { Registry } = require('azure-iothub');

const cs = process.env.OUTPOST_TEST_CS;
if (!cs) {
  console.error('OUTPOST_TEST_CS is not set: run this through `go test ./internal/hub -run Node`');
  process.exit(2);
}

// Fresh ids on every run, so a run never meets the leftovers of another.
const suffix = `${Date.now().toString(36)}-${crypto.randomBytes(4).toString('hex')}`;
const deviceId = `node-compat-${suffix}`;
const moduleId = 'tempsensor';

const STEP_TIMEOUT = 15000; // ms; the Go test gives node 60 s in all

const { exchange, fail, call, rejects } = require('./sdkcall');

// Results kept from one step for the next; a step whose input is missing
// says which earlier step failed.
const state = {};
function need(key, step) {
  if (!state[key]) {
    fail(`not run: step ${step} failed, and this step needs its ${key}`); // the suite fails on the first cause
  }
  return state[key];
}

describe(`azure-iothub against the outpost hub (device ${deviceId})`, { timeout: 50000 }, () => {
  const registry = Registry.fromConnectionString(cs);

  it('1. create and get a device', { timeout: STEP_TIMEOUT }, async () => {
    // An IoT Edge device, as `az iot hub device-identity create --edge-enabled` makes:
    // it takes the deployment of step 4.
    const created = await call('registry.create', registry.create({ deviceId, capabilities: { iotEdge: true } }));
    const dev = created.responseBody;
    assert.equal(created.httpResponse.statusCode, 200);
    assert.equal(dev.deviceId, deviceId);
    assert.equal(typeof dev.authentication?.symmetricKey?.primaryKey, 'string', `created device has no primary key: ${JSON.stringify(dev)}`);
    assert.ok(dev.authentication.symmetricKey.primaryKey.length > 0, 'empty primary key');
    assert.ok(dev.authentication.symmetricKey.secondaryKey, 'empty secondary key');
    assert.notEqual(dev.authentication.symmetricKey.primaryKey, dev.authentication.symmetricKey.secondaryKey);
    assert.equal(Buffer.from(dev.authentication.symmetricKey.primaryKey, 'base64').length, 32, 'primary key is not base64 of 32 bytes');
    assert.ok(dev.etag, 'created device has no etag');
    assert.equal(dev.status, 'enabled');

    const got = await call('registry.get', registry.get(deviceId));
    assert.equal(got.responseBody.deviceId, deviceId);
    assert.equal(got.responseBody.authentication.symmetricKey.primaryKey, dev.authentication.symmetricKey.primaryKey);

    // A second create of the same id is a conflict (409).
    const dup = await rejects('registry.create of an existing device', registry.create({ deviceId }));
    assert.equal(dup.response?.statusCode, 409, exchange(dup));
    assert.equal(dup.name, 'DeviceAlreadyExistsError', exchange(dup));

    state.device = dev;
  });

  it('1b. list the devices', { timeout: STEP_TIMEOUT }, async () => {
    need('device', '1');
    const listed = await call('registry.list', registry.list());
    assert.ok(Array.isArray(listed.responseBody), `list is not an array: ${JSON.stringify(listed.responseBody)}`);
    assert.ok(listed.responseBody.some((d) => d.deviceId === deviceId), `list lacks ${deviceId}: ${JSON.stringify(listed.responseBody.map((d) => d.deviceId))}`);
  });

  it('2. add a module, get it, list the modules of the device', { timeout: STEP_TIMEOUT }, async () => {
    need('device', '1');
    const added = await call('registry.addModule', registry.addModule({ deviceId, moduleId }));
    const mod = added.responseBody;
    assert.equal(mod.deviceId, deviceId);
    assert.equal(mod.moduleId, moduleId);
    assert.ok(mod.authentication?.symmetricKey?.primaryKey, `added module has no primary key: ${JSON.stringify(mod)}`);
    assert.ok(mod.etag, 'added module has no etag');

    const got = await call('registry.getModule', registry.getModule(deviceId, moduleId));
    assert.equal(got.responseBody.deviceId, deviceId);
    assert.equal(got.responseBody.moduleId, moduleId);
    assert.equal(got.responseBody.authentication.symmetricKey.primaryKey, mod.authentication.symmetricKey.primaryKey);

    const list = await call('registry.getModulesOnDevice', registry.getModulesOnDevice(deviceId));
    assert.ok(Array.isArray(list.responseBody), `modules is not an array: ${JSON.stringify(list.responseBody)}`);
    assert.ok(list.responseBody.some((m) => m.moduleId === moduleId && m.deviceId === deviceId),
      `modules of ${deviceId} lack ${moduleId}: ${JSON.stringify(list.responseBody)}`);
    state.module = mod;
  });

  it('3. module twin: get, update with If-Match, stale etag is 412', { timeout: STEP_TIMEOUT }, async () => {
    need('module', '2');
    const got = await call('registry.getModuleTwin', registry.getModuleTwin(deviceId, moduleId));
    const twin = got.responseBody;
    assert.equal(twin.deviceId, deviceId);
    assert.equal(twin.moduleId, moduleId);
    assert.equal(typeof twin.properties?.desired?.$version, 'number', `twin has no properties.desired.$version: ${JSON.stringify(twin)}`);
    assert.ok(twin.etag && twin.etag !== '*', `twin has no etag: ${JSON.stringify(twin)}`);
    const oldEtag = twin.etag;
    const oldVersion = twin.properties.desired.$version;

    const patch = { properties: { desired: { interval: 10, unit: 'celsius' } } };
    const updated = await call('registry.updateModuleTwin',
      registry.updateModuleTwin(deviceId, moduleId, patch, oldEtag));
    const t2 = updated.responseBody;
    assert.equal(t2.properties.desired.interval, 10, `updated twin: ${JSON.stringify(t2)}`);
    assert.equal(t2.properties.desired.unit, 'celsius');
    assert.equal(t2.properties.desired.$version, oldVersion + 1);
    assert.ok(t2.etag && t2.etag !== oldEtag, `etag did not change: ${oldEtag} → ${t2.etag}`);

    const stale = await rejects('registry.updateModuleTwin with a stale etag',
      registry.updateModuleTwin(deviceId, moduleId, { properties: { desired: { interval: 99 } } }, oldEtag));
    assert.equal(stale.response?.statusCode, 412, exchange(stale));
    assert.equal(stale.name, 'InvalidEtagError', exchange(stale)); // the SDK's name for 412

    // The refused patch changed nothing.
    const again = await call('registry.getModuleTwin', registry.getModuleTwin(deviceId, moduleId));
    assert.equal(again.responseBody.properties.desired.interval, 10);
    assert.equal(again.responseBody.etag, t2.etag);

    // The same through the SDK's Twin object (it sends its own etag).
    const tw = await call('Twin.get', got.responseBody.get());
    assert.equal(tw.result.etag, t2.etag);
    const up = await call('Twin.update', tw.result.update({ properties: { desired: { unit: null } } }));
    assert.equal(up.result.properties.desired.unit, undefined, `null did not delete unit: ${JSON.stringify(up.result.properties.desired)}`);
    assert.equal(up.result.properties.desired.interval, 10);
    assert.notEqual(up.result.etag, t2.etag);
  });

  it('3b. device twin: getTwin and Twin.update', { timeout: STEP_TIMEOUT }, async () => {
    need('device', '1');
    const got = await call('registry.getTwin', registry.getTwin(deviceId));
    const twin = got.responseBody;
    assert.equal(twin.deviceId, deviceId);
    assert.ok(!twin.moduleId, `a device twin has no moduleId: ${twin.moduleId}`);
    assert.equal(typeof twin.properties?.desired?.$version, 'number', `device twin: ${JSON.stringify(twin)}`);
    const oldEtag = twin.etag;
    const oldVersion = twin.properties.desired.$version;

    const res = await call('Twin.update', twin.update({ tags: { site: 'north' }, properties: { desired: { mode: 'eco' } } }));
    const t2 = res.result;
    assert.equal(t2.tags.site, 'north', `tags: ${JSON.stringify(t2.tags)}`);
    assert.equal(t2.properties.desired.mode, 'eco');
    assert.equal(t2.properties.desired.$version, oldVersion + 1);
    assert.ok(t2.etag && t2.etag !== oldEtag, `etag did not change: ${oldEtag} → ${t2.etag}`);

    const stale = await rejects('registry.updateTwin with a stale etag',
      registry.updateTwin(deviceId, { properties: { desired: { mode: 'boost' } } }, oldEtag));
    assert.equal(stale.response?.statusCode, 412, exchange(stale));
    assert.equal(stale.name, 'InvalidEtagError', exchange(stale));
  });

  it('4. applyConfigurationContentOnDevice with an IoT Edge manifest', { timeout: STEP_TIMEOUT }, async () => {
    need('device', '1');
    const content = {
      modulesContent: {
        $edgeAgent: {
          'properties.desired': {
            schemaVersion: '1.1',
            runtime: {
              type: 'docker',
              settings: { minDockerVersion: 'v1.25', loggingOptions: '', registryCredentials: {} },
            },
            systemModules: {
              edgeAgent: { type: 'docker', settings: { image: 'mcr.microsoft.com/azureiotedge-agent:1.4', createOptions: '{}' } },
              edgeHub: {
                type: 'docker', status: 'running', restartPolicy: 'always',
                settings: { image: 'mcr.microsoft.com/azureiotedge-hub:1.4', createOptions: '{}' },
              },
            },
            modules: {
              tempsensor: {
                version: '1.0', type: 'docker', status: 'running', restartPolicy: 'always',
                settings: { image: 'localhost:5000/tempsensor:1.0', createOptions: '{}' },
              },
            },
          },
        },
        $edgeHub: {
          'properties.desired': {
            schemaVersion: '1.1',
            routes: {},
            storeAndForwardConfiguration: { timeToLiveSecs: 7200 },
          },
        },
        tempsensor: { 'properties.desired': { interval: 5 } },
      },
    };
    const res = await call('registry.applyConfigurationContentOnDevice',
      registry.applyConfigurationContentOnDevice(deviceId, content));
    assert.ok(res.httpResponse.statusCode >= 200 && res.httpResponse.statusCode < 300, `status ${res.httpResponse.statusCode}`);
    state.applied = true;
  });

  it('4b. the manifest sets the desired properties of the tempsensor module twin', { timeout: STEP_TIMEOUT }, async () => {
    need('applied', '4');
    need('module', '2');
    const got = await call('registry.getModuleTwin', registry.getModuleTwin(deviceId, moduleId));
    assert.equal(got.responseBody.properties.desired.interval, 5, `desired after the deployment: ${JSON.stringify(got.responseBody.properties.desired)}`);
  });

  it('5. delete the device; get is then DeviceNotFound', { timeout: STEP_TIMEOUT }, async () => {
    need('device', '1');
    const del = await call('registry.delete', registry.delete(deviceId));
    assert.ok(del.httpResponse.statusCode >= 200 && del.httpResponse.statusCode < 300, `status ${del.httpResponse.statusCode}`);

    const gone = await rejects('registry.get of a deleted device', registry.get(deviceId));
    assert.equal(gone.response?.statusCode, 404, exchange(gone));
    assert.equal(gone.name, 'DeviceNotFoundError', exchange(gone));

    // Its module went with it.
    const mod = await rejects('registry.getModule of a deleted device', registry.getModule(deviceId, moduleId));
    assert.equal(mod.response?.statusCode, 404, exchange(mod));
  });
});
