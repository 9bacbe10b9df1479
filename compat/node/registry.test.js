// Compatibility test: the rest of the registry surface of Microsoft's Node.js
// IoT Hub service SDK (azure-iothub), unmodified, against an outpost hub:
// bulk addDevices/updateDevices/removeDevices, getRegistryStatistics, updates
// that give no keys, leaf devices, the identity fields of twins, and the twin
// limits. Twin replace (PUT /twins/{id}) and GET /statistics/service have no
// method in this SDK: they are sent through the SDK's own REST client.
//
// Run by internal/hub/compat_registry_node_test.go (go test ./internal/hub
// -run NodeRegistry), which starts a hub on 127.0.0.1:443 as "localhost" and
// sets OUTPOST_TEST_CS (the owner connection string) and NODE_EXTRA_CA_CERTS.
'use strict';

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { Registry } = require('azure-iothub');
const { exchange, fail, call, rejects } = require('./sdkcall');

const cs = process.env.OUTPOST_TEST_CS;
if (!cs) {
  console.error('OUTPOST_TEST_CS is not set: run this through `go test ./internal/hub -run NodeRegistry`');
  process.exit(2);
}

const suffix = `${Date.now().toString(36)}-${crypto.randomBytes(4).toString('hex')}`;
const ids = { leaf: `leaf-${suffix}`, off: `off-${suffix}`, edge: `edge-${suffix}`, late: `late-${suffix}` };
const STEP_TIMEOUT = 15000;

// rest sends a request through the SDK's own REST client (its auth, TLS and
// error mapping), for the APIs the SDK has no method for.
function rest(registry, method, path, headers, body) {
  return new Promise((resolve, reject) => {
    registry._restApiClient.executeApiCall(method, `${path}?api-version=2021-04-12`, headers, body, (err, result, response) => {
      if (err) reject(err);
      else resolve({ result, response });
    });
  });
}

const state = {};
function need(key, step) {
  if (!state[key]) fail(`not run: step ${step} failed, and this step needs its ${key}`);
  return state[key];
}

function nested(names, leaf) {
  return names.reduceRight((inner, name) => ({ [name]: inner }), leaf);
}
const ten = ['one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine', 'ten'];

