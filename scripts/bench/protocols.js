// What Microsoft's Node SDKs (compat/node's) get from a hub for the protocols it does
// not speak, and after how long. Run by scripts/bench/protocols.sh; prints one JSON line.
//   node protocols.js amqp|amqpws|mqttws CONNECTION_STRING
'use strict';
const [which, cs] = process.argv.slice(2);
let start;
function report(err) {
  console.log(JSON.stringify({
    which, ms: Date.now() - start, error: err ? `${err.name}: ${err.message}` : null,
    amqp: err?.amqpError?.condition ? `${err.amqpError.condition}: ${err.amqpError.description}` : undefined,
  }));
  process.exit(0);
}
let client;
if (which === 'amqp' || which === 'amqpws') {
  const iothub = require('azure-iothub');
  client = iothub.Client.fromConnectionString(cs, which === 'amqp' ? iothub.Amqp : iothub.AmqpWs);
} else if (which === 'mqttws') {
  client = require('azure-iot-device').Client.fromConnectionString(cs, require('azure-iot-device-mqtt').MqttWs);
} else {
  console.error(`unknown transport ${which}: amqp, amqpws or mqttws`);
  process.exit(2);
}
start = Date.now(); // the SDK loaded: time open() alone
client.open().then(() => report(null), report);
