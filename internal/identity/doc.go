// Package identity holds the credentials side of outpost: device and module
// ids, symmetric keys, SAS tokens and connection strings, all compatible with
// Azure IoT Hub.
//
// # SAS tokens
//
// A token reads
//
//	SharedAccessSignature sr={enc(resource)}&sig={enc(signature)}&se={expiry}[&skn={policy}]
//
// where signature is base64(HMAC-SHA256(base64decode(key), enc(resource) + "\n" + expiry)).
// The string that is signed holds the resource in its url-encoded form, so
// the encoding is part of the signature.
//
// Azure SDKs don't agree on that encoding. Node's encodeUriComponentStrict
// writes '*' as "%2a", Python's urllib.parse.quote(safe="") writes "%2A", the
// C SDK uses lower-case hex and leaves "!()*" as they are, and .NET's
// WebUtility.UrlEncode uses upper-case hex, leaves "!*()" as they are and
// writes a space as '+'. IoT Hub accepts all of them because it checks the
// signature over sr exactly as it appears in the token. [SAS.Verify] does the
// same.
//
// [NewSAS] uses the strict RFC 3986 encoding: every byte except A-Z a-z 0-9
// and "-._~" becomes %XX with upper-case hex. This is byte for byte what the
// Python SDK writes. It is also what the Node SDK writes for any resource
// without a '*'.
//
// A token covers a resource when the token's decoded resource equals it or
// is a prefix of it that ends at a '/' boundary. Resources are compared
// without regard to ASCII case, and a trailing '/' is ignored. So a token for
// "hub" covers "hub/devices/d1", and a token for "hub/devices/d1" covers
// "hub/devices/d1/modules/m1" but not "hub/devices/d10". IoT Hub itself
// checks a plain prefix. Requiring the '/' boundary is stricter.
package identity
