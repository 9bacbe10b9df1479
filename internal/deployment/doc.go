// Package deployment reads, validates and renders deployment manifests: for
// one device, the modules it runs, how to run them and the initial desired
// properties of their twins.
//
// # Inputs
//
// [Parse] reads YAML or JSON, told apart by content (JSON starts with '{'),
// in one of two formats, told apart by their keys:
//
//   - a native manifest, {schemaVersion: "1.0", registryCredentials, modules,
//     routes, storeAndForwardConfiguration} (the last two as in $edgeHub);
//     a field it does not know is an error, with a "did you mean" hint;
//   - an Azure IoT Edge deployment manifest as it is, in any of three forms:
//     {"modulesContent": …}, an IoT Hub configuration {"content":
//     {"modulesContent": …}, "targetCondition": …, …} or the bare
//     modulesContent object {"$edgeAgent": …, "$edgeHub": …, …}. Layered
//     members such as "properties.desired.modules.x" are merged in. What
//     outpost does not support yet (mqttBroker of $edgeHub, systemModules, imagePullPolicy "never", module types other than docker,
//     minDockerVersion, loggingOptions, settings.digest, unknown fields) is
//     returned as a warning naming its path, and otherwise ignored.
//
// Both formats give the same [Manifest]. Every problem is collected into one
// [*ValidationError]; for a file each problem carries its line, and syntax
// errors their column. Warnings read "path: message".
//
// # Defaults and conversions
//
//   - status defaults to "running" and restartPolicy to "always".
//   - startupOrder defaults to [DefaultStartupOrder], 4294967295, as in IoT
//     Edge: a module without one starts after every module that has one.
//     Allowed values are 0 to 4294967295; lower starts first.
//   - Environment variable values may be written as numbers or booleans;
//     they become the text as written (YAML `INTERVAL: 5.0` gives "5.0").
//     Names are letters, digits and '_', not starting with a digit. A
//     native `version` is converted the same way.
//   - createOptions is an object in a native manifest (a string holding
//     JSON is accepted too) and a string in an IoT Edge one (an object is
//     accepted too), possibly split over createOptions, createOptions01, …
//     which are joined in order. An empty string or "null" means none.
//     [CreateOptions.Raw] keeps the whole object as compact JSON, members in
//     the order written; the typed fields hold the subset every runtime
//     applies. Docker's field names match ignoring case. Other fields are
//     warned about; ExposedPorts is accepted silently.
//   - A module's desired properties must be an object within the twin
//     limits of internal/twin.
//   - Module ids follow IoT Hub's rule and, being keys of the $edgeAgent twin,
//     may not contain '.' or '$'.
//
// # The $edgeAgent twin
//
// [Manifest.AgentDesired] renders the desired properties of the device's
// $edgeAgent twin in the exact shape of IoT Edge's $edgeAgent (the
// manifest's schemaVersion, "1.1" for a native manifest; its systemModules,
// or ones naming the daemon), so tools that read $edgeAgent read it. A
// createOptions longer than 512 bytes is split into chunks of at most 512
// bytes (IoT Edge's size, cut between UTF-8 characters), at most 100 of them.
// [FromAgentDesired] reads it back, ignoring $metadata and $version; it
// accepts a real $edgeAgent twin too. [Manifest.HubDesired] renders the
// $edgeHub twin's desired properties: the manifest's $edgeHub part as given
// (routes in both of IoT Edge's forms), a native manifest's routes and
// storeAndForwardConfiguration, or schemaVersion, no routes and the default
// store-and-forward time to live.
package deployment
