// Compatibility test: parent and child devices through Microsoft's Node.js IoT
// Hub service SDK (azure-iothub), unmodified, against an outpost hub: an edge
// device's deviceScope, a leaf device made its child with deviceScope, the
// scopes in twins and queries, updates that keep or remove the parent, and
// the refusals.
//
// Run by internal/hub/compat_registry_node_test.go (go test ./internal/hub
// -run NodeScopes), which starts a hub on 127.0.0.1:443 as "localhost" and
// sets OUTPOST_TEST_CS (the owner connection string) and NODE_EXTRA_CA_CERTS.
'use strict';

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { Registry } = require('azure-iothub');
const { exchange, fail, call, rejects } = require('./sdkcall');

const cs = process.env.OUTPOST_TEST_CS;
if (!cs) {
  console.error('OUTPOST_TEST_CS is not set: run this through `go test ./internal/hub -run NodeScopes`');
  process.exit(2);
}

const suffix = `${Date.now().toString(36)}-${crypto.randomBytes(4).toString('hex')}`;
const ids = { edge: `gw-${suffix}`, leaf: `leaf-${suffix}`, other: `other-${suffix}` };
const STEP_TIMEOUT = 15000;
const state = {};
function need(key, step) {
  if (!state[key]) fail(`not run: step ${step} failed, and this step needs its ${key}`);
  return state[key];
}

describe(`azure-iothub parent and child devices against the outpost hub (${suffix})`, { timeout: 50000 }, () => {
  const registry = Registry.fromConnectionString(cs);

  it('1. an edge device gets its own deviceScope', { timeout: STEP_TIMEOUT }, async () => {
    const edge = (await call('registry.create edge', registry.create({ deviceId: ids.edge, capabilities: { iotEdge: true } }))).responseBody;
    assert.equal(edge.deviceScope, `ms-azure-iot-edge://${ids.edge}-${edge.generationId}`, JSON.stringify(edge));
    assert.ok(!edge.parentScopes || edge.parentScopes.length === 0, JSON.stringify(edge));
    state.edge = edge;
  });

  it('2. registry.create({deviceId, deviceScope}) makes a child', { timeout: STEP_TIMEOUT }, async () => {
    const edge = need('edge', 1);
    const leaf = (await call('registry.create leaf', registry.create({ deviceId: ids.leaf, deviceScope: edge.deviceScope }))).responseBody;
    assert.equal(leaf.capabilities?.iotEdge, false);
    assert.equal(leaf.deviceScope, edge.deviceScope);
    assert.deepEqual(leaf.parentScopes, [edge.deviceScope]);
    const got = (await call('registry.get', registry.get(ids.leaf))).responseBody;
    assert.equal(got.deviceScope, edge.deviceScope);
    const twin = (await call('registry.getTwin', registry.getTwin(ids.leaf))).responseBody;
    assert.equal(twin.deviceScope, edge.deviceScope, JSON.stringify(twin));
    assert.deepEqual(twin.parentScopes, [edge.deviceScope]);
    state.leaf = leaf;
  });

  it('3. a query finds the children by scope', { timeout: STEP_TIMEOUT }, async () => {
    const edge = need('edge', 1);
    need('leaf', 2);
    const q = registry.createQuery(`SELECT deviceId FROM devices WHERE deviceScope = '${edge.deviceScope}' AND capabilities.iotEdge = false`, 10);
    const { result } = await call('query next', q.next());
    assert.deepEqual(result, [{ deviceId: ids.leaf }]);
  });

  it('4. registry.update without scopes keeps the parent; deviceScope "" removes it', { timeout: STEP_TIMEOUT }, async () => {
    const edge = need('edge', 1);
    need('leaf', 2);
    const kept = (await call('registry.update status', registry.update({ deviceId: ids.leaf, status: 'disabled' }))).responseBody;
    assert.equal(kept.deviceScope, edge.deviceScope, JSON.stringify(kept));
    const cleared = (await call('registry.update deviceScope ""', registry.update({ deviceId: ids.leaf, deviceScope: '' }))).responseBody;
    assert.ok(!cleared.deviceScope, JSON.stringify(cleared));
    assert.ok(!cleared.parentScopes || cleared.parentScopes.length === 0, JSON.stringify(cleared));
    const again = (await call('registry.update deviceScope', registry.update({ deviceId: ids.leaf, deviceScope: edge.deviceScope }))).responseBody;
    assert.equal(again.deviceScope, edge.deviceScope);
  });

  it('5. only an existing edge device can be a parent', { timeout: STEP_TIMEOUT }, async () => {
    const leaf = need('leaf', 2);
    const underLeaf = await rejects('a child of a leaf device', registry.create({ deviceId: ids.other, deviceScope: `ms-azure-iot-edge://${ids.leaf}-${leaf.generationId}` }));
    assert.equal(underLeaf.response?.statusCode, 400, exchange(underLeaf));
    assert.match(underLeaf.responseBody, /only an IoT Edge device/);
    const ghost = await rejects('a child of no device', registry.create({ deviceId: ids.other, deviceScope: 'ms-azure-iot-edge://nobody-636000000000000000' }));
    assert.equal(ghost.response?.statusCode, 400, exchange(ghost));
    assert.match(ghost.responseBody, /does not exist/);
  });

  it('6. deleting the parent removes it from its children', { timeout: STEP_TIMEOUT }, async () => {
    need('leaf', 2);
    await call('registry.delete edge', registry.delete(ids.edge));
    const got = (await call('registry.get', registry.get(ids.leaf))).responseBody;
    assert.ok(!got.deviceScope, JSON.stringify(got));
  });
});
