// Compatibility test: the query API of Microsoft's Node.js IoT Hub service
// SDK (azure-iothub, unmodified) against an outpost hub over HTTPS:
// registry.createQuery(sql, pageSize), nextAsTwin() paging to the end, and
// next() for projections and COUNT() … GROUP BY.
//
// Run by TestNodeQuery in internal/hub/query_node_test.go, which starts a hub
// on 127.0.0.1:443 as "localhost", makes the fleet below and sets
// OUTPOST_TEST_CS (the owner connection string), OUTPOST_TEST_FLEET (the
// device id prefix) and NODE_EXTRA_CA_CERTS (the hub's CA).
'use strict';

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const { Registry } = require('azure-iothub');

const cs = process.env.OUTPOST_TEST_CS;
const prefix = process.env.OUTPOST_TEST_FLEET;
if (!cs || !prefix) {
  console.error('OUTPOST_TEST_CS or OUTPOST_TEST_FLEET is not set: run this through `go test ./internal/hub -run NodeQuery`');
  process.exit(2);
}
// The fleet: devices PREFIX-00 … PREFIX-24; the even ones have
// tags.location.plant 'Hannover01', the odd ones 'Berlin'; each has a module
// "sensor" whose desired interval is the device's number.
const DEVICES = 25;
const id = (i) => `${prefix}-${String(i).padStart(2, '0')}`;
const registry = Registry.fromConnectionString(cs);

// drain pages through a query with fn (nextAsTwin or next) to the end.
async function drain(query, fn) {
  const items = [];
  let pages = 0;
  while (query.hasMoreResults) {
    const { result } = await query[fn]();
    items.push(...result);
    pages++;
    assert.ok(pages <= 100, 'the query does not end');
  }
  return { items, pages };
}

describe('azure-iothub registry.createQuery against outpost', () => {
  it('pages device twins with nextAsTwin', async () => {
    const query = registry.createQuery(`SELECT * FROM devices WHERE STARTSWITH(deviceId, '${prefix}-') AND tags.location.plant = 'Hannover01'`, 5);
    const { items, pages } = await drain(query, 'nextAsTwin');
    const want = [];
    for (let i = 0; i < DEVICES; i += 2) want.push(id(i));
    assert.deepEqual(items.map((t) => t.deviceId), want);
    assert.equal(pages, 3, 'pages of 5: 13 twins');
    const twin = items[1];
    assert.equal(twin.constructor.name, 'Twin');
    assert.equal(twin.tags.location.plant, 'Hannover01');
    assert.equal(typeof twin.etag, 'string');
    assert.equal(twin.properties.desired.$version, 1);
    // A twin from a query is a live Twin: get() reads it again through the registry.
    const { result } = await twin.get();
    assert.equal(result.deviceId, id(2));
    assert.equal(result.etag, twin.etag);
  });

  it('pages module twins with nextAsTwin', async () => {
    const query = registry.createQuery(`SELECT * FROM devices.modules WHERE moduleId = 'sensor' AND properties.desired.interval >= 20 AND STARTSWITH(deviceId, '${prefix}-')`, 2);
    const { items } = await drain(query, 'nextAsTwin');
    assert.deepEqual(items.map((t) => `${t.deviceId}/${t.moduleId}`), [20, 21, 22, 23, 24].map((i) => `${id(i)}/sensor`));
    assert.equal(items[0].properties.desired.interval, 20);
  });

  it('returns projections with next', async () => {
    const query = registry.createQuery(`SELECT deviceId, tags.location.plant AS plant FROM devices WHERE deviceId IN ['${id(3)}', '${id(4)}']`);
    const { result, message } = await query.next();
    assert.deepEqual(result, [{ deviceId: id(3), plant: 'Berlin' }, { deviceId: id(4), plant: 'Hannover01' }]);
    assert.equal(message.headers['x-ms-item-type'], 'raw');
    assert.equal(query.hasMoreResults, false);
  });

  it('counts with COUNT() and GROUP BY', async () => {
    const query = registry.createQuery(`SELECT tags.location.plant AS plant, COUNT() AS n FROM devices WHERE STARTSWITH(deviceId, '${prefix}-') GROUP BY tags.location.plant`);
    const { items } = await drain(query, 'next');
    assert.deepEqual(items, [{ plant: 'Hannover01', n: 13 }, { plant: 'Berlin', n: 12 }]);
    const total = registry.createQuery(`SELECT COUNT() AS total FROM devices.modules WHERE STARTSWITH(deviceId, '${prefix}-')`);
    const { result } = await total.next();
    assert.ok(result[0].total >= 2 * DEVICES, `COUNT() of module twins: ${JSON.stringify(result)}`);
  });

  it('gets a 400 naming the position for a query that does not parse', async () => {
    const query = registry.createQuery('SELECT * FROM devices WHERE tags.x = = 1');
    await assert.rejects(query.next(), (err) => {
      assert.equal(err.response?.statusCode, 400);
      assert.match(err.responseBody, /position 38: expected an expression/);
      return true;
    });
  });
});
