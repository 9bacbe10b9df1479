// Module messages through the outpost daemon with Microsoft's Node.js
// module SDK (azure-iot-device + azure-iot-device-mqtt), unmodified.
//
// Run by internal/daemon/messages_node_test.go, which starts a hub, a
// daemon whose broker listens on 127.0.0.1:8883 with the routes
//   alerts: FROM /messages/modules/a/outputs/out1 WHERE temperature > 30 AND site = 'north yard' INTO BrokeredEndpoint("/modules/b/inputs/in1")
//   up:     FROM /messages/modules/a/outputs/out1 INTO $upstream
// and sets OUTPOST_A_CS, OUTPOST_B_CS (module connection strings with
// GatewayHostName=localhost) and OUTPOST_CA (the device CA).
'use strict';

const fs = require('node:fs');
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { ModuleClient, Message } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');

const STEP_TIMEOUT = 60000;

async function connect(cs) {
  const client = ModuleClient.fromConnectionString(cs, Mqtt);
  await client.setOptions({ ca: fs.readFileSync(process.env.OUTPOST_CA, 'utf8') });
  await client.open();
  return client;
}

describe('module messages', () => {
  let a;
  let b;
  const received = [];
  let arrived = () => {};

  before(async () => {
    a = await connect(process.env.OUTPOST_A_CS);
    b = await connect(process.env.OUTPOST_B_CS);
    b.on('inputMessage', (input, msg) => {
      received.push({ input, msg });
      b.complete(msg, () => {});
      arrived();
    });
    // on('inputMessage') subscribes in the background; no need to wait:
    // what is routed to b before it subscribes is kept for it.
  });

  after(async () => {
    await a.close();
    await b.close();
  });

  it('sendOutputEvent → WHERE route → inputMessage, with its properties', { timeout: STEP_TIMEOUT }, async () => {
    const hot = new Message(JSON.stringify({ temperature: 35 }));
    hot.messageId = 'hot-1';
    hot.correlationId = 'corr-1';
    hot.contentType = 'application/json';
    hot.contentEncoding = 'utf-8';
    hot.properties.add('temperature', '35');
    hot.properties.add('site', 'north yard');
    const cold = new Message(JSON.stringify({ temperature: 20 }));
    cold.messageId = 'cold-1';
    cold.properties.add('temperature', '20');
    cold.properties.add('site', 'north yard');
    const got = new Promise((resolve) => { arrived = () => { if (received.length >= 1) resolve(); }; });
    await a.sendOutputEvent('out1', cold); // resolves on the PUBACK: durable on the device
    await a.sendOutputEvent('out1', hot);
    await got;
    assert.equal(received.length, 1, `received ${JSON.stringify(received.map((r) => r.msg.messageId))}`);
    const { input, msg } = received[0];
    assert.equal(input, 'in1');
    assert.equal(msg.messageId, 'hot-1');
    assert.equal(msg.correlationId, 'corr-1');
    assert.equal(msg.contentType, 'application/json');
    assert.equal(msg.to, '/devices/' + process.env.OUTPOST_DEVICE + '/modules/b/inputs/in1');
    assert.equal(msg.properties.getValue('site'), 'north yard');
    assert.equal(msg.properties.getValue('temperature'), '35');
    assert.deepEqual(JSON.parse(msg.data.toString()), { temperature: 35 });
  });

  it('sendOutputEvent → $upstream: both messages reach the hub', { timeout: STEP_TIMEOUT }, async () => {
    // The Go side reads them at the hub, as `outpost messages watch` does.
    const m = new Message('done');
    m.messageId = 'last';
    await a.sendOutputEvent('out1', m);
    process.stdout.write('SENT-ALL\n');
  });
});
