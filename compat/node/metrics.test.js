// Compatibility test: Microsoft's Node.js IoT Hub service SDK (azure-iothub),
// unmodified, monitoring an automatic deployment as the Azure portal does:
// a custom metric over the $edgeAgent twins' configurations.[[id]].status,
// and the same query through createQuery(...).nextAsTwin().
//
// Run by internal/hub/configurations_metrics_node_test.go
// (go test ./internal/hub -run NodeDeploymentMetrics), which starts a hub on
// 127.0.0.1:443 with HostName "localhost" and sets:
//   OUTPOST_TEST_CS       the hub's owner connection string
//   NODE_EXTRA_CA_CERTS   the hub's CA file
//   OUTPOST_TEST_CONTENT  a modulesContent (JSON) to deploy
'use strict';

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { Registry } = require('azure-iothub');
const { call } = require('./sdkcall');

const cs = process.env.OUTPOST_TEST_CS;
if (!cs) {
  console.error('OUTPOST_TEST_CS is not set: run this through `go test ./internal/hub -run NodeDeploymentMetrics`');
  process.exit(2);
}
const modulesContent = JSON.parse(process.env.OUTPOST_TEST_CONTENT);
const suffix = `${Date.now().toString(36)}-${crypto.randomBytes(4).toString('hex')}`;
const registry = Registry.fromConnectionString(cs);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

describe('deployment metrics through azure-iothub', () => {
  it('counts the devices a deployment is applied to with configurations.[[id]]', async () => {
    const env = `prod-${suffix}`;
    const inside = `node-metric-in-${suffix}`;
    const outside = `node-metric-out-${suffix}`;
    for (const id of [inside, outside]) {
      await call(`create ${id}`, registry.create({ deviceId: id, capabilities: { iotEdge: true } }));
    }
    await call('tag the device', registry.updateTwin(inside, { tags: { environment: env } }, '*'));
    const id = `node-metric-${suffix}`;
    const applied = `SELECT deviceId FROM devices.modules WHERE moduleId = '$edgeAgent' AND configurations.[[${id}]].status = 'Applied'`;
    await call('addConfiguration', registry.addConfiguration({
      id,
      content: { modulesContent },
      targetCondition: `tags.environment='${env}'`,
      priority: 10,
      metrics: { queries: { applied } },
    }));
    let results = {};
    for (let i = 0; i < 600 && results.applied !== 1; i++) {
      const { responseBody: c } = await call('getConfiguration', registry.getConfiguration(id));
      results = (c.metrics && c.metrics.results) || {};
      if (results.applied !== 1) await sleep(100);
    }
    assert.equal(results.applied, 1, `custom metric never counted 1: ${JSON.stringify(results)}`);

    const query = registry.createQuery(`SELECT * FROM devices.modules WHERE configurations.[[${id}]].status = 'Applied'`, 10);
    const { result: twins } = await call('query nextAsTwin', query.nextAsTwin());
    assert.deepEqual(twins.map((t) => `${t.deviceId}/${t.moduleId}`), [`${inside}/$edgeAgent`]);
    assert.deepEqual(twins[0].configurations, { [id]: { status: 'Applied' } });

    await call('removeConfiguration', registry.removeConfiguration(id));
    for (const d of [inside, outside]) {
      await call(`delete ${d}`, registry.delete(d));
    }
  });
});