describe(`azure-iothub registry surface against the outpost hub (${suffix})`, { timeout: 50000 }, () => {
  const registry = Registry.fromConnectionString(cs);

  it('1. addDevices creates a batch; a device without capabilities is a leaf device', { timeout: STEP_TIMEOUT }, async () => {
    const res = await call('registry.addDevices', registry.addDevices([
      { deviceId: ids.leaf },
      { deviceId: ids.off, status: 'disabled' },
      { deviceId: ids.edge, capabilities: { iotEdge: true } },
    ]));
    assert.equal(res.httpResponse.statusCode, 200);
    assert.deepEqual(res.responseBody, { isSuccessful: true, errors: [], warnings: [] });
    const leaf = (await call('registry.get', registry.get(ids.leaf))).responseBody;
    assert.equal(leaf.capabilities?.iotEdge, false, JSON.stringify(leaf));
    assert.ok(leaf.authentication.symmetricKey.primaryKey, 'keys generated');
    const edge = (await call('registry.get', registry.get(ids.edge))).responseBody;
    assert.equal(edge.capabilities?.iotEdge, true, JSON.stringify(edge));
    const off = (await call('registry.get', registry.get(ids.off))).responseBody;
    assert.equal(off.status, 'disabled');
    state.leaf = leaf;
  });

  it('2. addDevices with an existing device: per-device errors, the rest applied', { timeout: STEP_TIMEOUT }, async () => {
    need('leaf', 1);
    const err = await rejects('registry.addDevices with an existing device', registry.addDevices([{ deviceId: ids.leaf }, { deviceId: ids.late }]));
    assert.equal(err.response?.statusCode, 400, exchange(err));
    const body = JSON.parse(err.responseBody);
    assert.equal(body.isSuccessful, false, err.responseBody);
    assert.equal(body.errors.length, 1, err.responseBody);
    assert.equal(body.errors[0].deviceId, ids.leaf);
    assert.equal(body.errors[0].errorCode, 'DeviceAlreadyExists');
    assert.ok(body.errors[0].errorStatus, 'errorStatus says what went wrong');
    await call('registry.get of the other device', registry.get(ids.late));
  });

  it('3. registry.update({deviceId, status}) keeps the keys it was not given', { timeout: STEP_TIMEOUT }, async () => {
    const leaf = need('leaf', 1);
    const upd = (await call('registry.update', registry.update({ deviceId: ids.leaf, status: 'disabled' }))).responseBody;
    assert.equal(upd.status, 'disabled');
    assert.deepEqual(upd.authentication.symmetricKey, leaf.authentication.symmetricKey, 'the update regenerated the keys');
    assert.equal(upd.capabilities?.iotEdge, false);
  });

  it('4. updateDevices (forced, and by etag) keeps keys and checks etags', { timeout: STEP_TIMEOUT }, async () => {
    const leaf = need('leaf', 1);
    const res = await call('registry.updateDevices', registry.updateDevices([{ deviceId: ids.leaf, status: 'enabled' }, { deviceId: ids.off, status: 'enabled' }], true));
    assert.equal(res.responseBody.isSuccessful, true, JSON.stringify(res.responseBody));
    const got = (await call('registry.get', registry.get(ids.leaf))).responseBody;
    assert.equal(got.status, 'enabled');
    assert.deepEqual(got.authentication.symmetricKey, leaf.authentication.symmetricKey);
    const err = await rejects('registry.updateDevices with a stale etag', registry.updateDevices([{ deviceId: ids.leaf, etag: leaf.etag, status: 'disabled' }], false));
    assert.equal(err.response?.statusCode, 400, exchange(err));
    const body = JSON.parse(err.responseBody);
    assert.equal(body.errors[0]?.errorCode, 'PreconditionFailed', err.responseBody);
    const ok = await call('registry.updateDevices with the current etag', registry.updateDevices([{ deviceId: ids.leaf, etag: got.etag, status: 'disabled' }], false));
    assert.equal(ok.responseBody.isSuccessful, true);
  });

  it('5. getRegistryStatistics and GET /statistics/service', { timeout: STEP_TIMEOUT }, async () => {
    const stats = (await call('registry.getRegistryStatistics', registry.getRegistryStatistics())).responseBody;
    // This hub is the test's own: exactly the four devices made above.
    assert.deepEqual(stats, { totalDeviceCount: 4, enabledDeviceCount: 3, disabledDeviceCount: 1 });
    const svc = await call('GET /statistics/service', rest(registry, 'GET', '/statistics/service', {}, null));
    assert.deepEqual(svc.result, { connectedDeviceCount: 0 });
  });

  it('6. a leaf device takes no deployment', { timeout: STEP_TIMEOUT }, async () => {
    const content = { modulesContent: { $edgeAgent: { 'properties.desired': { schemaVersion: '1.1', modules: {} } } } };
    const err = await rejects('applyConfigurationContentOnDevice on a leaf device', registry.applyConfigurationContentOnDevice(ids.leaf, content));
    assert.equal(err.response?.statusCode, 400, exchange(err));
    assert.match(err.responseBody, /is not an IoT Edge device/);
    await call('applyConfigurationContentOnDevice on an edge device', registry.applyConfigurationContentOnDevice(ids.edge, content));
  });

  it('7. twins carry the identity fields IoT Hub returns', { timeout: STEP_TIMEOUT }, async () => {
    const dev = (await call('registry.get', registry.get(ids.edge))).responseBody;
    const twin = (await call('registry.getTwin', registry.getTwin(ids.edge))).responseBody;
    for (const k of ['deviceEtag', 'status', 'statusUpdateTime', 'connectionState', 'lastActivityTime', 'cloudToDeviceMessageCount', 'authenticationType', 'x509Thumbprint', 'capabilities', 'modelId', 'version', 'etag']) {
      assert.ok(k in twin, `device twin has no ${k}: ${JSON.stringify(twin)}`);
    }
    assert.equal(twin.deviceEtag, dev.etag);
    assert.equal(twin.authenticationType, 'sas');
    assert.deepEqual(twin.x509Thumbprint, { primaryThumbprint: null, secondaryThumbprint: null });
    assert.deepEqual(twin.capabilities, { iotEdge: true });
    assert.equal(twin.connectionState, 'Disconnected');
    const modules = (await call('registry.getModulesOnDevice', registry.getModulesOnDevice(ids.edge))).responseBody;
    const agent = modules.find((m) => m.moduleId.startsWith('$'));
    assert.ok(agent, `an edge device has its system module: ${JSON.stringify(modules)}`);
    const mt = (await call('registry.getModuleTwin', registry.getModuleTwin(ids.edge, agent.moduleId))).responseBody;
    assert.equal(mt.moduleId, agent.moduleId);
    assert.equal(mt.deviceEtag, agent.etag);
    for (const k of ['status', 'connectionState', 'lastActivityTime', 'cloudToDeviceMessageCount', 'authenticationType', 'x509Thumbprint', 'modelId']) {
      assert.ok(k in mt, `module twin has no ${k}: ${JSON.stringify(mt)}`);
    }
    state.twin = twin;
  });

  it('8. twin limits as IoT Hub: ten nested objects are fine, eleven and unsafe integers are not', { timeout: STEP_TIMEOUT }, async () => {
    const twin = need('twin', 7);
    const ok = (await call('registry.updateTwin with ten nested objects', registry.updateTwin(ids.edge, { tags: nested(ten, { property: 'value' }) }, twin.etag))).responseBody;
    assert.equal(ok.tags.one.two.three.four.five.six.seven.eight.nine.ten.property, 'value');
    const deep = await rejects('registry.updateTwin with eleven nested objects', registry.updateTwin(ids.edge, { tags: nested([...ten, 'eleven'], { p: 1 }) }, '*'));
    assert.equal(deep.response?.statusCode, 400, exchange(deep));
    assert.match(deep.responseBody, /tags\.one\.two\.three\.four\.five\.six\.seven\.eight\.nine\.ten\.eleven: depth 11 exceeds 10/);
    const big = await rejects('registry.updateTwin with 2^52', registry.updateTwin(ids.edge, { properties: { desired: { n: 4503599627370496 } } }, '*'));
    assert.equal(big.response?.statusCode, 400, exchange(big));
    assert.match(big.responseBody, /properties\.desired\.n: integer 4503599627370496 is out of range/);
    await call('registry.updateTwin with 2^52-1', registry.updateTwin(ids.edge, { properties: { desired: { n: 4503599627370495 } } }, '*'));
    state.patched = true;
  });

  it('9. PUT /twins/{id} replaces tags and desired, with If-Match', { timeout: STEP_TIMEOUT }, async () => {
    need('patched', 8);
    const cur = (await call('registry.getTwin', registry.getTwin(ids.edge))).responseBody;
    const stale = await rejects('PUT /twins with a stale etag', rest(registry, 'PUT', `/twins/${encodeURIComponent(ids.edge)}`, { 'Content-Type': 'application/json; charset=utf-8', 'If-Match': '"AAAAAAAAAAE="' }, { tags: { site: 'b' } }));
    assert.equal(stale.response?.statusCode, 412, exchange(stale));
    const put = await call('PUT /twins', rest(registry, 'PUT', `/twins/${encodeURIComponent(ids.edge)}`, { 'Content-Type': 'application/json; charset=utf-8', 'If-Match': `"${cur.etag}"` }, { tags: { site: 'b' }, properties: { desired: { z: 3 } } }));
    const t = put.result;
    assert.deepEqual(t.tags, { site: 'b' });
    assert.equal(t.properties.desired.z, 3);
    assert.equal(t.properties.desired.n, undefined, 'replace keeps no desired property it was not given');
    assert.equal(t.properties.desired.$version, cur.properties.desired.$version + 1);
  });

  it('10. removeDevices (by etag, then forced)', { timeout: STEP_TIMEOUT }, async () => {
    need('leaf', 1);
    const err = await rejects('registry.removeDevices with a stale etag', registry.removeDevices([{ deviceId: ids.leaf, etag: need('leaf', 1).etag }], false));
    assert.equal(err.response?.statusCode, 400, exchange(err));
    assert.equal(JSON.parse(err.responseBody).errors[0]?.errorCode, 'PreconditionFailed', err.responseBody);
    const res = await call('registry.removeDevices', registry.removeDevices(Object.values(ids).map((deviceId) => ({ deviceId })), true));
    assert.equal(res.responseBody.isSuccessful, true, JSON.stringify(res.responseBody));
    const gone = await rejects('registry.get of a removed device', registry.get(ids.leaf));
    assert.equal(gone.response?.statusCode, 404, exchange(gone));
    const stats = (await call('registry.getRegistryStatistics', registry.getRegistryStatistics())).responseBody;
    assert.equal(stats.totalDeviceCount, 0);
  });
});
