// Drives Microsoft's azure-iot-device module client (unmodified) against
// outpost's workload API: ModuleClient.fromEnvironment reads the IOTEDGE_*
// variables and the trust bundle from IOTEDGE_WORKLOADURI, and its
// authentication provider signs the module's SAS token there. No MQTT: the
// transport handed to fromEnvironment only records what the SDK gives it.
// Prints one JSON object: {ca, sas} or {error}. Run by
// internal/workload/compat_node_test.go.
'use strict';

const { EventEmitter } = require('events');
const { ModuleClient } = require('azure-iot-device');

class RecordingTransport extends EventEmitter {
  constructor(authenticationProvider) {
    super();
    RecordingTransport.last = this;
    this.authenticationProvider = authenticationProvider;
  }
  setOptions(options, done) {
    this.options = options;
    if (typeof done === 'function') done();
  }
}

function finish(result) {
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(0);
}

ModuleClient.fromEnvironment(RecordingTransport, (err, client) => {
  if (err) return finish({ error: String(err && (err.responseBody || err.message) || err) });
  const t = RecordingTransport.last;
  t.authenticationProvider.getDeviceCredentials((err, creds) => {
    t.authenticationProvider.stop();
    if (err) return finish({ error: String(err.responseBody || err.message || err), ca: t.options && t.options.ca });
    finish({ ca: t.options.ca, sas: creds.sharedAccessSignature, host: creds.host, moduleId: creds.moduleId, client: !!client });
  });
});
