// Compatibility driver: Microsoft's Node.js module SDK (azure-iot-device +
// azure-iot-device-mqtt), unmodified, against the outpost module broker.
//
// Run by internal/broker/compat_node_test.go, which starts a hub, the
// device's syncer and the broker on 127.0.0.1:8883 (the SDK always connects
// to port 8883 of GatewayHostName), and sets:
//   OUTPOST_MODULE_CS  the module's connection string, with GatewayHostName=localhost
//   OUTPOST_CA         the CA file the broker's certificate chains to
//   OUTPOST_TOKEN_TTL  optional: token lifetime in seconds (renewed at half)
// The test drives it line by line: each stdin line is a command, each
// stdout line a JSON event.
//   get            → {"step":"twin","desired":…,"reported":…}
//   report {json}  → {"step":"reported"} once the broker acknowledged it
//   close          → closes the client and exits 0
// and, unasked, {"step":"desired","patch":…} for each desired change.
'use strict';

const fs = require('node:fs');
const readline = require('node:readline');
const { ModuleClient, SharedAccessKeyAuthenticationProvider } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');

function say(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function fail(step, err) {
  say({ step: 'error', during: step, error: String(err && (err.stack || err.message) || err) });
  process.exit(1);
}

async function main() {
  const cs = process.env.OUTPOST_MODULE_CS;
  if (!cs) {
    console.error('OUTPOST_MODULE_CS is not set: run this through `go test ./internal/broker -run Node`');
    process.exit(2);
  }
  // OUTPOST_TOKEN_TTL (seconds): short-lived tokens, which the SDK renews
  // by connecting again with a new one halfway through their life.
  const ttl = Number(process.env.OUTPOST_TOKEN_TTL || 0);
  const client = ttl
    ? ModuleClient.fromAuthenticationProvider(SharedAccessKeyAuthenticationProvider.fromConnectionString(cs, ttl, Math.floor(ttl / 2)), Mqtt)
    : ModuleClient.fromConnectionString(cs, Mqtt);
  client.on('error', (err) => fail('client', err));
  await client.setOptions({ ca: fs.readFileSync(process.env.OUTPOST_CA, 'utf8') });
  await client.open();
  say({ step: 'open' });
  const twin = await client.getTwin();
  // The desired events: the patch as the SDK hands it to a module.
  twin.on('properties.desired', (patch) => say({ step: 'desired', patch }));

  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    const [cmd, ...rest] = line.split(' ');
    try {
      switch (cmd) {
        case 'get': {
          const t = await client.getTwin();
          await new Promise((resolve, reject) => t.get((err) => (err ? reject(err) : resolve())));
          say({ step: 'twin', desired: t.properties.desired, reported: t.properties.reported });
          break;
        }
        case 'report': {
          const patch = JSON.parse(rest.join(' '));
          await new Promise((resolve, reject) => twin.properties.reported.update(patch, (err) => (err ? reject(err) : resolve())));
          say({ step: 'reported' });
          break;
        }
        case 'close':
          await client.close();
          say({ step: 'closed' });
          process.exit(0);
          break;
        default:
          fail('command', new Error(`unknown command ${JSON.stringify(line)}`));
      }
    } catch (err) {
      fail(cmd, err);
    }
  }
}

main().catch((err) => fail('main', err));
